"""Replay: re-run only the step that failed for chosen records, safely.

Used by the record pages and the bulk admin action (through the task queue, as a `ReplayJob` whose
progress shows in the admin) and by `manage.py replay` (synchronously). The sync code does the work, so
every no-duplicate guarantee holds: a bill is looked up by our marker before it is created, an SAP payment
by the BILL payment id before it is posted, a vendor whose create got no answer is looked up by name.

Per record type, what "the failed step" is:
- invoice (InvoiceRecord): held/failed/flagged/pending/creating → coded again with today's mappings and
  sent (create, update or archive: whatever `next_step` says); automatic retries start over (`attempts=0`);
- payment (PaymentRecord): failed/flagged/pending/posting/waiting → read from BILL again and posted to SAP;
- vendor (VendorLink): failed/pending/creating/invalid, and review once a person decided (a BILL vendor
  chosen, or "create a new BILL vendor") → aligned again;
- webhook event (WebhookEvent): failed/pending → processed again.
Anything else (synced, posted, linked, …) has nothing to replay, which is not an error.

Each record's outcome is written to its timeline. One connection's failure (login, unreachable) is
recorded on its records and never stops the others. Only one sync or replay of a connection runs at a time.
"""

import logging
import traceback
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import timedelta
from functools import partial

from django.db import models, transaction
from django.utils import timezone

from audit import trail
from audit.models import AuditEvent, ReplayJob
from connector.clients.errors import BillHourlyLimit, BillLoginFailed, RemoteError, SapLoginFailed, TransportError

log = logging.getLogger(__name__)

CHUNK = 25  # invoices sent per BillSync pass: small enough that progress moves, large enough for bulk creates
LEASE_WAIT = 60.0  # seconds a replay waits for a running sync of the same connection to finish
RESULTS_KEPT = 500

INVOICE, PAYMENT, VENDOR, EVENT = "invoicerecord", "paymentrecord", "vendorlink", "webhookevent"
CREDIT, ATTACHMENT = "creditmemorecord", "attachmentrecord"  # A/P credit memos, invoice attachments (issue 13)
TYPE_ORDER = (VENDOR, CREDIT, INVOICE, ATTACHMENT, PAYMENT, EVENT)  # vendors first: invoices need them
TYPE_NAMES = {"invoice": INVOICE, "payment": PAYMENT, "vendor": VENDOR, "event": EVENT, "credit": CREDIT,
              "attachment": ATTACHMENT}
TYPE_WORDS = {INVOICE: "invoice", PAYMENT: "payment", VENDOR: "vendor", EVENT: "webhook event", CREDIT: "credit memo",
              ATTACHMENT: "attachment"}
REPLAYABLE = {
    INVOICE: ("held", "failed", "flagged", "pending", "creating"),
    PAYMENT: ("failed", "flagged", "pending", "posting", "waiting"),
    VENDOR: ("failed", "pending", "creating", "review", "invalid"),
    EVENT: ("failed", "pending"),
    CREDIT: ("held", "failed", "flagged", "pending", "creating"),
    ATTACHMENT: ("failed", "refused", "pending", "uploading"),
}
STEP_OF_TYPE = {VENDOR: "vendors", INVOICE: "bills", PAYMENT: "payments", EVENT: "payments", CREDIT: "credits",
                ATTACHMENT: "documents"}
NEEDS = {VENDOR: ("sap", "bill"), INVOICE: ("bill",), PAYMENT: ("bill", "sap"), EVENT: ("bill", "sap"),
         CREDIT: ("bill",), ATTACHMENT: ("sap", "bill")}

SUCCEEDED, STILL_FAILING, NOTHING_TO_DO, NOT_REPLAYED = "succeeded", "still_failing", "nothing_to_do", "not_replayed"


def record_models():
    from connector.models import AttachmentRecord, CreditMemoRecord, InvoiceRecord, PaymentRecord, WebhookEvent
    from mappings.models import VendorLink

    return {INVOICE: InvoiceRecord, PAYMENT: PaymentRecord, VENDOR: VendorLink, EVENT: WebhookEvent,
            CREDIT: CreditMemoRecord, ATTACHMENT: AttachmentRecord}


