"""SAP purchase invoices → BILL bills (`sync NAME --step bills`).

Two phases, so that nothing read is ever lost:
1. read: page through invoices changed since the cursor (with an overlap), record each one in our ledger
   (InvoiceRecord) and advance the cursor in the same transaction as the page it covers;
2. process: every record that still needs something in BILL (new, held, failed, edited, cancelled) is coded
   and sent. Before creating, BILL is searched for a bill we made earlier (our marker in the description),
   so a lost answer, a killed worker, an overlapping run or a replay never makes a second bill.

Sending is guarded by a claim in our ledger (status `creating`, set with a compare-and-set UPDATE before the
request): two runs never send the same invoice at once, and an invoice whose create was attempted before is
looked up in BILL again after it is claimed and before it is sent. What happened to each record is written
in bulk after each BILL request (outcome fields only, never the SAP document another run may have just read).
"""

import contextvars
import hashlib
import json
import re
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

from django.db import connections, router, transaction
from django.db.models import F, Q
from django.utils import timezone

from audit import trail
from audit.models import AuditEvent
from connector.clients.errors import BillError, BillNotFound, RemoteError, ResponseLost
from connector.models import InvoiceRecord, SyncCursor

from . import SyncStep, chunks_by_pk
from .coding import (
    MappingBook,
    bill_total,
    code_invoice,
    description,
    invoice_number,
    iso_currency,
    marker,
    marker_in,
    money,
    parse_day,
)
from .delta import DeltaReader, stamp_of
from .vendors import VendorAligner

Status = InvoiceRecord.Status
Step = InvoiceRecord.Step
STREAM = "sap-purchase-invoices"
BULK_LIMIT = 100  # BILL: at most 100 bills per bulk create
CHUNK = 100
MAX_BULKS_IN_FLIGHT = 3  # BILL: 3 requests in flight per organization (the limiter holds the rest back)
HAND_ENTRY_WINDOW = timedelta(days=90)  # a bill keyed by hand this long before the vendor's invoice date is found
MAX_AUTO_ATTEMPTS = 5  # failed records are retried by each run up to this; replay resets it
CLAIM_TTL = timedelta(minutes=10)  # only for claims made before claims named their lease (claimed_by empty)
# What the process phase writes back: never the SAP document fields, which a concurrent read may have updated.
OUTCOME_FIELDS = ["status", "next_step", "last_error", "bill_id", "bill_payment_status", "coded", "coded_hash",
                  "synced_hash", "synced_at", "attempts", "create_attempted_at", "claimed_by", "updated_at"]
INVOICE_SELECT = [
    "DocEntry", "DocNum", "DocType", "CardCode", "CardName", "NumAtCard", "DocDate", "DocDueDate", "TaxDate",
    "DocTotal", "VatSum", "DocCurrency", "PaidToDate", "DocumentStatus", "Cancelled", "CancelStatus", "Comments",
    "DiscountPercent", "TotalDiscount", "RoundingDiffAmount", "UpdateDate", "UpdateTime", "CreationDate",
    "DocumentLines", "DocumentAdditionalExpenses", "DocTotalFc", "BPL_IDAssignedToInvoice", "BPLName",
    "Project", "AttachmentEntry",
]
LINE_FIELDS = ["LineNum", "ItemDescription", "AccountCode", "LineTotal", "TaxCode", "VatGroup", "TaxTotal",
               "CostingCode", "CostingCode2", "CostingCode3", "CostingCode4", "CostingCode5", "ProjectCode"]
EDITABLE_PAYMENT_STATUSES = {"UNPAID", "UNDEFINED", ""}
# What the read phase writes on a known invoice.
READ_FIELDS = ["doc_num", "card_code", "card_name", "invoice_number", "doc_date", "due_date", "currency", "doc_total",
               "branch_id", "branch_name",
               "sap_updated", "sap_state", "document", "status", "next_step", "last_error", "attempts", "updated_at"]


def sap_state(doc):
    if doc.get("CancelStatus") == "csCancellation":
        return "cancellation"
    if doc.get("Cancelled") in ("tYES", "Y") or doc.get("CancelStatus") == "csYes":
        return "cancelled"
    if doc.get("DocumentStatus") in ("bost_Close", "C"):
        return "closed"
    return "open"


def slim(doc):
    """The parts of an invoice we keep (coding input and what staff want to see), not SAP's whole entity."""
    kept = {k: doc.get(k) for k in INVOICE_SELECT if k not in ("DocumentLines", "DocumentAdditionalExpenses")}
    kept["DocumentLines"] = [{k: ln.get(k) for k in LINE_FIELDS if ln.get(k) not in (None, "")}
                             for ln in doc.get("DocumentLines") or []]
    kept["DocumentAdditionalExpenses"] = [
        {k: e.get(k) for k in ("ExpenseCode", "LineTotal", "TaxCode", "VatGroup", "TaxSum") if e.get(k) not in (None, "")}
        for e in doc.get("DocumentAdditionalExpenses") or []
    ]
    return kept


def update_rows(records, field_names):
    """Write these fields of these records: one prepared UPDATE executed for every record.

    Django's bulk_update builds a CASE expression per field and record, which costs more CPU than the whole
    rest of the bills step; this is the same write, with each value prepared by its own model field.
    """
    if not records:
        return
    meta = InvoiceRecord._meta
    db = connections[router.db_for_write(InvoiceRecord)]
    fields = [meta.get_field(name) for name in field_names]
    quote = db.ops.quote_name
    sql = (f"UPDATE {quote(meta.db_table)} SET {', '.join(f'{quote(f.column)} = %s' for f in fields)} "
           f"WHERE {quote(meta.pk.column)} = %s")
    params = [[f.get_db_prep_save(getattr(r, f.attname), connection=db) for f in fields] + [r.pk] for r in records]
    with db.cursor() as cursor:
        cursor.executemany(sql, params)


