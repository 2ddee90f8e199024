"""Compare a Snapshot of both sides with our ledger, to the cent. Pure: no requests, no writes.

Each difference says what to do in plain words. One that the next sync is expected to fix by itself (the SAP
invoice changed after our last read, a payment not handled yet) is marked `expected_to_clear`: it is shown,
but raises no alert. Vendor open totals are compared over the invoices no other difference explains, so a
deleted bill is one difference, not also a vendor total.
"""

import re
from dataclasses import dataclass, field
from decimal import Decimal

from connector.models import InvoiceRecord, PaymentRecord
from connector.sync.bills import sap_state, stamp_of
from connector.sync.coding import money
from connector.sync.payments import MAX_AUTO_ATTEMPTS, payment_state

from .models import Difference

Kind = Difference.Kind
ZERO = Decimal("0.00")
# BILL v3 payment ids: "stp" and 17 letters/digits (e.g. stp01VTFIWRGOUMAVl39).
BILL_PAYMENT_ID = re.compile(r"^stp[0-9A-Za-z]{8,40}$")
NOT_BILLED = {InvoiceRecord.Status.HELD, InvoiceRecord.Status.SKIPPED}
IN_FLIGHT = {InvoiceRecord.Status.PENDING, InvoiceRecord.Status.CREATING}


@dataclass
class Found:
    kind: str
    key: str
    action: str
    card_code: str = ""
    sap_ref: str = ""
    bill_ref: str = ""
    sap_amount: Decimal | None = None
    bill_amount: Decimal | None = None
    detail: str = ""
    invoice_id: int | None = None
    payment_id: int | None = None
    expected_to_clear: bool = False
    doc_entries: set = field(default_factory=set)


@dataclass
class Result:
    differences: list
    invoices: int
    bills: int
    payments: int
    held: int
    sap_open: Decimal
    bill_open: Decimal
    vendors: dict  # CardCode -> {"sap_open": str, "bill_open": str, "invoices": n}


def _doc_label(doc):
    return f"DocNum {doc.get('DocNum')} (DocEntry {doc.get('DocEntry')})"


def _day(value):
    return str(value)[:10] if value else ""


