"""SAP A/P credit memos → BILL vendor credits (`sync NAME --step credits`; in every cycle before the bills step).

Like invoices (bills.py), in two phases so nothing read is lost:
1. read: `PurchaseCreditNotes` changed since the cursor, through the same keyset reader (delta.py), each page
   recorded in our ledger (CreditMemoRecord) and the cursor moved in one transaction;
2. process: every record that still needs something in BILL is coded through the same mappings as bills (lines,
   tax, freight; total = SAP's DocTotal to the cent) and sent.

Exactly once without idempotency keys: every vendor credit's description carries `[SAP <company> CreditMemo n]`;
before creating, BILL's vendor credits are read (once per run, again after a lost answer or for a record whose
create was attempted before) and one with our marker is adopted; one with the same vendor and reference number but
without our marker (entered by hand) flags the memo for a person. A record is claimed (compare-and-set to
`creating`, under the run's lease) before the request, so overlapping runs, a SIGKILL after BILL answered, a lost
answer and a replay all end with one credit.

A memo based on an invoice (`BaseType 18`, `BaseEntry`) whose bill is unpaid is applied to that bill (the bill's
`vendorCredits`), so BILL pays only what is owed; otherwise the credit stays available for BILL to apply. A memo
based on an invoice that was never billed (closed or cancelled in SAP first) is not sent. A cancelled memo
archives its credit, which BILL cannot undo: only when nothing of it was applied (our own application to an unpaid
bill is taken off first); otherwise the record is flagged.
"""

import re
from decimal import Decimal

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from audit import trail
from audit.models import AuditEvent
from connector.clients.errors import BillError, BillNotFound, RemoteError, ResponseLost
from connector.models import CreditMemoRecord, InvoiceRecord, SyncCursor

from . import SyncStep, chunks_by_pk
from .bills import INVOICE_SELECT, sap_state, slim, stamp_of
from .coding import MappingBook, code_invoice, invoice_number, money, parse_day, sap_date
from .delta import DeltaReader

Status = CreditMemoRecord.Status
Step = CreditMemoRecord.Step
STREAM = "sap-purchase-credit-notes"
MAX_AUTO_ATTEMPTS = 5
CHUNK = 100
CREDIT_MARKER_RE = re.compile(r"\[SAP (?:(\S+) )?CreditMemo (\d+)\]")
EDITABLE = {"UNPAID", "UNDEFINED", ""}


def credit_marker(doc_entry, company=""):
    company = re.sub(r"\s", "_", company or "")
    return f"[SAP {company} CreditMemo {doc_entry}]" if company else f"[SAP CreditMemo {doc_entry}]"


def credit_marker_in(text):
    found = CREDIT_MARKER_RE.findall(text or "")
    if not found:
        return None
    company, doc_entry = found[-1]
    return company, int(doc_entry)


def base_entry_of(doc):
    """The A/P invoice (DocEntry) a credit memo is based on, or None (stand-alone: BaseType -1)."""
    for line in doc.get("DocumentLines") or []:
        if str(line.get("BaseType")) in ("18", "oPurchaseInvoices") and line.get("BaseEntry") is not None:
            return int(line["BaseEntry"])
    return None


def code_credit_memo(doc, book):
    """(vendor credit body, problems): the memo coded like a bill (same mappings, same checks)."""
    body, problems = code_invoice(doc, book)
    if problems:
        words = [p.replace("this invoice", "this credit memo").replace("the invoice", "the credit memo")
                 for p in problems]
        return None, words
    text = f"SAP A/P credit memo {doc.get('DocNum')}"
    if (doc.get("NumAtCard") or "").strip():
        text += f" – vendor ref {doc['NumAtCard'].strip()}"
    if doc.get("Comments"):
        text += f": {doc['Comments']}"
    return {
        "vendorId": body["vendorId"],
        "referenceNumber": invoice_number(doc)[:100],
        "creditDate": sap_date(doc.get("TaxDate") or doc.get("DocDate")),
        "description": f"{text[:3900]} {credit_marker(doc['DocEntry'], book.company)}",
        "vendorCreditLineItems": body["billLineItems"],
    }, []


def credit_total(body):
    return sum((money(ln["amount"]) for ln in body["vendorCreditLineItems"]), Decimal(0))


def _editable(bill_obj):
    return ((bill_obj.get("paymentStatus") or "").upper() in EDITABLE and not money(bill_obj.get("scheduledAmount"))
            and not money(bill_obj.get("paidAmount")))