def body_hash(body):
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class BillSync(SyncStep):
    """One run of the bills step for one connection."""

    summary_keys = ("read", "created", "adopted", "updated", "archived", "held", "failed", "flagged", "skipped",
                    "unchanged", "busy")

    def __init__(self, connection, sap, bill, **kw):
        super().__init__(connection, sap, bill, **kw)
        self.index = BillIndex(bill, connection)
        self._dry_records = {}
        self._dirty = {}  # pk -> record whose outcome is not written yet
        self._events = []  # audit events not written yet
        self._vendors_tried = set()  # suppliers aligned (or tried) by this run
        self._notes = []  # (record, message): timeline notes of the read phase, written with the page
        self._asked_for_reference = False
        self.more = False  # a bounded run stopped with work left
        self._executor = None  # threads for bulk creates in flight (see _pool)
        self._book = None  # the mappings, loaded once per run
        self._handled = set()  # records this run has processed already (processing as it reads, then the rest)
        self._in_flight = deque()  # (batch, future, started) of bulk creates sent, answer not taken in yet

    # --- phase 1: read ------------------------------------------------------------------------------------
    def read_changes(self, until=None, send_as_read=False):
        """Read and record SAP's changed invoices (all of them, or until the monotonic time `until`).

        With `send_as_read`, SAP's next pages are fetched by a helper thread while this one records a page and
        sends its invoices to BILL (bulk creates in flight meanwhile): reading, coding and sending overlap instead
        of waiting for each other. The cursor still moves only with what is recorded (each page carries the
        reader's position as it was when that page was read)."""
        cursor = SyncCursor.objects.filter(connection=self.connection, stream=STREAM).first()
        reader = DeltaReader(self.sap, "PurchaseInvoices", select=INVOICE_SELECT, sync_from=self.connection.sync_from,
                             extra_filter=self.connection.invoice_extra_filter)
        pages = _positions(reader, cursor.value if cursor else None)
        send_as_read = send_as_read and not self.dry_run  # a dry run prints its plan once, after reading
        if send_as_read and not _in_transaction():
            pages = _prefetched(pages)
        ready, more = [], False
        try:
            for page, position in pages:
                docs = [self._with_lines(d) for d in page if sap_state(d) != "cancellation"]
                docs += self._cancelled_originals(page, {int(d["DocEntry"]) for d in docs})
                self.summary["read"] += len(docs)
                if page:
                    self._record_page(docs, max(stamp_of(d) for d in page), position)
                self.out(f"  read {self.summary['read']} changed invoices from SAP")
                if send_as_read:
                    ready.extend(int(d["DocEntry"]) for d in docs)
                    while len(ready) >= CHUNK:
                        self.process(doc_entries=ready[:CHUNK], final=False)
                        ready = ready[CHUNK:]
                if until is not None and time.monotonic() >= until and position["resume"]:
                    more = True  # the cursor holds where the reader stopped: the next cycle reads on from there
                    break
        finally:
            if hasattr(pages, "close"):
                pages.close()
        if ready:
            self.process(doc_entries=ready, final=False)
        if send_as_read:
            self._settle(wait_all=True)  # every answer in before the rest (older pending, retries) is looked at
            self._flush()
        if more:
            self.more = True
        elif not self.dry_run:
            self._finish_read(reader)

    def _cancelled_originals(self, page, seen):
        """Originals named by cancellation documents on this page (their lines' BaseEntry), re-read from SAP:
        whether cancelling bumps the original's UpdateDate is not confirmed, and a missed cancellation would
        leave a payable bill in BILL."""
        wanted = set()
        for doc in page:
            if sap_state(doc) != "cancellation":
                continue
            for line in self._with_lines(doc).get("DocumentLines") or []:
                if str(line.get("BaseType")) in ("18", "oPurchaseInvoices") and line.get("BaseEntry") is not None:
                    wanted.add(int(line["BaseEntry"]))
        wanted -= seen
        if not wanted:
            return []
        known = set(InvoiceRecord.objects.filter(connection=self.connection, doc_entry__in=wanted)
                    .exclude(sap_state="cancelled").values_list("doc_entry", flat=True))
        return [self.sap.get(f"PurchaseInvoices({entry})") for entry in sorted(known)]

    def _with_lines(self, doc):
        if "DocumentLines" in doc:
            return doc
        # Some Service Layer versions omit collections when $select is used: read the document by key.
        return self.sap.get(f"PurchaseInvoices({int(doc['DocEntry'])})")

    def _finish_read(self, reader):
        """The read got to its end: the next one starts from the cursor (with its overlap), not from a resume point."""
        with transaction.atomic():
            cursor = SyncCursor.objects.select_for_update().filter(connection=self.connection, stream=STREAM).first()
            if cursor is not None and "resume" in (cursor.value or {}):
                value = {k: v for k, v in cursor.value.items() if k not in ("resume", "read_started")}
                value["read_seconds"] = reader.elapsed()
                cursor.value = value
                cursor.save()

    def _record_page(self, docs, page_stamp, position=None):
        """Record one page of invoices and move the cursor past it, in one transaction.

        The ledger rows are read inside the transaction (locked where the database can), so an overlapping
        run reading the same page waits instead of inserting the same invoices twice or overwriting what the
        other one just decided; the cursor only ever moves forward.
        """
        if self.dry_run:
            existing = {r.doc_entry: r for r in InvoiceRecord.objects.filter(
                connection=self.connection, doc_entry__in=[int(d["DocEntry"]) for d in docs])}
            new, changed = self._absorb_page(docs, existing)
            for record in new + changed:
                self._dry_records[record.doc_entry] = record
            self._notes.clear()
            return
        with transaction.atomic():
            existing = {
                r.doc_entry: r for r in InvoiceRecord.objects.select_for_update().filter(
                    connection=self.connection, doc_entry__in=[int(d["DocEntry"]) for d in docs]).order_by("pk")
            }  # locked in pk order, like _flush: two runs never wait on each other in a circle
            new, changed = self._absorb_page(docs, existing)
            # ignore_conflicts: a concurrent run (on a database without a page lock) may have inserted some first
            InvoiceRecord.objects.bulk_create(new, batch_size=500, ignore_conflicts=True)
            update_rows(changed, READ_FIELDS)
            notes, self._notes = [(r, m) for r, m in self._notes if r.pk], []
            for record, message in notes:
                self._event(record, AuditEvent.Kind.NOTE, message)
            AuditEvent.objects.bulk_create(self._events, batch_size=500)
            self._events.clear()
            cursor, _ = SyncCursor.objects.select_for_update().get_or_create(
                connection=self.connection, stream=STREAM, defaults={"value": {}})
            value = dict(cursor.value or {})
            if value.get("stamp", "") < page_stamp:
                value["stamp"] = page_stamp
            if position is not None:
                # how long this read has been going (the next read re-reads that much more), and where it would go
                # on if it is cut short here (see delta.py)
                value["read_seconds"] = position["elapsed"]
                if position["resume"]:
                    value.update(resume=position["resume"], read_started=position["started"])
                else:
                    value.pop("resume", None)
                    value.pop("read_started", None)
            if value != cursor.value:
                cursor.value = value
                cursor.save()

    def _absorb_page(self, docs, existing):
        new, changed = [], []
        seen = {}
        for doc in docs:
            seen[int(doc["DocEntry"])] = doc  # de-duplicate within the page: the last version wins
        now = timezone.now()
        for doc_entry, doc in seen.items():
            record = existing.get(doc_entry)
            if record is None:
                record = InvoiceRecord(connection=self.connection, doc_entry=doc_entry)
                if self._absorb(record, doc, is_new=True):
                    new.append(record)
            elif self._absorb(record, doc, is_new=False):
                record.updated_at = now
                changed.append(record)
        return new, changed

    def _absorb(self, record, doc, is_new):
        """Take the SAP document into the record and decide what BILL needs. False when nothing changed."""
        stamp = stamp_of(doc)
        kept = slim(doc)
        if not is_new and record.sap_updated == stamp and record.document == kept:
            return False  # the overlap re-read it
        if not is_new and record.sap_updated > stamp:
            return False  # an older version than the one we have (an overlapping run read it earlier)
        state = sap_state(doc)
        previous_state = record.sap_state
        previous_paid = money((record.document or {}).get("PaidToDate")) if not is_new else Decimal(0)
        record.doc_num = str(doc.get("DocNum") or "")
        record.card_code = doc.get("CardCode") or ""
        record.card_name = (doc.get("CardName") or "")[:200]
        record.invoice_number = invoice_number(doc)[:100]
        record.doc_date = parse_day(doc.get("TaxDate") or doc.get("DocDate"))
        record.due_date = parse_day(doc.get("DocDueDate"))
        record.currency = (iso_currency(doc.get("DocCurrency"), self.connection.sap_currency_codes)
                           or doc.get("DocCurrency") or "")[:3]
        record.doc_total = money(doc.get("DocTotal"))  # local currency (DocTotalFc is 0 on local documents)
        record.branch_id = doc.get("BPL_IDAssignedToInvoice")  # SAP branch (BPLID); None without branches
        record.branch_name = (doc.get("BPLName") or "")[:100]
        record.sap_updated = stamp
        record.sap_state = state
        record.document = kept
        if state == "cancelled":
            if record.bill_id or (record.create_attempted_at and record.status in (Status.CREATING, Status.FAILED)):
                self._unflag(record, "cancelled in SAP")
                self._plan(record, Step.ARCHIVE)  # without bill_id: a create may have happened; look it up first
            elif record.status not in (Status.SYNCED, Status.ARCHIVED):
                record.status, record.next_step = Status.SKIPPED, Step.NONE
                record.last_error = "cancelled in SAP before a bill was created"
        elif state == "closed":
            if is_new or (not record.bill_id and record.status in (Status.PENDING, Status.HELD, Status.FAILED)):
                record.status, record.next_step = Status.SKIPPED, Step.NONE
                record.last_error = "closed in SAP (paid or closed there) before a bill was created"
            elif record.bill_id and record.status != Status.ARCHIVED and previous_state != "closed":
                # Paid by our own payment (the usual case), or by a check run, a credit memo, by hand: BILL must not
                # pay it (again). The check step tells them apart.
                self._unflag(record, "closed in SAP")
                self._plan(record, Step.CLOSE)
        elif record.status == Status.ARCHIVED and previous_state == "closed" and record.bill_id:
            archived = record.bill_id
            record.bill_id, record.next_step, record.status = "", Step.CREATE, Status.FLAGGED
            record.last_error = (f"reopened in SAP after its BILL bill {archived} was archived (the invoice had been "
                                 "closed in SAP); BILL cannot restore an archived bill: replay this invoice to make a "
                                 "new bill, or pay it outside BILL")
            self._notes.append((record, record.last_error))
        elif record.bill_id and money(doc.get("PaidToDate")) > 0 and money(doc.get("PaidToDate")) != previous_paid:
            self._plan(record, Step.CLOSE)  # paid or credited in part: does BILL still want the whole amount?
        else:
            self._plan(record, Step.UPDATE if record.bill_id else Step.CREATE)
        return True

    def _unflag(self, record, what):
        """A record waiting for a person about something else: this news comes first, on its timeline too."""
        if record.status != Status.FLAGGED:
            return
        self._notes.append((record, f"{what[0].upper()}{what[1:]} while it needed a person ({record.last_error}): "
                                    "handled again from SAP's new state"))
        record.status, record.last_error, record.attempts = Status.PENDING, "", 0

    @staticmethod
    def _plan(record, step):
        record.next_step = step
        if record.status == Status.CREATING:
            return  # a run is sending it right now (or died doing so): its claim stays; it sees the new step
        if record.status != Status.FLAGGED:
            record.status = Status.PENDING
            record.last_error = ""
            record.attempts = 0

    # --- phase 2: process ----------------------------------------------------------------------------------
    def pending_records(self, only_ids=None, doc_entries=None):
        """Records that need something in BILL, in chunks (the whole set is never held in memory)."""
        if self.dry_run:
            db = InvoiceRecord.objects.filter(connection=self.connection, status__in=[
                Status.PENDING, Status.HELD, Status.CREATING, Status.FAILED])
            merged = {r.doc_entry: r for r in db}
            merged.update(self._dry_records)
            records = [r for r in merged.values() if r.status in (Status.PENDING, Status.HELD, Status.CREATING, Status.FAILED)]
            records.sort(key=lambda r: r.doc_entry)
            for start in range(0, len(records), CHUNK):
                yield records[start:start + CHUNK]
            return
        qs = InvoiceRecord.objects.filter(connection=self.connection)
        if doc_entries is not None:
            qs = qs.filter(doc_entry__in=doc_entries, status__in=[Status.PENDING, Status.HELD])
        elif only_ids is not None:
            qs = qs.filter(pk__in=only_ids)
        else:
            qs = qs.filter(Q(status__in=[Status.PENDING, Status.HELD, Status.CREATING])
                           | Q(status=Status.FAILED, attempts__lt=MAX_AUTO_ATTEMPTS))
        yield from chunks_by_pk(qs, CHUNK)

    def process(self, only_ids=None, until=None, doc_entries=None, final=True):
        """Send what BILL needs for every pending record (or until the monotonic time `until`, chunk by chunk).

        `doc_entries`: only these invoices (the page just read). `final=False` leaves bulk creates in flight for
        the next call; the last call takes in every answer."""
        if self._book is None:
            self._book = MappingBook.load(self.connection)
        book = self._book
        done = 0
        for chunk in self.pending_records(only_ids, doc_entries):
            chunk = [r for r in chunk if r.pk is None or r.pk not in self._handled]  # once per run
            self._handled.update(r.pk for r in chunk if r.pk is not None)
            if not chunk:
                continue
            if until is not None and done and time.monotonic() >= until:
                self.more = True
                break
            self._ensure_vendors(chunk, book)
            creates, updates, archives = [], [], []
            for record in chunk:
                if record.next_step == Step.NONE and record.status in (Status.SYNCED, Status.ARCHIVED, Status.SKIPPED):
                    self.summary["unchanged"] += 1  # a replay of a record that needs nothing in BILL
                    continue
                if record.next_step == Step.ARCHIVE:
                    archives.append(record)
                    continue
                if record.next_step == Step.CLOSE and not self._check_close(record):
                    continue
                body, problems = code_invoice(record.document, book)
                if problems:
                    self._hold(record, problems)
                    continue
                previous = (record.coded or {}).get("invoice", {}).get("invoiceNumber", "")
                if previous.endswith(f" (SAP {record.doc_num})"):  # BILL once refused the plain number: keep ours
                    body["invoice"]["invoiceNumber"] = previous
                record.coded, record.coded_hash = body, body_hash(body)
                (updates if record.next_step == Step.UPDATE and record.bill_id else creates).append(record)
            self._create(creates)
            for record in updates:
                self._update(record)
            for record in archives:
                self._archive(record, book)
            self._settle()  # keeps up to BILL's limit of bulk creates in flight into the next chunk
            self._flush()
            done += len(chunk)
            self.out(f"  processed {done} invoices")
        if not final:
            return self.summary
        self._settle(wait_all=True)
        self._flush()
        if self._executor is not None:
            self._executor.shutdown()
            self._executor = None
        return self.summary

    def _ensure_vendors(self, chunk, book):
        """Align suppliers that have no usable vendor link yet (the invoice then codes on this same run).

        Each supplier is tried once per run: a supplier that cannot be aligned holds its invoices, it does not
        cost a vendor look-up per chunk. A supplier a person sent back with "create a new BILL vendor" counts
        as not aligned yet.
        """
        from mappings.models import VendorLink

        codes = {r.card_code for r in chunk} - self._vendors_tried
        if not codes:
            return
        # "invalid" too: a supplier unfrozen (or given an address) in SAP releases its held invoices on this run
        missing = {c for c in codes
                   if c not in book.vendors or book.vendors[c][1] in ("pending", "failed", "creating", "invalid")}
        review = {c for c in codes if c in book.vendors and book.vendors[c][1] == "review"}
        if review:
            missing |= set(VendorLink.objects.filter(connection=self.connection, card_code__in=review,
                                                     status="review", create_new=True).values_list("card_code", flat=True))
        self._vendors_tried |= codes
        if not missing:
            return
        missing = sorted(missing)
        aligner = VendorAligner(self.connection, self.sap, self.bill, dry_run=self.dry_run)
        try:
            aligner.run(card_codes=missing)
        except RemoteError as exc:
            # Their invoices are held (naming the supplier) and go through on a later run; the rest go on.
            self.out(f"  could not align suppliers {', '.join(missing)}: {exc}")
            return
        if self.dry_run:
            for line in aligner.planned:
                self.out(f"  would {line}")
            for code in missing:
                if any(f"SAP {code} " in line for line in aligner.planned):
                    book.vendors[code] = ("(new vendor)", "linked", "")
            return
        fresh = MappingBook.load(self.connection)
        book.vendors.update(fresh.vendors)

    # --- create ---------------------------------------------------------------------------------------------
    def _create(self, records):
        if not records:
            return
        self.index.ensure({r.coded["vendorId"] for r in records if r.coded["vendorId"] != "(new vendor)"},
                          since=self._since(records))
        to_send = []
        for record in records:
            found = self.index.ours(record.doc_entry)
            if found:
                self._adopt(record, found)
                continue
            foreign = self.index.foreign(record.coded["vendorId"], record.coded["invoice"]["invoiceNumber"])
            if foreign:
                self._flag(record, self._foreign_words(record, foreign))
                continue
            to_send.append(record)
        if self.dry_run:
            for record in to_send:
                self._print_plan("create", record)
                self.summary["created"] += 1
            return
        for start in range(0, len(to_send), BULK_LIMIT):
            self._send_batch(to_send[start:start + BULK_LIMIT])

    @staticmethod
    def _foreign_words(record, foreign):
        return (f"BILL already has bill {foreign['id']} with invoice number {record.coded['invoice']['invoiceNumber']} "
                "for this vendor, not made by ml-connector (entered by hand?). Archive the duplicate in BILL, then "
                "replay this invoice.")

    @staticmethod
    def _since(records):
        """How far back BILL's bills of these vendors are read: AP often keys the vendor's PDF into BILL when it
        arrives, weeks before SAP posts the invoice, so from well before the earliest of the invoices' vendor,
        posting and creation dates."""
        days = [parse_day(r.document.get(k)) for r in records for k in ("TaxDate", "DocDate", "CreationDate")]
        days = [d for d in days if d]
        return (min(days) if days else timezone.localdate()) - HAND_ENTRY_WINDOW

    def _claim(self, batch):
        """Mark the batch `creating` in our ledger before anything is sent; return the records we got.

        Records never attempted are claimed only if still never attempted (compare-and-set), so a bill another
        run made meanwhile is never made again. Records attempted before (a lost answer, a failed look-up, a
        run that died) are claimed and then looked up in BILL again, since our index may predate their bill.
        """
        now = timezone.now()
        # FLAGGED only comes here through a replay (a person fixed what was wrong); normal runs never pick it.
        claimable = Q(status__in=[Status.PENDING, Status.HELD, Status.FAILED, Status.FLAGGED]) | self._dead_claims(batch, now)
        fresh = [r.pk for r in batch if r.create_attempted_at is None]
        again = [r.pk for r in batch if r.create_attempted_at is not None]
        changes = {"status": Status.CREATING, "create_attempted_at": now, "attempts": F("attempts") + 1,
                   "claimed_by": self.lease.token}
        claimed = 0
        if fresh:
            claimed += InvoiceRecord.objects.filter(claimable, pk__in=fresh, create_attempted_at__isnull=True).update(**changes)
        if again:
            claimed += InvoiceRecord.objects.filter(claimable, pk__in=again).update(**changes)
        if claimed != len(batch):
            mine = set(InvoiceRecord.objects.filter(pk__in=fresh + again, create_attempted_at=now).values_list("pk", flat=True))
        else:
            mine = {r.pk for r in batch}
        retried = []
        kept = []
        for record in batch:
            if record.pk not in mine:
                self.summary["busy"] += 1  # another run has it (or just finished it): not ours to send
                continue
            if record.create_attempted_at is not None:
                retried.append(record)
            record.status, record.create_attempted_at, record.claimed_by = Status.CREATING, now, self.lease.token
            record.attempts += 1
            kept.append(record)
        if not retried:
            return kept
        try:
            self.index.ensure({r.coded["vendorId"] for r in retried}, since=self._since(retried), refresh=True)
        except RemoteError as exc:
            for record in retried:
                self._fail(record, f"could not look up BILL before sending again ({exc}); the next run looks again")
            retried_ids = {r.pk for r in retried}
            return [r for r in kept if r.pk not in retried_ids]
        to_send = []
        for record in kept:
            found = self.index.ours(record.doc_entry) if record in retried else None
            if found:
                self._adopt(record, found)
            else:
                to_send.append(record)
        return to_send

    @staticmethod
    def _dead_claims(records, now):
        """`creating` claims among these records whose holder died (its lease is dead): free to take over."""
        from connector import leases

        tokens = {r.claimed_by for r in records if r.status == Status.CREATING and r.claimed_by}
        dead = tokens - leases.alive(tokens)
        legacy = Q(status=Status.CREATING, claimed_by="", create_attempted_at__lt=now - CLAIM_TTL)
        return legacy | Q(status=Status.CREATING, claimed_by__in=sorted(dead)) if dead else legacy

    def _claim_is_live(self, record):
        from connector import leases

        if record.status != Status.CREATING:
            return False
        if not record.claimed_by:
            return bool(record.create_attempted_at and record.create_attempted_at >= timezone.now() - CLAIM_TTL)
        return record.claimed_by == self.lease.token or bool(leases.alive({record.claimed_by}))

    # --- bulk creates in flight: up to BILL's 3 per organization at once ----------------------------------
    def _pool(self):
        """Threads for the bulk creates of this run, or None where they cannot overlap.

        Only outside a database transaction: inside one (a caller's atomic block) a worker thread's own connection
        would wait for locks this thread holds."""
        from django.conf import settings

        width = max(1, min(settings.BILL_MAX_IN_FLIGHT, MAX_BULKS_IN_FLIGHT))
        if self.dry_run or width == 1 or _in_transaction():
            return None
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=width, thread_name_prefix="bill-bulk")
        return self._executor

    def _post_in_thread(self, batch):
        try:
            return self._post_logged(batch)
        finally:
            connections.close_all()  # this worker thread's own database connections

    def _post_logged(self, batch):
        if self.sync_run is not None:
            with trail.about_run(self.sync_run):
                return self._post(batch)
        return self._post(batch)

    def _settle(self, wait_all=False):
        """Take in the answers of bulk creates in flight (the oldest first), down to fewer than the pool's width."""
        pool = self._executor
        limit = 0 if wait_all or pool is None else pool._max_workers - 1
        while len(self._in_flight) > limit:
            batch, future, started = self._in_flight.popleft()
            try:
                created = future.result()
            except Exception as exc:  # noqa: BLE001 - handled like the same failure of a synchronous post
                self._outcome(batch, started, None, exc)
            else:
                self._outcome(batch, started, created, None)

    def _send_batch(self, batch, claimed=False, wait=False):
        if not claimed:
            batch = self._claim(batch)
        if not batch:
            self._flush()
            return
        started = time.monotonic()
        pool = None if wait else self._pool()
        if pool is not None:
            # its answer is taken in by _settle() (when the pool is full, at the end of the chunk, or of the run);
            # its records stay claimed (`creating`) meanwhile
            self._in_flight.append((batch, pool.submit(contextvars.copy_context().run, self._post_in_thread, batch),
                                    started))
            self._settle()
            return
        try:
            created = self._post_logged(batch)
        except Exception as exc:  # noqa: BLE001 - sorted out by _outcome
            self._outcome(batch, started, None, exc)
        else:
            self._outcome(batch, started, created, None)

    def _outcome(self, batch, started, created, error):
        """What a (bulk) create's answer means for its records: created, adopted, refused, or unknown (looked up)."""
        try:
            if error is not None:
                raise error
        except ResponseLost as exc:
            self._log_exchange(batch, started, None, str(exc))
            self._recover_lost(batch, exc)
            self._flush()
            return
        except BillError as exc:
            self._log_exchange(batch, started, exc.status, str(exc))
            if len(batch) > 1 and exc.permanent:
                # All-or-nothing: one bad bill sank the request. Halve until the culprit stands alone (the
                # records stay claimed by us meanwhile; BILL created none of them).
                middle = len(batch) // 2
                self._send_batch(batch[:middle], claimed=True, wait=True)
                self._send_batch(batch[middle:], claimed=True, wait=True)
                return
            if len(batch) == 1 and _duplicate_number(exc) and self._make_number_unique(batch[0]):
                # BILL may refuse a vendor's repeated invoice number (unconfirmed); the contract wants two bills.
                self._send_batch(batch, claimed=True, wait=True)
                return
            for record in batch:
                self._fail(record, f"BILL refused the bill: {exc}")
            self._flush()
            return
        except RemoteError as exc:
            # No usable answer (a 5xx, the request limit): the bill may or may not exist; the next attempt
            # looks it up first (the record keeps its create_attempted_at).
            for record in batch:
                self._fail(record, f"could not reach BILL: {exc}")
            self._flush()
            return
        by_marker = {}
        for bill_obj in created or []:
            found = marker_in(bill_obj.get("description"))
            if found and found[0] == self.index.company:
                by_marker[found[1]] = bill_obj
        self._log_exchange(batch, started, 201, "", by_marker)
        missing = []
        for record in batch:
            bill_obj = by_marker.get(record.doc_entry)
            if bill_obj is None:
                missing.append(record)
                continue
            self._synced(record, bill_obj, f"Created BILL bill {bill_obj['id']}")
            self.summary["created"] += 1
        if missing:
            self._recover_lost(missing, None)
        self._flush()

    @staticmethod
    def _make_number_unique(record):
        """Add the SAP DocNum to the invoice number, once. False if it already carries it."""
        invoice = record.coded["invoice"]
        suffix = f" (SAP {record.doc_num})"
        if invoice["invoiceNumber"].endswith(suffix):
            return False
        invoice["invoiceNumber"] = invoice["invoiceNumber"][:100 - len(suffix)] + suffix
        record.coded_hash = body_hash(record.coded)
        return True

    def _log_exchange(self, batch, started, status, error, answers=None):
        """Each record's own part of a (bulk) create on its timeline: its bill as sent and as BILL answered.

        The whole request, as the client reported it, is on the sync run's timeline."""
        path = "/v3/bills" if len(batch) == 1 else "/v3/bills/bulk"
        duration = int((time.monotonic() - started) * 1000)
        where = f" (sync run #{self.sync_run.pk})" if self.sync_run is not None and self.sync_run.pk else ""
        share = f"one of {len(batch)} bills in one request{where}" if len(batch) > 1 else ""
        trigger, actor = trail.current_trigger()
        for record in batch:
            self._events.append(AuditEvent(
                connection_id=record.connection_id, record_type="invoicerecord", record_id=str(record.pk),
                kind=AuditEvent.Kind.EXCHANGE, trigger=trigger, actor=actor, system="bill", method="POST", path=path,
                status_code=status, duration_ms=duration, attempt=record.attempts,
                request_body=record.coded, response_body=(answers or {}).get(record.doc_entry),
                message="; ".join(x for x in (share, error) if x)[:5000],
            ))

    def _post(self, batch):
        if len(batch) == 1:
            return [self.bill.post("/v3/bills", batch[0].coded)]
        answer = self.bill.post("/v3/bills/bulk", [r.coded for r in batch])
        # Documented: an array of bills. Tolerate a wrapped answer ({"bills": [...]}) like the vendors bulk one.
        return answer.get("bills", []) if isinstance(answer, dict) else answer

    def _recover_lost(self, batch, exc):
        """The create may have happened: look the bills up by our marker before anything is sent again."""
        try:
            self.index.ensure({r.coded["vendorId"] for r in batch}, since=self._since(batch), refresh=True)
        except RemoteError as lookup_exc:
            for record in batch:
                self._fail(record, f"BILL did not answer the create and the look-up failed ({lookup_exc}); "
                                   "the next run looks again before sending")
            return
        for record in batch:
            found = self.index.ours(record.doc_entry)
            if found:
                self._adopt(record, found)
            else:
                self._fail(record, f"BILL did not answer the create ({exc or 'no bill in the answer'}) and has no such "
                                   "bill; it will be sent again on the next run")

    def _adopt(self, record, bill_obj):
        if not self.dry_run and money(bill_obj.get("amount")) != bill_total(record.coded):
            record.bill_id = bill_obj["id"]
            record.next_step = Step.UPDATE
            self._update(record)
            return
        self._synced(record, bill_obj, f"Found BILL bill {bill_obj['id']} made by an earlier attempt; not created again")
        self.summary["adopted"] += 1

    # --- update / archive -------------------------------------------------------------------------------
    def _fresh_bill(self, record):
        try:
            with trail.about(record):
                return self.bill.get(f"/v3/bills/{record.bill_id}")
        except BillNotFound:
            return None

    def _update(self, record):
        if record.coded_hash == record.synced_hash:
            self._set(record, Status.SYNCED, Step.NONE, "")
            self.summary["unchanged"] += 1
            return
        if self.dry_run:
            self._print_plan("update", record)
            self.summary["updated"] += 1
            return
        try:
            current = self._fresh_bill(record)
            if current is None:
                self._flag(record, f"BILL bill {record.bill_id} no longer exists; SAP invoice was edited. Check in BILL.")
                return
            if not _editable(current):
                self._flag(record, f"SAP invoice was edited after BILL bill {record.bill_id} was "
                                   f"{_state_words(current)}: not overwritten. Check the amounts with AP.")
                return
            with trail.about(record):
                updated = self.bill.request("PUT", f"/v3/bills/{record.bill_id}", json_body=record.coded)
        except RemoteError as exc:
            self._fail(record, f"BILL refused the update: {exc}")
            return
        self._synced(record, updated or current, f"Updated BILL bill {record.bill_id} with SAP's changes")
        self.summary["updated"] += 1

    def _archive(self, record, book=None):
        if not record.bill_id and not self._find_for_archive(record, book):
            return
        if self.dry_run:
            self.out(f"  would archive BILL bill {record.bill_id} (SAP invoice {record.doc_num} cancelled)")
            self.summary["archived"] += 1
            return
        try:
            current = self._fresh_bill(record)
            if current is not None and not current.get("archived"):
                if not _editable(current):
                    self._flag(record, f"Cancelled in SAP, but BILL bill {record.bill_id} is {_state_words(current)}: "
                                       "not archived. Stop or reverse the payment in BILL (or the vendor is paid for a "
                                       "cancelled invoice).")
                    return
                with trail.about(record):
                    self.bill.post(f"/v3/bills/{record.bill_id}/archive")
        except RemoteError as exc:
            self._fail(record, f"BILL refused to archive the bill: {exc}")
            return
        self._set(record, Status.ARCHIVED, Step.NONE, "", f"Archived BILL bill {record.bill_id}: invoice cancelled in SAP")
        self.summary["archived"] += 1

    # --- closed (or part-paid) in SAP -----------------------------------------------------------------------
    def _check_close(self, record):
        """SAP closed the invoice, or lowered what it still owes. True: go on and bring the bill up to date.

        Our own payment (posted, or being posted) explains it: nothing to do. Otherwise it was paid by a check
        run, closed by a credit memo or by hand in SAP, and BILL must not pay it again: an unpaid, unscheduled
        bill of a closed invoice is archived (saying why); anything else is flagged for a person."""
        doc = record.document or {}
        total = money(doc.get("DocTotal"))
        closed = record.sap_state == "closed"
        open_in_sap = Decimal(0) if closed else max(total - money(doc.get("PaidToDate")), Decimal(0))
        settled = total - open_in_sap
        ours = self._paid_by_us(record)
        if ours is None or ours >= settled - Decimal("0.005"):
            return self._settled_as_known(record, closed)
        outside = total - open_in_sap - ours
        if self.dry_run:
            self.out(f"  would check BILL bill {record.bill_id}: SAP invoice {record.doc_num} "
                     f"{'closed' if closed else f'owes {open_in_sap} of {total}'} ({outside} settled outside BILL)")
            return False
        try:
            current = self._fresh_bill(record)
        except RemoteError as exc:
            self._fail(record, f"SAP settled {outside} of this invoice outside BILL; could not read BILL bill "
                               f"{record.bill_id} to stop it being paid again: {exc}")
            return False
        where = ("closed in SAP" if closed else f"SAP shows {open_in_sap} still owed of {total}") + \
            f" ({outside} paid, credited or closed in SAP, not by a BILL payment)"
        if current is None:
            self._flag(record, f"{where}, and BILL bill {record.bill_id} no longer exists: check in BILL")
            return False
        if current.get("archived"):
            self._set(record, Status.ARCHIVED, Step.NONE, "", f"{where}; BILL bill {record.bill_id} was already archived")
            self.summary["archived"] += 1
            return False
        # A credit memo synced as a BILL vendor credit and applied to this bill lowers what BILL pays as it did in SAP
        credited = max(money(current.get("creditAmount")),
                       sum((money(c.get("amount")) for c in current.get("vendorCredits") or [] if isinstance(c, dict)),
                           Decimal(0)))
        if credited and ours + credited >= settled - Decimal("0.005"):
            return self._settled_as_known(record, closed, f"Closed in SAP by payments and credits BILL knows of "
                                                          f"(credited {credited})")
        due = money(current.get("amount")) - money(current.get("paidAmount")) - credited
        if closed and _editable(current):
            self._archive_closed(record, where)
        elif _editable(current):
            self._flag(record, f"{where}, while BILL bill {record.bill_id} would pay {due}: lower the bill in BILL "
                               f"to {open_in_sap} (or reverse what was entered in SAP), then replay this invoice")
        elif money(current.get("scheduledAmount")):
            self._flag(record, f"{where}, but BILL bill {record.bill_id} is scheduled "
                               f"({money(current.get('scheduledAmount'))}): stop the scheduled payment in BILL, or the "
                               "vendor is paid twice")
        else:
            self._flag(record, f"{where}, and BILL bill {record.bill_id} is {_state_words(current)}: the vendor may "
                               "have been paid twice; check both payments")
        return False

    def _settled_as_known(self, record, closed, outcome=None):
        """What SAP settled is explained by our payments (and BILL's credits): a closed invoice is done; an open one
        goes on to the bill's update (True)."""
        if closed:
            self._set(record, Status.SYNCED, Step.NONE, "", outcome)
            self.summary["unchanged"] += 1
            return False
        record.next_step = Step.UPDATE
        return True

    def _paid_by_us(self, record):
        """What our SAP outgoing payments applied to this invoice; None while one is being posted."""
        from connector.models import PaymentRecord

        total = Decimal(0)
        for status, sap_doc, allocations in PaymentRecord.objects.filter(
                connection=self.connection, allocations__icontains=record.bill_id,
                status__in=[PaymentRecord.Status.POSTED, PaymentRecord.Status.POSTING, PaymentRecord.Status.FLAGGED],
        ).values_list("status", "sap_doc_entry", "allocations"):
            if status == PaymentRecord.Status.POSTING:
                return None
            if status == PaymentRecord.Status.FLAGGED and not sap_doc:
                continue
            total += sum((money(a.get("amount")) for a in allocations or [] if a.get("bill_id") == record.bill_id),
                         Decimal(0))
        # A/P credit memos based on this invoice that our credits step brings to BILL (credits.py): SAP counts them
        # in PaidToDate, BILL in the bill's vendorCredits.
        from connector.models import CreditMemoRecord

        total += sum(CreditMemoRecord.objects.filter(connection=self.connection, base_entry=record.doc_entry).exclude(
            status__in=[CreditMemoRecord.Status.SKIPPED, CreditMemoRecord.Status.ARCHIVED]).exclude(
            sap_state="cancelled").values_list("doc_total", flat=True), Decimal(0))
        return total

    def _archive_closed(self, record, where):
        reason = f"{where}: BILL bill {record.bill_id} archived by ml-connector so that BILL does not pay it again"
        try:
            with trail.about(record):
                if record.coded:  # say why on the bill itself, where AP sees it
                    # before the text, so the marker stays at the end where it is looked for
                    note = "ARCHIVED by ml-connector: closed in SAP, not paid through BILL. "
                    body = {**record.coded, "description": (note + record.coded.get("description", ""))[-4000:]}
                    try:
                        self.bill.request("PUT", f"/v3/bills/{record.bill_id}", json_body=body)
                    except BillError:
                        pass  # the note on the bill is a courtesy; archiving is what matters
                self.bill.post(f"/v3/bills/{record.bill_id}/archive")
        except RemoteError as exc:
            self._fail(record, f"{where}; BILL refused to archive bill {record.bill_id}: {exc}")
            return
        self._set(record, Status.ARCHIVED, Step.NONE, reason, f"Archived BILL bill {record.bill_id}: {where}")
        self.summary["archived"] += 1

    def _find_for_archive(self, record, book):
        """Cancelled in SAP while (or after) a create of unknown outcome: find the bill, if BILL has one."""
        if self._claim_is_live(record):
            self.summary["busy"] += 1  # another run is creating it; its outcome sees the cancellation
            return False
        vendor_id = (record.coded or {}).get("vendorId") or ((book.vendors.get(record.card_code) or (None,))[0]
                                                             if book else None)
        if vendor_id:
            try:
                self.index.ensure({vendor_id}, since=self._since([record]), refresh=True)
            except RemoteError as exc:
                self._fail(record, f"SAP invoice was cancelled; could not look up its BILL bill: {exc}")
                return False
            found = self.index.ours(record.doc_entry)
            if found:
                record.bill_id = found["id"]
                return True
        self._set(record, Status.SKIPPED, Step.NONE, "cancelled in SAP before a bill was created")
        self.summary["skipped"] += 1
        return False

    # --- bookkeeping ---------------------------------------------------------------------------------------
    def _print_plan(self, verb, record):
        body = record.coded
        self.out(f"  would {verb} bill for SAP invoice {record.doc_num} ({record.card_code}, invoice "
                 f"{body['invoice']['invoiceNumber']}, due {body['dueDate']}, total {record.doc_total}):")
        for line in body["billLineItems"]:
            cls = line.get("classifications", {})
            self.out(f"      {Decimal(str(line['amount'])):>12.2f}  {line['description'][:40]:<40} "
                     f"account {cls.get('chartOfAccountId', '-')} department {cls.get('departmentId', '-')}")

    def _synced(self, record, bill_obj, message):
        record.bill_payment_status = bill_obj.get("paymentStatus") or record.bill_payment_status
        record.synced_hash = record.coded_hash
        record.synced_at = timezone.now()
        self._set(record, Status.SYNCED, Step.NONE, "", message, bill_id=bill_obj.get("id") or record.bill_id)

    def _hold(self, record, problems):
        self.summary["held"] += 1
        if not self.dry_run and not self._asked_for_reference and any("refresh reference data" in p for p in problems):
            from .runner import request_reference_refresh

            self._asked_for_reference = True  # the next cycle fetches it, even though it is not due yet
            request_reference_refresh(self.connection, f"SAP invoice {record.doc_num} names a code we do not know")
        if self.dry_run:
            self.out(f"  would hold SAP invoice {record.doc_num} ({record.card_code}): {'; '.join(problems)}")
        self._set(record, Status.HELD, record.next_step, "; ".join(problems))

    def _fail(self, record, message):
        self.summary["failed"] += 1
        self._set(record, Status.FAILED, record.next_step, message)

    def _flag(self, record, message):
        self.summary["flagged"] += 1
        self._set(record, Status.FLAGGED, record.next_step, message)

    def _set(self, record, status, step, error, outcome=None, bill_id=None):
        """Change the record's state; written (with its audit events) by the next _flush()."""
        before = {"status": record.status, "last_error": record.last_error, "bill_id": record.bill_id}
        record.status, record.next_step, record.last_error = status, step, error
        if status != Status.CREATING:
            record.claimed_by = ""
        if bill_id is not None:
            record.bill_id = bill_id
        if self.dry_run:
            return
        self._dirty[record.pk] = record
        after = {"status": record.status, "last_error": record.last_error, "bill_id": record.bill_id}
        self._event(record, AuditEvent.Kind.CHANGE, f"Invoice {record.doc_num}: {record.get_status_display()}",
                    before, after)
        if outcome:
            self._event(record, AuditEvent.Kind.OUTCOME, outcome)

    def _event(self, record, kind, message, before=None, after=None):
        """Like trail.log / trail.log_change, collected for one bulk insert."""
        if before is not None:
            diff_before = {k: v for k, v in before.items() if after.get(k) != v}
            if not diff_before:
                return
            before, after = diff_before, {k: after[k] for k in diff_before if k in after}
        record_type, record_id = trail.record_key(record)
        trigger, actor = trail.current_trigger()
        self._events.append(AuditEvent(
            connection_id=record.connection_id, record_type=record_type, record_id=record_id, kind=kind,
            trigger=trigger, actor=actor, message=message[:5000], before=before, after=after,
        ))

    def _flush(self):
        """Write the outcome of every changed record, and their audit events, in one transaction.

        Only outcome fields are written. If SAP's invoice changed in our ledger meanwhile (an overlapping run
        read a newer version), what we did in BILL is kept (bill id) and the record is planned again from
        the newer version instead of being marked done.
        """
        if self.dry_run or not (self._dirty or self._events):
            self._dirty.clear()
            self._events.clear()
            return
        records = list(self._dirty.values())
        now = timezone.now()
        with transaction.atomic():
            current = {pk: rest for pk, *rest in InvoiceRecord.objects.select_for_update().filter(
                pk__in=[r.pk for r in records]).order_by("pk").values_list("pk", "sap_updated", "sap_state", "updated_at")}
            # Written by someone else since we loaded it? (SAP stamps have whole seconds: compare the document too.)
            suspects = [r for r in records if r.pk in current and current[r.pk][0::2] != [r.sap_updated, r.updated_at]]
            if suspects:
                documents = dict(InvoiceRecord.objects.filter(pk__in=[r.pk for r in suspects]).values_list("pk", "document"))
                for record in suspects:
                    stamp, state, _ = current[record.pk]
                    if stamp != record.sap_updated or documents.get(record.pk) != record.document:
                        self._replan(record, state)
            for record in records:
                record.updated_at = now
            update_rows(records, OUTCOME_FIELDS)
            AuditEvent.objects.bulk_create(self._events, batch_size=500)
        self._dirty.clear()
        self._events.clear()

    def _replan(self, record, state):
        before = {"status": record.status, "next_step": record.next_step}
        if state == "cancelled":
            record.next_step = Step.ARCHIVE if record.bill_id else Step.NONE
            if not record.bill_id and record.status != Status.FLAGGED:
                record.status, record.last_error = Status.SKIPPED, "cancelled in SAP before a bill was created"
        elif state == "closed":
            return  # the bill (if any) stays as it is
        else:
            record.next_step = Step.UPDATE if record.bill_id else Step.CREATE
        if record.status not in (Status.FLAGGED, Status.SKIPPED) and record.next_step:
            record.status, record.last_error = Status.PENDING, ""
        self._event(record, AuditEvent.Kind.NOTE, "SAP changed the invoice while it was being sent; planned again",
                    before, {"status": record.status, "next_step": record.next_step})


