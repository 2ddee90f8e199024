from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ConnectorConfig(AppConfig):
    name = "connector"
    verbose_name = "Connections and sync"

    def ready(self):
        from . import scheduling

        post_migrate.connect(_ensure_sweep, sender=self, dispatch_uid="connector-sweep")
        assert scheduling  # signals connected on import


def _ensure_sweep(**kwargs):
    from .scheduling import ensure_sweep

    ensure_sweep()
