"""BILL payments → SAP outgoing payments (`sync NAME --step payments`, and webhook processing).

A webhook is only a hint that a payment changed; the truth is read from BILL (`GET /v3/payments/{id}`:
`billPayments` say how much went to which bill). Each paid BILL payment becomes exactly one SAP
`VendorPayments` document applying those amounts to the matching purchase invoices; in a company with branches
it carries the invoices' branch as `BPLID` (the key is left out without branches), and a BILL payment over
invoices of two branches becomes one SAP payment per branch (SAP payments never mix branches), each with the
same TransferReference and found again by it plus its BPLID. Before posting, SAP
is searched for a payment carrying the BILL payment id (TransferReference), so a lost answer, a retried
task, a duplicate webhook or a replay never posts twice. Polling payments updated since a cursor means a
missed or disabled webhook loses nothing.
"""

import contextlib
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit import trail
from audit.models import AuditEvent
from connector.clients.errors import BillError, BillNotFound, RemoteError, ResponseLost, SapError
from connector.clients.sap import odata_quote
from connector.models import InvoiceRecord, PaymentRecord, SyncCursor, WebhookEvent

from . import SyncStep
from .coding import money, parse_day

Status = PaymentRecord.Status
STREAM = "bill-payments"
OVERLAP = timedelta(minutes=5)
PAID_STATUSES = {"PAID"}
PAID_SINGLE = {"PROCESSED", "SENT", "DELIVERED", "CLEARED"}
PARTIAL_SINGLE = {"PARTIALLY_CLAIMED"}  # a virtual card claimed for less than the payment
UNDONE_STATUSES = {"VOID", "VOIDED", "CANCELLED", "CANCELED", "FAILED"}
UNDONE_SINGLE = {"VOIDED", "CANCELED", "FUNDING_FAILED_VOIDED", "DISBURSEMENT_FAILED_VENDOR_BANK_REJECTED",
                 "FUNDS_ESCHEATED"}
# "Not paid after all, maybe": the money did not (or may not) reach the vendor, and BILL has not settled it yet.
# A cleared ACH payment the vendor's bank rejects later moves to DISBURSEMENT_FAILED_ACTION_NEEDED.
REVERTING_SINGLE = {"DISBURSEMENT_FAILED_ACTION_NEEDED", "FUNDING_FAILED_ACTION_NEEDED", "VOID_PENDING",
                    "CANCELLATION_IN_PROGRESS", "DISBURSEMENT_ON_HOLD"}
MAX_AUTO_ATTEMPTS = 5
REVERT_FLAG = "BILL reports the payment as"
HANDLE_WAIT = 20.0  # seconds a handler waits for another one handling the same payment before leaving it a note


def payment_state(payment):
    """'paid', 'partial' (a card claimed for less), 'reverting' (failed/void pending: not paid after all, maybe),
    'undone' (void/cancelled/failed) or 'waiting' (scheduled, approving, in flight).

    `status` and `singleStatus` may disagree (a PAID payment whose ACH was rejected later): the worse one wins,
    and an unknown value never counts as paid."""
    status = (payment.get("status") or "").upper()
    single = (payment.get("singleStatus") or "").upper()
    # Webhooks carry single-status values in `status`; accept either vocabulary in either field.
    states = {status, single}
    if states & (UNDONE_STATUSES | UNDONE_SINGLE):
        return "undone"
    if states & REVERTING_SINGLE or payment.get("cancelRequestSubmitted") is True:
        return "reverting"
    if states & PARTIAL_SINGLE:
        return "partial"
    if states & (PAID_STATUSES | PAID_SINGLE) and not (single and single not in PAID_SINGLE | {"UNDEFINED"}):
        return "paid"
    return "waiting"


def claimed_amount(payment):
    """What a partially claimed card payment really paid, where BILL says it (the field is not documented:
    the readings seen are tried in turn). None when BILL does not say."""
    candidates = [payment.get("claimedAmount"), (payment.get("disbursementInfo") or {}).get("claimedAmount"),
                  (payment.get("disbursementInfo") or {}).get("amount")]
    for value in candidates:
        if value not in (None, ""):
            return money(value)
    return None