def _in_transaction():
    from django.db import connection as db

    return db.in_atomic_block


def _positions(reader, cursor_value):
    """(page, position) pairs: where the reader was when it read each page (see BillSync._record_page)."""
    for page in reader.pages(cursor_value):
        yield page, {"resume": reader.resume, "started": reader.started, "elapsed": reader.elapsed()}


def _prefetched(pairs, depth=2):
    """Iterate `pairs` in a helper thread, at most `depth` pages ahead (SAP is read while the caller works)."""
    import queue
    import threading

    box = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()
    context = contextvars.copy_context()

    def fetch():
        try:
            for item in pairs:
                while not stop.is_set():
                    try:
                        box.put(item, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            box.put(done)
        except BaseException as exc:  # noqa: BLE001 - handed to the reading thread, raised there
            box.put(exc)
        finally:
            connections.close_all()

    worker = threading.Thread(target=context.run, args=(fetch,), name="sap-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = box.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join(30)


def _duplicate_number(exc):
    text = f"{exc.message} {exc.code}".lower()
    return exc.permanent and "invoice" in text and any(w in text for w in ("duplicate", "already exists", "already used"))


def _editable(bill_obj):
    status = (bill_obj.get("paymentStatus") or "").upper()
    scheduled = money(bill_obj.get("scheduledAmount"))
    paid = money(bill_obj.get("paidAmount"))
    return status in EDITABLE_PAYMENT_STATUSES and not scheduled and not paid


def _state_words(bill_obj):
    status = (bill_obj.get("paymentStatus") or "").lower() or "in payment"
    return f"{status} (paid {money(bill_obj.get('paidAmount'))}, scheduled {money(bill_obj.get('scheduledAmount'))})"


class BillIndex:
    """The BILL bills of the vendors we are about to bill, read once per run: ours by marker, others by number.

    Only bills that existed before they were needed are kept (what this run creates is never looked up
    again by it), so the index grows with BILL's recent bills of these vendors, not with the run's size.
    """

    def __init__(self, bill, connection):
        self.bill = bill
        self.connection = connection
        self.company = re.sub(r"\s", "_", connection.sap_company_db or "")
        self.loaded = {}  # vendor id -> earliest creation day read for it
        self.by_marker = {}
        self.foreign_numbers = {}

    def ensure(self, vendor_ids, since, refresh=False):
        """Read the bills of these vendors created since `since` (again for a vendor read from a later day only)."""
        wanted = sorted(v for v in vendor_ids if v and (refresh or v not in self.loaded or since < self.loaded[v]))
        for start in range(0, len(wanted), 20):
            chunk = wanted[start:start + 20]
            filters = [f'vendorId:in:"{",".join(chunk)}"', f'createdTime:gte:"{since.isoformat()}T00:00:00.000Z"']
            for bill_obj in self.bill.iterate("/v3/bills", filters=filters):
                self.remember(bill_obj)
            for vendor_id in chunk:
                self.loaded[vendor_id] = min(since, self.loaded.get(vendor_id, since))

    def remember(self, bill_obj):
        if bill_obj.get("archived"):
            return
        found = marker_in(bill_obj.get("description"))
        if found is not None:
            company, doc_entry = found
            if company == self.company:  # another SAP company's bill in the same BILL org is not ours, nor a duplicate
                self.by_marker[doc_entry] = {k: bill_obj.get(k) for k in ("id", "amount", "paymentStatus")}
        else:
            number = (bill_obj.get("invoice") or {}).get("invoiceNumber")
            self.foreign_numbers[(bill_obj.get("vendorId"), number)] = {"id": bill_obj.get("id")}

    def ours(self, doc_entry):
        return self.by_marker.get(doc_entry)

    def foreign(self, vendor_id, number):
        return self.foreign_numbers.get((vendor_id, number))


__all__ = ["BillSync", "description", "marker", "stamp_of"]
