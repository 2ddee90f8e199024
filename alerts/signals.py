"""After each finished sync run: count failures (health.py) and update grouped-problem alerts (engine.py).
Hooked to SyncRun's post_save, after the transaction commits; an alert problem never fails a sync."""

import logging

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from connector.models import SyncRun

log = logging.getLogger(__name__)


@receiver(post_save, sender=SyncRun, dispatch_uid="alerts-sync-run")
def _sync_run_saved(sender, instance, raw=False, **kwargs):
    if raw or instance.dry_run or instance.status == SyncRun.Status.RUNNING or instance.finished_at is None:
        return
    run_pk = instance.pk
    transaction.on_commit(lambda: after_run(run_pk))


def after_run(run_pk):
    from .engine import problems_changed
    from .health import run_finished

    run = SyncRun.objects.filter(pk=run_pk).select_related("connection__tenant").first()
    if run is None:
        return
    try:
        run_finished(run)
        problems_changed(run.connection)
    except Exception:  # noqa: BLE001 - alerts are a side effect; the run is already recorded
        log.exception("alerts after sync run %s failed", run_pk)


@receiver(post_save, sender="connector.Connection", dispatch_uid="alerts-connection-tested")
def _connection_tested(sender, instance, raw=False, update_fields=None, **kwargs):
    """'Test connection' stores its outcome on the connection (`last_test`): a pass on both sides ends a failure
    streak and resumes a paused schedule."""
    if raw or not update_fields or "last_test" not in update_fields:
        return
    sides = (instance.last_test or {}).get("sides") or {}
    if not sides:
        return
    results = {side: (bool(v.get("ok")), v.get("words", "")) for side, v in sides.items()}
    from .health import connection_tested

    try:
        connection_tested(instance, results)
    except Exception:  # noqa: BLE001
        log.exception("alerts after the test of connection %s failed", instance.pk)
