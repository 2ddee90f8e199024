from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AlertsConfig(AppConfig):
    name = "alerts"
    verbose_name = "Alerts"

    def ready(self):
        from . import signals  # noqa: F401 - connects the SyncRun receiver

        post_migrate.connect(_ensure_digest, sender=self, dispatch_uid="alerts-digest")


def _ensure_digest(**kwargs):
    from django_q.models import Schedule

    Schedule.objects.get_or_create(name="ml-connector:alert-digests", defaults={
        "func": "alerts.digest.send_daily_digests", "schedule_type": Schedule.DAILY, "repeats": -1})