def record_type_of(value):
    """'invoice' / 'invoicerecord' / the model → 'invoicerecord'; ValueError for anything not replayable."""
    if isinstance(value, type) and issubclass(value, models.Model):
        value = value._meta.model_name
    name = TYPE_NAMES.get(value, value)
    if name not in REPLAYABLE:
        raise ValueError(f"records of type {value!r} cannot be replayed (only {', '.join(TYPE_NAMES)})")
    return name


def label(record):
    kind = record._meta.model_name
    if kind == INVOICE:
        return f"invoice #{record.pk} {record.doc_num or '-'} (SAP DocEntry {record.doc_entry}, {record.card_code})"
    if kind == PAYMENT:
        return f"payment #{record.pk} (BILL payment {record.bill_payment_id})"
    if kind == VENDOR:
        return f"vendor #{record.pk} {record.card_code} {record.card_name}".rstrip()
    if kind == CREDIT:
        return f"credit memo #{record.pk} {record.doc_num or '-'} (SAP DocEntry {record.doc_entry}, {record.card_code})"
    if kind == ATTACHMENT:
        return f"attachment #{record.pk} {record.file_name}"
    return f"webhook event #{record.pk} {record.event_type} {record.event_id}"


@dataclass
class Outcome:
    record_type: str
    record_id: int
    connection_id: int
    label: str
    result: str  # succeeded | still_failing | nothing_to_do | not_replayed
    status: str
    message: str

    def as_dict(self):
        return asdict(self)


def new_summary():
    return {"replayed": 0, "succeeded": 0, "still_failing": 0, "nothing_to_do": 0, "not_replayed": 0,
            "errors": [], "failing": []}


# --- entry points -----------------------------------------------------------------------------------------
def replay_records(records, *, actor="", trigger="replay", progress=None):
    """Replay a queryset, one record, or an iterable of records (of any replayable types and connections).

    Returns {replayed, succeeded, still_failing, nothing_to_do, not_replayed, errors, failing}: `errors` has one
    entry per connection that could not be worked on ({connection, error, login}), `failing` the outcomes
    (dicts) of the records that still fail. `progress(outcome)` is called once per record as it is done.
    """
    return replay_groups(group_records(records), actor=actor, trigger=trigger, progress=progress)


def group_records(records):
    """{(connection_id, record_type): [pk, ...]} (pks unique, in order) from a queryset, a record or records."""
    groups = defaultdict(list)
    if isinstance(records, models.QuerySet):
        rtype = record_type_of(records.model)
        for pk, conn_id in records.order_by("pk").values_list("pk", "connection_id").iterator():
            groups[(conn_id, rtype)].append(pk)
    else:
        if isinstance(records, models.Model):
            records = [records]
        for record in records:
            groups[(record.connection_id, record_type_of(type(record)))].append(record.pk)
    return {key: list(dict.fromkeys(pks)) for key, pks in groups.items()}


def replay_groups(groups, *, actor="", trigger="replay", progress=None):
    from connector.models import Connection

    summary = new_summary()

    def report(outcome):
        if outcome.result in (SUCCEEDED, STILL_FAILING):
            summary["replayed"] += 1
        summary[outcome.result] += 1
        if outcome.result in (STILL_FAILING, NOT_REPLAYED):
            summary["failing"].append(outcome.as_dict())
        _write_timeline(outcome, actor)
        if progress is not None:
            progress(outcome)

    by_connection = defaultdict(dict)
    for (conn_id, rtype), pks in groups.items():
        by_connection[conn_id][rtype] = pks
    connections = Connection.objects.select_related("tenant").in_bulk(list(by_connection))
    with trail.triggered_by(trigger, actor):
        for conn_id in sorted(by_connection):
            conn = connections.get(conn_id)
            if conn is None:
                continue  # deleted meanwhile, with its records
            error = _ConnectionReplay(conn, by_connection[conn_id], report).run()
            if error:
                summary["errors"].append(error)
    return summary


# --- the job (task queue) ---------------------------------------------------------------------------------
def enqueue_replays(records, actor="", *, trigger="replay"):
    """One queued ReplayJob per connection and record type of the selection; returns them (maybe [])."""
    jobs = []
    for (conn_id, rtype), pks in sorted(group_records(records).items()):
        jobs.append(ReplayJob.objects.create(connection_id=conn_id, record_type=rtype, record_ids=pks,
                                             requested_by=actor or "", trigger=trigger, total=len(pks)))
    for job in jobs:
        transaction.on_commit(partial(_ring, job.pk))
    return jobs