class CreditIndex:
    """BILL's vendor credits, read once per run: ours by marker, others by (vendor, reference number)."""

    def __init__(self, bill, connection):
        self.bill = bill
        self.company = re.sub(r"\s", "_", connection.sap_company_db or "")
        self.loaded = False
        self.by_marker = {}
        self.foreign = {}

    def ensure(self, refresh=False):
        if self.loaded and not refresh:
            return
        # Filterable vendor-credit fields are not documented (addendum §2): list, newest first, and match here.
        try:
            rows = list(self.bill.iterate("/v3/vendor-credits", sort="createdTime:desc"))
        except BillError as exc:
            if not exc.refused:
                raise
            rows = list(self.bill.iterate("/v3/vendor-credits"))
        self.by_marker, self.foreign = {}, {}
        for row in rows:
            if row.get("archived"):
                continue
            found = credit_marker_in(row.get("description"))
            if found is not None:
                if found[0] == self.company:
                    self.by_marker[found[1]] = row
            else:
                self.foreign[(row.get("vendorId"), row.get("referenceNumber"))] = row
        self.loaded = True


class CreditSync(SyncStep):
    summary_keys = ("read", "created", "adopted", "applied", "available", "waiting", "archived", "held", "failed",
                    "flagged", "skipped", "unchanged", "busy")

    def __init__(self, connection, sap, bill, **kw):
        super().__init__(connection, sap, bill, **kw)
        self.index = CreditIndex(bill, connection)
        self._dry = {}

    # --- phase 1: read ---------------------------------------------------------------------------------------
    def read_changes(self):
        cursor = SyncCursor.objects.filter(connection=self.connection, stream=STREAM).first()
        reader = DeltaReader(self.sap, "PurchaseCreditNotes", select=INVOICE_SELECT,
                             sync_from=self.connection.sync_from)
        for page in reader.pages(cursor.value if cursor else None):
            docs = [self._with_lines(d) for d in page if sap_state(d) != "cancellation"]
            docs += self._cancelled_originals(page, {int(d["DocEntry"]) for d in docs})
            self.summary["read"] += len(docs)
            if page:
                self._record_page(docs, max(stamp_of(d) for d in page), reader.elapsed())

    def _with_lines(self, doc):
        return doc if "DocumentLines" in doc else self.sap.get(f"PurchaseCreditNotes({int(doc['DocEntry'])})")

    def _cancelled_originals(self, page, seen):
        wanted = set()
        for doc in page:
            if sap_state(doc) == "cancellation":
                for line in self._with_lines(doc).get("DocumentLines") or []:
                    if str(line.get("BaseType")) == "19" and line.get("BaseEntry") is not None:
                        wanted.add(int(line["BaseEntry"]))
        wanted -= seen
        known = set(CreditMemoRecord.objects.filter(connection=self.connection, doc_entry__in=wanted)
                    .exclude(sap_state="cancelled").values_list("doc_entry", flat=True)) if wanted else set()
        return [self.sap.get(f"PurchaseCreditNotes({entry})") for entry in sorted(known)]

    def _record_page(self, docs, page_stamp, read_seconds):
        entries = [int(d["DocEntry"]) for d in docs]
        if self.dry_run:
            existing = {r.doc_entry: r for r in CreditMemoRecord.objects.filter(connection=self.connection,
                                                                                doc_entry__in=entries)}
            for doc in docs:
                record = existing.get(int(doc["DocEntry"])) or CreditMemoRecord(connection=self.connection,
                                                                                 doc_entry=int(doc["DocEntry"]))
                if self._absorb(record, doc):
                    self._dry[record.doc_entry] = record
            return
        with transaction.atomic():
            existing = {r.doc_entry: r for r in CreditMemoRecord.objects.select_for_update().filter(
                connection=self.connection, doc_entry__in=entries).order_by("pk")}
            for doc in {int(d["DocEntry"]): d for d in docs}.values():
                record = existing.get(int(doc["DocEntry"]))
                is_new = record is None
                if is_new:
                    record = CreditMemoRecord(connection=self.connection, doc_entry=int(doc["DocEntry"]))
                if not self._absorb(record, doc):
                    continue
                if is_new:
                    record.save()  # (the unique constraint stops a second row; the page lock serializes runs)
                else:
                    record.save(update_fields=["doc_num", "card_code", "card_name", "reference_number",
                                               "credit_date", "doc_total", "base_entry", "sap_updated", "sap_state",
                                               "document", "status", "next_step", "last_error", "attempts",
                                               "updated_at"])
            cursor, _ = SyncCursor.objects.select_for_update().get_or_create(
                connection=self.connection, stream=STREAM, defaults={"value": {}})
            if (cursor.value or {}).get("stamp", "") < page_stamp:
                cursor.value = {"stamp": page_stamp, "read_seconds": read_seconds}
                cursor.save()

    def _absorb(self, record, doc):
        stamp, kept = stamp_of(doc), slim(doc)
        kept["DocumentLines"] = [{**ln, **{k: src.get(k) for k in ("BaseType", "BaseEntry") if src.get(k) is not None}}
                                 for ln, src in zip(kept["DocumentLines"], doc.get("DocumentLines") or [], strict=True)]
        if record.pk and (record.sap_updated > stamp or (record.sap_updated == stamp and record.document == kept)):
            return False  # read again by the overlap, or older than what we have
        before = record.document or {}
        record.doc_num = str(doc.get("DocNum") or "")
        record.card_code = doc.get("CardCode") or ""
        record.card_name = (doc.get("CardName") or "")[:200]
        record.reference_number = invoice_number(doc)[:100]
        record.credit_date = parse_day(doc.get("TaxDate") or doc.get("DocDate"))
        record.doc_total = money(doc.get("DocTotal"))
        record.base_entry = base_entry_of(doc)
        record.sap_updated, record.sap_state, record.document = stamp, sap_state(doc), kept
        if record.sap_state == "cancelled":
            if record.credit_id or record.create_attempted_at:
                self._plan(record, Step.ARCHIVE)
            elif record.status not in (Status.ARCHIVED, Status.SKIPPED):
                record.status, record.next_step = Status.SKIPPED, Step.NONE
                record.last_error = "cancelled in SAP before a vendor credit was created"
        elif not record.credit_id:
            if record.status != Status.SKIPPED or not record.pk:
                self._plan(record, Step.CREATE)
        elif _amounts(before) != _amounts(kept):
            record.status, record.last_error = Status.FLAGGED, (
                f"edited in SAP after BILL vendor credit {record.credit_id} was made from it: BILL cannot be "
                "brought in line automatically; correct the credit in BILL (or cancel the memo and post a new one)")
        return True

    @staticmethod
    def _plan(record, step):
        record.next_step = step
        if record.status in (Status.CREATING, Status.FLAGGED):
            return
        record.status, record.last_error, record.attempts = Status.PENDING, "", 0

    # --- phase 2: process ------------------------------------------------------------------------------------
    def pending_records(self, only_ids=None):
        if self.dry_run:
            merged = {r.doc_entry: r for r in CreditMemoRecord.objects.filter(
                connection=self.connection, status__in=[Status.PENDING, Status.HELD, Status.FAILED, Status.CREATING])}
            merged.update(self._dry)
            yield sorted((r for r in merged.values() if r.status in (Status.PENDING, Status.HELD, Status.FAILED,
                                                                     Status.CREATING)), key=lambda r: r.doc_entry)
            return
        qs = CreditMemoRecord.objects.filter(connection=self.connection)
        if only_ids is not None:
            qs = qs.filter(pk__in=only_ids)
        else:
            qs = qs.filter(Q(status__in=[Status.PENDING, Status.HELD, Status.CREATING])
                           | Q(status=Status.FAILED, attempts__lt=MAX_AUTO_ATTEMPTS))
        yield from chunks_by_pk(qs, CHUNK)

    def process(self, only_ids=None):
        book = MappingBook.load(self.connection)
        for chunk in self.pending_records(only_ids):
            for record in chunk:
                try:
                    self._process(record, book)
                except RemoteError as exc:
                    self._fail(record, f"could not reach BILL: {exc}")
        return self.summary

    def run(self, only_ids=None):
        try:
            self.read_changes()
        except RemoteError as exc:
            # Credit memos must never stop invoices from being billed (this step runs before bills): what was read
            # is recorded, the rest is read by the next run from the cursor.
            self.summary["failed"] += 1
            self.out(f"  could not read SAP credit memos ({exc}); the next run reads them")
        return self.process(only_ids)

    def _process(self, record, book):
        if record.status == Status.CREATING and self._claim_is_live(record):
            self.summary["busy"] += 1
            return
        step = record.next_step
        if step == Step.ARCHIVE:
            return self._archive(record)
        if step == Step.APPLY:
            return self._apply(record)
        if step != Step.CREATE:
            self.summary["unchanged"] += 1
            return
        if record.base_entry is not None:
            invoice = InvoiceRecord.objects.filter(connection=self.connection, doc_entry=record.base_entry).first()
            if invoice is not None and not invoice.bill_id and invoice.status == InvoiceRecord.Status.SKIPPED:
                self._set(record, Status.SKIPPED, Step.NONE, f"based on SAP invoice {invoice.doc_num}, which was never "
                          f"billed ({invoice.last_error or 'skipped'}): nothing to credit in BILL")
                self.summary["skipped"] += 1
                return
        body, problems = code_credit_memo(record.document, book)
        if problems:
            self.summary["held"] += 1
            if self.dry_run:
                self.out(f"  would hold SAP credit memo {record.doc_num} ({record.card_code}): {'; '.join(problems)}")
            return self._set(record, Status.HELD, Step.CREATE, "; ".join(problems))
        record.coded = body
        if self.dry_run:
            self.out(f"  would create vendor credit for SAP credit memo {record.doc_num} ({record.card_code}, "
                     f"reference {body['referenceNumber']}, total {credit_total(body)})"
                     + (f", applied to the bill of SAP invoice DocEntry {record.base_entry}" if record.base_entry else ""))
            self.summary["created"] += 1
            return
        self._create(record)

    # --- create ---------------------------------------------------------------------------------------------
    def _claim(self, record):
        from connector import leases

        now = timezone.now()
        claimable = Q(status__in=[Status.PENDING, Status.HELD, Status.FAILED, Status.FLAGGED])
        if record.status == Status.CREATING and record.claimed_by and not leases.alive({record.claimed_by}):
            claimable |= Q(status=Status.CREATING, claimed_by=record.claimed_by)
        again = record.create_attempted_at is not None
        qs = CreditMemoRecord.objects.filter(claimable, pk=record.pk)
        if not again:
            qs = qs.filter(create_attempted_at__isnull=True)
        if not qs.update(status=Status.CREATING, create_attempted_at=now, attempts=F("attempts") + 1,
                         claimed_by=self.lease.token, coded=record.coded):
            self.summary["busy"] += 1
            return None
        record.status, record.claimed_by, record.attempts = Status.CREATING, self.lease.token, record.attempts + 1
        record.create_attempted_at = now
        return again

    def _claim_is_live(self, record):
        from connector import leases

        return bool(record.claimed_by) and (record.claimed_by == self.lease.token or bool(leases.alive({record.claimed_by})))

    def _create(self, record):
        self.index.ensure()
        found = self.index.by_marker.get(record.doc_entry)
        if found:
            return self._adopt(record, found)
        foreign = self.index.foreign.get((record.coded["vendorId"], record.coded["referenceNumber"]))
        if foreign:
            self.summary["flagged"] += 1
            return self._set(record, Status.FLAGGED, Step.CREATE, (
                f"BILL already has vendor credit {foreign.get('id')} with reference {record.coded['referenceNumber']} "
                "for this vendor, not made by ml-connector (entered by hand?). Archive one of them in BILL, then "
                "replay this credit memo."))
        again = self._claim(record)
        if again is None:
            return
        if again:  # attempted before (lost answer, killed run): BILL may have it although our index predates it
            self.index.ensure(refresh=True)
            found = self.index.by_marker.get(record.doc_entry)
            if found:
                return self._adopt(record, found)
        try:
            with trail.about(record):
                created = self.bill.post("/v3/vendor-credits", record.coded)
        except ResponseLost as exc:
            return self._recover_lost(record, exc)
        except BillError as exc:
            return self._fail(record, f"BILL refused the vendor credit: {exc}")
        except RemoteError as exc:
            return self._fail(record, f"could not reach BILL: {exc}")
        if not (created or {}).get("id"):
            return self._recover_lost(record, None)
        self.summary["created"] += 1
        self._made(record, created, f"Created BILL vendor credit {created['id']}")

    def _recover_lost(self, record, exc):
        try:
            self.index.ensure(refresh=True)
        except RemoteError as lookup:
            return self._fail(record, f"BILL did not answer the create and the look-up failed ({lookup}); the next run "
                                      "looks again before sending")
        found = self.index.by_marker.get(record.doc_entry)
        if found:
            return self._adopt(record, found)
        self._fail(record, f"BILL did not answer the create ({exc or 'no credit in the answer'}) and has no such "
                           "vendor credit; it is sent again on the next run")

    def _adopt(self, record, credit):
        self.summary["adopted"] += 1
        self._made(record, credit, f"Found BILL vendor credit {credit['id']} made by an earlier attempt; not created again")

    def _made(self, record, credit, outcome):
        record.credit_id = credit["id"]
        record.synced_at = timezone.now()
        if record.base_entry is not None:
            self._set(record, Status.PENDING, Step.APPLY, "", outcome)
            return self._apply(record)
        self.summary["available"] += 1
        self._set(record, Status.SYNCED, Step.NONE, "", f"{outcome}; available in BILL for the vendor's next payment")

    # --- apply to the bill of its invoice --------------------------------------------------------------------
    def _apply(self, record):
        invoice = InvoiceRecord.objects.filter(connection=self.connection, doc_entry=record.base_entry).first()
        if invoice is None or not invoice.bill_id:
            if invoice is not None and invoice.status in (InvoiceRecord.Status.SKIPPED, InvoiceRecord.Status.ARCHIVED):
                self.summary["available"] += 1
                return self._set(record, Status.SYNCED, Step.NONE, "", "Its SAP invoice has no open BILL bill: the "
                                 "credit stays available in BILL")
            self.summary["waiting"] += 1
            words = f"SAP invoice {invoice.doc_num}" if invoice else f"SAP invoice DocEntry {record.base_entry}"
            return self._set(record, Status.PENDING, Step.APPLY, f"waiting for the BILL bill of {words}; the credit "
                             "is applied to it when it exists")
        if self.dry_run:
            self.out(f"  would apply vendor credit {record.credit_id} to BILL bill {invoice.bill_id}")
            return
        try:
            with trail.about(record):
                current = self.bill.get(f"/v3/bills/{invoice.bill_id}")
        except BillNotFound:
            self.summary["available"] += 1
            return self._set(record, Status.SYNCED, Step.NONE, "", f"BILL bill {invoice.bill_id} is gone: the credit "
                             "stays available in BILL")
        credits = [{"id": vc["id"], "amount": vc["amount"]} for vc in current.get("vendorCredits") or []]
        if any(vc["id"] == record.credit_id for vc in credits):
            return self._applied(record, invoice.bill_id, next(vc for vc in credits if vc["id"] == record.credit_id))
        if current.get("archived") or not _editable(current):
            self.summary["available"] += 1
            state = "archived" if current.get("archived") else (current.get("paymentStatus") or "in payment").lower()
            return self._set(record, Status.SYNCED, Step.NONE, "", f"BILL bill {invoice.bill_id} is {state}: the "
                             "credit stays available in BILL for the vendor's next payment")
        due = money(current.get("dueAmount", current.get("amount")))
        amount = min(record.doc_total, due)
        if amount <= 0:
            self.summary["available"] += 1
            return self._set(record, Status.SYNCED, Step.NONE, "", "nothing is due on the bill: the credit stays "
                             "available in BILL")
        body = {"vendorCredits": credits + [{"id": record.credit_id, "amount": float(amount)}]}
        try:
            with trail.about(record):
                self.bill.patch(f"/v3/bills/{invoice.bill_id}", body)
        except ResponseLost:
            try:
                current = self.bill.get(f"/v3/bills/{invoice.bill_id}")
            except RemoteError as exc:
                return self._fail(record, f"BILL did not answer applying the credit and the bill could not be read: {exc}")
            mine = [vc for vc in current.get("vendorCredits") or [] if vc["id"] == record.credit_id]
            if not mine:
                return self._fail(record, "BILL did not answer applying the credit and has not applied it; the next "
                                          "run tries again")
            return self._applied(record, invoice.bill_id, mine[0])
        except BillError as exc:
            return self._fail(record, f"BILL refused to apply vendor credit {record.credit_id} to bill "
                                      f"{invoice.bill_id}: {exc}")
        self._applied(record, invoice.bill_id, {"amount": amount})

    def _applied(self, record, bill_id, entry):
        record.applied_bill_id, record.applied_amount = bill_id, money(entry.get("amount"))
        self.summary["applied"] += 1
        self._set(record, Status.SYNCED, Step.NONE, "",
                  f"Applied vendor credit {record.credit_id} ({record.applied_amount}) to BILL bill {bill_id}: BILL "
                  "pays only what is owed")

    # --- cancelled in SAP ------------------------------------------------------------------------------------
    def _archive(self, record):
        if not record.credit_id:
            self.index.ensure(refresh=True)
            found = self.index.by_marker.get(record.doc_entry)
            if not found:
                self.summary["skipped"] += 1
                return self._set(record, Status.SKIPPED, Step.NONE, "cancelled in SAP before a vendor credit was created")
            record.credit_id = found["id"]
        if self.dry_run:
            self.out(f"  would archive BILL vendor credit {record.credit_id} (SAP credit memo {record.doc_num} cancelled)")
            return
        with trail.about(record):
            credit = self.bill.get(f"/v3/vendor-credits/{record.credit_id}")
        if credit.get("archived"):
            self.summary["archived"] += 1
            return self._set(record, Status.ARCHIVED, Step.NONE, "", "BILL vendor credit was archived already")
        if record.applied_bill_id and money(credit.get("appliedAmount")):
            self._take_off(record)
            with trail.about(record):
                credit = self.bill.get(f"/v3/vendor-credits/{record.credit_id}")
        if money(credit.get("appliedAmount")) or any(u.get("paymentId") for u in credit.get("usage") or []):
            self.summary["flagged"] += 1
            used = ", ".join(f"bill {u.get('billId')}" + (f" payment {u['paymentId']}" if u.get("paymentId") else "")
                             for u in credit.get("usage") or [])
            return self._set(record, Status.FLAGGED, Step.ARCHIVE, (
                f"cancelled in SAP, but BILL vendor credit {record.credit_id} is already applied "
                f"({money(credit.get('appliedAmount'))}: {used or 'see BILL'}); an archived credit cannot be restored, "
                "so it was left alone: settle the difference with the vendor in BILL"))
        with trail.about(record):
            self.bill.post(f"/v3/vendor-credits/{record.credit_id}/archive")
        self.summary["archived"] += 1
        self._set(record, Status.ARCHIVED, Step.NONE, "", f"Archived BILL vendor credit {record.credit_id}: credit memo "
                                                          "cancelled in SAP")

    def _take_off(self, record):
        """Take our credit off the unpaid bill we applied it to (before archiving it)."""
        try:
            bill_obj = self.bill.get(f"/v3/bills/{record.applied_bill_id}")
        except BillNotFound:
            return
        if not _editable(bill_obj):
            return
        rest = [{"id": vc["id"], "amount": vc["amount"]} for vc in bill_obj.get("vendorCredits") or []
                if vc["id"] != record.credit_id]
        with trail.about(record):
            self.bill.patch(f"/v3/bills/{record.applied_bill_id}", {"vendorCredits": rest})
        record.applied_amount = Decimal(0)
        trail.log(record, AuditEvent.Kind.OUTCOME, f"Took vendor credit {record.credit_id} off BILL bill "
                                                   f"{record.applied_bill_id} (credit memo cancelled in SAP)")

    # --- bookkeeping ----------------------------------------------------------------------------------------
    def _fail(self, record, message):
        self.summary["failed"] += 1
        self._set(record, Status.FAILED, record.next_step, message)

    def _set(self, record, status, step, error, outcome=None):
        before = {"status": record.status, "last_error": record.last_error, "credit_id": record.credit_id}
        record.status, record.next_step, record.last_error = status, step, error
        if status != Status.CREATING:
            record.claimed_by = ""
        if self.dry_run:
            return
        record.save(update_fields=["status", "next_step", "last_error", "credit_id", "applied_bill_id",
                                   "applied_amount", "coded", "claimed_by", "synced_at", "updated_at"])
        after = {"status": record.status, "last_error": record.last_error, "credit_id": record.credit_id}
        trail.log_change(record, f"Credit memo {record.doc_num}: {record.get_status_display()}", before, after)
        if outcome:
            trail.log(record, AuditEvent.Kind.OUTCOME, outcome)


def _amounts(doc):
    return (str(money((doc or {}).get("DocTotal"))), [(ln.get("AccountCode"), str(ln.get("LineTotal")))
                                                      for ln in (doc or {}).get("DocumentLines") or []])
