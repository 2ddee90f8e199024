"""What a connection looks like right now: last run and record counts by status (CLI list, admin, status page)."""

from collections import Counter

from .models import SyncRun

# Every model that carries a per-record sync status registers here (mappings, bills, payments…).
STATUS_SOURCES = []


def register_status_source(label, counter):
    """`counter(connection)` returns {status: count} for one kind of record."""
    STATUS_SOURCES.append((label, counter))


def connection_overview(conn):
    counts = Counter()
    for label, counter in STATUS_SOURCES:
        counts.update({f"{label}:{status}": n for status, n in counter(conn).items() if n})
    last = SyncRun.objects.filter(connection=conn).exclude(status=SyncRun.Status.RUNNING).first()
    return {"last_sync": last, "counts": dict(sorted(counts.items()))}