def enqueue_replay(records, actor="", *, trigger="replay"):
    """The ReplayJob for a selection of one connection (a record page, a filtered list). ValueError otherwise."""
    groups = group_records(records)
    if len(groups) != 1:
        raise ValueError("nothing selected" if not groups else
                         "the selection spans several connections: use enqueue_replays (one job per connection)")
    return enqueue_replays(records, actor, trigger=trigger)[0]


def _ring(job_pk):
    """The queue is a doorbell: if it is down the job stays queued (see sweep_jobs)."""
    try:
        from django_q.tasks import async_task

        async_task("audit.replay.run_job", job_pk, task_name=f"replay-{job_pk}")
    except Exception:  # noqa: BLE001 - the job is in the database; a sweep or a person can start it again
        log.exception("could not enqueue replay job %s; it stays queued", job_pk)


def run_job(job_pk):
    """Run one queued ReplayJob, moving `done` as records are handled. Returns a one-line summary."""
    now = timezone.now()
    if not ReplayJob.objects.filter(pk=job_pk, status=ReplayJob.Status.QUEUED).update(
            status=ReplayJob.Status.RUNNING, started_at=now, finished_at=None, done=0, succeeded=0, failed=0,
            nothing_to_do=0, results=[], message=""):
        return "job missing, running or finished"
    job = ReplayJob.objects.get(pk=job_pk)
    results = []

    def progress(outcome):
        fields = ["done", "succeeded", "failed", "nothing_to_do"]
        job.done += 1
        if outcome.result == SUCCEEDED:
            job.succeeded += 1
        elif outcome.result == NOTHING_TO_DO:
            job.nothing_to_do += 1
        else:
            job.failed += 1
            if len(results) < RESULTS_KEPT:
                results.append(outcome.as_dict())
                job.results = results
                fields.append("results")
        job.save(update_fields=fields)

    try:
        rtype = record_type_of(job.record_type)
        ids = list(dict.fromkeys(int(pk) for pk in job.record_ids or []))
        summary = replay_groups({(job.connection_id, rtype): ids}, actor=job.requested_by, trigger=job.trigger,
                                progress=progress)
    except Exception as exc:
        job.status, job.finished_at = ReplayJob.Status.FAILED, timezone.now()
        job.message = "".join(traceback.format_exception(exc))[-4000:]
        job.save(update_fields=["status", "finished_at", "message"])
        raise
    job.results = results
    job.status = ReplayJob.Status.FAILED if summary["errors"] else ReplayJob.Status.DONE
    job.message = summary_line(summary)
    job.finished_at = timezone.now()
    job.save(update_fields=["results", "status", "message", "finished_at"])
    return job.message


def sweep_jobs(queued_minutes=5):
    """Ring again for jobs whose task was lost: still queued after a while, or running past the task timeout
    (a worker killed mid-job; replaying again is safe, records already done have nothing to replay)."""
    from django.conf import settings

    now = timezone.now()
    timeout = (getattr(settings, "Q_CLUSTER", {}) or {}).get("timeout") or 600
    dead = ReplayJob.objects.filter(status=ReplayJob.Status.RUNNING, started_at__lt=now - timedelta(seconds=timeout + 60))
    dead.update(status=ReplayJob.Status.QUEUED)
    pks = list(ReplayJob.objects.filter(status=ReplayJob.Status.QUEUED, created_at__lt=now - timedelta(minutes=queued_minutes))
               .order_by("pk").values_list("pk", flat=True)[:100])
    for pk in pks:
        _ring(pk)
    return len(pks)


def summary_line(summary):
    parts = [f"{summary['replayed']} replayed: {summary['succeeded']} succeeded, "
             f"{summary['still_failing']} still failing"]
    if summary["nothing_to_do"]:
        parts.append(f"{summary['nothing_to_do']} with nothing to replay")
    if summary["not_replayed"]:
        parts.append(f"{summary['not_replayed']} not replayed")
    line = "; ".join(parts)
    for error in summary["errors"]:
        line += f"\n{error['connection']}: {error['error']}"
    return line