class Comparison:
    def __init__(self, connection, snap):
        self.connection = connection
        self.snap = snap
        self.found = []
        self.ledger = {r.doc_entry: r for r in InvoiceRecord.objects.filter(connection=connection).only(
            "id", "doc_entry", "doc_num", "card_code", "status", "next_step", "bill_id", "sap_updated", "attempts",
            "last_error", "doc_total", "due_date", "sap_state")}
        self.ledger_by_bill = {r.bill_id: r for r in self.ledger.values() if r.bill_id}
        self.payment_ledger = {p.bill_payment_id: p for p in PaymentRecord.objects.filter(connection=connection).only(
            "id", "bill_payment_id", "status", "attempts", "sap_doc_num", "last_error")}
        from mappings.models import VendorLink

        self.vendor_ids = dict(VendorLink.objects.filter(connection=connection).exclude(bill_vendor_id="")
                               .values_list("card_code", "bill_vendor_id"))

    def add(self, **kw):
        self.found.append(Found(**kw))

    def run(self):
        totals = {}
        held = 0
        for entry, doc in sorted(self.snap.invoices.items()):
            counted = self.invoice(entry, doc)
            if counted is None:
                held += 1
                continue
            sap_open, bill_open = counted
            vendor = totals.setdefault(doc.get("CardCode") or "", {"sap": ZERO, "bill": ZERO, "n": 0, "entries": []})
            vendor["sap"] += sap_open
            vendor["bill"] += bill_open
            vendor["n"] += 1
            vendor["entries"].append((entry, sap_open, bill_open))
        for entry, bills in sorted(self.snap.bills_by_entry.items()):
            if entry not in self.snap.invoices:
                self.orphans(entry, bills, "SAP has no purchase invoice with this DocEntry")
        self.payments()
        self.open_totals(totals)
        return Result(
            differences=self.found, invoices=len(self.snap.invoices), bills=len(self.snap.bills),
            payments=len(self.snap.payments), held=held,
            sap_open=sum((v["sap"] for v in totals.values()), ZERO),
            bill_open=sum((v["bill"] for v in totals.values()), ZERO),
            vendors={code: {"sap_open": str(v["sap"]), "bill_open": str(v["bill"]), "invoices": v["n"]}
                     for code, v in sorted(totals.items())},
        )

    # --- invoices ↔ bills ------------------------------------------------------------------------------
    def invoice(self, entry, doc):
        """Compare one SAP invoice with its bill(s). Returns (sap_open, bill_open), or None when not billed by design."""
        record = self.ledger.get(entry)
        state = sap_state(doc)
        bills = self.snap.bills_by_entry.get(entry, [])
        live = [b for b in bills if not b.get("archived")]
        if record is not None and record.bill_id:
            live.sort(key=lambda b: b.get("id") != record.bill_id)  # ours first
        card = doc.get("CardCode") or ""
        label = _doc_label(doc)
        common = {"card_code": card, "sap_ref": label, "invoice_id": record.pk if record else None,
                  "doc_entries": {entry}}
        sap_total = money(doc.get("DocTotal"))
        # SAP changed after our last read (a newer stamp, or values our ledger has not seen): the sync catches up.
        changed_since_read = record is not None and (
            stamp_of(doc) > (record.sap_updated or "") or sap_total != record.doc_total
            or _day(doc.get("DocDueDate")) != (record.due_date.isoformat() if record.due_date else ""))
        sap_open = max(sap_total - money(doc.get("PaidToDate")), ZERO) if state == "open" else ZERO

        if state == "cancelled":
            if live:
                # The sync archives the bill of a cancelled invoice, unless it has already seen the cancellation.
                seen = record is not None and record.sap_state == "cancelled" and record.next_step != InvoiceRecord.Step.ARCHIVE
                self.orphans(entry, live, f"SAP invoice {label} was cancelled", record=record, card=card,
                             expected=record is not None and not seen)
            return None if not bills else (ZERO, sum((money(b.get("dueAmount")) for b in live), ZERO))

        if not bills:
            if record is None:
                self.add(kind=Kind.MISSING_BILL, key=f"missing:{entry}", sap_amount=sap_total, **common,
                         detail="ml-connector has not read this invoice yet",
                         action="Run a sync. If the invoice stays without a bill, check the connection's invoice "
                                "filter and sync_from date.", expected_to_clear=True)
                return sap_open, ZERO
            if record.status in NOT_BILLED or (record.status == InvoiceRecord.Status.FLAGGED and not record.bill_id):
                return None  # held or skipped on purpose: listed under open problems, not a difference
            if record.bill_id:
                self.add(kind=Kind.MISSING_BILL, key=f"missing:{entry}", sap_amount=sap_total, bill_ref=record.bill_id,
                         **common, detail=f"bill {record.bill_id} is no longer in BILL",
                         action=f"The bill made for {label} was deleted in BILL. If the invoice is still to be paid "
                                "through BILL, replay the invoice to create it again; otherwise close it in SAP.")
                return sap_open, ZERO
            retrying = record.status in IN_FLIGHT or (
                record.status == InvoiceRecord.Status.FAILED and record.attempts < 5)
            self.add(kind=Kind.MISSING_BILL, key=f"missing:{entry}", sap_amount=sap_total, **common,
                     detail=f"our record is {record.get_status_display()}",
                     action=record.last_error or "Replay the invoice to create its bill.",
                     expected_to_clear=retrying)
            return sap_open, ZERO

        if not live:
            archived = bills[0]
            if state == "open":
                self.add(kind=Kind.ARCHIVED_BILL, key=f"archived:{entry}:{archived['id']}", sap_amount=sap_open,
                         bill_amount=ZERO, bill_ref=archived["id"], **common,
                         action=f"Bill {archived['id']} was archived in BILL while {label} is open in SAP: restore "
                                "the bill in BILL, or close or cancel the invoice in SAP.")
                return sap_open, ZERO
            return ZERO, ZERO

        bill_obj = live[0]
        bill_id = bill_obj["id"]
        if len(live) > 1:
            extra = [b["id"] for b in live[1:]]
            self.add(kind=Kind.DUPLICATE_BILL, key=f"duplicate:{entry}:{','.join(sorted(b['id'] for b in live))}",
                     sap_amount=sap_total, bill_amount=sum((money(b.get("amount")) for b in live), ZERO),
                     bill_ref=", ".join(b["id"] for b in live), **common,
                     detail=f"{len(live)} open bills carry the marker of {label}",
                     action=f"Keep bill {bill_id} and archive {', '.join(extra)} in BILL (if one was paid, keep "
                            "that one and check the payments).")
        pending_update = changed_since_read or (record is not None and record.next_step == InvoiceRecord.Step.UPDATE)
        bill_amount = money(bill_obj.get("amount"))
        if bill_amount != sap_total:
            self.add(kind=Kind.AMOUNT, key=f"amount:{entry}:{bill_id}", sap_amount=sap_total, bill_amount=bill_amount,
                     bill_ref=bill_id, **common, detail=f"SAP {sap_total} vs BILL {bill_amount}",
                     expected_to_clear=pending_update,
                     action="The SAP invoice changed after the last sync; the next sync updates the bill."
                     if pending_update else
                     f"The bill's amount was changed in BILL (SAP says {sap_total}). Correct the bill in BILL, or "
                     "replay the invoice to send SAP's version again.")
        sap_due, bill_due = _day(doc.get("DocDueDate")), _day(bill_obj.get("dueDate"))
        if sap_due and sap_due != bill_due:
            self.add(kind=Kind.DUE_DATE, key=f"due:{entry}:{bill_id}", bill_ref=bill_id, **common,
                     detail=f"SAP due {sap_due} vs BILL due {bill_due or '-'}", expected_to_clear=pending_update,
                     action="The next sync updates the bill's due date." if pending_update else
                     f"Set the bill's due date to {sap_due} in BILL, or change the invoice's due date in SAP.")
        expected_vendor = self.vendor_ids.get(card)
        if expected_vendor and bill_obj.get("vendorId") != expected_vendor:
            self.add(kind=Kind.VENDOR, key=f"vendor:{entry}:{bill_id}", bill_ref=bill_id, **common,
                     detail=f"bill vendor {bill_obj.get('vendorId')}, SAP supplier {card} is linked to {expected_vendor}",
                     action=f"Bill {bill_id} is on another BILL vendor than SAP supplier {card}'s: move it to vendor "
                            f"{expected_vendor} in BILL (or fix the vendor link) before it is paid.")
        # Closed in SAP (paid there, or closed by hand) but still payable in BILL shows in the vendor's open total.
        return sap_open, money(bill_obj.get("dueAmount"))

    def orphans(self, entry, bills, why, record=None, card="", expected=False):
        record = record or self.ledger.get(entry)
        for bill_obj in bills:
            if bill_obj.get("archived"):
                continue
            paid = money(bill_obj.get("amount")) - money(bill_obj.get("dueAmount"))
            self.add(kind=Kind.ORPHAN_BILL, key=f"orphan:{entry}:{bill_obj['id']}", card_code=card or (
                record.card_code if record else ""), sap_ref=f"DocEntry {entry}", bill_ref=bill_obj["id"],
                bill_amount=money(bill_obj.get("dueAmount")), invoice_id=record.pk if record else None,
                doc_entries={entry}, detail=why, expected_to_clear=expected,
                action=(f"{why}, but bill {bill_obj['id']} is still open in BILL: archive it in BILL"
                        + (f" (BILL already paid {paid} on it: recover that payment)" if paid > 0 else "") + "."))

    # --- BILL payments ↔ SAP outgoing payments -----------------------------------------------------------
    def payments(self):
        entry_of = {bill_id: b["doc_entry"] for bill_id, b in self.snap.bills.items()}
        for payment_id, payment in sorted(self.snap.payments.items()):
            state = payment_state(payment)
            record = self.payment_ledger.get(payment_id)
            posted = self.snap.sap_payments.get(payment_id, [])
            parts = payment.get("billPayments") or [{"billId": payment.get("billId"), "amount": payment.get("amount")}]
            ours = {}
            for part in parts:
                entry = entry_of.get(part.get("billId"))
                if entry is not None:
                    ours[entry] = ours.get(entry, ZERO) + money(part.get("amount"))
            card = posted[0].get("CardCode") if posted else self._card_of(ours)
            common = {"card_code": card or "", "bill_ref": payment_id, "payment_id": record.pk if record else None,
                      "doc_entries": set(ours)}
            total = money(payment.get("amount"))
            if state == "paid" and not posted:
                retrying = record is None or record.status in ("pending", "posting", "waiting") or (
                    record.status == "failed" and record.attempts < MAX_AUTO_ATTEMPTS)
                self.add(kind=Kind.PAID_NOT_POSTED, key=f"unposted:{payment_id}", bill_amount=total, **common,
                         detail=f"BILL status {payment.get('status')}/{payment.get('singleStatus') or '-'}",
                         expected_to_clear=retrying,
                         action=("The next payments sync posts it to SAP." if retrying else
                                 (record.last_error if record and record.last_error else
                                  "Replay the payment, or post it in SAP with TransferReference " + payment_id + ".")))
            elif state == "undone" and posted:
                sap = posted[0]
                self.add(kind=Kind.POSTED_NOT_PAID, key=f"voided:{payment_id}:{sap.get('DocEntry')}",
                         sap_ref=f"payment DocNum {sap.get('DocNum')} (DocEntry {sap.get('DocEntry')})",
                         sap_amount=money(sap.get("TransferSum")), bill_amount=ZERO,
                         **{k: v for k, v in common.items()},
                         detail=f"BILL status {payment.get('status')}/{payment.get('singleStatus') or '-'}",
                         expected_to_clear=bool(self.connection.cancel_sap_payment_on_void),
                         action=f"BILL payment {payment_id} was voided or failed after it was posted: cancel SAP "
                                f"outgoing payment {sap.get('DocNum')} (or let ml-connector do it: "
                                "cancel_payment_on_void).")
            elif state == "paid" and posted:
                if len(posted) > 1:
                    self.add(kind=Kind.PAYMENT_AMOUNT, key=f"twice:{payment_id}",
                             sap_ref=", ".join(f"payment DocNum {p.get('DocNum')}" for p in posted),
                             sap_amount=sum((money(p.get("TransferSum")) for p in posted), ZERO), bill_amount=total,
                             **common, detail=f"{len(posted)} SAP payments carry this BILL payment id",
                             action="Cancel all but one of these SAP outgoing payments.")
                applied = {}
                for line in posted[0].get("PaymentInvoices") or []:
                    if line.get("InvoiceType") in (None, "it_PurchaseInvoice", "18"):
                        entry = int(line.get("DocEntry"))
                        applied[entry] = applied.get(entry, ZERO) + money(line.get("SumApplied"))
                for entry in sorted(set(applied) | set(ours)):
                    sap_amount, bill_amount = applied.get(entry, ZERO), ours.get(entry, ZERO)
                    if sap_amount != bill_amount:
                        doc = self.snap.invoices.get(entry) or {}
                        self.add(kind=Kind.PAYMENT_AMOUNT, key=f"applied:{payment_id}:{entry}",
                                 sap_ref=f"payment DocNum {posted[0].get('DocNum')} → invoice "
                                         f"{doc.get('DocNum') or ''} (DocEntry {entry})",
                                 sap_amount=sap_amount, bill_amount=bill_amount,
                                 **{**common, "doc_entries": {entry}},
                                 detail=f"applied in SAP {sap_amount}, paid in BILL {bill_amount}",
                                 action=f"Correct SAP outgoing payment {posted[0].get('DocNum')} so invoice DocEntry "
                                        f"{entry} gets {bill_amount} (cancel it and replay the BILL payment).")
        known = set(self.snap.payments) | self.snap.other_payment_ids | set(self.payment_ledger)
        for ref, rows in sorted(self.snap.sap_payments.items()):
            if ref in known or not BILL_PAYMENT_ID.match(ref):
                continue
            for sap in rows:
                entries = {int(line["DocEntry"]) for line in sap.get("PaymentInvoices") or [] if line.get("DocEntry")}
                self.add(kind=Kind.UNKNOWN_PAYMENT, key=f"unknown:{ref}:{sap.get('DocEntry')}",
                         card_code=sap.get("CardCode") or "", sap_ref=f"payment DocNum {sap.get('DocNum')} "
                         f"(DocEntry {sap.get('DocEntry')})", bill_ref=ref, sap_amount=money(sap.get("TransferSum")),
                         doc_entries=entries & set(self.snap.invoices),
                         detail=f"TransferReference {ref} looks like a BILL payment id, but BILL and ml-connector "
                                "know no such payment",
                         action=f"Check SAP outgoing payment {sap.get('DocNum')}: it was not posted by ml-connector. "
                                "If it pays a BILL payment, correct its reference; if not, remove the reference.")

    def _card_of(self, ours):
        for entry in ours:
            doc = self.snap.invoices.get(entry)
            if doc:
                return doc.get("CardCode")
        return ""

    # --- totals ------------------------------------------------------------------------------------------
    def open_totals(self, totals):
        explained = set()
        for f in self.found:
            explained |= f.doc_entries
        for card, vendor in sorted(totals.items()):
            rest = [(e, s, b) for e, s, b in vendor["entries"] if e not in explained]
            sap_open = sum((s for _, s, _ in rest), ZERO)
            bill_open = sum((b for _, _, b in rest), ZERO)
            if sap_open == bill_open:
                continue
            unequal = [e for e, s, b in rest if s != b]
            self.add(kind=Kind.OPEN_TOTAL, key=f"open:{card}", card_code=card, sap_amount=sap_open,
                     bill_amount=bill_open, sap_ref=f"supplier {card}",
                     detail="invoices where the open amounts differ: DocEntry " + ", ".join(map(str, unequal[:20])),
                     action=f"Open amounts of {card} differ by {sap_open - bill_open}: an invoice was paid or closed "
                            "on one side only (paid in SAP by hand, or paid in BILL outside ml-connector). Record the "
                            "payment on the other side.")
