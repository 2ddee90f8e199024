"""Task-queue entry points for reconciliation (django-q2): the daily schedule and the admin's "Reconcile now"."""

from connector.models import Connection

from .service import AlreadyReconciling, reconcile


def _run(connection_id, trigger, actor=""):
    conn = Connection.objects.filter(pk=connection_id).select_related("tenant").first()
    if conn is None:
        return "connection missing"
    if trigger == "schedule" and not conn.enabled:
        return "connection disabled"
    try:
        run = reconcile(conn, trigger=trigger, actor=actor)
    except AlreadyReconciling as exc:
        return str(exc)
    if trigger == "schedule" and (run.summary or {}).get("deferred_until"):
        _retry_at(conn, run.summary["deferred_until"])
        return f"deferred to {run.summary['deferred_until']}"
    return f"{run.get_status_display()}: {run.difference_count} differences ({run.new_count} new)"


def run_scheduled_reconcile(connection_id):
    return _run(connection_id, "schedule")


def run_reconcile_now(connection_id, actor=""):
    return _run(connection_id, "person", actor)


def _retry_at(conn, when):
    """One more try of a deferred daily reconciliation, once the BILL hour has turned."""
    from datetime import datetime

    from django_q.models import Schedule

    Schedule.objects.update_or_create(name=f"reconcile-retry:{conn.pk}", defaults={
        "func": "reconcile.tasks.run_scheduled_reconcile", "args": f"({conn.pk},)", "schedule_type": Schedule.ONCE,
        "repeats": 1, "next_run": datetime.fromisoformat(when)})