# --- timeline ---------------------------------------------------------------------------------------------
def _write_timeline(outcome, actor):
    model = record_models()[outcome.record_type]
    stub = model(pk=outcome.record_id, connection_id=outcome.connection_id)
    who = f" by {actor}" if actor else ""
    if outcome.result == NOTHING_TO_DO:
        kind, text = AuditEvent.Kind.NOTE, f"Replay requested{who}: nothing to replay ({outcome.message})"
    elif outcome.result == NOT_REPLAYED:
        kind, text = AuditEvent.Kind.OUTCOME, f"Replay{who} not done: {outcome.message}"
    else:
        kind, text = AuditEvent.Kind.OUTCOME, f"Replayed{who}: {outcome.message}"
    trail.log(stub, kind, text)


# --- one connection ---------------------------------------------------------------------------------------
class _Abort(Exception):
    """The rest of this connection's records cannot be worked on (login failed, system unreachable)."""

    def __init__(self, message, login=False):
        super().__init__(message)
        self.login = login


def _is_fatal(exc):
    """Errors that would repeat for every record: stop this connection. (A lost answer is about one request.)"""
    return isinstance(exc, (SapLoginFailed, BillLoginFailed, BillHourlyLimit)) or type(exc) is TransportError


def _words(exc):
    side = {"sap": "SAP", "bill": "BILL"}.get(getattr(exc, "system", ""), "remote system")
    if isinstance(exc, (SapLoginFailed, BillLoginFailed)):
        return f"{side} login failed: {exc}"
    return f"{side}: {exc}"


