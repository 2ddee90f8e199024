"""What a connection looks like right now: last run and record counts by status (CLI list, admin, status page)."""

from collections import Counter

from django.db.models import Count

from .models import SyncRun


def _counter(model_path):
    def count(conn):
        from django.apps import apps

        model = apps.get_model(model_path)
        rows = model.objects.filter(connection=conn).values("status").annotate(n=Count("pk"))
        return {row["status"]: row["n"] for row in rows}

    return count


# Every kind of record that carries a sync status: (label, counter(connection) -> {status: count}).
STATUS_SOURCES = [
    ("vendors", _counter("mappings.VendorLink")),
    ("invoices", _counter("connector.InvoiceRecord")),
    ("payments", _counter("connector.PaymentRecord")),
]


def connection_overview(conn):
    counts = Counter()
    for label, counter in STATUS_SOURCES:
        counts.update({f"{label}:{status}": n for status, n in counter(conn).items() if n})
    last = SyncRun.objects.filter(connection=conn).exclude(status=SyncRun.Status.RUNNING).first()
    from .scheduling import schedule_state

    return {"last_sync": last, "counts": dict(sorted(counts.items())), "company": company_overview(conn),
            "schedule": schedule_state(conn)}


def company_overview(conn):
    """The SAP company as last read (AdminInfo, BusinessPlaces): local currency and, with branches, invoices per branch."""
    from .models import InvoiceRecord
    from .sync.coding import iso_currency

    company = conn.sap_company or {}
    if not company:
        return None
    local = company.get("local_currency") or ""
    iso = iso_currency(local, conn.sap_currency_codes)
    overview = {"local_currency": local if iso in ("", local) else f"{local} ({iso})", "error": company.get("error", ""),
                "branches_enabled": bool(company.get("branches_enabled")), "branches": []}
    if overview["branches_enabled"]:
        per_branch = {}
        rows = (InvoiceRecord.objects.filter(connection=conn).values("branch_id", "branch_name", "status")
                .annotate(n=Count("pk")).order_by("branch_id"))
        for row in rows:
            name = row["branch_name"] or company.get("branches", {}).get(str(row["branch_id"]), "") or "no branch"
            entry = per_branch.setdefault(row["branch_id"], {"id": row["branch_id"], "name": name, "counts": {}})
            entry["counts"][row["status"]] = row["n"]
        for bpl_id, name in (company.get("branches") or {}).items():
            per_branch.setdefault(int(bpl_id), {"id": int(bpl_id), "name": name, "counts": {}})
        overview["branches"] = sorted(per_branch.values(), key=lambda b: (b["id"] is None, b["id"] or 0))
    return overview
