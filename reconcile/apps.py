from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ReconcileConfig(AppConfig):
    name = "reconcile"
    verbose_name = "Reconciliation"

    def ready(self):
        from . import scheduling  # noqa: F401 - connects the connection-saved receiver

        post_migrate.connect(_ensure_schedules, sender=self, dispatch_uid="reconcile-schedules")


def _ensure_schedules(**kwargs):
    from .scheduling import ensure_all

    ensure_all()
