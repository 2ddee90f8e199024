"""Reconcile one connection now: read both sides (reading.py), compare (compare.py), store (storing.py).

Shared by `manage.py reconcile`, the admin's "Reconcile now" (in the task queue) and the daily schedule.
Read-only on SAP and BILL. One reconciliation per connection at a time.
"""

import logging
import time
import traceback

from django.utils import timezone

from connector import budget
from connector.clients.bill import BillClient
from connector.clients.errors import RemoteError
from connector.clients.sap import SapClient
from connector.limiter import SlotTimeout, get_limiter

from .compare import Comparison
from .counting import counting_requests
from .models import ReconciliationRun
from .reading import Reader
from .storing import store

log = logging.getLogger(__name__)
LEASE = 1800


class AlreadyReconciling(Exception):
    pass


def reconcile(connection, *, since=None, trigger="cli", actor="", out=None, sap=None, bill=None):
    """Run one reconciliation; return the ReconciliationRun (status failed, with the reason, when a side could
    not be read). New differences raise an alert (alerts app) once the run is stored."""
    out = out or (lambda line: None)
    since = since or connection.sync_from
    limiter = get_limiter()
    key = f"reconcile:{connection.pk}"
    try:
        token = limiter.acquire(key, 1, ttl=LEASE, wait=0)
    except SlotTimeout:
        raise AlreadyReconciling(f"a reconciliation of {connection} is running; try again when it has finished") from None
    run = ReconciliationRun.objects.create(connection=connection, trigger=trigger, actor=actor, since=since)
    try:
        with counting_requests(connection.pk) as requests:
            sap = sap or SapClient.for_connection(connection)
            bill = bill or BillClient.for_connection(connection)
            reader = Reader(connection, sap, bill, since=since, out=out)
            ledger_bills = connection.invoices.exclude(bill_id="").values_list("bill_id", flat=True)
            out("reading SAP and BILL:")
            with budget.priority("reconcile"):  # low priority: never at the expense of payments and bills
                snap = reader.read(ledger_bill_ids=list(ledger_bills))
            out("comparing:")
            started = time.monotonic()
            result = Comparison(connection, snap).run()
            snap.seconds["compare"] = round(time.monotonic() - started, 2)
        store(run, result, requests, seconds=snap.seconds)
    except budget.BudgetDeferred as exc:
        # This hour's BILL budget is kept for payments and bills: the scheduled run tries again after the hour.
        run.status, run.error, run.finished_at = ReconciliationRun.Status.FAILED, f"{exc}", timezone.now()
        run.summary = {"deferred_until": exc.until.isoformat()}
        run.save()
        out(f"deferred: {exc}")
    except RemoteError as exc:
        run.status, run.error, run.finished_at = ReconciliationRun.Status.FAILED, f"{exc}", timezone.now()
        run.save()
        out(f"failed: {exc}")
    except Exception as exc:
        run.status, run.finished_at = ReconciliationRun.Status.FAILED, timezone.now()
        run.error = "".join(traceback.format_exception(exc))[-4000:]
        run.save()
        raise
    finally:
        limiter.release(key, token)
    if run.status != ReconciliationRun.Status.FAILED:
        _alert(run)
    return run


def _alert(run):
    try:
        from alerts.engine import reconciliation_finished
    except ImportError:  # the alerts app is optional
        return
    try:
        reconciliation_finished(run)
    except Exception:  # noqa: BLE001 - a mail problem never turns a finished reconciliation into a failure
        log.exception("alerts for reconciliation %s failed", run.pk)


def difference_line(d):
    """One line per difference (the command, the CSV's 'summary' column)."""
    amounts = ""
    if d.sap_amount is not None or d.bill_amount is not None:
        amounts = f" SAP {d.sap_amount if d.sap_amount is not None else '-'} / BILL " \
                  f"{d.bill_amount if d.bill_amount is not None else '-'}"
    ids = " ".join(x for x in (d.sap_ref and f"[SAP {d.sap_ref}]", d.bill_ref and f"[BILL {d.bill_ref}]") if x)
    supplier = f" {d.card_code}" if d.card_code else ""
    return f"  {d.kind}{supplier} {ids}{amounts}: {d.action}"
