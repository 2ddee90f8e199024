"""Keep each connection's django-q2 schedule in step with its settings (created/updated on save)."""

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone

from .models import Connection

SWEEP_NAME = "ml-connector:sweep"


def schedule_name(conn):
    return f"sync:{conn.pk}"


def sync_schedule(conn):
    """Create, update or remove the polling schedule of one connection. Idempotent."""
    from django_q.models import Schedule

    name = schedule_name(conn)
    if not conn.enabled or _paused(conn):
        Schedule.objects.filter(name=name).delete()
        return None
    defaults = {"func": "connector.tasks.run_scheduled_sync", "args": f"({conn.pk},)", "repeats": -1}
    if conn.schedule_cron:
        defaults.update(schedule_type=Schedule.CRON, cron=conn.schedule_cron, minutes=None)
    else:
        defaults.update(schedule_type=Schedule.MINUTES, minutes=conn.schedule_minutes or 15, cron=None)
    existing = Schedule.objects.filter(name=name).first()
    if existing and all(getattr(existing, k) == v for k, v in defaults.items()):
        return existing
    if existing:
        for key, value in defaults.items():
            setattr(existing, key, value)
        now = timezone.now()
        existing.next_run = existing.calculate_next_run(now) if conn.schedule_cron else now
        existing.save()
        return existing
    return Schedule.objects.create(name=name, **defaults)


def due_after(conn, last_started):
    """When the cycle after one started at `last_started` is due (the interval, or the cron's next time)."""
    from datetime import timedelta

    if conn.schedule_cron:
        from croniter import croniter

        return croniter(conn.schedule_cron, timezone.localtime(last_started)).get_next(type(last_started))
    return last_started + timedelta(minutes=conn.schedule_minutes or 15)


def schedule_state(conn, now=None):
    """When the connection last ran, when its next cycle was due, and how far behind its schedule it is.

    {"last_started", "due_at", "behind_minutes", "backlog"}: `behind_minutes` counts from when the next cycle was
    due (last start + interval, or the cron's next time) to now, 0 when it is not late or not scheduled."""
    from .models import InvoiceRecord, SyncRun

    now = now or timezone.now()
    last = (SyncRun.objects.filter(connection=conn, dry_run=False).exclude(trigger=SyncRun.Trigger.REPLAY)
            .order_by("-started_at").values_list("started_at", flat=True).first())
    backlog = InvoiceRecord.objects.filter(connection=conn, status__in=["pending", "creating"]).count()
    state = {"last_started": last, "due_at": None, "behind_minutes": 0, "backlog": backlog}
    if last is None or not conn.enabled:
        return state
    due = due_after(conn, last)
    state["due_at"] = due
    state["behind_minutes"] = max(0, int((now - due).total_seconds() // 60))
    return state


def _paused(conn):
    """Paused by the alerts app after repeated failures (until a passing 'Test connection')."""
    try:
        from alerts.health import is_paused
    except ImportError:
        return False
    return conn.pk is not None and is_paused(conn)


def ensure_sweep():
    """The deployment-wide periodic jobs: the pending-work sweep and audit pruning."""
    from django_q.models import Schedule

    Schedule.objects.get_or_create(
        name=SWEEP_NAME, defaults={"func": "connector.tasks.sweep", "schedule_type": Schedule.MINUTES, "minutes": 5,
                                   "repeats": -1},
    )
    Schedule.objects.get_or_create(
        name="ml-connector:prune-audit", defaults={"func": "audit.retention.prune_exchanges",
                                                   "schedule_type": Schedule.DAILY, "repeats": -1},
    )


@receiver(post_save, sender=Connection, dispatch_uid="connector-sync-schedule")
def _connection_saved(sender, instance, raw=False, **kwargs):
    if not raw:
        sync_schedule(instance)


@receiver(post_delete, sender=Connection, dispatch_uid="connector-drop-schedule")
def _connection_deleted(sender, instance, **kwargs):
    from django_q.models import Schedule

    Schedule.objects.filter(name=schedule_name(instance)).delete()
