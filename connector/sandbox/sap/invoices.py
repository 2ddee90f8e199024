"""SAP simulator: PurchaseInvoices."""

from __future__ import annotations

from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

from .schema import (
    COSTING_FIELDS,
    DATE,
    DOC_TYPE,
    DOCUMENT,
    DOCUMENT_AMOUNT_INPUTS,
    DOCUMENT_EXPENSE,
    DOCUMENT_INPUTS,
    DOCUMENT_LINE,
    EXCHANGE_RATES,
    LINE_INPUTS,
    NOT_UPDATABLE_MESSAGE,
    NUM,
    ONE,
    PRICE_QUANT,
    ZERO,
    SapError,
    _q2,
)
from .values import _copy_row


class InvoicesMixin:
    """PurchaseInvoices: building, editing, totals and status."""

    # ------------------------------------------------------------------------------------------- invoices
    def _build_invoice(self, payload: dict) -> dict:
        """Validate an SAP-shaped Document payload and return the (not yet stored) invoice row."""
        self._check_properties(payload, DOCUMENT)
        doc_type = self._coerce_in(DOC_TYPE, payload.get("DocType") or "dDocument_Service", "DocType", "Document")
        if doc_type != "dDocument_Service":
            raise SapError(400, -10, "Item documents are not supported by the simulator; use dDocument_Service")
        bp = self._require_supplier(payload.get("CardCode"), "OPCH")
        currency = payload.get("DocCurrency") or (bp["Currency"] if bp["Currency"] != "##" else self.local_currency)
        rate = self._doc_rate(currency, payload.get("DocRate"))
        current = self.now()
        doc_date = self._coerce_in(DATE, payload.get("DocDate") or current.date(), "DocDate", "Document")
        row = dict.fromkeys(DOCUMENT.fields)
        row.update({
            "DocType": doc_type, "DocDate": doc_date, "DocDueDate": doc_date + timedelta(days=30),
            "TaxDate": doc_date, "CardCode": bp["CardCode"], "CardName": bp["CardName"], "DocCurrency": currency,
            "DocRate": rate, "PaidToDate": ZERO, "PaidToDateFC": ZERO, "DocumentStatus": "bost_Open",
            "Cancelled": "tNO", "CancelStatus": "csNo", "AuthorizationStatus": "dasWithout",
            "CreationDate": current.date(), "UpdateDate": current.date(), "UpdateTime": current.time(),
            # OPCH.DocTime is HHMM: minute precision.
            "DocTime": current.time().replace(second=0), "Series": 12, "DiscountPercent": ZERO, "Rounding": "tNO",
            "DocObjectCode": "oPurchaseInvoices", "Confirmed": "tYES",
            "DocumentLines": [], "DocumentAdditionalExpenses": [],
        })
        lines = payload.get("DocumentLines")
        if not isinstance(lines, list) or not lines:
            raise SapError(400, -5002, "Cannot add document without rows [PCH1]")
        row["BPL_IDAssignedToInvoice"], row["BPLName"] = self._branch(
            payload.get("BPL_IDAssignedToInvoice"), "OPCH", payload.get("BPL_IDAssignedToInvoice") is not None)
        header = {k: v for k, v in payload.items()
                  if k not in ("CardCode", "DocType", "DocCurrency", "DocRate", "BPL_IDAssignedToInvoice")}
        self._apply_invoice_changes(row, header, replace=True)
        return row

    def _doc_rate(self, currency: str, given) -> Decimal:
        if currency == self.local_currency:
            return ONE
        if given is not None:
            rate = self._coerce_in(NUM, given, "DocRate", "Document")
            if rate > 0:
                return rate
        if currency not in EXCHANGE_RATES:
            raise SapError(400, -10, f"Update the exchange rate for currency '{currency}'")
        return EXCHANGE_RATES[currency]

    def _apply_invoice_changes(self, row: dict, changes: dict, replace: bool):
        """Apply header/line/expense input to an invoice row, validate, and recompute its totals."""
        for prop, value in changes.items():
            if prop in DOCUMENT_INPUTS and prop in DOCUMENT.fields:
                row[prop] = self._coerce_in(DOCUMENT.fields[prop], value, prop, "Document")
        if row["DocDueDate"] is None or row["TaxDate"] is None:
            row["DocDueDate"] = row["DocDueDate"] or row["DocDate"] + timedelta(days=30)
            row["TaxDate"] = row["TaxDate"] or row["DocDate"]
        row["DiscountPercent"] = row["DiscountPercent"] or ZERO
        row["Rounding"] = row["Rounding"] or "tNO"
        if "DocumentLines" in changes:
            self._merge_lines(row, changes["DocumentLines"] or [], replace)
        if "DocumentAdditionalExpenses" in changes:
            self._merge_expenses(row, changes["DocumentAdditionalExpenses"] or [], replace)
        if not row["DocumentLines"]:
            raise SapError(400, -5002, "Cannot add document without rows [PCH1]")
        self._compute_totals(row)

    def _merge_lines(self, row: dict, lines: list, replace: bool):
        current = [] if replace else row["DocumentLines"]
        fc = row["DocCurrency"] != self.local_currency
        for data in lines:
            self._check_properties(data, DOCUMENT_LINE)
            line = None if replace else next((x for x in current if x["LineNum"] == data.get("LineNum")), None)
            if line is None:
                line = dict.fromkeys(DOCUMENT_LINE.fields)
                line.update({"LineNum": len(current), "Quantity": ONE, "LineStatus": "bost_Open", "LineTotal": ZERO,
                             "RowTotalFC": ZERO})
                current.append(line)
            self._apply_line_input(line, data, fc)
        row["DocumentLines"] = current

    def _apply_line_input(self, line: dict, data: dict, fc: bool):
        where = f"[PCH1.AcctCode][line: {line['LineNum'] + 1}]"
        amount_key = "RowTotalFC" if fc else "LineTotal"
        values = {p: self._coerce_in(DOCUMENT_LINE.fields[p], v, p, "DocumentLine")
                  for p, v in data.items() if p in LINE_INPUTS and p != "LineNum"}
        if values.get("TaxCode") is None and values.get("VatGroup") is not None:
            values["TaxCode"] = values["VatGroup"]  # VatGroup and TaxCode both name the tax code here
        for prop in ("ItemDescription", "AccountCode", "TaxCode", "ProjectCode", "FreeText", *COSTING_FIELDS):
            if prop in values or (prop == "TaxCode" and "VatGroup" in values):
                line[prop] = values.get(prop)
        if values.get("Quantity") is not None:
            line["Quantity"] = values["Quantity"]
        # Amounts given are in the document currency (see module docstring).
        amount = values.get("LineTotal", values.get("RowTotalFC"))
        price = values.get("Price", values.get("UnitPrice"))
        if amount is not None:
            line[amount_key] = _q2(amount)
        elif price is not None:
            line[amount_key] = _q2(price * (line["Quantity"] or ONE))
        self._check_account(line["AccountCode"], where)
        if line["TaxCode"] is not None:
            self._check_tax_code(line["TaxCode"], where.replace("AcctCode", "TaxCode"))
        line["VatGroup"] = line["TaxCode"]
        for dimension, prop in enumerate(COSTING_FIELDS, start=1):
            if line[prop] is not None:
                self._check_distribution_rule(line[prop], dimension, where.replace("AcctCode", f"OcrCode{dimension}"
                                                                                   if dimension > 1 else "OcrCode"))

    def _merge_expenses(self, row: dict, expenses: list, replace: bool):
        current = [] if replace else row["DocumentAdditionalExpenses"]
        fc = row["DocCurrency"] != self.local_currency
        for data in expenses:
            self._check_properties(data, DOCUMENT_EXPENSE)
            expense = None if replace else next((x for x in current if x["LineNum"] == data.get("LineNum")), None)
            if expense is None:
                expense = dict.fromkeys(DOCUMENT_EXPENSE.fields)
                expense.update({"LineNum": len(current), "LineTotal": ZERO, "LineTotalFC": ZERO})
                current.append(expense)
            self._apply_expense_input(expense, data, fc)
        row["DocumentAdditionalExpenses"] = current

    def _apply_expense_input(self, expense: dict, data: dict, fc: bool):
        where = f"[PCH3.ExpnsCode][line: {expense['LineNum'] + 1}]"
        for prop in ("ExpenseCode", "TaxCode", "VatGroup", "Remarks"):
            if prop in data:
                expense[prop] = self._coerce_in(DOCUMENT_EXPENSE.fields[prop], data[prop], prop, "AdditionalExpense")
        if expense["TaxCode"] is None:
            expense["TaxCode"] = expense["VatGroup"]
        amount = data.get("LineTotal", data.get("LineTotalFC"))
        if amount is not None:
            expense["LineTotalFC" if fc else "LineTotal"] = _q2(self._coerce_in(NUM, amount, "LineTotal",
                                                                                "AdditionalExpense"))
        if expense["ExpenseCode"] not in self._tables["AdditionalExpenses"]:
            raise SapError(400, -2028, f"No matching records found 'Freight' (OEXD) {where}")
        if expense["TaxCode"] is not None:
            self._check_tax_code(expense["TaxCode"], where.replace("ExpnsCode", "TaxCode"))
        expense["VatGroup"] = expense["TaxCode"]

    def _compute_totals(self, doc: dict):
        """Recompute line taxes and header totals (algorithm in the module docstring)."""
        fc = doc["DocCurrency"] != self.local_currency
        rate = doc["DocRate"]
        amount_key = "RowTotalFC" if fc else "LineTotal"
        factor = ONE - doc["DiscountPercent"] / 100
        gross = discounted_sum = vat = freight = ZERO
        for line in doc["DocumentLines"]:
            base = line[amount_key]
            tax_rate = self._tax_rate(line["TaxCode"])
            discounted = _q2(base * factor)
            tax = _q2(discounted * tax_rate / 100)
            gross, discounted_sum, vat = gross + base, discounted_sum + discounted, vat + tax
            price = (base / (line["Quantity"] or ONE)).quantize(PRICE_QUANT, rounding=ROUND_HALF_UP)
            line.update({"LineTotal": _q2(base * rate) if fc else base, "RowTotalFC": base if fc else ZERO,
                         "TaxTotal": _q2(tax * rate) if fc else tax, "Price": price, "UnitPrice": price,
                         "PriceAfterVAT": _q2(price * (1 + tax_rate / 100)), "Currency": doc["DocCurrency"],
                         "LineStatus": line["LineStatus"] or "bost_Open"})
        for expense in doc["DocumentAdditionalExpenses"]:
            base = expense["LineTotalFC" if fc else "LineTotal"]
            tax = _q2(base * self._tax_rate(expense["TaxCode"]) / 100)
            freight, vat = freight + base, vat + tax
            expense.update({"LineTotal": _q2(base * rate) if fc else base, "LineTotalFC": base if fc else ZERO,
                            "TaxSum": _q2(tax * rate) if fc else tax})
            expense["LineGross"] = expense["LineTotal"] + expense["TaxSum"]
        before_rounding = discounted_sum + freight + vat
        rounding = ZERO
        if doc["Rounding"] == "tYES":
            rounding = before_rounding.quantize(ONE, rounding=ROUND_HALF_UP) - before_rounding
        totals = {"DocTotal": before_rounding + rounding, "VatSum": vat, "TotalDiscount": gross - discounted_sum,
                  "RoundingDiffAmount": rounding}
        for name, value in totals.items():
            doc[name] = _q2(value * rate) if fc else value
            doc[{"DocTotal": "DocTotalFc", "VatSum": "VatSumFc"}.get(name, name + "FC")] = value if fc else ZERO
        doc["DocTotalSys"], doc["VatSumSys"] = doc["DocTotal"], doc["VatSum"]  # system currency = local (USD)

    def _insert_invoice(self, row: dict) -> dict:
        with self._lock:
            row["DocEntry"] = self._next_entry["PurchaseInvoices"]
            row["DocNum"] = self._next_num["PurchaseInvoices"]
            row["Reference1"] = str(row["DocNum"])
            self._next_entry["PurchaseInvoices"] += 1
            self._next_num["PurchaseInvoices"] += 1
            self._tables["PurchaseInvoices"][row["DocEntry"]] = row
            self._changed("PurchaseInvoices")
            return row

    def _invoice(self, doc_entry) -> dict:
        row = self._tables["PurchaseInvoices"].get(doc_entry)
        if row is None:
            raise SapError(404, -2028, f"Entity with value({doc_entry}) does not exist")
        return row

    def _patch_invoice(self, row: dict, body: dict, replace: bool):
        self._check_properties(body, DOCUMENT)
        for prop in ("CardCode", "DocCurrency", "DocType"):
            if prop in body and body[prop] != row[prop]:
                raise SapError(400, -1029, NOT_UPDATABLE_MESSAGE)
        touches_amounts = any(prop in DOCUMENT_AMOUNT_INPUTS for prop in body)
        locked = row["CancelStatus"] != "csNo" or row["DocumentStatus"] != "bost_Open" or row["PaidToDate"] > 0
        if touches_amounts and locked:
            raise SapError(400, -1029, NOT_UPDATABLE_MESSAGE)
        # Validate on a copy so a rejected PATCH leaves the stored invoice untouched.
        candidate = _copy_row(row)
        self._apply_invoice_changes(candidate, {k: v for k, v in body.items() if k != "DocCurrency"}, replace)
        row.update(candidate)
        self._touch(row)
        self._changed("PurchaseInvoices")

    def _set_document_status(self, row: dict, status: str):
        row["DocumentStatus"] = status
        for line in row["DocumentLines"]:
            line["LineStatus"] = status
