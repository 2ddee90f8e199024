"""SAP simulator: A/P credit memos (PurchaseCreditNotes, object 19, ORPC; api-facts-addendum §6).

A credit memo is a Document like an invoice. One based on an invoice (`DocumentLines[].BaseType 18`, `BaseEntry`)
is the clearing document of that invoice: [U] the simulator then adds its total to the invoice's `PaidToDate`
(closing it when nothing is left) and the memo itself is closed (knob `credit_note_closes_base`). A stand-alone
memo stays open until an outgoing payment applies it (`PaymentInvoices` line `it_PurchaseCreditNote`). The sign of
such a line's `SumApplied` is unconfirmed: a real GET shows it negative; knob `credit_note_sum_sign` "negative"
(default) refuses positive values, "positive" refuses negative ones; the line always lowers the payment total.
"""

from __future__ import annotations

from decimal import Decimal

from .schema import ZERO, SapError
from .values import _copy_row

SET = "PurchaseCreditNotes"


class CreditNotesMixin:
    credit_note_closes_base = True
    credit_note_sum_sign = "negative"

    def add_credit_note(self, card_code, lines, *, num_at_card="", doc_date=None, base_invoice=None, freight=None,
                        comments="", branch=None) -> dict:
        """Post an A/P credit memo as a user would in SAP (based on `base_invoice` when given). Returns a copy."""
        payload = {"CardCode": card_code, "NumAtCard": num_at_card, "DocDate": doc_date, "Comments": comments,
                   "DocumentLines": lines, "DocumentAdditionalExpenses": freight or [],
                   "BPL_IDAssignedToInvoice": branch}
        with self._lock:
            base = None
            if base_invoice is not None:
                base = self._invoice(base_invoice)
                if base["CardCode"] != card_code:
                    raise SapError(400, -10, f"Base document {base_invoice} belongs to another business partner")
                if base["DocumentStatus"] != "bost_Open" or base["CancelStatus"] != "csNo":
                    # SAP: a closed (paid) invoice must be reopened before a credit memo is based on it
                    raise SapError(400, -10, f"Base document {base_invoice} is closed [RPC1.BaseEntry]")
                payload["BPL_IDAssignedToInvoice"] = base["BPL_IDAssignedToInvoice"]
            row = self._build_invoice({k: v for k, v in payload.items() if v is not None})
            row["DocObjectCode"] = "oPurchaseCreditNotes"
            row["Series"] = 13
            row["DocDueDate"] = row["DocDate"]
            for i, line in enumerate(row["DocumentLines"]):
                if base is not None:
                    line.update({"BaseType": 18, "BaseEntry": base["DocEntry"], "BaseLine": i})
                else:
                    line.update({"BaseType": -1, "BaseEntry": None, "BaseLine": None})
            if base is not None:
                open_amount = base["DocTotal"] - base["PaidToDate"]
                if row["DocTotal"] > open_amount:
                    raise SapError(400, -10, f"Credit memo total {row['DocTotal']} exceeds the open amount "
                                             f"{open_amount} of base document {base['DocEntry']}")
                if self.credit_note_closes_base:
                    self._apply_to_invoice(base, row["DocTotal"])
                    row["PaidToDate"] = row["DocTotal"]
                    self._set_document_status(row, "bost_Close")
            return _copy_row(self._insert_credit_note(row))

    def _insert_credit_note(self, row):
        self._next_entry.setdefault(SET, 1)
        self._next_num.setdefault(SET, 50001)
        row["DocEntry"], row["DocNum"] = self._next_entry[SET], self._next_num[SET]
        row["Reference1"] = str(row["DocNum"])
        self._next_entry[SET] += 1
        self._next_num[SET] += 1
        self._tables[SET][row["DocEntry"]] = row
        self._changed(SET)
        return row

    def _credit_note(self, doc_entry):
        row = self._tables[SET].get(doc_entry)
        if row is None:
            raise SapError(404, -2028, f"Entity with value({doc_entry}) does not exist")
        return row

    def cancel_credit_note(self, doc_entry, *, by_current_date=False) -> dict:
        """Cancel a credit memo: Cancelled tYES, a cancellation document (csCancellation) added, and the base
        invoice's PaidToDate given back. A stand-alone memo already applied in a payment cannot be cancelled."""
        with self._lock:
            row = self._credit_note(doc_entry)
            if row["CancelStatus"] != "csNo":
                raise SapError(400, -10, f"Document {doc_entry} is already cancelled or is a cancellation")
            bases = {ln.get("BaseEntry") for ln in row["DocumentLines"] if ln.get("BaseType") == 18}
            if not bases and row["PaidToDate"] > 0:
                raise SapError(400, -10, f"Cannot cancel document {doc_entry}; a payment is linked to it")
            for base in bases:
                if self.credit_note_closes_base:
                    self._reverse_on_invoice(base, row["DocTotal"])
            cancellation = _copy_row(row)
            for line in cancellation["DocumentLines"]:
                line.update({"BaseType": 19, "BaseEntry": doc_entry, "BaseLine": line.get("LineNum")})
            row.update({"Cancelled": "tYES", "CancelStatus": "csYes"})
            self._set_document_status(row, "bost_Close")
            self._touch(row)
            current = self.now()
            cancellation.update({"CancelStatus": "csCancellation", "Cancelled": "tNO", "CreationDate": current.date(),
                                 "UpdateDate": current.date(), "UpdateTime": current.time(), "PaidToDate": ZERO})
            self._set_document_status(cancellation, "bost_Close")
            return _copy_row(self._insert_credit_note(cancellation))

    # --- in outgoing payments -----------------------------------------------------------------------------
    def _credit_note_application(self, card_code, line, amount, where):
        """(memo row, signed amount: negative, it lowers the payment) of a PaymentInvoices credit-memo line."""
        memo = self._tables[SET].get(line.get("DocEntry"))
        if memo is None:
            raise SapError(400, -2028, f"No matching records found 'A/P Credit Memo' (ORPC) {where}")
        if memo["CardCode"] != card_code:
            raise SapError(400, -10, f"A/P credit memo {memo['DocEntry']} does not belong to business partner "
                                     f"{card_code} {where}")
        if amount is None or amount == 0:
            raise SapError(400, -10, f"Amount applied to A/P credit memo {memo['DocEntry']} is missing {where}")
        if (amount > 0) != (self.credit_note_sum_sign == "positive"):
            words = "negative" if self.credit_note_sum_sign == "negative" else "positive"
            raise SapError(400, -10, f"Amount applied to A/P credit memo {memo['DocEntry']} must be {words} {where}")
        open_amount = memo["DocTotal"] - memo["PaidToDate"]
        if memo["DocumentStatus"] != "bost_Open" or memo["CancelStatus"] != "csNo" or abs(amount) > open_amount:
            raise SapError(400, -10, f"Amount applied ({abs(amount)}) exceeds the open amount ({open_amount}) of A/P "
                                     f"credit memo {memo['DocEntry']} {where}")
        return memo, -abs(Decimal(amount))

    def _apply_to_credit_note(self, memo, signed_amount):
        memo["PaidToDate"] += abs(signed_amount)
        if memo["PaidToDate"] >= memo["DocTotal"]:
            self._set_document_status(memo, "bost_Close")
        self._touch(memo)
        self._changed(SET)

    def _reverse_on_credit_note(self, doc_entry, amount):
        memo = self._tables[SET][doc_entry]
        memo["PaidToDate"] = max(ZERO, memo["PaidToDate"] - abs(amount))
        if memo["CancelStatus"] == "csNo" and memo["PaidToDate"] < memo["DocTotal"]:
            self._set_document_status(memo, "bost_Open")
        self._touch(memo)
        self._changed(SET)

    @staticmethod
    def is_credit_note(row):
        return row.get("DocObjectCode") == "oPurchaseCreditNotes"

    def seed_ap_documents_demo(self) -> dict:
        """The demo's AP-week documents: an invoice whose line carries a region (dimension 2, coded to a BILL
        location) and a PDF; an invoice with an A/P credit memo based on it."""
        from decimal import Decimal

        def line(amount, **extra):
            return {"AccountCode": "6100", "LineTotal": Decimal(amount), "TaxCode": "EX", "CostingCode": "ADMIN",
                    "ItemDescription": "Office services", **extra}

        located = self.add_invoice("V1000", [line("640.00", CostingCode2="EAST")], num_at_card="DEMO-LOC-1",
                                   comments="East office fit-out")
        self.attach_files(located["DocEntry"], [{"name": "DEMO-LOC-1", "ext": "pdf", "size": 150_000}])
        credited = self.add_invoice("V1001", [line("400.00")], num_at_card="DEMO-CM-INV")
        memo = self.add_credit_note("V1001", [line("100.00")], num_at_card="DEMO-CM-1", base_invoice=credited["DocEntry"],
                                    comments="returned goods")
        return {"located_invoice": located["DocEntry"], "credited_invoice": credited["DocEntry"],
                "credit_memo": memo["DocEntry"]}

