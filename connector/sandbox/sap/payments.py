"""SAP simulator: VendorPayments."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

from .schema import (
    CASH_FLOW,
    INT,
    INVOICE_TYPE,
    NOT_UPDATABLE_MESSAGE,
    NUM,
    PAYMENT,
    PAYMENT_INVOICE,
    PAYMENT_TEXT_FIELDS,
    STR,
    ZERO,
    SapError,
    _q2,
)
from .values import _copy_row


class PaymentsMixin:
    """VendorPayments: posting, applying to invoices, cancelling."""

    # ------------------------------------------------------------------------------------------- payments
    def _post_payment(self, body: dict) -> dict:
        self._check_properties(body, PAYMENT)
        for nested, etype in (("PaymentInvoices", PAYMENT_INVOICE), ("CashFlowAssignments", CASH_FLOW)):
            for line in body.get(nested) or []:
                self._check_properties(line, etype)
        values = {p: self._coerce_in(PAYMENT.fields[p], v, p, "Payment") for p, v in body.items()
                  if p in PAYMENT.fields}
        # VendorPayments default DocType is UNCONFIRMED; the simulator assumes rSupplier.
        if (values.get("DocType") or "rSupplier") != "rSupplier":
            raise SapError(400, -10, "Only supplier payments (DocType rSupplier) are supported by the simulator")
        bp = self._require_supplier(values.get("CardCode"), "OVPM")
        total = self._payment_means_total(values)
        applications = self._payment_applications(bp["CardCode"], body.get("PaymentInvoices") or [])
        applied = sum((amount for _, amount in applications), ZERO)
        if applied != total:
            raise SapError(400, -10, f"Payment total ({total}) does not match the amount applied to documents "
                                     f"({applied}) [OVPM.DocTotal]")
        row = self._new_payment_row(values, bp)
        row["BPLID"], row["BPLName"] = self._branch(values.get("BPLID"), "OVPM", "BPLID" in body)
        for invoice, _ in applications:
            if self.enable_branches and invoice["BPL_IDAssignedToInvoice"] != row["BPLID"]:
                # [U] simulator choice: one payment never mixes branches (addendum §7)
                raise SapError(400, -5002, f"A/P invoice {invoice['DocEntry']} belongs to branch "
                                           f"{invoice['BPL_IDAssignedToInvoice']}, not to the payment's branch "
                                           f"{row['BPLID']} [VPM2.BPLId]")
        row["PaymentInvoices"] = [self._payment_line(i, invoice, amount)
                                  for i, (invoice, amount) in enumerate(applications)]
        row["CashFlowAssignments"] = [{p: self._coerce_in(CASH_FLOW.fields[p], v, p, "CashFlowAssignment")
                                       for p, v in line.items()} for line in body.get("CashFlowAssignments") or []]
        for invoice, amount in applications:
            self._apply_to_invoice(invoice, amount)
        self._tables["VendorPayments"][row["DocEntry"]] = row
        self._changed("VendorPayments")
        return row

    def _payment_means_total(self, values: dict) -> Decimal:
        total = ZERO
        for account_prop, sum_prop, db_field in (("TransferAccount", "TransferSum", "TrsfrAcct"),
                                                 ("CashAccount", "CashSum", "CashAcct")):
            amount = values.get(sum_prop) or ZERO
            if amount < 0:
                raise SapError(400, -10, f"Amount must not be negative [OVPM.{sum_prop}]")
            if amount:
                account = values.get(account_prop)
                if account not in self._tables["ChartOfAccounts"]:
                    raise SapError(400, -5002, f"Code undefined [OVPM.{db_field}]")
                self._check_account(account, f"[OVPM.{db_field}]")
            total += amount
        if total <= 0:
            raise SapError(400, -10, "Total payment amount must be greater than zero [OVPM.DocTotal]")
        return total

    def _payment_applications(self, card_code: str, lines: list) -> list[tuple[dict, Decimal]]:
        """Validate PaymentInvoices and return [(invoice row, amount)] without changing anything yet."""
        result, pending = [], Counter()
        for index, line in enumerate(lines, start=1):
            where = f"[VPM2.DocEntry][line: {index}]"
            invoice_type = self._coerce_in(INVOICE_TYPE, line.get("InvoiceType") or "it_PurchaseInvoice",
                                           "InvoiceType", "PaymentInvoice")
            if invoice_type == "it_PurchaseCreditNote":  # credit_notes.py: a negative line, lowers the total
                amount = self._coerce_in(NUM, line.get("SumApplied"), "SumApplied", "PaymentInvoice")
                result.append(self._credit_note_application(card_code, line, amount, where))
                continue
            if invoice_type != "it_PurchaseInvoice":
                raise SapError(400, -10, f"Only it_PurchaseInvoice lines are supported by the simulator {where}")
            doc_entry = self._coerce_in(INT, line.get("DocEntry"), "DocEntry", "PaymentInvoice")
            invoice = self._tables["PurchaseInvoices"].get(doc_entry)
            if invoice is None:
                raise SapError(400, -2028, f"No matching records found 'A/P Invoice' (OPCH) {where}")
            amount = self._coerce_in(NUM, line.get("SumApplied"), "SumApplied", "PaymentInvoice")
            self._check_application(invoice, card_code, amount, pending[doc_entry], where)
            pending[doc_entry] += amount
            result.append((invoice, amount))
        return result

    @staticmethod
    def _check_application(invoice: dict, card_code: str, amount, pending: Decimal, where: str):
        doc = invoice["DocEntry"]
        if invoice["CardCode"] != card_code:
            raise SapError(400, -10, f"A/P invoice {doc} does not belong to business partner {card_code} {where}")
        if invoice["Cancelled"] == "tYES" or invoice["CancelStatus"] != "csNo":
            raise SapError(400, -10, f"A/P invoice {doc} is cancelled and cannot be paid {where}")
        if amount is None or amount <= 0:
            raise SapError(400, -10, f"Amount applied to A/P invoice {doc} must be positive {where}")
        open_amount = invoice["DocTotal"] - invoice["PaidToDate"] - pending
        if invoice["DocumentStatus"] != "bost_Open" or open_amount <= 0:
            raise SapError(400, -10, f"A/P invoice {doc} is closed and cannot be paid {where}")
        if amount > open_amount:
            raise SapError(400, -10, f"Amount applied ({amount}) exceeds the open amount ({open_amount}) of A/P "
                                     f"invoice {doc} {where}")

    def _new_payment_row(self, values: dict, bp: dict) -> dict:
        current = self.now()
        row = dict.fromkeys(PAYMENT.fields)
        row.update({k: v for k, v in values.items() if k not in ("DocEntry", "DocNum")})
        doc_date = row["DocDate"] or current.date()
        currency = row["DocCurrency"] or self.local_currency
        row.update({
            "DocEntry": self._next_entry["VendorPayments"], "DocNum": self._next_num["VendorPayments"],
            "DocType": "rSupplier", "DocDate": doc_date, "DueDate": row["DueDate"] or doc_date,
            "TaxDate": row["TaxDate"] or doc_date, "CardName": bp["CardName"], "DocCurrency": currency,
            "DocRate": self._doc_rate(currency, row["DocRate"]), "LocalCurrency": row["LocalCurrency"] or "tNO",
            "CashSum": row["CashSum"] or ZERO, "TransferSum": row["TransferSum"] or ZERO,
            "TransferDate": row["TransferDate"] or (doc_date if row["TransferSum"] else None),
            "BankChargeAmount": row["BankChargeAmount"] or ZERO, "Series": 15, "Cancelled": "tNO",
            "CancelStatus": "csNo", "AuthorizationStatus": "pasWithout", "CreationDate": current.date(),
            "UpdateDate": current.date(), "UpdateTime": current.time(),
        })
        self._next_entry["VendorPayments"] += 1
        self._next_num["VendorPayments"] += 1
        return row

    def _payment_line(self, index: int, invoice: dict, amount: Decimal) -> dict:
        rate = invoice["DocRate"]
        fc = invoice["DocCurrency"] != self.local_currency
        line = dict.fromkeys(PAYMENT_INVOICE.fields)
        memo = self.is_credit_note(invoice)
        shown = (amount if self.credit_note_sum_sign == "negative" else -amount) if memo else amount
        line.update({"LineNum": index, "DocEntry": invoice["DocEntry"], "SumApplied": shown,
                     "AppliedFC": _q2(amount / rate) if fc else ZERO, "AppliedSys": amount, "DocRate": rate,
                     "InvoiceType": "it_PurchaseCreditNote" if memo else "it_PurchaseInvoice", "InstallmentId": 1,
                     "DiscountPercent": ZERO})
        return line

    def _apply_to_invoice(self, invoice: dict, amount: Decimal):
        if self.is_credit_note(invoice):
            return self._apply_to_credit_note(invoice, amount)
        invoice["PaidToDate"] += amount
        if invoice["DocCurrency"] != self.local_currency:
            invoice["PaidToDateFC"] = _q2(invoice["PaidToDate"] / invoice["DocRate"])
        if invoice["PaidToDate"] >= invoice["DocTotal"]:
            self._set_document_status(invoice, "bost_Close")
        # Whether SAP bumps UpdateDate on payment is UNCONFIRMED; the simulator does.
        self._touch(invoice)
        self._changed("PurchaseInvoices")

    def _patch_payment(self, row: dict, body: dict):
        self._check_properties(body, PAYMENT)
        for prop, value in body.items():
            if prop not in PAYMENT_TEXT_FIELDS:
                raise SapError(400, -1029, NOT_UPDATABLE_MESSAGE)
            row[prop] = self._coerce_in(STR, value, prop, "Payment")
        self._touch(row)
        self._changed("VendorPayments")

    def cancel_payment(self, doc_entry, *, by_current_date=False):
        """Cancel an outgoing payment: Cancelled tYES, invoices' PaidToDate reversed and reopened.

        `by_current_date` (CancelbyCurrentSystemDate) is accepted; the simulator keeps no cancellation date.
        """
        with self._lock:
            row = self._tables["VendorPayments"].get(doc_entry)
            if row is None:
                raise SapError(404, -2028, f"Entity with value({doc_entry}) does not exist")
            if row["Cancelled"] == "tYES":
                raise SapError(400, -10, f"Payment {doc_entry} is already cancelled")
            row["Cancelled"], row["CancelStatus"] = "tYES", "csYes"
            self._touch(row)
            for line in row["PaymentInvoices"]:
                if line["InvoiceType"] == "it_PurchaseCreditNote":
                    self._reverse_on_credit_note(line["DocEntry"], line["SumApplied"])
                    continue
                self._reverse_on_invoice(line["DocEntry"], line["SumApplied"])
            self._changed("VendorPayments")
            return _copy_row(row)

    def _reverse_on_invoice(self, doc_entry: int, amount: Decimal):
        invoice = self._tables["PurchaseInvoices"][doc_entry]
        invoice["PaidToDate"] = max(ZERO, invoice["PaidToDate"] - amount)
        if invoice["DocCurrency"] != self.local_currency:
            invoice["PaidToDateFC"] = _q2(invoice["PaidToDate"] / invoice["DocRate"])
        reopen = (invoice["CancelStatus"] == "csNo" and doc_entry not in self._manually_closed
                  and invoice["PaidToDate"] < invoice["DocTotal"])
        if reopen:
            self._set_document_status(invoice, "bost_Open")
        self._touch(invoice)
        self._changed("PurchaseInvoices")
