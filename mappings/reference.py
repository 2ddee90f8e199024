"""Fetch reference data from both sides and keep the local copy current (`sync NAME --step reference`).

Everything is read first (paged HTTP calls, no transaction open), then written in one short transaction.
Rows that vanished remotely are marked `missing`, never deleted: mappings point at them.
"""

from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from connector.clients.errors import SapError

from .models import (
    DIMENSION_KINDS,
    BillAccount,
    BillDepartment,
    ReferenceRefresh,
    SapAccount,
    SapCostCenter,
    SapExpenseType,
    SapTaxCode,
)


def _coding_for(client):
    """The `coding` setting of the connection a client belongs to ({} when unknown)."""
    from connector.models import Connection
    from connector.sync.dimensions import coding_of

    connection_id = getattr(getattr(client, "transport", None), "connection_id", None)
    connection = Connection.objects.filter(pk=connection_id).first() if connection_id else None
    return coding_of(connection) if connection else {}


def fetch_sap_reference(sap):
    """Read accounts, cost centres, distribution rules, tax codes and freight types from SAP (and the SAP projects
    when the connection codes the project to a BILL classification)."""
    accounts = {}
    for row in sap.iterate(
        "ChartOfAccounts", select=["Code", "FormatCode", "Name", "ActiveAccount", "AccountType", "FrozenFor"],
        filter="ActiveAccount eq 'tYES'", orderby="Code",
    ):
        if row.get("FrozenFor") == "tYES":
            continue  # frozen accounts cannot be posted to: treat like a removed account
        accounts[row["Code"]] = {
            "name": row.get("Name") or "", "format_code": row.get("FormatCode") or row["Code"],
            "account_type": row.get("AccountType") or "",
        }
    centers = {}
    for row in sap.iterate("ProfitCenters", select=["CenterCode", "CenterName", "InWhichDimension", "Active"],
                           orderby="CenterCode"):
        centers[row["CenterCode"]] = {
            "name": row.get("CenterName") or "", "dimension": int(row.get("InWhichDimension") or 1),
            "active": row.get("Active", "tYES") != "tNO", "is_rule": False,
        }
    try:
        for row in sap.iterate("DistributionRules",
                               select=["FactorCode", "FactorDescription", "InWhichDimension", "Direct", "Active"],
                               orderby="FactorCode"):
            if row.get("Direct") == "tYES" and row["FactorCode"] in centers:
                continue  # the automatic rule of a cost centre: same code, same meaning
            centers[row["FactorCode"]] = {
                "name": row.get("FactorDescription") or "", "dimension": int(row.get("InWhichDimension") or 1),
                "active": row.get("Active", "tYES") != "tNO", "is_rule": row.get("Direct") != "tYES",
            }
    except SapError as exc:
        if exc.status not in (400, 404):
            raise  # without distribution rules, lines carry cost-centre codes only: nothing else to map
    taxes = {}
    try:
        for row in sap.iterate("VatGroups", select=["Code", "Name", "TaxAccount", "Inactive", "VatGroups_Lines"]):
            lines = row.get("VatGroups_Lines") or []
            rate = Decimal(str(lines[-1].get("Rate", 0))) if lines else Decimal("0")
            taxes[row["Code"]] = {"name": row.get("Name") or "", "rate": rate, "tax_account": row.get("TaxAccount") or ""}
    except SapError as exc:
        if exc.status not in (400, 404):
            raise  # a company without VAT groups (US sales-tax localization) answers 400/404: no tax codes to map
    expenses = {}
    try:
        for row in sap.iterate("AdditionalExpenses", select=["ExpensCode", "Name", "ExpenseAccount"]):
            expenses[str(row["ExpensCode"])] = {"name": row.get("Name") or "", "expense_account": row.get("ExpenseAccount") or ""}
    except SapError as exc:
        if exc.status not in (400, 404):
            raise
    data = {"accounts": accounts, "centers": centers, "taxes": taxes, "expenses": expenses,
            "company": fetch_sap_company(sap)}
    if "project" in _coding_for(sap).values():
        data["projects"] = {
            row["Code"]: {"name": row.get("Name") or "", "active": row.get("Active", "tYES") != "tNO"}
            for row in sap.iterate("Projects", select=["Code", "Name", "Active"], orderby="Code")
        }
    return data


def fetch_sap_company(sap):
    """The SAP company's local currency and branches: `POST CompanyService_GetAdminInfo` (LocalCurrency,
    SystemCurrency, EnableBranches), then the active `BusinessPlaces` when branches are on (addendum §7, §8).
    A user not allowed to read AdminInfo gives {"error": ...}: invoices are then treated as before (ISO codes)."""
    try:
        info = sap.request("POST", "CompanyService_GetAdminInfo") or {}
    except SapError as exc:
        if exc.status not in (400, 403, 404):
            raise
        return {"error": f"could not read SAP AdminInfo: {exc}"}
    company = {"local_currency": (info.get("LocalCurrency") or "").strip(),
               "system_currency": (info.get("SystemCurrency") or "").strip(),
               "branches_enabled": info.get("EnableBranches") == "tYES", "branches": {}}
    if company["branches_enabled"]:
        for row in sap.iterate("BusinessPlaces", select=["BPLID", "BPLName", "Disabled", "MainBPL"],
                               filter="Disabled eq 'tNO'"):
            company["branches"][str(row["BPLID"])] = row.get("BPLName") or ""
    return company


