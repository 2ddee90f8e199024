"""Audit retention: API exchanges (bulky request/response bodies) are kept for a while; outcomes, state
changes and notes — the record's history — are kept for good."""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from .models import AuditEvent


def prune_exchanges(days=None, batch=5000):
    """Delete exchange events older than `days` (AUDIT_EXCHANGE_RETENTION_DAYS). Returns how many were deleted."""
    days = settings.AUDIT_EXCHANGE_RETENTION_DAYS if days is None else days
    cutoff = timezone.now() - timedelta(days=days)
    deleted = 0
    while True:
        ids = list(AuditEvent.objects.filter(kind=AuditEvent.Kind.EXCHANGE, created_at__lt=cutoff)
                   .values_list("pk", flat=True)[:batch])
        if not ids:
            return deleted
        deleted += AuditEvent.objects.filter(pk__in=ids).delete()[0]
