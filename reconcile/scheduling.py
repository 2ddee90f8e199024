"""A daily reconciliation schedule per connection (django-q2), on unless turned off in its ReconcileSetting."""

from datetime import timedelta

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone

from connector.models import Connection

from .models import ReconcileSetting

DAILY_HOUR = 5  # UTC: before an AP team's morning in Europe and the Americas


def schedule_name(conn_or_pk):
    return f"reconcile:{getattr(conn_or_pk, 'pk', conn_or_pk)}"


def wanted(conn):
    setting = ReconcileSetting.objects.filter(connection=conn).first()
    return conn.enabled and (setting is None or setting.daily)


def sync_schedule(conn):
    """Create or remove the daily reconciliation of one connection. Idempotent."""
    from django_q.models import Schedule

    name = schedule_name(conn)
    if not wanted(conn):
        Schedule.objects.filter(name=name).delete()
        return None
    schedule, _ = Schedule.objects.get_or_create(name=name, defaults={
        "func": "reconcile.tasks.run_scheduled_reconcile", "args": f"({conn.pk},)",
        "schedule_type": Schedule.DAILY, "repeats": -1, "next_run": first_run()})
    return schedule


def first_run(now=None):
    """The next DAILY_HOUR (UTC) o'clock: a new connection is reconciled after its first syncs, not at once."""
    now = now or timezone.now()
    at = now.replace(hour=DAILY_HOUR, minute=0, second=0, microsecond=0)
    return at if at > now else at + timedelta(days=1)


def ensure_all():
    for conn in Connection.objects.all():
        sync_schedule(conn)


@receiver(post_save, sender=Connection, dispatch_uid="reconcile-schedule")
def _connection_saved(sender, instance, raw=False, **kwargs):
    if not raw:
        sync_schedule(instance)


@receiver(post_save, sender=ReconcileSetting, dispatch_uid="reconcile-setting-schedule")
def _setting_saved(sender, instance, raw=False, **kwargs):
    if not raw:
        sync_schedule(instance.connection)


@receiver(post_delete, sender=Connection, dispatch_uid="reconcile-drop-schedule")
def _connection_deleted(sender, instance, **kwargs):
    from django_q.models import Schedule

    Schedule.objects.filter(name=schedule_name(instance)).delete()