class PaymentSync(SyncStep):
    summary_keys = ("events", "checked", "posted", "adopted", "waiting", "not_paid", "reversed", "failed", "flagged",
                    "unchanged", "busy")

    # --- entry points ------------------------------------------------------------------------------------
    def run(self, force_poll=False):
        """Process stored webhook events, then poll BILL for payments changed since the cursor (when due)."""
        ids = self.ids_from_events()
        due = "asked for" if force_poll else self.poll_due()
        if due:
            ids.update(self.ids_from_poll())
        else:
            self.out("  payments poll not due (webhooks arrive and the last poll found nothing)")
        ids.update(PaymentRecord.objects.filter(
            connection=self.connection, status__in=[Status.PENDING, Status.POSTING, Status.WAITING]
        ).values_list("bill_payment_id", flat=True))
        ids.update(PaymentRecord.objects.filter(
            connection=self.connection, status=Status.FAILED, attempts__lt=MAX_AUTO_ATTEMPTS
        ).values_list("bill_payment_id", flat=True))
        # Posted to SAP but flagged (voided or failing in BILL since): watched until BILL settles it or the SAP
        # payment is cancelled; and payments another handler saw news of while this one was busy.
        ids.update(PaymentRecord.objects.filter(connection=self.connection, status=Status.FLAGGED,
                                                sap_doc_entry__isnull=False).values_list("bill_payment_id", flat=True))
        ids.update(PaymentRecord.objects.filter(connection=self.connection, recheck_at__isnull=False)
                   .values_list("bill_payment_id", flat=True))
        for payment_id in sorted(ids):
            self.handle(payment_id)
        return self.summary

    def ids_from_events(self, only=None):
        events = WebhookEvent.objects.filter(connection=self.connection, status=WebhookEvent.Status.PENDING)
        if only is not None:
            events = events.filter(pk__in=only)
        ids = set()
        for event in events.order_by("received_at"):
            found = self._payment_ids_of(event)
            ids.update(found)
            self.summary["events"] += 1
            if not self.dry_run:
                relevant = event.event_type.startswith(("payment.", "bill."))
                with transaction.atomic():
                    # The payment is in our ledger (pending) before the event counts as processed: a crash
                    # between here and posting leaves a pending record the next run picks up.
                    self._remember(found)
                    WebhookEvent.objects.filter(pk=event.pk).update(
                        status=WebhookEvent.Status.PROCESSED if relevant else WebhookEvent.Status.IGNORED,
                        processed_at=timezone.now(), attempts=event.attempts + 1,
                    )
        return ids

    def _remember(self, payment_ids):
        """Make sure each payment has a ledger row (pending until handled)."""
        known = set(PaymentRecord.objects.filter(connection=self.connection, bill_payment_id__in=payment_ids)
                    .values_list("bill_payment_id", flat=True))
        PaymentRecord.objects.bulk_create(
            [PaymentRecord(connection=self.connection, bill_payment_id=pid) for pid in sorted(set(payment_ids) - known)],
            ignore_conflicts=True,
        )

    def _payment_ids_of(self, event):
        payload = event.payload or {}
        if event.event_type.startswith("payment."):
            payment = payload.get("payment") or {}
            return {payment["id"]} if payment.get("id") else set()
        if event.event_type.startswith("bill."):
            # A bill changed (maybe paid): its payments show up in the poll; refresh what we know of the bill.
            bill_obj = payload.get("bill") or {}
            if bill_obj.get("id") and bill_obj.get("paymentStatus") and not self.dry_run:
                InvoiceRecord.objects.filter(connection=self.connection, bill_id=bill_obj["id"]).update(
                    bill_payment_status=bill_obj["paymentStatus"])
        return set()

    def ids_from_poll(self):
        cursor = SyncCursor.objects.filter(connection=self.connection, stream=STREAM).first()
        since = (cursor.value or {}).get("updated") if cursor else None
        if since:
            start = datetime.fromisoformat(since) - OVERLAP
        else:
            start = datetime.combine(self.connection.sync_from, datetime.min.time(), tzinfo=UTC)
        start_text = start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        ids, newest = set(), since
        for payment in self._payments_since(start_text):
            ids.add(payment["id"])
            updated = payment.get("updatedTime")
            if updated and (newest is None or updated > newest):
                newest = updated
        if not self.dry_run:
            # The cursor moves only together with the ledger rows of what it covers (pending until handled).
            with transaction.atomic():
                self._remember(ids)
                value = {"updated": newest, "polled_at": timezone.now().isoformat(), "found": len(ids)}
                SyncCursor.objects.update_or_create(connection=self.connection, stream=STREAM,
                                                    defaults={"value": value})
        return ids

    def poll_due(self):
        """Why BILL should be polled in this cycle, or '' (the poll is the webhooks' safety net, not a heartbeat).

        Skipped only while all of these hold: a poll ran less than PAYMENTS_POLL_MINUTES ago and found nothing,
        webhooks have arrived since (so they work), and BILL's session was used recently (the poll also keeps the
        shared session warm: BILL drops it after 35 idle minutes, and a login costs more than a poll)."""
        from django.conf import settings

        from connector.models import RemoteSession

        cursor = SyncCursor.objects.filter(connection=self.connection, stream=STREAM).first()
        value = (cursor.value or {}) if cursor else {}
        polled = value.get("polled_at")
        if not polled:
            return "never polled"
        polled_at = datetime.fromisoformat(polled)
        now = timezone.now()
        if now - polled_at >= timedelta(minutes=settings.PAYMENTS_POLL_MINUTES):
            return "the safety-net interval has passed"
        if value.get("found"):
            return "the last poll found payments"
        if not WebhookEvent.objects.filter(connection=self.connection, received_at__gte=polled_at - timedelta(hours=24)
                                           ).exists():
            return "no webhook arrived lately"
        used = RemoteSession.objects.filter(connection=self.connection, system="bill").values_list(
            "last_used_at", flat=True).first()
        if used is None or now - used >= timedelta(minutes=25):
            return "keeping BILL's session warm"
        return ""

    def _payments_since(self, start_text):
        """Payments updated since `start_text`. BILL's filterable payment fields are only partly documented: if
        the filter (or the sort) is refused, read the list unfiltered and filter here."""
        attempts = [
            {"filters": [f'updatedTime:gte:"{start_text}"'], "sort": "updatedTime:asc"},
            {"filters": [f'updatedTime:gte:"{start_text}"']},
            {},
        ]
        for n, options in enumerate(attempts):
            try:
                rows = list(self.bill.iterate("/v3/payments", **options))
            except BillError as exc:
                if not exc.refused or n == len(attempts) - 1:  # 400, or 422 as BILL also refuses with
                    raise
                continue
            if not options:
                rows = [p for p in rows if (p.get("updatedTime") or "9999") >= start_text[:19]]
            return rows
        return []

    # --- one payment ---------------------------------------------------------------------------------------
    def handle(self, payment_id):
        """Read the payment from BILL and bring SAP in line with it, as the only handler of that payment.

        A webhook task and the scheduled cycle may handle the same payment at once: each takes the record's
        claim first (a compare-and-set on `claimed_by`, made under a lease that dies with its worker). The one
        that waits too long leaves a note (`recheck_at`) so that the holder, or the next run, reads BILL again:
        news that arrived meanwhile is never dropped."""
        self.summary["checked"] += 1
        record = PaymentRecord.objects.filter(connection=self.connection, bill_payment_id=payment_id).first()
        if record is None and not self.dry_run:
            try:
                with transaction.atomic():
                    record = PaymentRecord.objects.create(connection=self.connection, bill_payment_id=payment_id)
            except IntegrityError:  # another worker saw the same payment at the same moment
                record = PaymentRecord.objects.get(connection=self.connection, bill_payment_id=payment_id)
        if record is None:
            record = PaymentRecord(connection=self.connection, bill_payment_id=payment_id)
        if self.dry_run:
            self._handle(record)
            return
        if not self._take(record):
            PaymentRecord.objects.filter(pk=record.pk).update(recheck_at=timezone.now())
            self.summary["busy"] += 1
            return
        try:
            for _ in range(3):
                started = timezone.now()
                self._handle(record)
                again = PaymentRecord.objects.filter(pk=record.pk, recheck_at__gte=started).exists()
                PaymentRecord.objects.filter(pk=record.pk, recheck_at__lt=started).update(recheck_at=None)
                if not again:
                    break
                record.refresh_from_db()
        finally:
            PaymentRecord.objects.filter(pk=record.pk, claimed_by=self.lease.token).update(claimed_by="")

    def _take(self, record):
        """Claim the record for this handler (waiting a little for another live handler to finish)."""
        from connector import leases

        token = self.lease.token
        deadline = time.monotonic() + HANDLE_WAIT
        while True:
            current = PaymentRecord.objects.filter(pk=record.pk).values_list("claimed_by", flat=True).first()
            if current == token:
                break
            free = not current or not leases.alive({current})
            if free and PaymentRecord.objects.filter(pk=record.pk, claimed_by=current or "").update(claimed_by=token):
                break
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        record.refresh_from_db()
        return True

    def _handle(self, record):
        payment_id = record.bill_payment_id
        try:
            with self._about(record):
                payment = self.bill.get(f"/v3/payments/{payment_id}")
        except BillNotFound:
            self._set(record, Status.FLAGGED, f"BILL has no payment {payment_id} (deleted?); check in BILL")
            return
        except RemoteError as exc:
            self._fail(record, f"could not read the payment from BILL: {exc}")
            return
        record.vendor_id = payment.get("vendorId") or record.vendor_id
        record.amount = money(payment.get("amount"))
        record.process_date = parse_day(payment.get("processDate")) or record.process_date
        record.bill_status = "/".join(x for x in (payment.get("status"), payment.get("singleStatus")) if x)[:40]
        state = payment_state(payment)
        if state == "waiting":
            if record.sap_doc_entry and record.status in (Status.POSTED, Status.FLAGGED):
                self._save(record)  # posted; BILL shows an in-between state again: nothing to undo yet
            else:
                self._set(record, Status.WAITING, "")
            self.summary["waiting"] += 1
            return
        if state == "undone":
            self._undone(record)
            return
        if state == "reverting":
            self._reverting(record, payment)
            return
        if self._posted_in_sap(record):
            if record.status == Status.FLAGGED and record.last_error.startswith(REVERT_FLAG):
                self._set(record, Status.POSTED, "", f"BILL reports the payment as {record.bill_status} again: "
                                                     "the SAP payment stands")
            else:
                self.summary["unchanged"] += 1
                self._save(record)
            return
        if state == "partial":
            claimed = claimed_amount(payment)
            if claimed is None or len(payment.get("billPayments") or [1]) > 1:
                self._set(record, Status.FLAGGED, f"BILL payment {payment_id} is a virtual card claimed for less than "
                                                  f"{record.amount} and BILL does not say how much per bill: post what "
                                                  "was claimed in SAP by hand")
                self.summary["flagged"] += 1
                return
            payment = {**payment, "amount": str(claimed), "billPayments": [
                {**(payment.get("billPayments") or [{"billId": payment.get("billId")}])[0], "amount": str(claimed)}]}
        self._post(record, payment)

    @staticmethod
    def _posted_in_sap(record):
        """An SAP outgoing payment of ours stands for this BILL payment (posted, maybe flagged since)."""
        return bool(record.sap_doc_entry) and record.status in (Status.POSTED, Status.FLAGGED)

    def _allocations(self, record, payment):
        """[{bill_id, doc_entry, amount}] or raise ValueError naming what does not match."""
        parts = payment.get("billPayments") or []
        if not parts and payment.get("billId"):
            parts = [{"billId": payment["billId"], "amount": payment.get("amount")}]
        if not parts:
            raise ValueError(f"BILL payment {record.bill_payment_id} lists no bills")
        records = {r.bill_id: r for r in InvoiceRecord.objects.filter(
            connection=self.connection, bill_id__in=[p.get("billId") for p in parts])}
        allocations, card_codes = [], set()
        for part in parts:
            invoice = records.get(part.get("billId"))
            if invoice is None:
                raise ValueError(f"BILL payment {record.bill_payment_id} pays bill {part.get('billId')}, which was not "
                                 "created from an SAP invoice by ml-connector: post it in SAP by hand")
            card_codes.add(invoice.card_code)
            allocations.append({"bill_id": invoice.bill_id, "doc_entry": invoice.doc_entry, "doc_num": invoice.doc_num,
                                "amount": str(money(part.get("amount"))), "branch": self._branch_of(invoice)})
        if len(card_codes) != 1:
            raise ValueError(f"BILL payment {record.bill_payment_id} covers invoices of several SAP suppliers "
                             f"({', '.join(sorted(card_codes))}): post it in SAP by hand")
        record.card_code = card_codes.pop()
        from .credit_payments import with_credits  # vendor credits used by the payment (credit memos in SAP)

        return with_credits(self.connection, record.bill_payment_id, payment, parts, allocations, records)

    def _branch_of(self, invoice):
        """The SAP branch (BPLID) a payment of this invoice must carry; None when the company has no branches."""
        if (self.connection.sap_company or {}).get("branches_enabled") is False:
            return None
        return invoice.branch_id

    @staticmethod
    def branch_groups(allocations):
        """[(branch, allocations)]: one SAP payment per branch, never mixing branches (addendum §7)."""
        groups = {}
        for allocation in allocations:
            groups.setdefault(allocation.get("branch"), []).append(allocation)
        return sorted(groups.items(), key=lambda item: (item[0] is None, item[0] or 0))

    def sap_payment_body(self, record, allocations=None, branch=None):
        """One SAP outgoing payment for `allocations` (default: all of the record's), of one branch. Each carries the
        BILL payment id in TransferReference; with branches, `BPLID` tells the parts apart (the key is left out
        entirely without branches: SAP refuses an empty one)."""
        from .credit_payments import SIGNS, credit_lines, memo_total

        allocations = record.allocations if allocations is None else allocations
        # the money that left: invoices less the credit memos applied with them (credit_payments.py)
        total = sum((Decimal(a["amount"]) for a in allocations), Decimal(0)) - memo_total(allocations)
        day = (record.process_date or timezone.localdate()).isoformat()
        body = {
            "CardCode": record.card_code,
            "DocType": "rSupplier",
            "DocDate": day,
            "TransferAccount": self.connection.sap_payment_account,
            "TransferDate": day,
            "TransferSum": float(total),
            "TransferReference": record.bill_payment_id,
            "Remarks": f"BILL payment {record.bill_payment_id} (ml-connector)",
            "JournalRemarks": f"BILL payment {record.bill_payment_id}"[:50],
            "PaymentInvoices": [
                {"LineNum": n, "DocEntry": a["doc_entry"], "InvoiceType": "it_PurchaseInvoice",
                 "SumApplied": float(Decimal(a["amount"]))}
                for n, a in enumerate(allocations)
            ] + credit_lines(allocations, len(allocations), getattr(self, "credit_sign", SIGNS[0])),
        }
        if branch is not None:
            body["BPLID"] = branch
        return body

    def find_sap_payment(self, payment_id, branch=None):
        """An uncancelled SAP outgoing payment we posted for this BILL payment (of that branch, when given), or None.
        A BILL payment over two branches is two SAP payments with the same TransferReference, told apart by BPLID."""
        condition = f"TransferReference eq {odata_quote(payment_id)} and Cancelled eq 'tNO'"
        if branch is not None:
            condition += f" and BPLID eq {int(branch)}"
        found = list(self.sap.iterate(
            "VendorPayments", filter=condition, select=["DocEntry", "DocNum", "TransferSum", "CardCode"],
        ))
        return found[0] if found else None

    def _find_payment(self, payment_id, branch):
        """find_sap_payment, with the branch only when there is one (the single-argument form stays the usual call)."""
        return self.find_sap_payment(payment_id) if branch is None else self.find_sap_payment(payment_id, branch)

    def _find_branch_payments(self, record):
        """{branch: SAP payment found} for the record's branch groups (missing branches absent)."""
        found = {}
        for branch, _ in self.branch_groups(record.allocations):
            existing = self._find_payment(record.bill_payment_id, branch)
            if existing:
                found[branch] = existing
        return found

    def _post(self, record, payment):
        try:
            record.allocations = self._allocations(record, payment)
        except ValueError as exc:
            self._set(record, Status.FLAGGED, str(exc))
            self.summary["flagged"] += 1
            return
        if not self.connection.sap_payment_account:
            self._set(record, Status.FLAGGED, "no SAP payment account is set for this connection "
                                              "(sap.payment_account): set it, then replay this payment")
            self.summary["flagged"] += 1
            return
        if self.dry_run:
            self.out(f"  would post SAP outgoing payment for BILL payment {record.bill_payment_id}: {record.card_code} "
                     + ", ".join(f"invoice {a['doc_num']} {a['amount']}" for a in record.allocations))
            self.summary["posted"] += 1
            return
        if not self._claim(record):
            return
        groups = self.branch_groups(record.allocations)
        if len(groups) > 1:
            self._post_per_branch(record, groups)
            return
        branch = groups[0][0]
        try:
            with self._about(record):
                existing = self._find_payment(record.bill_payment_id, branch)
                if existing:
                    self._posted(record, existing, "Found the SAP payment posted by an earlier attempt; not posted again")
                    self.summary["adopted"] += 1
                    return
                created = self._post_with_credit_sign(record, branch)
        except ResponseLost:
            self._recover_lost(record)
            return
        except SapError as exc:
            self._fail(record, f"SAP refused the outgoing payment: {exc}")
            return
        except RemoteError as exc:
            self._fail(record, f"could not reach SAP: {exc}")
            return
        self._posted(record, created or {}, f"Posted SAP outgoing payment {(created or {}).get('DocNum')}")
        self.summary["posted"] += 1

    def _post_with_credit_sign(self, record, branch):
        """Post; when SAP refuses the credit-memo lines' sign (unconfirmed which one it wants), the other one once.
        A refused post changed nothing in SAP, so the second is still the first payment."""
        from .credit_payments import SIGNS, sign_refused

        try:
            return self.sap.post("VendorPayments", self.sap_payment_body(record, branch=branch))
        except SapError as exc:
            if not any(a.get("credit_memos") for a in record.allocations) or not sign_refused(exc):
                raise
            self.credit_sign = SIGNS[1] if getattr(self, "credit_sign", SIGNS[0]) == SIGNS[0] else SIGNS[0]
            return self.sap.post("VendorPayments", self.sap_payment_body(record, branch=branch))

    def _post_per_branch(self, record, groups):
        """A BILL payment over invoices of several SAP branches: one SAP payment per branch, each carrying the BILL
        payment id (TransferReference) and its branch (BPLID), and each looked up by both before it is posted, so a
        retry after a partial failure or a lost answer posts only the missing ones."""
        docs, adopted = [], 0
        for branch, allocations in groups:
            try:
                with self._about(record):
                    existing = self._find_payment(record.bill_payment_id, branch)
                    if existing:
                        docs.append((branch, existing))
                        adopted += 1
                        continue
                    created = self.sap.post("VendorPayments", self.sap_payment_body(record, allocations, branch))
            except ResponseLost:
                self._recover_lost(record)
                return
            except SapError as exc:
                done = f" (already posted for branch {', '.join(str(b) for b, _ in docs)})" if docs else ""
                self._fail(record, f"SAP refused the outgoing payment for branch {branch}{done}: {exc}")
                return
            except RemoteError as exc:
                self._fail(record, f"could not reach SAP: {exc}")
                return
            docs.append((branch, created or {}))
        self._posted_branches(record, docs, "Posted SAP outgoing payments " + ", ".join(
            f"{doc.get('DocNum')} (branch {branch})" for branch, doc in docs))
        self.summary["adopted" if adopted == len(docs) else "posted"] += 1

    def _posted_branches(self, record, docs, outcome):
        """Several SAP payments (one per branch) stand for this BILL payment: each allocation names its own."""
        numbers = {branch: str(doc.get("DocNum") or "") for branch, doc in docs}
        for allocation in record.allocations:
            allocation["sap_doc_num"] = numbers.get(allocation.get("branch"), "")
        record.sap_doc_entry = docs[0][1].get("DocEntry") or record.sap_doc_entry
        record.sap_doc_num = "+".join(numbers[branch] for branch, _ in docs)[:30]
        self._set(record, Status.POSTED, "", outcome)

    def _claim(self, record):
        """Mark the post as under way (`posting`) before anything is sent: a worker killed after SAP accepted it
        leaves a `posting` record, and whoever handles it next searches SAP before posting again."""
        now = timezone.now()
        record.attempts += 1
        claimed = PaymentRecord.objects.filter(pk=record.pk, claimed_by=self.lease.token).exclude(
            status=Status.POSTED).update(status=Status.POSTING, post_attempted_at=now, attempts=record.attempts,
                                         allocations=record.allocations, card_code=record.card_code,
                                         amount=record.amount, process_date=record.process_date,
                                         bill_status=record.bill_status, vendor_id=record.vendor_id)
        if claimed:
            record.status, record.post_attempted_at = Status.POSTING, now
        return bool(claimed)

    def _recover_lost(self, record):
        groups = self.branch_groups(record.allocations or [])
        if len(groups) > 1:
            try:
                found = self._find_branch_payments(record)
            except RemoteError as exc:
                self._fail(record, f"SAP did not answer the payment post and the look-up failed ({exc}); the next run "
                                   "looks again before posting")
                return
            if len(found) == len(groups):
                self._posted_branches(record, list(found.items()), "SAP's answer was lost; found the payments it posted")
                self.summary["adopted"] += 1
            else:
                self._fail(record, "SAP did not answer a payment post; the branches without an SAP payment yet are "
                                   "posted on the next run")
            return
        try:
            existing = self._find_payment(record.bill_payment_id, groups[0][0] if groups else None)
        except RemoteError as exc:
            self._fail(record, f"SAP did not answer the payment post and the look-up failed ({exc}); the next run "
                               "looks again before posting")
            return
        if existing:
            self._posted(record, existing, "SAP's answer was lost; found the payment it posted")
            self.summary["adopted"] += 1
        else:
            self._fail(record, "SAP did not answer the payment post and has no such payment; it is posted on the next run")

    def _undone(self, record):
        """BILL voided, cancelled or failed the payment. Nothing posted: not paid. Posted: the SAP payment is
        cancelled (when the connection allows it) or the record is flagged, and stays flagged until the SAP
        payment is cancelled (by us, or by a person in SAP: seen on the next handling)."""
        if record.status == Status.REVERSED:
            self.summary["unchanged"] += 1
            self._save(record)
            return
        if not record.sap_doc_entry and record.status in (Status.POSTING, Status.FAILED, Status.FLAGGED) \
                and not self.dry_run:
            # We may have posted it already without knowing: make sure before declaring "nothing posted".
            try:
                existing = self.find_sap_payment(record.bill_payment_id)
            except RemoteError as exc:
                self._fail(record, f"BILL voided the payment; could not check SAP for a posted one: {exc}")
                return
            if existing:
                self._posted(record, existing, "Found an SAP payment for a payment BILL then voided")
        if not record.sap_doc_entry:
            self._set(record, Status.NOT_PAID, "")
            self.summary["not_paid"] += 1
            return
        if "+" in record.sap_doc_num:
            # One SAP payment per branch: cancelling them is left to a person (never only some of them by us).
            self._flag_void(record)
            return
        cancelled = self._sap_payment_cancelled(record)
        if cancelled is None:
            return
        if cancelled:
            self._set(record, Status.REVERSED, "", f"SAP outgoing payment {record.sap_doc_num} is cancelled in SAP")
            self.summary["reversed"] += 1
            return
        if not self.connection.cancel_sap_payment_on_void:
            self._flag_void(record)
            return
        if self.dry_run:
            self.out(f"  would cancel SAP outgoing payment {record.sap_doc_num}")
            return
        try:
            with self._about(record):
                self.sap.post(f"VendorPayments({record.sap_doc_entry})/Cancel")
        except ResponseLost:
            cancelled = self._sap_payment_cancelled(record)
            if not cancelled:
                if cancelled is False:
                    self._fail(record, f"SAP did not answer the cancellation of outgoing payment {record.sap_doc_num} "
                                       "and has not cancelled it; the next run tries again")
                return
        except RemoteError as exc:
            self._fail(record, f"BILL voided the payment, but SAP refused to cancel outgoing payment "
                               f"{record.sap_doc_num}: {exc}. Cancel it in SAP by hand.")
            return
        self._set(record, Status.REVERSED, "", f"Cancelled SAP outgoing payment {record.sap_doc_num}: "
                                               f"BILL {record.bill_status.lower() or 'voided'} the payment")
        self.summary["reversed"] += 1

    def _flag_void(self, record):
        message = (f"BILL voided/cancelled payment {record.bill_payment_id} ({record.bill_status}) after it was posted "
                   f"to SAP as outgoing payment {record.sap_doc_num}: cancel that SAP payment (or allow ml-connector "
                   "to do it on the connection, then replay this payment)")
        self._set(record, Status.FLAGGED, message)  # the same flag again: saved, no new timeline entry
        self.summary["flagged"] += 1

    def _reverting(self, record, payment):
        """BILL says the payment failed or is being voided/cancelled, not settled yet: never post it; if it was
        posted, flag it (re-checked every run until BILL settles it either way)."""
        if not self._posted_in_sap(record):
            if record.status == Status.POSTING and not self.dry_run:
                try:
                    existing = self.find_sap_payment(record.bill_payment_id)
                except RemoteError as exc:
                    self._fail(record, f"could not check SAP for a payment posted before BILL reported "
                                       f"{record.bill_status}: {exc}")
                    return
                if existing:
                    self._posted(record, existing, "Found the SAP payment an earlier attempt posted")
                    return self._reverting(record, payment)
            self._set(record, Status.WAITING, f"BILL reports {record.bill_status}: not paid (yet); nothing posted to SAP")
            self.summary["waiting"] += 1
            return
        message = (f"{REVERT_FLAG} {record.bill_status} after it was posted to SAP as outgoing payment "
                   f"{record.sap_doc_num}: the vendor may not have been paid. Resolve it in BILL; if BILL voids it, "
                   "cancel the SAP payment (ml-connector does it when the connection allows)")
        self._set(record, Status.FLAGGED, message)  # the same flag again: saved, no new timeline entry
        self.summary["flagged"] += 1

    def _sap_payment_cancelled(self, record):
        """True / False for the SAP outgoing payment we posted; None (record failed) when SAP cannot be read."""
        if self.dry_run:
            return False
        try:
            with self._about(record):
                doc = self.sap.get(f"VendorPayments({record.sap_doc_entry})", params={"$select": "DocEntry,Cancelled"})
        except SapError as exc:
            if exc.status == 404:
                return True  # gone from SAP: nothing stands
            self._fail(record, f"could not read SAP outgoing payment {record.sap_doc_num}: {exc}")
            return None
        except RemoteError as exc:
            self._fail(record, f"could not read SAP outgoing payment {record.sap_doc_num}: {exc}")
            return None
        return (doc or {}).get("Cancelled") in ("tYES", "Y", True)

    # --- bookkeeping -----------------------------------------------------------------------------------------
    def _about(self, record):
        return trail.about(record, connection_id=self.connection.pk) if record.pk else contextlib.nullcontext()

    def _posted(self, record, sap_doc, outcome):
        record.sap_doc_entry = sap_doc.get("DocEntry") or record.sap_doc_entry
        record.sap_doc_num = str(sap_doc.get("DocNum") or record.sap_doc_num)
        self._set(record, Status.POSTED, "", outcome)

    def _fail(self, record, message):
        self.summary["failed"] += 1
        self._set(record, Status.FAILED, message)

    def _set(self, record, status, error, outcome=None):
        before = {"status": record.status, "last_error": record.last_error, "sap_doc_num": record.sap_doc_num}
        record.status, record.last_error = status, error
        if self.dry_run:
            return
        self._save(record)
        after = {"status": record.status, "last_error": record.last_error, "sap_doc_num": record.sap_doc_num}
        trail.log_change(record, f"Payment {record.bill_payment_id}: {record.get_status_display()}", before, after)
        if outcome:
            trail.log(record, AuditEvent.Kind.OUTCOME, outcome)

    def _save(self, record):
        """Write what this handler decided; never the claim or a recheck note another handler may have left."""
        if self.dry_run:
            return
        if record.pk is None:
            record.save()
            return
        record.save(update_fields=[f.name for f in PaymentRecord._meta.concrete_fields
                                   if f.name not in ("id", "claimed_by", "recheck_at", "created_at")])


