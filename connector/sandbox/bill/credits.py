"""BILL simulator: vendor credits (`/v3/vendor-credits`, api-facts-addendum §2) and applying them.

A credit is created with `vendorId`, `referenceNumber` (1-100), `creditDate` and line items (the total is their sum);
its id starts `vcr`. It is used on a bill (`vendorCredits: [{id, amount}]` on bill create/PUT/PATCH; the bill's
`creditAmount` then lowers what BILL pays) or in a payment (`billPayments[].vendorCredits`). `appliedAmount`,
`status` and `usage[{billId, paymentId, amount}]` are worked out from the bills and payments that use it. Archiving
cannot be undone (no restore endpoint). Simulator choices [U]: a bill PUT/PATCH without `vendorCredits` keeps the
ones it had; a credit cannot be applied beyond what is left of it; there are no vendor-credit webhooks.
"""

from __future__ import annotations

from .common import LINE_CLASSIFICATION_KEYS, ZERO, _bad, _compact, _date_field, _missing, _money, _not_found, _str_field

MAX_CREDITS_BULK = 50


class CreditsMixin:
    """Vendor credits: create (single, bulk), list, get, archive; their use on bills and payments."""

    def _h_credit_create(self, ctx):
        credit = self._credit_normalize(ctx, ctx.json(), "")
        ctx.org.vendor_credits[credit["id"]] = credit
        return 201, self._credit_view(ctx.org, credit)

    def _h_credit_bulk(self, ctx):
        items = ctx.json(expect=list)
        if not 1 <= len(items) <= MAX_CREDITS_BULK:
            raise _bad(f"Bulk vendor credit create accepts 1 to {MAX_CREDITS_BULK} vendor credits, got {len(items)}.")
        credits = [self._credit_normalize(ctx, d, f"[{i}].") for i, d in enumerate(items)]  # all-or-nothing
        for credit in credits:
            ctx.org.vendor_credits[credit["id"]] = credit
        return 201, {"vendorCredits": [self._credit_view(ctx.org, c) for c in credits]}

    def _h_credit_list(self, ctx):
        from .listing import paginate

        return 200, paginate([self._credit_view(ctx.org, c) for c in ctx.org.vendor_credits.values()], ctx.req.args)

    def _h_credit_get(self, ctx, ident):
        credit = ctx.org.vendor_credits.get(ident)
        if credit is None:
            raise _not_found("vendor credit", ident)
        return 200, self._credit_view(ctx.org, credit)

    def _h_credit_archive(self, ctx, ident):
        credit = ctx.org.vendor_credits.get(ident)
        if credit is None:
            raise _not_found("vendor credit", ident)
        if not credit["archived"]:
            credit["archived"], credit["updatedTime"] = True, ctx.now
        return 200, self._credit_view(ctx.org, credit)

    def _credit_normalize(self, ctx, data, path):
        if not isinstance(data, dict):
            raise _bad(f"Invalid field,value: {path or 'body'}. Each vendor credit must be an object.", "BDC_1124")
        org = ctx.org
        problems = [f"{path}{name}: must not be null" for name in ("vendorId", "referenceNumber", "creditDate",
                                                                   "vendorCreditLineItems") if data.get(name) in (None, "", [])]
        if len(problems) > 1:
            from .common import _field_errors

            raise _field_errors(problems)
        vendor_id = _str_field(data, "vendorId", path, required=True)
        vendor = org.vendors.get(vendor_id)
        if vendor is None or vendor["archived"]:
            raise _bad(f"Invalid field,value: {path}vendorId, {vendor_id}. The vendor "
                       f"{'does not exist' if vendor is None else 'is archived'}.")
        reference = _str_field(data, "referenceNumber", path, required=True, max_len=100, min_len=1)
        credit_date = _date_field(data, "creditDate", path)
        raw = data.get("vendorCreditLineItems")
        if not isinstance(raw, list) or not raw:
            raise _missing(path + "vendorCreditLineItems")
        items = []
        for i, li in enumerate(raw):
            where = f"{path}vendorCreditLineItems[{i}]."
            if not isinstance(li, dict) or li.get("amount") is None:
                raise _missing(where + "amount")
            amount = _money(li["amount"], where + "amount")
            if amount <= 0:
                raise _bad(f"Invalid field,value: {where}amount, {amount}. Must be greater than zero.")
            items.append(_compact({"id": self._new_id("vcl"), "amount": amount,
                                   "description": _str_field(li, "description", where, max_len=4000),
                                   "classifications": self._classifications(org, li, where, LINE_CLASSIFICATION_KEYS)}))
        if data.get("applyToChartOfAccountId") and data.get("applyToBankAccountId"):
            raise _bad(f"Invalid field,value: {path}applyToBankAccountId. Only one of applyToChartOfAccountId and "
                       "applyToBankAccountId may be set.")
        return _compact({
            "id": self._new_id("vcr"), "archived": False, "vendorId": vendor_id, "referenceNumber": reference,
            "creditDate": credit_date, "description": _str_field(data, "description", path, max_len=4000),
            "amount": sum((li["amount"] for li in items), ZERO), "vendorCreditLineItems": items,
            "applyToChartOfAccountId": data.get("applyToChartOfAccountId"),
            "applyToBankAccountId": data.get("applyToBankAccountId"),
            "createdTime": ctx.now, "updatedTime": ctx.now,
        })

    # --- use ------------------------------------------------------------------------------------------------
    def _credit_usage(self, org, credit_id, skip_bill=None):
        """[{billId, paymentId, amount}] of one credit: on bills (not archived) and in payments beyond those."""
        usage = []
        for bill in org.bills.values():
            if bill["archived"] or bill["id"] == skip_bill:
                continue
            for vc in bill.get("vendorCredits") or []:
                if vc["id"] == credit_id:
                    usage.append({"billId": bill["id"], "amount": vc["amount"]})
        for payment in org.payments.values():
            if payment["status"] in ("VOID", "CANCELLED", "FAILED"):
                continue
            for bp in payment["billPayments"]:
                for vc in bp.get("vendorCredits") or []:
                    if vc["id"] != credit_id:
                        continue
                    on_bill = next((u for u in usage if u["billId"] == bp["billId"] and "paymentId" not in u), None)
                    if on_bill is not None:
                        on_bill["paymentId"] = payment["id"]  # the bill's credit, used by this payment
                    else:
                        usage.append({"billId": bp["billId"], "paymentId": payment["id"], "amount": vc["amount"]})
        return usage

    def _credit_view(self, org, credit):
        usage = self._credit_usage(org, credit["id"])
        applied = sum((u["amount"] for u in usage), ZERO)
        status = "NOT_APPLIED" if not applied else "FULLY_APPLIED" if applied >= credit["amount"] else "PARTIALLY_APPLIED"
        return {**credit, "appliedAmount": applied, "status": status, "usage": usage}

    def _credits_for_bill(self, org, data, base, vendor_id, amount, path):
        """The `vendorCredits` a bill keeps after create/PUT/PATCH (checked), and their total."""
        sent = data.get("vendorCredits")
        if sent is None:
            kept = list((base or {}).get("vendorCredits") or [])
            return kept, sum((vc["amount"] for vc in kept), ZERO)
        if not isinstance(sent, list):
            raise _bad(f"Invalid field,value: {path}vendorCredits. Must be an array.", "BDC_1124")
        out = []
        for i, vc in enumerate(sent):
            where = f"{path}vendorCredits[{i}]."
            credit = org.vendor_credits.get(vc.get("id")) if isinstance(vc, dict) else None
            if credit is None or credit["archived"]:
                raise _bad(f"Invalid field,value: {where}id, {vc.get('id') if isinstance(vc, dict) else vc}. "
                           "No open vendor credit with this id.")
            if credit["vendorId"] != vendor_id:
                raise _bad(f"Invalid field,value: {where}id, {credit['id']}. The vendor credit belongs to another vendor.")
            value = _money(vc.get("amount"), where + "amount")
            used = sum((u["amount"] for u in self._credit_usage(org, credit["id"], skip_bill=(base or {}).get("id"))), ZERO)
            if value <= 0 or value > credit["amount"] - used:
                raise _bad(f"Invalid field,value: {where}amount, {value}. Must be > 0 and <= the unapplied amount "
                           f"{credit['amount'] - used} of vendor credit {credit['id']}.")
            out.append({"id": credit["id"], "amount": value})
        total = sum((vc["amount"] for vc in out), ZERO)
        if total > amount:
            raise _bad(f"Invalid field,value: {path}vendorCredits. Credits ({total}) exceed the bill amount ({amount}).")
        return out, total

    def _payment_credits(self, org, bill, extra):
        """billPayments[].vendorCredits of a new payment of `bill`: the bill's credits not used by an earlier
        payment, and credits applied at payment time (`extra`, already checked)."""
        used = {vc["id"] for p in org.payments.values() if p["status"] not in ("VOID", "CANCELLED", "FAILED")
                for bp in p["billPayments"] if bp["billId"] == bill["id"] for vc in bp.get("vendorCredits") or []}
        return [dict(vc) for vc in bill.get("vendorCredits") or [] if vc["id"] not in used] + list(extra)

    def _check_payment_credits(self, org, bill, raw, path):
        """Credits named on a payment line (applied at payment time): [(id, amount)], checked."""
        if not raw:
            return []
        out = []
        for i, vc in enumerate(raw):
            where = f"{path}vendorCredits[{i}]."
            credit = org.vendor_credits.get(vc.get("id")) if isinstance(vc, dict) else None
            if credit is None or credit["archived"] or credit["vendorId"] != bill["vendorId"]:
                raise _bad(f"Invalid field,value: {where}id. No open vendor credit of this vendor with this id.")
            value = _money(vc.get("amount"), where + "amount")
            left = credit["amount"] - sum((u["amount"] for u in self._credit_usage(org, credit["id"])), ZERO)
            if value <= 0 or value > left:
                raise _bad(f"Invalid field,value: {where}amount, {value}. Must be > 0 and <= {left}.")
            out.append({"id": credit["id"], "amount": value})
        return out

    def pay_bills_with_credits(self, payments, credits, **kw):
        """pay_bills, with vendor credits applied at payment time: {bill_id: [(credit_id, amount)]}."""
        with self._lock:
            org = self._org(kw.get("org_id"))
            pending = {bill_id: self._check_payment_credits(org, org.bills[bill_id],
                                                            [{"id": c, "amount": a} for c, a in pairs], "")
                       for bill_id, pairs in credits.items()}
            self._pending_payment_credits = pending
            return self.pay_bills(payments, **kw)
