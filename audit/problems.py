"""Group open problems so that one broken mapping shows as one line with a count, not hundreds of rows.

A record's `last_error` may hold several causes separated by "; ". Each cause is normalized (record-specific
bits such as "(line 3)" removed) and counted per connection.
"""

import re
from collections import defaultdict

from connector.models import InvoiceRecord, PaymentRecord

_LINE = re.compile(r" \(line \d+\)")

OPEN = {
    "invoice": (InvoiceRecord, ["held", "failed", "flagged"]),
    "payment": (PaymentRecord, ["failed", "flagged"]),
}


def causes(message):
    return [_LINE.sub("", part).strip() for part in (message or "").split("; ") if part.strip()]


def _sources():
    from mappings.models import VendorLink

    return {**OPEN, "vendor": (VendorLink, ["review", "failed", "invalid"])}


def grouped_problems(connections):
    """[{connection, kind, status, cause, count, ids}] sorted by count, for the given connections."""
    groups = defaultdict(lambda: {"count": 0, "ids": []})
    for kind, (model, statuses) in _sources().items():
        rows = model.objects.filter(connection__in=connections, status__in=statuses).values_list(
            "pk", "connection_id", "status", "last_error")
        for pk, conn_id, status, error in rows.iterator():
            for cause in causes(error) or ["(no message)"]:
                group = groups[(conn_id, kind, status, cause)]
                group["count"] += 1
                if len(group["ids"]) < 50:
                    group["ids"].append(pk)
    names = {c.pk: c for c in connections}
    result = [
        {"connection": names.get(conn_id), "kind": kind, "status": status, "cause": cause, **data}
        for (conn_id, kind, status, cause), data in groups.items()
    ]
    return sorted(result, key=lambda g: (-g["count"], g["cause"]))
