"""Consecutive login/sync failures of a connection: warn at N, pause its schedule at M (per tenant policy),
resume after a passing 'Test connection'. Counted from the SyncRun records (signals.py), never inside a run."""

from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from connector.models import SyncRun

from .mail import link, send, tenant_recipients
from .models import Alert, AlertPolicy, ConnectionHealth

STREAK = "streak"


def is_paused(conn):
    return ConnectionHealth.objects.filter(connection=conn, paused_at__isnull=False).exists()


def _status_link(conn):
    return link(reverse("admin:connector_connection_status", args=[conn.pk]))


def run_finished(run):
    """Count a finished (non-dry) run. Returns the ConnectionHealth."""
    conn = run.connection
    with transaction.atomic():
        health, _ = ConnectionHealth.objects.select_for_update().get_or_create(connection=conn)
        if health.last_run_id is not None and run.pk <= health.last_run_id:
            return health  # already counted (a run saved twice)
        health.last_run_id = run.pk
        if run.status != SyncRun.Status.FAILED:
            health.consecutive_failures, health.last_error = 0, ""
            health.save()
            Alert.objects.filter(connection=conn, category=Alert.Category.FAILURES, status=Alert.Status.OPEN).update(
                status=Alert.Status.RESOLVED, resolved_at=timezone.now())
            return health
        health.consecutive_failures += 1
        health.last_error = (run.error.splitlines()[-1] if run.error else "see the sync run")[:2000]
        health.save()
    policy = AlertPolicy.for_tenant(conn.tenant)
    n = health.consecutive_failures
    if n == policy.warn_after:
        _warn(conn, health, policy)
    if policy.pause_after and n >= policy.pause_after and health.paused_at is None:
        pause(conn, health, policy)
    return health


def _warn(conn, health, policy):
    from .engine import _mark_sent, _open

    alert, new = _open(conn, Alert.Category.FAILURES, STREAK, f"{conn}: {health.consecutive_failures} failed runs in a "
                       "row", health.last_error, health.consecutive_failures)
    health.warned_at = timezone.now()
    health.save(update_fields=["warned_at"])
    if not new and alert.notified_at is not None:
        return
    pause_words = (f"If it fails {policy.pause_after - health.consecutive_failures} more time(s), its schedule is "
                   "paused until a 'Test connection' passes." if policy.pause_after > health.consecutive_failures
                   else "")
    body = (f"Connection {conn} failed its last {health.consecutive_failures} runs in a row. The last error:\n\n"
            f"  {health.last_error}\n\nWhat to do: check the login details (run 'Test connection' on the connection); "
            f"a wrong password, an expired developer key or an unreachable server are the usual causes. "
            f"{pause_words}\n\nStatus page: {_status_link(conn)}\n")
    if send(tenant=conn.tenant, connection=conn, category="failures", subject=alert.title, body=body,
            to=tenant_recipients(conn.tenant)):
        _mark_sent([alert])


def pause(conn, health, policy):
    from django_q.models import Schedule

    from connector.scheduling import schedule_name

    health.paused_at = timezone.now()
    health.paused_reason = f"{health.consecutive_failures} failed runs in a row; last: {health.last_error}"[:2000]
    health.save(update_fields=["paused_at", "paused_reason"])
    Schedule.objects.filter(name=schedule_name(conn)).delete()
    Alert.objects.filter(connection=conn, category=Alert.Category.FAILURES, key=STREAK).update(
        title=f"{conn}: paused after {health.consecutive_failures} failed runs in a row"[:300],
        count=health.consecutive_failures, last_seen_at=timezone.now())
    body = (f"Connection {conn} failed {health.consecutive_failures} runs in a row, so ml-connector paused its "
            f"schedule (no more automatic syncs). The last error:\n\n  {health.last_error}\n\n"
            "What to do: fix the cause, then run 'Test connection' on the connection; when both sides pass, the "
            f"schedule resumes by itself.\n\nStatus page: {_status_link(conn)}\n")
    send(tenant=conn.tenant, connection=conn, category="failures",
         subject=f"{conn}: schedule paused after {health.consecutive_failures} failed runs", body=body,
         to=tenant_recipients(conn.tenant))


def connection_tested(conn, results):
    """A person's 'Test connection' / `connection ping`: when both sides pass, the streak ends and a paused
    schedule resumes."""
    if not all(ok for ok, _ in results.values()):
        return False
    health = ConnectionHealth.objects.filter(connection=conn).first()
    if health is None:
        return False
    was_paused = health.paused_at is not None
    health.consecutive_failures, health.paused_at, health.paused_reason = 0, None, ""
    if was_paused:
        health.resumed_at = timezone.now()
    health.save()
    Alert.objects.filter(connection=conn, category=Alert.Category.FAILURES, status=Alert.Status.OPEN).update(
        status=Alert.Status.RESOLVED, resolved_at=timezone.now())
    if was_paused:
        from connector.scheduling import sync_schedule

        sync_schedule(conn)
        send(tenant=conn.tenant, connection=conn, category="failures", subject=f"{conn}: schedule resumed",
             body=f"'Test connection' passed for {conn}: its schedule runs again.\n\nStatus page: {_status_link(conn)}\n",
             to=tenant_recipients(conn.tenant))
    return was_paused
