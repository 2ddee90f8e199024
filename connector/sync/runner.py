"""One sync cycle of one connection: reference → vendors → bills → payments, recorded as a SyncRun.

Used by the `sync` command, the scheduled task and the admin. Only one cycle per connection runs at a
time (a one-slot lease); a second one started meanwhile reports that and does nothing.
"""

import contextlib
import time
import traceback
from datetime import timedelta

from django.utils import timezone

from audit import trail
from connector import budget, leases
from connector.clients.bill import BillClient
from connector.clients.errors import RemoteError
from connector.clients.sap import SapClient
from connector.models import SyncCursor, SyncRun

# credits (A/P credit memos → BILL vendor credits) before bills: an invoice lowered by a credit memo in SAP is then
# known to be credited by us, not paid outside BILL (bills.py `_paid_by_us`)
STEPS = ("reference", "vendors", "credits", "bills", "documents", "payments")


class AlreadyRunning(Exception):
    pass


def run_sync(connection, steps=STEPS, *, trigger="cli", actor="", dry_run=False, out=None, sap=None, bill=None,
             max_seconds=None):
    """Run the given steps in order; return the SyncRun. Remote failures are recorded on the run, not raised.

    `max_seconds` bounds a cycle run from the task queue (fairness: one customer's backfill never holds a worker
    for long): the bills step reads for at most half of it and sends until it is over, then the cycle ends with
    `run.summary["more"]` set and the rest waits for the next cycle (which the task queue runs at once, behind the
    other connections' cycles already queued)."""
    out = out or (lambda line: None)
    steps = [s for s in STEPS if s in steps]
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    # A dry run writes nothing of ours either (no run record, no audit rows); it needs no run lock.
    with contextlib.nullcontext() if dry_run else cycle_lock(connection):
        return _run_steps(connection, steps, trigger, actor, dry_run, out, sap, bill, deadline)


@contextlib.contextmanager
def cycle_lock(connection, wait=0):
    """One cycle (sync or replay) per connection at a time, across every process (connector/leases.py).

    A killed cycle's lease is dead at once on its own host and after `leases.TTL` seconds elsewhere; the records
    it had claimed are claimed under the same lease, so the next cycle takes them over as soon as it starts."""
    try:
        held = leases.hold(f"run:{connection.pk}", wait=wait)
        lease = held.__enter__()
    except leases.Busy:
        raise AlreadyRunning(f"another sync of {connection} is running; try again when it has finished") from None
    with contextlib.ExitStack() as stack:
        stack.push(held)
        yield lease


def _run_steps(connection, steps, trigger, actor, dry_run, out, sap, bill, deadline=None):
    run = SyncRun(connection=connection, trigger=trigger, steps=",".join(steps), dry_run=dry_run)
    if not dry_run:
        run.save()
    sap = sap or SapClient.for_connection(connection)
    bill = bill or BillClient.for_connection(connection)
    summary = {}
    try:
        scope = contextlib.nullcontext() if dry_run else trail.about_run(run)
        with trail.triggered_by(trigger, actor), scope:
            for step in steps:
                out(f"{step}:")
                try:
                    with budget.priority(step):
                        # a step asked for by name does its work now (reference fetched, payments polled);
                        # `deadline` bounds a cycle run from the task queue (the bills step honours it)
                        summary[step] = STEP_FUNCTIONS[step](connection, sap, bill, dry_run=dry_run, out=out, run=run,
                                                             force=steps == [step], deadline=deadline)
                except budget.BudgetDeferred as exc:
                    # housekeeping put off to keep this hour's BILL budget for payments and bills: not a failure
                    summary[step] = {"deferred": 1}
                    out(f"  {exc}")
                out(f"{step}: " + ", ".join(f"{k} {v}" for k, v in summary[step].items()))
        failed = sum(s.get("failed", 0) + s.get("held", 0) + s.get("flagged", 0) + s.get("review", 0)
                     for s in summary.values() if isinstance(s, dict))
        if any(isinstance(s, dict) and s.get("more") for s in summary.values()):
            summary["more"] = True  # bounded cycle: work is left for the next one
        run.status = SyncRun.Status.PARTIAL if failed else SyncRun.Status.OK
    except RemoteError as exc:
        run.status, run.error = SyncRun.Status.FAILED, f"{exc.__class__.__name__}: {exc}"
        out(f"failed: {exc}")
    except Exception as exc:
        run.status, run.error = SyncRun.Status.FAILED, "".join(traceback.format_exception(exc))[-4000:]
        raise
    finally:
        run.summary = summary
        run.finished_at = timezone.now()
        if not dry_run:
            run.save()
    return run


