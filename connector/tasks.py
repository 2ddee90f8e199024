"""Task-queue entry points (django-q2). Thin: each loads its connection and calls the sync code.

The queue is a doorbell, the database is the ledger: a task lost with a dying worker only delays work,
because every record's state is in the database and the periodic sweep picks up whatever is pending.
"""

import logging

from django.conf import settings
from django.utils import timezone

from .models import Connection, WebhookEvent

log = logging.getLogger(__name__)


def run_scheduled_sync(connection_id):
    """One scheduled cycle of one connection. Its failure is recorded on its SyncRun and stops no other connection."""
    from .sync.runner import AlreadyRunning, run_sync

    conn = Connection.objects.filter(pk=connection_id, enabled=True).select_related("tenant").first()
    if conn is None:
        return "connection missing or disabled"
    try:
        run = run_sync(conn, trigger="schedule", max_seconds=settings.CYCLE_MAX_SECONDS)
    except AlreadyRunning as exc:
        return str(exc)
    continue_later(conn, run)
    return f"{run.status}: {run.summary}"


def continue_later(conn, run):
    """A bounded cycle that left work (a backfill): queue the next part behind the cycles already waiting, so
    other connections' scheduled cycles run in between (fairness) and this one still finishes soon."""
    if not (run.summary or {}).get("more"):
        return
    from django_q.tasks import async_task

    async_task("connector.tasks.run_scheduled_sync", conn.pk, task_name=f"sync:{conn.pk}:continued",
               group=f"sync:{conn.pk}")


def run_sync_now(connection_id, actor=""):
    """A cycle a person asked for in the admin ("Sync now")."""
    from .sync.runner import AlreadyRunning, run_sync

    conn = Connection.objects.filter(pk=connection_id).select_related("tenant").first()
    if conn is None:
        return "connection missing"
    try:
        run = run_sync(conn, trigger="person", actor=actor, max_seconds=settings.CYCLE_MAX_SECONDS)
    except AlreadyRunning as exc:
        return str(exc)
    continue_later(conn, run)
    return f"{run.status}: {run.summary_text}"


def process_webhook_event(event_pk):
    """Read the truth about what one stored BILL event points at, and post it to SAP if it is a payment."""
    from .clients.bill import BillClient
    from .clients.sap import SapClient
    from .sync.payments import PaymentSync

    event = WebhookEvent.objects.filter(pk=event_pk, status=WebhookEvent.Status.PENDING).select_related("connection").first()
    if event is None:
        return "already processed"
    conn = event.connection
    from audit.trail import triggered_by

    from .budget import priority

    with triggered_by("webhook"), priority("payments"):
        sync = PaymentSync(conn, SapClient.for_connection(conn), BillClient.for_connection(conn))
        for payment_id in sorted(sync.ids_from_events(only=[event_pk])):
            sync.handle(payment_id)
    return sync.summary


def sweep():
    """Process webhook events still pending a minute after they arrived (their task was lost or failed)."""
    cutoff = timezone.now() - timezone.timedelta(minutes=1)
    pending = WebhookEvent.objects.filter(status=WebhookEvent.Status.PENDING, received_at__lt=cutoff,
                                          connection__enabled=True).values_list("pk", flat=True)[:500]
    done = 0
    for pk in pending:
        try:
            process_webhook_event(pk)
            done += 1
        except Exception:  # noqa: BLE001 - one bad event must not stop the sweep; it stays pending
            log.exception("sweep: webhook event %s failed", pk)
    from audit.replay import sweep_jobs

    from .leases import prune

    prune()  # leases left by killed workers (a live holder renews its own)
    from .budget import counter

    counter().prune()  # budget counts older than two days (Redis keys expire by themselves)
    from .host import warn_operators_about_budgets

    warn_operators_about_budgets()  # once per developer key and hour, past 80 % of its BILL budget
    warm_idle_bill_sessions()
    requeued = sweep_jobs()
    return f"processed {done} pending webhook events; re-queued replay jobs: {requeued}"


WARM_AFTER = timezone.timedelta(minutes=20)  # the sweep runs every 5 minutes; the client re-logs in past 30


def warm_idle_bill_sessions(limit=1000):
    """Queue a keep-warm read for BILL sessions idle 20–29 minutes (a connection on a long cadence would otherwise log
    in every cycle: BILL drops a session after 35 idle minutes). Returns how many were queued."""
    from django_q.tasks import async_task

    from .clients.bill import SESSION_IDLE_LIMIT
    from .models import RemoteSession

    now = timezone.now()
    ids = list(RemoteSession.objects.filter(
        system=RemoteSession.BILL, connection__enabled=True, last_used_at__lte=now - WARM_AFTER,
        last_used_at__gt=now - SESSION_IDLE_LIMIT + timezone.timedelta(minutes=1),
    ).exclude(token="").values_list("connection_id", flat=True)[:limit])
    for connection_id in ids:
        async_task("connector.tasks.keep_bill_session_warm", connection_id, task_name=f"warm:{connection_id}")
    return len(ids)


def keep_bill_session_warm(connection_id):
    from .budget import priority
    from .clients.bill import BillClient

    conn = Connection.objects.filter(pk=connection_id, enabled=True).first()
    if conn is None:
        return "connection missing or disabled"
    with priority("normal"):
        BillClient.for_connection(conn).keep_warm()
    return "kept warm"