class _ConnectionReplay:
    """The records of one connection, by type, under that connection's one-at-a-time lease."""

    def __init__(self, conn, by_type, report):
        self.conn = conn
        self.by_type = by_type
        self._report = report
        self.reported = set()
        self.models = record_models()
        self.sap = self.bill = self.run_record = None

    def report(self, record, result, message):
        key = (record._meta.model_name, record.pk)
        if key in self.reported:
            return
        self.reported.add(key)
        status = "" if record._state.adding else record.status  # a stub stands for a deleted record
        self._report(Outcome(record_type=key[0], record_id=record.pk, connection_id=self.conn.pk,
                             label=label(record), result=result, status=status, message=message))

    def run(self):
        from connector.sync.runner import AlreadyRunning, cycle_lock

        try:
            with cycle_lock(self.conn, wait=LEASE_WAIT):
                return self._run_locked()
        except AlreadyRunning:
            return self._give_up(f"a sync of {self.conn} is running; replay again when it has finished")

    def _run_locked(self):
        from connector.clients.bill import BillClient
        from connector.clients.sap import SapClient
        from connector.models import SyncRun

        types = [t for t in TYPE_ORDER if t in self.by_type]
        steps = list(dict.fromkeys(STEP_OF_TYPE[t] for t in types))
        run = self.run_record = SyncRun.objects.create(connection=self.conn, trigger=SyncRun.Trigger.REPLAY,
                                                       steps=",".join(steps))
        counts = {SUCCEEDED: 0, STILL_FAILING: 0, NOTHING_TO_DO: 0, NOT_REPLAYED: 0}
        inner_report = self._report

        def counting(outcome):
            counts[outcome.result] += 1
            inner_report(outcome)

        self._report = counting
        error = None
        try:
            with trail.about_run(run):
                self.sap, self.bill = SapClient.for_connection(self.conn), BillClient.for_connection(self.conn)
                try:
                    self._check_logins(types)
                    for rtype in types:
                        getattr(self, f"_replay_{rtype}")(self.by_type[rtype])
                except _Abort as exc:
                    error = self._give_up(str(exc), login=exc.login)
        except Exception as exc:
            run.status, run.error = SyncRun.Status.FAILED, "".join(traceback.format_exception(exc))[-4000:]
            raise
        else:
            if error:
                run.status, run.error = SyncRun.Status.FAILED, error["error"]
            else:
                run.status = SyncRun.Status.PARTIAL if counts[STILL_FAILING] else SyncRun.Status.OK
        finally:
            run.summary = {"replay": counts}
            run.finished_at = timezone.now()
            run.save()
        return error

    def _check_logins(self, types):
        """Talk to each system the work needs once, before touching any record: a login failure stops here."""
        needed = {side for t in types for side in NEEDS[t]}
        try:
            if "bill" in needed:
                self.bill.get("/v3/login/session")
            if "sap" in needed:
                self.sap.get("ChartOfAccounts", params={"$select": "Code", "$top": "1"})
        except RemoteError as exc:
            raise _Abort(_words(exc), login=isinstance(exc, (SapLoginFailed, BillLoginFailed))) from None

    def _give_up(self, message, login=False):
        """Every record of this connection not handled yet: not replayed, and why."""
        for rtype, pks in self.by_type.items():
            model = self.models[rtype]
            left = [pk for pk in pks if (rtype, pk) not in self.reported]
            for start in range(0, len(left), 500):
                found = model.objects.in_bulk(left[start:start + 500])
                for pk in left[start:start + 500]:
                    record = found.get(pk) or model(pk=pk, connection_id=self.conn.pk)
                    self.report(record, NOT_REPLAYED, message)
        return {"connection": str(self.conn), "connection_id": self.conn.pk, "error": message, "login": login}

    def _load(self, rtype, chunk):
        """(records of this connection among the pks, in order); the others are reported as nothing to replay."""
        model = self.models[rtype]
        found = model.objects.filter(connection=self.conn).in_bulk(chunk)
        records = []
        for pk in chunk:
            if pk in found:
                records.append(found[pk])
            else:
                self.report(model(pk=pk, connection_id=self.conn.pk), NOTHING_TO_DO,
                            f"no {TYPE_WORDS[rtype]} #{pk} in this connection (deleted?)")
        return records

    def _split(self, rtype, records):
        todo = []
        for record in records:
            if record.status in REPLAYABLE[rtype]:
                todo.append(record)
            else:
                self.report(record, NOTHING_TO_DO, f"it is {record.get_status_display()}")
        return todo

    def _guard(self, records, exc, outcome_of):
        """A remote failure while replaying these records: fatal ones stop the connection, others only them.

        Records that went through before the failure are reported as they are."""
        for record in records:
            result, message = outcome_of(record)
            if result == SUCCEEDED:
                self.report(record, result, message)
        if _is_fatal(exc):
            raise _Abort(_words(exc), login=isinstance(exc, (SapLoginFailed, BillLoginFailed))) from exc
        for record in records:
            self.report(record, STILL_FAILING, f"replay failed: {_words(exc)}")

    # --- invoices ---------------------------------------------------------------------------------------------
    def _replay_invoicerecord(self, pks):
        from connector.models import InvoiceRecord
        from connector.sync.bills import BillSync

        sync = BillSync(self.conn, self.sap, self.bill, run=self.run_record)
        for start in range(0, len(pks), CHUNK):
            todo = self._split(INVOICE, self._load(INVOICE, pks[start:start + CHUNK]))
            if not todo:
                continue
            ids = [r.pk for r in todo]
            flagged = [r.pk for r in todo if r.status == InvoiceRecord.Status.FLAGGED]
            # A flagged record waits for a person; replaying is that person saying "fixed, try again". Sending
            # claims pending/held/failed records only, so it becomes pending; next_step (create/update/archive)
            # stays, and the look-up before create still adopts a bill that exists.
            InvoiceRecord.objects.filter(pk__in=flagged).update(status=InvoiceRecord.Status.PENDING)
            InvoiceRecord.objects.filter(pk__in=ids).update(attempts=0)
            try:
                sync.process(only_ids=ids)
            except RemoteError as exc:
                InvoiceRecord.objects.filter(pk__in=flagged, status=InvoiceRecord.Status.PENDING).update(
                    status=InvoiceRecord.Status.FLAGGED)
                self._guard(list(InvoiceRecord.objects.filter(pk__in=ids).order_by("pk")), exc, invoice_outcome)
                continue
            for record in InvoiceRecord.objects.filter(pk__in=ids).order_by("pk"):
                result, message = invoice_outcome(record)
                self.report(record, result, message)

    # --- credit memos and attachments (connector/sync/credits.py, documents.py) ------------------------------
    def _replay_creditmemorecord(self, pks):
        from connector.models import CreditMemoRecord
        from connector.sync.credits import CreditSync

        sync = CreditSync(self.conn, self.sap, self.bill, run=self.run_record)
        for start in range(0, len(pks), CHUNK):
            todo = self._split(CREDIT, self._load(CREDIT, pks[start:start + CHUNK]))
            ids = [r.pk for r in todo]
            # flagged: a person says "fixed, try again"; the look-up before create still adopts a credit that exists
            CreditMemoRecord.objects.filter(pk__in=ids, status=CreditMemoRecord.Status.FLAGGED).update(
                status=CreditMemoRecord.Status.PENDING)
            CreditMemoRecord.objects.filter(pk__in=ids).update(attempts=0)
            try:
                sync.process(only_ids=ids)
            except RemoteError as exc:
                self._guard(list(CreditMemoRecord.objects.filter(pk__in=ids)), exc, credit_outcome)
                continue
            for record in CreditMemoRecord.objects.filter(pk__in=ids).order_by("pk"):
                self.report(record, *credit_outcome(record))

    def _replay_attachmentrecord(self, pks):
        from connector.models import AttachmentRecord
        from connector.sync.documents import DocumentSync

        sync = DocumentSync(self.conn, self.sap, self.bill, run=self.run_record)
        for start in range(0, len(pks), CHUNK):
            ids = [r.pk for r in self._split(ATTACHMENT, self._load(ATTACHMENT, pks[start:start + CHUNK]))]
            AttachmentRecord.objects.filter(pk__in=ids).update(attempts=0)
            try:
                sync.run(only_ids=ids)  # only the files: their bill is left as it is
            except RemoteError as exc:
                self._guard(list(AttachmentRecord.objects.filter(pk__in=ids)), exc, attachment_outcome)
                continue
            for record in AttachmentRecord.objects.filter(pk__in=ids).order_by("pk"):
                self.report(record, *attachment_outcome(record))

    # --- payments ---------------------------------------------------------------------------------------------
    def _replay_paymentrecord(self, pks):
        from connector.models import PaymentRecord
        from connector.sync.payments import PaymentSync

        sync = PaymentSync(self.conn, self.sap, self.bill, run=self.run_record)
        for start in range(0, len(pks), CHUNK):
            for record in self._split(PAYMENT, self._load(PAYMENT, pks[start:start + CHUNK])):
                PaymentRecord.objects.filter(pk=record.pk).update(attempts=0)
                try:
                    sync.handle(record.bill_payment_id)
                except RemoteError as exc:
                    record.refresh_from_db()
                    self._guard([record], exc, payment_outcome)
                    continue
                record.refresh_from_db()
                self.report(record, *payment_outcome(record))

    # --- vendors ----------------------------------------------------------------------------------------------
    def _replay_vendorlink(self, pks):
        from connector.sync.vendors import VendorAligner
        from mappings.models import VendorLink

        aligner = VendorAligner(self.conn, self.sap, self.bill)
        for start in range(0, len(pks), CHUNK):
            todo = []
            for link in self._split(VENDOR, self._load(VENDOR, pks[start:start + CHUNK])):
                if link.status == VendorLink.Status.REVIEW and not link.create_new:
                    if not link.bill_vendor_id:
                        self.report(link, NOTHING_TO_DO, "it needs a person first: pick the right BILL vendor or "
                                                         "choose 'create a new BILL vendor', then replay")
                        continue
                    # A person picked the BILL vendor: link it; aligning sends SAP's data to that vendor.
                    before = {"status": link.status, "last_error": link.last_error}
                    VendorLink.objects.filter(pk=link.pk).update(
                        status=VendorLink.Status.LINKED, last_error="", synced_fingerprint="", candidates=[],
                        match_reason="chosen by a person")
                    link.refresh_from_db()
                    trail.log_change(link, f"Vendor {link.card_code}: linked to the BILL vendor a person chose",
                                     before, {"status": link.status, "last_error": link.last_error})
                todo.append(link)
            if not todo:
                continue
            stamps = {link.pk: link.updated_at for link in todo}
            try:
                aligner.run(card_codes=[link.card_code for link in todo])
            except RemoteError as exc:
                self._guard(list(VendorLink.objects.filter(pk__in=stamps).order_by("pk")), exc, vendor_outcome)
                continue
            for link in VendorLink.objects.filter(pk__in=stamps).order_by("pk"):
                if link.updated_at == stamps[link.pk] and link.status != VendorLink.Status.LINKED:
                    self.report(link, STILL_FAILING, f"SAP has no supplier {link.card_code} (deleted there?)")
                    continue
                self.report(link, *vendor_outcome(link))

    # --- webhook events -----------------------------------------------------------------------------------------
    def _replay_webhookevent(self, pks):
        from connector.models import PaymentRecord, WebhookEvent
        from connector.sync.payments import PaymentSync

        sync = PaymentSync(self.conn, self.sap, self.bill, run=self.run_record)
        for start in range(0, len(pks), CHUNK):
            for event in self._split(EVENT, self._load(EVENT, pks[start:start + CHUNK])):
                WebhookEvent.objects.filter(pk=event.pk).update(status=WebhookEvent.Status.PENDING, last_error="")
                payment_ids = []
                try:
                    payment_ids = sorted(sync.ids_from_events(only=[event.pk]))
                    for payment_id in payment_ids:
                        sync.handle(payment_id)
                except RemoteError as exc:
                    WebhookEvent.objects.filter(pk=event.pk).update(status=WebhookEvent.Status.FAILED,
                                                                     last_error=f"replay failed: {_words(exc)}"[:2000])
                    event.refresh_from_db()
                    self._guard([event], exc, lambda e: (STILL_FAILING, ""))
                    continue
                event.refresh_from_db()
                payments = list(PaymentRecord.objects.filter(connection=self.conn, bill_payment_id__in=payment_ids))
                self.report(event, *event_outcome(event, payments))


