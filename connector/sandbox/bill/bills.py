"""BILL simulator: bills."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from .common import (
    BILL_CLASSIFICATION_KEYS,
    CENT,
    LINE_CLASSIFICATION_KEYS,
    LOCKED_BILL_STATES,
    ZERO,
    _bad,
    _compact,
    _date_field,
    _deep_merge,
    _field_errors,
    _missing,
    _money,
    _not_found,
    _number,
    _str_field,
)
from .state import _recompute_bill


class BillsMixin:
    """Bills: create, bulk create, update, archive."""

    # ---------------------------------------------------------------- bills

    @staticmethod
    def _assert_bill_editable(bill, verb="edited"):
        # Simulator choice [U]: BILL blocks edits of bills with payments in the UI; we refuse them via API too.
        if bill["paymentStatus"] in LOCKED_BILL_STATES:
            raise _bad(f"Bill {bill['id']} cannot be {verb}: its payment status is {bill['paymentStatus']} "
                       f"(paidAmount {bill['paidAmount']}, scheduledAmount {bill['scheduledAmount']}).")

    def _line_item(self, org, li, path):
        if not isinstance(li, dict):
            raise _bad(f"Invalid field,value: {path}. Each line item must be an object.", "BDC_1124")
        quantity = _number(li["quantity"], path + "quantity") if li.get("quantity") is not None else None
        price = _number(li["price"], path + "price") if li.get("price") is not None else None
        if li.get("amount") is not None:
            amount = _money(li["amount"], path + "amount")  # amount wins over quantity * price
        elif quantity is not None and price is not None:
            amount = (Decimal(quantity) * Decimal(price)).quantize(CENT, ROUND_HALF_UP)
        else:
            raise _missing(path + "amount")
        return _compact({
            "id": li.get("id") or self._new_id("bli"),  # [U] line item id prefix
            "amount": amount, "quantity": quantity, "price": price,
            "description": _str_field(li, "description", path, max_len=4000),
            "classifications": self._classifications(org, li, path, LINE_CLASSIFICATION_KEYS),
        })

    def _bill_normalize(self, ctx, data, path, base=None):
        """Validate a full bill (create, PUT, or base merged with PATCH) and return the stored dict."""
        org = ctx.org
        vendor_id = _str_field(data, "vendorId", path, required=True)
        vendor = org.vendors.get(vendor_id)
        if vendor is None or vendor["archived"]:
            state = "does not exist" if vendor is None else "is archived"
            raise _bad(f"Invalid field,value: {path}vendorId, {vendor_id}. The vendor {state}.")
        due_date = _date_field(data, "dueDate", path)
        invoice = data.get("invoice")
        if not isinstance(invoice, dict):
            raise _missing(path + "invoice")
        invoice_number = _str_field(invoice, "invoiceNumber", path + "invoice.", required=True, max_len=255)
        invoice_date = _date_field(invoice, "invoiceDate", path + "invoice.")
        raw_items = data.get("billLineItems")
        if not isinstance(raw_items, list) or not raw_items:
            raise _missing(path + "billLineItems")
        items = [self._line_item(org, li, f"{path}billLineItems[{i}].") for i, li in enumerate(raw_items)]
        amount = sum((li["amount"] for li in items), ZERO)
        if amount <= 0:
            raise _bad(f"Invalid field,value: {path}amount, {amount}. The bill total must be greater than zero.")
        pay_from = data.get("payFromChartOfAccountId")
        if pay_from is not None:
            self._check_classification(org, "chart-of-accounts", pay_from, path + "payFromChartOfAccountId")
        base = base or {}
        credits, credit_total = self._credits_for_bill(org, data, base, vendor_id, amount, path)  # credits.py
        bill = {
            "id": base.get("id") or self._new_id("00n"), "archived": base.get("archived", False),
            "vendorId": vendor_id, "vendorName": vendor["name"], "amount": amount,
            "paidAmount": base.get("paidAmount", ZERO), "dueAmount": amount,
            "scheduledAmount": base.get("scheduledAmount", ZERO), "creditAmount": credit_total,
            "vendorCredits": credits,
            "fundingAmount": amount, "exchangeRate": 1,
            "description": _str_field(data, "description", path, max_len=4000),
            "dueDate": due_date, "invoice": {"invoiceNumber": invoice_number, "invoiceDate": invoice_date},
            "billLineItems": items, "payFromChartOfAccountId": pay_from,
            "classifications": self._classifications(org, data, path, BILL_CLASSIFICATION_KEYS),
            "paymentStatus": "UNPAID", "approvalStatus": base.get("approvalStatus", "UNASSIGNED"),
            "purchaseOrderNumber": _str_field(data, "purchaseOrderNumber", path, max_len=100),
            "createdTime": base.get("createdTime", ctx.now), "updatedTime": ctx.now,
        }
        _recompute_bill(bill)
        return _compact(bill)

    def _new_bill_input(self, data, path):
        if not isinstance(data, dict):
            raise _bad(f"Invalid field,value: {path or 'body'}. Each bill must be an object.", "BDC_1124")
        items = data.get("billLineItems")
        if isinstance(items, list):  # ids sent on create are ignored: BILL assigns them
            data = {**data, "billLineItems": [{k: v for k, v in li.items() if k != "id"} if isinstance(li, dict)
                                              else li for li in items]}
        return data

    @staticmethod
    def _required_bill_fields(data, path):
        """Every missing required field at once, one entry each (real BILL lists them all, with null codes)."""
        if not isinstance(data, dict):
            return
        invoice = data.get("invoice") if isinstance(data.get("invoice"), dict) else {}
        present = {"vendorId": data.get("vendorId"), "dueDate": data.get("dueDate"),
                   "invoice.invoiceNumber": invoice.get("invoiceNumber"), "invoice.invoiceDate": invoice.get("invoiceDate"),
                   "billLineItems": data.get("billLineItems")}
        missing = [f"{path}{name}: must not be null" if value is None else f"{path}{name}: must not be blank"
                   for name, value in present.items() if value in (None, "", [])]
        if len(missing) > 1:
            raise _field_errors(missing)

    def _h_bill_create(self, ctx):
        self._required_bill_fields(ctx.json(), "")
        bill = self._bill_normalize(ctx, self._new_bill_input(ctx.json(), ""), "")
        ctx.org.bills[bill["id"]] = bill
        self._emit(ctx.org, "bill.created", "bill", bill, bill["id"], ctx.out)
        return 201, bill

    def _h_bill_bulk(self, ctx):
        items = ctx.json(expect=list)
        if not 1 <= len(items) <= self.max_bills_bulk:
            raise _bad(f"Bulk bill create accepts 1 to {self.max_bills_bulk} bills, got {len(items)}.")
        for i, d in enumerate(items):
            self._required_bill_fields(d, f"[{i}].")
        bills = [self._bill_normalize(ctx, self._new_bill_input(d, f"[{i}]."), f"[{i}].")
                 for i, d in enumerate(items)]  # all validated before any is stored: all-or-nothing
        for bill in bills:
            ctx.org.bills[bill["id"]] = bill
            self._emit(ctx.org, "bill.created", "bill", bill, bill["id"], ctx.out)
        return 201, bills

    def _h_bill_update(self, ctx, replace, ident):
        current = ctx.org.bills.get(ident)
        if current is None:
            raise _not_found("bill", ident)
        self._assert_bill_editable(current)
        if current["archived"]:
            raise _bad(f"Bill {ident} is archived; restore it before editing.")  # simulator choice [U]
        data = ctx.json()
        items = self._merge_line_items(current, data.get("billLineItems"), replace)
        if replace:
            merged = {**data, "billLineItems": items}
        else:
            editable = {k: v for k, v in data.items() if k not in ("id", "archived", "createdTime", "updatedTime")}
            merged = _deep_merge(current, editable)  # nested objects (invoice, classifications) merge too
            merged["billLineItems"] = items
        bill = self._bill_normalize(ctx, merged, "", base=current)
        ctx.org.bills[ident] = bill
        entity = bill
        if self.webhook_bill_updated_partial:
            entity = {k: v for k, v in bill.items() if current.get(k) != v}
            entity.update(id=ident, updatedTime=bill["updatedTime"])
        self._emit(ctx.org, "bill.updated", "bill", entity, ident, ctx.out)
        return 200, bill

    @staticmethod
    def _merge_line_items(current, sent, replace):
        """PATCH: items with an id are modified, items without are added, the rest kept.
        PUT: items with an id replace that item, items without are added, omitted ones are removed."""
        existing = {li["id"]: li for li in current["billLineItems"]}
        if sent is None:
            return None if replace else list(current["billLineItems"])
        if not isinstance(sent, list):
            raise _bad("Invalid field,value: billLineItems. Must be an array.", "BDC_1124")
        merged = {} if replace else dict(existing)
        for i, li in enumerate(sent):
            if not isinstance(li, dict):
                raise _bad(f"Invalid field,value: billLineItems[{i}]. Must be an object.", "BDC_1124")
            li_id = li.get("id")
            if li_id is None:
                merged[f"new-{i}"] = li
            elif not isinstance(li_id, str) or li_id not in existing:
                raise _bad(f"Invalid field,value: billLineItems[{i}].id, {li_id}. Not a line item of this bill.")
            else:
                merged[li_id] = li if replace else _deep_merge(existing[li_id], li)
        return list(merged.values())
