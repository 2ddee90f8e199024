"""`manage.py prune_audit [--days N]`: delete API exchanges older than the retention period (outcomes stay)."""

from django.conf import settings
from django.core.management.base import BaseCommand

from audit.retention import prune_exchanges


class Command(BaseCommand):
    help = "Delete audit API exchanges older than AUDIT_EXCHANGE_RETENTION_DAYS; outcomes and changes are kept."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=None,
                            help=f"keep this many days (default {settings.AUDIT_EXCHANGE_RETENTION_DAYS})")

    def handle(self, *args, days, **options):
        deleted = prune_exchanges(days)
        self.stdout.write(f"deleted {deleted} API exchanges older than "
                          f"{days if days is not None else settings.AUDIT_EXCHANGE_RETENTION_DAYS} days")