def fetch_bill_reference(bill):
    """Read the chart of accounts and departments from BILL, archived ones included (mappings to them are flagged)."""
    accounts = {
        row["id"]: {
            "name": row.get("name") or "", "number": (row.get("account") or {}).get("number") or "",
            "account_type": (row.get("account") or {}).get("type") or "", "archived": bool(row.get("archived")),
        }
        for row in bill.iterate("/v3/classifications/chart-of-accounts")
    }
    departments = {
        row["id"]: {"name": row.get("name") or "", "short_name": row.get("shortName") or "",
                    "archived": bool(row.get("archived"))}
        for row in bill.iterate("/v3/classifications/departments")
    }
    data = {"accounts": accounts, "departments": departments}
    from .models import BILL_CLASSIFICATION_PATHS

    for kind in DIMENSION_KINDS:
        if kind in _coding_for(bill):  # only what the connection codes to: the others may be switched off in BILL
            data[kind] = {
                row["id"]: {"name": row.get("name") or "", "short_name": row.get("shortName") or "",
                            "archived": bool(row.get("archived"))}
                for row in bill.iterate(f"/v3/classifications/{BILL_CLASSIFICATION_PATHS[kind]}")
            }
    return data


def dimension_values(coding, sap_data):
    """{kind: {code: {name, source, active}}}: the SAP values each configured source gives."""
    out = {}
    for kind in DIMENSION_KINDS:
        source = coding.get(kind)
        if not source:
            continue
        if source.startswith("dimension"):
            number = int(source[-1])
            rows = {code: {"name": c["name"], "active": c["active"]}
                    for code, c in sap_data.get("centers", {}).items() if c["dimension"] == number}
        elif source == "project":
            rows = dict(sap_data.get("projects") or {})
        else:  # branch
            rows = {code: {"name": name, "active": True}
                    for code, name in ((sap_data.get("company") or {}).get("branches") or {}).items()}
        out[kind] = {code: {**values, "source": source} for code, values in rows.items()}
    return out


def _upsert(model, connection, key_field, rows, now):
    """Create/update `rows` ({key: fields}) for this connection; mark the rest missing. Returns counts."""
    existing = {getattr(obj, key_field): obj for obj in model.objects.filter(connection=connection)}
    to_create, to_update = [], []
    fields = set()
    for key, values in rows.items():
        obj = existing.pop(key, None)
        if obj is None:
            to_create.append(model(connection=connection, refreshed_at=now, **{key_field: key}, **values))
            continue
        for name, value in values.items():
            setattr(obj, name, value)
        obj.missing = False
        obj.refreshed_at = now
        fields.update(values)
        to_update.append(obj)
    gone = [obj for obj in existing.values() if not obj.missing]
    for obj in gone:
        obj.missing = True
    model.objects.bulk_create(to_create)
    if to_update:
        model.objects.bulk_update(to_update, sorted(fields | {"missing", "refreshed_at"}), batch_size=500)
    if gone:
        model.objects.bulk_update(gone, ["missing"], batch_size=500)
    return {"new": len(to_create), "updated": len(to_update), "missing": len(gone)}


def refresh_mapping_statuses(connection):
    """Recompute each mapping's status (unmapped / ok / broken) after either side changed."""
    for model in (SapAccount, SapCostCenter, *(spec[0] for spec in DIMENSION_KINDS.values())):
        changed = []
        for row in model.objects.filter(connection=connection).select_related(model.target_field):
            before = row.mapping_status
            if row.refresh_status() != before:
                changed.append(row)
        model.objects.bulk_update(changed, ["mapping_status"], batch_size=500)


def store_reference(connection, sap_data, bill_data):
    now = timezone.now()
    with transaction.atomic():
        counts = {
            "sap_accounts": _upsert(SapAccount, connection, "code", sap_data["accounts"], now),
            "sap_cost_centers": _upsert(SapCostCenter, connection, "code", sap_data["centers"], now),
            "sap_tax_codes": _upsert(SapTaxCode, connection, "code", sap_data["taxes"], now),
            "sap_expense_types": _upsert(SapExpenseType, connection, "code", sap_data["expenses"], now),
            "bill_accounts": _upsert(BillAccount, connection, "bill_id", bill_data["accounts"], now),
            "bill_departments": _upsert(BillDepartment, connection, "bill_id", bill_data["departments"], now),
        }
        from connector.sync.dimensions import coding_of

        for kind, rows in dimension_values(coding_of(connection), sap_data).items():
            sap_model, bill_model, _ = DIMENSION_KINDS[kind]
            counts[f"sap_{kind}_values"] = _upsert(sap_model, connection, "code", rows, now)
            if kind in bill_data:
                counts[f"bill_{kind}s"] = _upsert(bill_model, connection, "bill_id", bill_data[kind], now)
        refresh_mapping_statuses(connection)
        if "company" in sap_data:
            # only this column: the connection row is edited elsewhere too (admin, connection apply)
            type(connection).objects.filter(pk=connection.pk).update(sap_company=sap_data["company"])
            connection.sap_company = sap_data["company"]
        ReferenceRefresh.objects.update_or_create(
            connection=connection, defaults={"refreshed_at": now, "counts": counts, "error": ""}
        )
    return counts


def refresh_reference(connection, sap, bill):
    """Fetch both sides and store them. Returns per-table counts of new/updated/missing rows."""
    try:
        sap_data = fetch_sap_reference(sap)
        bill_data = fetch_bill_reference(bill)
    except Exception as exc:
        ReferenceRefresh.objects.update_or_create(connection=connection, defaults={"error": str(exc)[:2000]})
        raise
    return store_reference(connection, sap_data, bill_data)


def reference_loaded(connection):
    return ReferenceRefresh.objects.filter(connection=connection, refreshed_at__isnull=False).exists()
