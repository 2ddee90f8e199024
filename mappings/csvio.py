"""Mapping CSV (CONTRACT.md): `kind,sap_code,bill_id`, export adds `sap_name,bill_name`.

Import is all-or-nothing: every row is checked against both sides' reference data first, and one bad row
changes nothing; errors name the CSV row (the header is row 1). Used by `mappings import|export` and, row
by row, by the admin's import screen.
"""

import csv
import io

from django.db import transaction
from import_export.formats import base_formats

from .models import (
    BillAccount,
    BillClass,
    BillDepartment,
    BillJob,
    BillLocation,
    SapAccount,
    SapClassMapping,
    SapCostCenter,
    SapJobMapping,
    SapLocationMapping,
)

HEADER = ["kind", "sap_code", "bill_id"]
EXPORT_HEADER = HEADER + ["sap_name", "bill_name"]
KINDS = {
    "account": (SapAccount, BillAccount, "bill_account", "SAP G/L account", "BILL chart-of-accounts entry"),
    "department": (SapCostCenter, BillDepartment, "bill_department", "SAP cost center", "BILL department"),
    # the SAP codes of whatever the connection's `coding` feeds to these (a dimension's cost centers, projects, branches)
    "location": (SapLocationMapping, BillLocation, "bill_location", "SAP location source value", "BILL location"),
    "class": (SapClassMapping, BillClass, "bill_class", "SAP class source value", "BILL accounting class"),
    "job": (SapJobMapping, BillJob, "bill_job", "SAP job source value", "BILL job"),
}


# A cell starting with one of these is a formula to Excel / LibreOffice / Sheets (CSV injection): exports prefix it
# with a quote ("'=SUM(…)" shows as text), imports take such a quote off again, so an export imports unchanged.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def escape_cell(value):
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def unescape_cell(text):
    return text[1:] if text.startswith("'") and text[1:2] and text[1] in "=+-@\t\r" else text


def upload_limit():
    from django.conf import settings

    return getattr(settings, "MAX_UPLOAD_BYTES", 5 * 1024 * 1024)


def check_size(size):
    """Uploads have a size cap (MAX_UPLOAD_BYTES): raise MappingImportError above it."""
    limit = upload_limit()
    if size > limit:
        raise MappingImportError([f"the file is {size / 1048576:.1f} MB; mapping files are limited to "
                                  f"{limit / 1048576:.1f} MB (MAX_UPLOAD_BYTES)"])


class SafeCSV(base_formats.CSV):
    """The admin's CSV format: formula-like cells escaped on export (django-import-export's own escaping only
    drops one leading '=')."""

    def _escape_formulae(self, dataset):
        rows = [[escape_cell(cell) for cell in row] for row in dataset]
        del dataset[:]
        for row in rows:
            dataset.append(row)


class MappingImportError(Exception):
    def __init__(self, errors):
        self.errors = errors
        super().__init__("; ".join(errors[:20]) + (f" (and {len(errors) - 20} more)" if len(errors) > 20 else ""))


def export_rows(connection):
    rows = []
    for kind, (sap_model, _bill_model, target, _, _) in KINDS.items():
        qs = sap_model.objects.filter(connection=connection, **{f"{target}__isnull": False}).select_related(target)
        for row in qs.order_by("code"):
            bill_obj = getattr(row, target)
            rows.append({"kind": kind, "sap_code": row.code, "bill_id": bill_obj.bill_id,
                         "sap_name": row.name, "bill_name": bill_obj.name})
    return rows


def export_csv(connection, fh):
    writer = csv.DictWriter(fh, fieldnames=EXPORT_HEADER, lineterminator="\n")
    writer.writeheader()
    rows = export_rows(connection)
    writer.writerows({key: escape_cell(value) for key, value in row.items()} for row in rows)
    return len(rows)


def check_header(fieldnames):
    """Return the stripped column names; raise MappingImportError (row 1) when a required column is missing."""
    header = [(h or "").strip() for h in (fieldnames or [])]
    missing = [h for h in HEADER if h not in header]
    if missing:
        raise MappingImportError([f"row 1: header must start with kind,sap_code,bill_id (missing {', '.join(missing)})"])
    return header


