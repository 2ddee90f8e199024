"""BILL simulator: payments."""

from __future__ import annotations

from datetime import date

from .common import DEAD_STATES, SCHEDULED_STATES, ZERO, ApiError, _bad, _date_field, _missing, _money, _not_found
from .state import _recompute_bill


class PaymentsMixin:
    """Payments: single and bulk pay, void, listing."""

    # ---------------------------------------------------------------- payments

    def _payment(self, org, payment_id):
        payment = org.payments.get(payment_id)
        if payment is None:
            raise _not_found("payment", payment_id)
        return payment

    def _h_payment_create(self, ctx):
        """Body (our pick, close to the payment object): {vendorId?, processDate?, description?,
        billPayments: [{billId, amount}]}; the single-bill form {billId, amount, ...} is accepted too."""
        if self.untrusted_session:
            # MFA: a session without 2-step-verification trust may not move money (addendum §3, BX-MFA).
            raise ApiError(403, "BDC_1361", "Untrusted session.", "DOWNSTREAM")
        data = ctx.json()
        lines = data.get("billPayments")
        if lines is None and "billId" in data:
            lines = [{"billId": data.get("billId"), "amount": data.get("amount")}]
        if not isinstance(lines, list) or not lines:
            raise _missing("billPayments")
        pairs, self._pending_payment_credits = [], {}
        for i, line in enumerate(lines):
            if not isinstance(line, dict) or not line.get("billId"):
                raise _missing(f"billPayments[{i}].billId")
            pairs.append((line["billId"], _money(line.get("amount"), f"billPayments[{i}].amount")))
            bill = ctx.org.bills.get(line["billId"]) if isinstance(line["billId"], str) else None
            if bill is not None and line.get("vendorCredits"):  # credits applied at payment time (credits.py)
                self._pending_payment_credits[bill["id"]] = self._check_payment_credits(
                    ctx.org, bill, line["vendorCredits"], f"billPayments[{i}].")
        process_date = _date_field(data, "processDate", "", required=False)
        if process_date is not None and (process_date <= self._today()
                                         or date.fromisoformat(process_date).weekday() >= 5):
            # 422 BDC_1152 with the placeholder left unsubstituted and a second entry per bill (TSPD).
            entries = [{"code": "BDC_1152", "message": "Invalid Process Date : ${paramName0}."}] + [
                {"code": "BDC_1152", "message": f"{bill_id} : Invalid Process Date : ${{paramName0}}."}
                for bill_id, _ in pairs]
            raise ApiError(422, "BDC_1152", "Invalid Process Date", "DOWNSTREAM", entries=entries)
        payment = self._create_payment(ctx.org, pairs, status="SCHEDULED", single_status="SCHEDULED",
                                       process_date=process_date, created_by=ctx.session.user_id, out=ctx.out,
                                       vendor_id=data.get("vendorId"), description=data.get("description"))
        return 201, payment

    def _create_payment(self, org, pairs, *, status, single_status, process_date, created_by, out,
                        vendor_id=None, description=None):
        if not pairs:
            raise _missing("billPayments")
        bills, seen = [], set()
        for i, (bill_id, amount) in enumerate(pairs):
            bill = org.bills.get(bill_id) if isinstance(bill_id, str) else None
            if bill is None or bill["archived"]:
                raise _bad(f"Invalid field,value: billPayments[{i}].billId, {bill_id}. No open bill with this id.")
            if bill_id in seen:
                raise _bad(f"Invalid field,value: billPayments[{i}].billId, {bill_id}. Bill listed twice.")
            seen.add(bill_id)
            vendor_id = vendor_id if isinstance(vendor_id, str) and vendor_id else bill["vendorId"]
            if bill["vendorId"] != vendor_id:
                raise _bad("All bills of one payment must belong to the same vendor "
                           f"({bill_id} belongs to {bill['vendorId']}, not {vendor_id}).")
            extra = (getattr(self, "_pending_payment_credits", None) or {}).get(bill_id, [])
            available = bill["dueAmount"] - bill["scheduledAmount"] - sum((vc["amount"] for vc in extra), ZERO)
            if amount <= 0 or amount > available:
                raise _bad(f"Invalid field,value: billPayments[{i}].amount, {amount}. "
                           f"Must be > 0 and <= the open amount {available} of bill {bill_id}.")
            bills.append((bill, amount))
        vendor = org.vendors[vendor_id]
        now = self._now_iso()
        total = sum((a for _, a in bills), ZERO)
        txn = next(self._txn)
        extras = getattr(self, "_pending_payment_credits", None) or {}
        self._pending_payment_credits = {}
        bill_payments = [{"id": self._new_id("blp"), "billId": b["id"], "amount": a,
                          "vendorCredits": self._payment_credits(org, b, extras.get(b["id"], []))}
                         for b, a in bills]
        for b, _ in bills:  # credits applied at payment time lower what is due on the bill
            b["creditAmount"] += sum((vc["amount"] for vc in extras.get(b["id"], [])), ZERO)
        payment = {
            "id": self._new_id("stp"), "amount": total, "vendorId": vendor_id, "vendorName": vendor["name"],
            "billId": bills[0][0]["id"],  # [U] for multi-bill payments: the first bill
            "billPayments": bill_payments, "description": description or "",
            "processDate": process_date or self._today(),
            "fundingAccount": {"type": "BANK_ACCOUNT", "id": org.bank_account_id},
            "processingOptions": {"requestPayFaster": False, "createBill": False},
            "transactionNumber": str(txn), "confirmationNumber": f"P{txn:010d}",
            "status": status, "singleStatus": single_status, "exchangeRate": 1, "fundingAmount": total,
            "onlinePayment": True, "disbursementType": "ACH", "cancelRequestSubmitted": False,
            "createdBy": created_by, "createdTime": now, "updatedTime": now,
        }
        org.payments[payment["id"]] = payment
        field = "scheduledAmount" if status in SCHEDULED_STATES else "paidAmount"
        for bill, amount in bills:
            bill[field] += amount
        self._touch_bills(org, payment, out)
        self._emit(org, "payment.updated", "payment", self._payment_event_entity(org, payment), payment["id"], out)
        return payment

    def _touch_bills(self, org, payment, out):
        for bp in payment["billPayments"]:
            bill = org.bills[bp["billId"]]
            _recompute_bill(bill)
            bill["updatedTime"] = self._now_iso()
            if self.emit_bill_updated_on_payment:
                self._emit(org, "bill.updated", "bill", bill, bill["id"], out)

    def _shift_amounts(self, org, payment, source, target, out):
        for bp in payment["billPayments"]:
            bill = org.bills[bp["billId"]]
            bill[source] = max(ZERO, bill[source] - bp["amount"])
            if target:
                bill[target] += bp["amount"]
        self._touch_bills(org, payment, out)

    def _reverse_payment(self, org, payment, out):
        source = "scheduledAmount" if payment["status"] in SCHEDULED_STATES else "paidAmount"
        self._shift_amounts(org, payment, source, None, out)

    def _set_payment_status(self, org, payment, status, single_status, out):
        payment["status"], payment["singleStatus"] = status, single_status
        payment["updatedTime"] = self._now_iso()
        self._emit(org, "payment.updated", "payment", self._payment_event_entity(org, payment), payment["id"], out)

    def _void(self, org, payment, out):
        if payment["status"] in DEAD_STATES:
            raise _bad(f"Payment {payment['id']} is {payment['status']} and cannot be voided.")
        self._reverse_payment(org, payment, out)
        payment["voidInfo"] = [{"voidDate": self._today(), "voidReason": "Voided"}]
        self._set_payment_status(org, payment, "VOID", "VOIDED", out)
        return payment

    def _h_payment_void(self, ctx, ident):
        return 200, self._void(ctx.org, self._payment(ctx.org, ident), ctx.out)

    def _h_payment_cancel(self, ctx, ident):
        payment = self._payment(ctx.org, ident)
        if payment["status"] not in SCHEDULED_STATES:
            raise _bad(f"Payment {ident} is {payment['status']}; only scheduled payments can be canceled "
                       "(void a paid one).")
        self._reverse_payment(ctx.org, payment, ctx.out)
        self._set_payment_status(ctx.org, payment, "CANCELLED", "CANCELED", ctx.out)
        return 200, payment

    def _payment_event_entity(self, org, p):
        """payment.updated payload (sheet §9.3): no per-bill amounts, status is the single-status value."""
        moved = p["status"] not in SCHEDULED_STATES
        return {
            "id": p["id"], "billIds": [bp["billId"] for bp in p["billPayments"]],
            "transactionNumber": p["transactionNumber"], "status": p["singleStatus"], "createdBy": p["createdBy"],
            "createdTime": p["createdTime"], "updatedTime": p["updatedTime"], "processDate": p["processDate"],
            "funding": {"amount": p["amount"], "currency": "USD",
                        "fundingAccount": {"id": org.bank_account_id, "type": "BANK_ACCOUNT",
                                           "name": "Operating Account", "accountNumber": "************1111"}},
            "disbursement": {"amount": p["amount"], "currency": "USD", "arrivesByDate": p["processDate"],
                             "disbursementAccount": {"type": "ACH", "accountNumber": "******333"} if moved else {}},
            "vendor": {"id": p["vendorId"], "name": p["vendorName"]},
            "billingType": "BDC",
        }