REFERENCE_STREAM = "reference-refresh"  # a SyncCursor: {"requested": why} when a held invoice needs fresh data


def request_reference_refresh(connection, why):
    """The next cycle refreshes reference data even if it is fresh (e.g. an invoice named an unknown SAP code)."""
    SyncCursor.objects.update_or_create(connection=connection, stream=REFERENCE_STREAM,
                                        defaults={"value": {"requested": why[:300]}})


def reference_due(connection):
    """Why reference data should be fetched in this cycle, or '' when it is fresh (its own, slower cadence)."""
    from django.conf import settings

    from mappings.models import ReferenceRefresh

    refresh = ReferenceRefresh.objects.filter(connection=connection).first()
    if refresh is None or refresh.refreshed_at is None:
        return "never loaded"
    if refresh.error:
        return "the last refresh failed"
    requested = SyncCursor.objects.filter(connection=connection, stream=REFERENCE_STREAM).first()
    if requested and (requested.value or {}).get("requested"):
        return requested.value["requested"]
    age = timezone.now() - refresh.refreshed_at
    if age >= timedelta(hours=settings.REFERENCE_REFRESH_HOURS):
        return f"last refreshed {age.total_seconds() / 3600:.0f} h ago"
    return ""


def step_reference(connection, sap, bill, *, dry_run, out, run, force=False, deadline=None):
    from mappings.models import ReferenceRefresh
    from mappings.reference import fetch_bill_reference, fetch_sap_reference, store_reference

    if not force:
        why = reference_due(connection)
        if not why:
            out("  reference data is fresh: not fetched in this cycle (`sync NAME --step reference` fetches it now)")
            return {"fresh": 1}
        out(f"  fetching reference data: {why}")

    try:
        sap_data, bill_data = fetch_sap_reference(sap), fetch_bill_reference(bill)
    except RemoteError as exc:
        if not dry_run:
            ReferenceRefresh.objects.update_or_create(connection=connection, defaults={"error": str(exc)[:2000]})
        raise
    if dry_run:
        return {k: len(v) for k, v in {**{f"sap_{k}": v for k, v in sap_data.items()},
                                       **{f"bill_{k}": v for k, v in bill_data.items()}}.items()}
    counts = store_reference(connection, sap_data, bill_data)
    SyncCursor.objects.filter(connection=connection, stream=REFERENCE_STREAM).delete()
    return {table: sum(c.values()) for table, c in counts.items()}


def step_vendors(connection, sap, bill, *, dry_run, out, run, force=False, deadline=None):
    from .vendors import VendorAligner

    aligner = VendorAligner(connection, sap, bill, dry_run=dry_run, out=out)
    summary = aligner.run()
    if dry_run:
        for line in aligner.planned:
            out(f"  would {line}")
    return summary


def step_bills(connection, sap, bill, *, dry_run, out, run, force=False, deadline=None):
    from mappings.reference import reference_loaded

    from .bills import BillSync

    if not reference_loaded(connection):
        if dry_run:
            out("  reference data was never loaded (run `sync NAME --step reference`): unmapped invoices show as held")
        else:
            out("  reference data never loaded: fetching it first")
            step_reference(connection, sap, bill, dry_run=False, out=out, run=run, force=True)
    sync = BillSync(connection, sap, bill, dry_run=dry_run, out=out, run=run)
    if deadline is None:
        sync.read_changes(send_as_read=True)
        return sync.process()
    now = time.monotonic()
    # half for reading (sending as it reads), the rest (at least) for what is left to send
    sync.read_changes(until=now + (deadline - now) / 2, send_as_read=True)
    summary = sync.process(until=deadline)
    if sync.more:
        summary["more"] = 1
        out("  time is up for this cycle: the rest follows in the next one")
    return summary


def step_credits(connection, sap, bill, *, dry_run, out, run, force=False, deadline=None):
    from .credits import CreditSync

    return CreditSync(connection, sap, bill, dry_run=dry_run, out=out, run=run).run()


def step_documents(connection, sap, bill, *, dry_run, out, run, force=False, deadline=None):
    from .documents import DocumentSync

    return DocumentSync(connection, sap, bill, dry_run=dry_run, out=out, run=run).run()


def step_payments(connection, sap, bill, *, dry_run, out, run, force=False, deadline=None):
    from .payments import PaymentSync

    return PaymentSync(connection, sap, bill, dry_run=dry_run, out=out, run=run).run(force_poll=force)


STEP_FUNCTIONS = {
    "reference": step_reference,
    "vendors": step_vendors,
    "credits": step_credits,
    "bills": step_bills,
    "documents": step_documents,
    "payments": step_payments,
}