def read_rows(text):
    """Parse CSV text into (row_number, dict) pairs; raise MappingImportError for a wrong header."""
    check_size(len(text.encode("utf-8")))
    if text.startswith("\ufeff"):
        text = text[1:]  # Excel's byte-order mark
    reader = csv.DictReader(io.StringIO(text))
    reader.fieldnames = check_header(reader.fieldnames)
    # reader.line_num is the file's line number (blank lines are skipped by the reader but still counted).
    return [(reader.line_num, {k: unescape_cell((v or "").strip()) for k, v in row.items() if k}) for row in reader]


class RowChecker:
    """Checks mapping rows against one connection's reference data (loaded once)."""

    def __init__(self, connection):
        self.connection = connection
        self.sap = {kind: {r.code: r for r in spec[0].objects.filter(connection=connection)} for kind, spec in KINDS.items()}
        self.bill = {kind: {r.bill_id: r for r in spec[1].objects.filter(connection=connection)} for kind, spec in KINDS.items()}
        self.seen = {}

    def check(self, number, row):
        """Return (sap_row, bill_row, kind) or raise ValueError with a message naming the row."""
        kind = row.get("kind", "").lower()
        if kind not in KINDS:
            raise ValueError(f"row {number}: kind must be one of {', '.join(KINDS)}, not {row.get('kind')!r}")
        _, _, _, sap_words, bill_words = KINDS[kind]
        if kind in ("location", "class", "job"):
            from connector.sync.dimensions import coding_of

            source = coding_of(self.connection).get(kind)
            if not source:
                raise ValueError(f"row {number}: this connection does not code lines to a {bill_words} (set "
                                 f"\"coding\": {{\"{kind}\": \"dimension2\"}} or project/branch in its connection file)")
            from .models import source_words

            sap_words = f"SAP {source_words(source)}"
        code, bill_id = row.get("sap_code", ""), row.get("bill_id", "")
        if not code:
            raise ValueError(f"row {number}: sap_code is empty")
        if not bill_id:
            raise ValueError(f"row {number}: bill_id is empty for {sap_words} {code}")
        sap_row = self.sap[kind].get(code)
        if sap_row is None or sap_row.missing:
            raise ValueError(f"row {number}: {sap_words} {code} does not exist in SAP (refresh reference data if it is new)")
        bill_row = self.bill[kind].get(bill_id)
        if bill_row is None or bill_row.missing:
            raise ValueError(f"row {number}: {bill_words} {bill_id} does not exist in BILL")
        if bill_row.archived:
            raise ValueError(f"row {number}: {bill_words} {bill_id} ({bill_row.name}) is archived in BILL")
        previous = self.seen.get((kind, code))
        if previous is not None and previous != bill_id:
            raise ValueError(f"row {number}: {sap_words} {code} is mapped twice in this file, to different BILL ids")
        self.seen[(kind, code)] = bill_id
        return sap_row, bill_row, kind


def import_csv(connection, text):
    """Check every row, then apply all of them in one transaction. Returns {"account": n, "department": n, "unchanged": n}."""
    rows = read_rows(text)
    checker = RowChecker(connection)
    planned, errors = [], []
    for number, row in rows:
        try:
            planned.append(checker.check(number, row))
        except ValueError as exc:
            errors.append(str(exc))
    if errors:
        raise MappingImportError(errors)
    counts = {**dict.fromkeys(KINDS, 0), "unchanged": 0}
    with transaction.atomic():
        for sap_row, bill_row, kind in planned:
            target = KINDS[kind][2]
            if getattr(sap_row, f"{target}_id") == bill_row.pk:
                counts["unchanged"] += 1
                continue
            setattr(sap_row, target, bill_row)
            sap_row.refresh_status()
            sap_row.save(update_fields=[target, "mapping_status", "updated_at"])
            counts[kind] += 1
    return counts
