"""Propose mappings for unmapped SAP accounts and cost centres by matching numbers and names.

Proposals are only shown to a person for confirmation (admin action); nothing here saves anything
except `apply_proposals`, which is called with what the person confirmed.
"""

import re

from django.db import transaction

from .models import BillAccount, BillDepartment, SapAccount, SapCostCenter


def normalize(text):
    text = (text or "").lower().replace("&", " and ")
    return " ".join(re.findall(r"[a-z0-9]+", text))


class Proposal:
    def __init__(self, sap_row, bill_row, reason):
        self.sap_row, self.bill_row, self.reason = sap_row, bill_row, reason

    @property
    def key(self):
        return f"{self.sap_row._meta.model_name}:{self.sap_row.pk}:{self.bill_row.pk}"


def _unique(index, key):
    found = index.get(key) or []
    return found[0] if len(found) == 1 else None


def _index(rows, keyfunc):
    index = {}
    for row in rows:
        key = keyfunc(row)
        if key:
            index.setdefault(key, []).append(row)
    return index


def suggest_accounts(connection, sap_rows=None):
    sap_rows = sap_rows if sap_rows is not None else SapAccount.objects.filter(connection=connection)
    bill = [b for b in BillAccount.objects.filter(connection=connection) if b.usable]
    by_number = _index(bill, lambda b: b.number.strip())
    by_name = _index(bill, lambda b: normalize(b.name))
    proposals = []
    for row in sap_rows:
        if row.bill_account_id and row.mapping_status == "ok":
            continue
        match = _unique(by_number, (row.format_code or row.code).strip())
        if match:
            same_name = normalize(match.name) == normalize(row.name)
            proposals.append(Proposal(row, match, "same number and name" if same_name else "same account number"))
            continue
        match = _unique(by_name, normalize(row.name))
        if match:
            proposals.append(Proposal(row, match, "same name"))
    return proposals


def suggest_departments(connection, sap_rows=None):
    sap_rows = sap_rows if sap_rows is not None else SapCostCenter.objects.filter(connection=connection)
    bill = [b for b in BillDepartment.objects.filter(connection=connection) if b.usable]
    by_name = _index(bill, lambda b: normalize(b.name))
    by_short = _index(bill, lambda b: normalize(b.short_name))
    proposals = []
    for row in sap_rows:
        if row.bill_department_id and row.mapping_status == "ok":
            continue
        match = _unique(by_name, normalize(row.name))
        if match:
            proposals.append(Proposal(row, match, "same name"))
            continue
        match = _unique(by_short, normalize(row.code))
        if match:
            proposals.append(Proposal(row, match, "code equals the BILL short name"))
    return proposals


@transaction.atomic
def apply_proposals(pairs):
    """Save confirmed (sap_row, bill_row) pairs. Returns how many were applied."""
    for sap_row, bill_row in pairs:
        setattr(sap_row, sap_row.target_field, bill_row)
        sap_row.refresh_status()
        sap_row.save(update_fields=[sap_row.target_field, "mapping_status", "updated_at"])
    return len(pairs)
