"""Store one reconciliation's outcome: the run's counts and totals, and its differences, each marked new or not."""

from django.db import transaction
from django.utils import timezone

from .models import Difference, ReconciliationRun


def previous_keys(connection, before_run):
    last = (ReconciliationRun.objects.filter(connection=connection, finished_at__isnull=False)
            .exclude(pk=before_run.pk).exclude(status=ReconciliationRun.Status.FAILED).order_by("-started_at").first())
    if last is None:
        return set()
    return set(last.differences.values_list("key", flat=True))


def store(run, result, requests, seconds=None):
    seen_before = previous_keys(run.connection, run)
    rows = [Difference(
        run=run, connection=run.connection, kind=f.kind, key=f.key[:200], card_code=f.card_code[:50],
        sap_ref=f.sap_ref[:100], bill_ref=f.bill_ref[:100], sap_amount=f.sap_amount, bill_amount=f.bill_amount,
        detail=f.detail[:300], action=f.action, invoice_id=f.invoice_id, payment_id=f.payment_id,
        expected_to_clear=f.expected_to_clear, is_new=f.key[:200] not in seen_before,
    ) for f in result.differences]
    with transaction.atomic():
        Difference.objects.bulk_create(rows, batch_size=500)
        run.invoices, run.bills, run.payments = result.invoices, result.bills, result.payments
        run.difference_count = len(rows)
        run.new_count = sum(1 for r in rows if r.is_new)
        run.sap_open, run.bill_open = result.sap_open, result.bill_open
        run.summary = {"vendors": result.vendors, "held": result.held, "requests": dict(requests),
                       "by_kind": _by_kind(rows), "seconds": seconds or {}}
        run.status = ReconciliationRun.Status.DIFFERENCES if rows else ReconciliationRun.Status.CLEAN
        run.finished_at = timezone.now()
        run.save()
    return rows


def _by_kind(rows):
    kinds = {}
    for row in rows:
        entry = kinds.setdefault(row.kind, {"count": 0, "sap": "0.00", "bill": "0.00"})
        entry["count"] += 1
        from decimal import Decimal

        entry["sap"] = str(Decimal(entry["sap"]) + (row.sap_amount or 0))
        entry["bill"] = str(Decimal(entry["bill"]) + (row.bill_amount or 0))
    return kinds
