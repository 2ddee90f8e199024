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
    return {"last_sync": last, "counts": dict(sorted(counts.items()))}
