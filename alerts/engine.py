"""Decide which alerts open, stay open (no new mail) or resolve, and send one mail per newly opened problem.

Notify once: an alert is mailed when it opens (or, if the tenant had no recipient then, as soon as it has one);
while it stays open nothing more is sent; when its cause is
gone it is resolved, and if the cause comes back it reopens and is mailed again. Problems an automatic retry
is still expected to fix (a failed record with retries left, a failed run below the warn threshold, a
reconciliation difference the next sync should clear) open no alert.
"""

import hashlib

from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from audit.problems import _sources, causes
from connector.sync.bills import MAX_AUTO_ATTEMPTS

from .mail import link, send, tenant_recipients
from .models import Alert, AlertPolicy

Category = Alert.Category
WORDS = {"invoice": ("invoice", "invoices"), "payment": ("payment", "payments"), "vendor": ("vendor", "vendors")}


def _key(*parts):
    text = "|".join(str(p) for p in parts)
    return text if len(text) <= 200 else hashlib.sha256(text.encode()).hexdigest()


def _open(conn, category, key, title, detail, count):
    """Open (or reopen) an alert. Returns (alert, newly_opened)."""
    now = timezone.now()
    with transaction.atomic():
        alert, created = Alert.objects.select_for_update().get_or_create(
            connection=conn, category=category, key=key,
            defaults={"tenant": conn.tenant, "title": title[:300], "detail": detail, "count": count})
        if created:
            return alert, True
        reopened = alert.status == Alert.Status.RESOLVED
        alert.title, alert.detail, alert.count, alert.last_seen_at = title[:300], detail, count, now
        if reopened:
            alert.status, alert.opened_at, alert.resolved_at = Alert.Status.OPEN, now, None
            alert.times_opened += 1
        alert.save()
        return alert, reopened


def _resolve_missing(conn, category, keep_keys):
    Alert.objects.filter(connection=conn, category=category, status=Alert.Status.OPEN).exclude(
        key__in=keep_keys).update(status=Alert.Status.RESOLVED, resolved_at=timezone.now())


def _mark_sent(alerts):
    Alert.objects.filter(pk__in=[a.pk for a in alerts]).update(notified_at=timezone.now())


# --- grouped open problems -------------------------------------------------------------------------------
def actionable_problems(conn):
    """[(kind, status, cause, count)] that need a person: like the status page's grouping, minus failed records
    an automatic retry is still going to try."""
    groups = {}
    for kind, (model, statuses) in _sources().items():
        rows = model.objects.filter(connection=conn, status__in=statuses)
        has_attempts = any(f.name == "attempts" for f in model._meta.fields)
        fields = ["status", "last_error"] + (["attempts"] if has_attempts else [])
        for row in rows.values(*fields).iterator():
            if has_attempts and row["status"] == "failed" and row["attempts"] < MAX_AUTO_ATTEMPTS:
                continue  # the next runs retry it by themselves
            for cause in causes(row["last_error"]) or ["(no message)"]:
                groups[(kind, row["status"], cause)] = groups.get((kind, row["status"], cause), 0) + 1
    return [(kind, status, cause, n) for (kind, status, cause), n in sorted(groups.items())]


def problems_changed(conn):
    """Open one alert (one mail) per new grouped cause of this connection; resolve the causes that are gone."""
    policy = AlertPolicy.for_tenant(conn.tenant)
    keep = []
    for kind, status, cause, count in actionable_problems(conn):
        key = _key(kind, status, cause)
        keep.append(key)
        one, many = WORDS.get(kind, (kind, kind + "s"))
        title = f"{conn}: {count} {one if count == 1 else many} {status}: {cause}"
        alert, new = _open(conn, Category.PROBLEM, key, title, cause, count)
        if (new or alert.notified_at is None) and policy.problems:
            page = link(reverse("admin:connector_connection_status", args=[conn.pk]))
            body = (f"{count} {one if count == 1 else many} of connection {conn} {'is' if count == 1 else 'are'} "
                    f"{status}:\n\n  {cause}\n\nWhat to do: the message above says what to fix; once it is fixed the "
                    f"next sync retries these records by itself (or use 'Replay the failed step').\n\n"
                    f"Open problems of this connection: {page}\n\nYou get this once; it is mailed again only if the "
                    "problem is resolved and comes back.")
            if send(tenant=conn.tenant, connection=conn, category="problem", subject=title, body=body,
                    to=tenant_recipients(conn.tenant)):
                _mark_sent([alert])
    _resolve_missing(conn, Category.PROBLEM, keep)


# --- reconciliation --------------------------------------------------------------------------------------
def reconciliation_finished(run):
    """One mail per run for the differences that are new (and not expected to clear by themselves)."""
    conn = run.connection
    policy = AlertPolicy.for_tenant(conn.tenant)
    actionable = list(run.differences.filter(expected_to_clear=False))
    opened = []
    for d in actionable:
        alert, new = _open(conn, Category.RECONCILIATION, _key(d.key), f"{d.get_kind_display()}: "
                           f"{d.sap_ref or '-'} / {d.bill_ref or '-'}", d.action, 1)
        if new or alert.notified_at is None:  # not mailed yet (new, or nobody to mail when it opened)
            opened.append((alert, d))
    _resolve_missing(conn, Category.RECONCILIATION, [_key(d.key) for d in actionable])
    if not opened or not policy.reconciliation:
        return None
    by_kind = {}
    for _, d in opened:
        by_kind.setdefault(d.get_kind_display(), []).append(d)
    lines = []
    for label, rows in sorted(by_kind.items()):
        lines.append(f"{label}: {len(rows)}")
        for d in rows[:20]:
            amounts = f" SAP {d.sap_amount if d.sap_amount is not None else '-'} / BILL " \
                      f"{d.bill_amount if d.bill_amount is not None else '-'}"
            lines.append(f"  - {d.card_code or ''} {d.sap_ref or ''} {d.bill_ref or ''}{amounts}: {d.action}")
        if len(rows) > 20:
            lines.append(f"  … and {len(rows) - 20} more")
    page = link(reverse("admin:reconcile_connection_page", args=[conn.pk]))
    count = len(opened)
    body = (f"The reconciliation of {conn} ({run.started_at:%Y-%m-%d %H:%M} UTC) found {count} new "
            f"difference{'s' if count != 1 else ''} between SAP and BILL:\n\n" + "\n".join(lines)
            + f"\n\nOpen amount: SAP {run.sap_open}, BILL {run.bill_open}.\nReconciliation page: {page}\n")
    note = send(tenant=conn.tenant, connection=conn, category="reconciliation",
                subject=f"{conn}: {count} new reconciliation difference{'s' if count != 1 else ''}", body=body,
                to=tenant_recipients(conn.tenant))
    if note:
        _mark_sent([a for a, _ in opened])
    return note