# --- outcomes in words ------------------------------------------------------------------------------------------
def invoice_outcome(record):
    status = record.status
    if status == "synced":
        return SUCCEEDED, f"synced (BILL bill {record.bill_id})"
    if status == "archived":
        return SUCCEEDED, f"archived BILL bill {record.bill_id}"
    if status == "skipped":
        return SUCCEEDED, f"skipped: {record.last_error}"
    if status == "creating":
        started = timezone.localtime(record.create_attempted_at).strftime("%H:%M") if record.create_attempted_at else "?"
        return STILL_FAILING, (f"not sent: another worker started creating this bill at {started} and is still at it; "
                               "if that worker stopped, the next sync or replay takes it over at once")
    words = {"held": "still held", "failed": "still failing", "flagged": "still needs a person"}.get(status, status)
    return STILL_FAILING, f"{words}: {record.last_error or record.get_status_display()}"


def credit_outcome(record):
    if record.status == "synced":
        return SUCCEEDED, f"synced (BILL vendor credit {record.credit_id}" + (
            f", applied to bill {record.applied_bill_id})" if record.applied_bill_id else ")")
    if record.status in ("archived", "skipped"):
        return SUCCEEDED, f"{record.get_status_display()}: {record.last_error}".rstrip(": ")
    if record.status == "pending":
        return SUCCEEDED, record.last_error or "pending"
    return STILL_FAILING, f"{record.get_status_display()}: {record.last_error}"


def attachment_outcome(record):
    if record.status in ("uploaded", "processing"):
        return SUCCEEDED, f"{record.file_name}: {record.get_status_display()} (BILL bill {record.bill_id})"
    return STILL_FAILING, f"{record.get_status_display()}: {record.last_error}"


def payment_outcome(record):
    status = record.status
    if status == "posted":
        return SUCCEEDED, f"posted (SAP outgoing payment {record.sap_doc_num or record.sap_doc_entry})"
    if status == "waiting":
        return SUCCEEDED, "BILL has not paid it yet: it is posted once BILL pays"
    if status in ("not_paid", "reversed"):
        return SUCCEEDED, record.get_status_display()
    if status == "posting":
        return STILL_FAILING, ("not posted: another worker is posting it right now; if that worker stopped, the next "
                               "sync or replay searches SAP for it and finishes it at once")
    words = {"failed": "still failing", "flagged": "still needs a person"}.get(status, status)
    return STILL_FAILING, f"{words}: {record.last_error or record.get_status_display()}"


def vendor_outcome(link):
    if link.status == "linked":
        return SUCCEEDED, f"linked to BILL vendor {link.bill_vendor_id}"
    words = {"review": "still needs a person", "invalid": "still invalid in SAP", "failed": "still failing"}
    return STILL_FAILING, f"{words.get(link.status, link.status)}: {link.last_error or link.get_status_display()}"


def event_outcome(event, payments):
    if event.status == "failed":
        return STILL_FAILING, f"still failing: {event.last_error}"
    if event.status == "pending":
        return STILL_FAILING, "still pending"
    lines = [f"payment {p.bill_payment_id}: {payment_outcome(p)[1]}" for p in payments]
    text = "; ".join([event.get_status_display()] + lines)
    if any(payment_outcome(p)[0] != SUCCEEDED for p in payments):
        return STILL_FAILING, text
    return SUCCEEDED, text
