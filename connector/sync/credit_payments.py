"""BILL payments that used vendor credits → the SAP outgoing payment's lines (used by payments.py).

A BILL payment names, per bill, the vendor credits it used (`billPayments[].vendorCredits[{id, amount}]`). In SAP:
- a credit made from a credit memo **based on this invoice** is already cleared against it in SAP (the memo is the
  invoice's clearing document): the invoice gets only the money paid, no credit-memo line;
- any other credit of ours (a stand-alone memo): the invoice gets cash + credit, and the memo its own line
  `{"InvoiceType": "it_PurchaseCreditNote", "SumApplied": -credit}`, so `TransferSum` (the money that actually left)
  is Σ invoices − Σ memos. The sign SAP requires is unconfirmed (a real GET shows it negative; addendum §6):
  negative first, positive when SAP refuses the negative one (`SIGNS`);
- a credit not made by ml-connector has no SAP document we know: the payment is flagged for a person.

Whether `billPayments[].amount` is the money paid or includes the credits is unconfirmed too: both readings are
taken, by checking which one adds up to the payment's `amount` (the money that left).
"""

from decimal import Decimal

from .coding import money

SIGNS = (-1, 1)  # the credit-memo line's SumApplied: negative (seen in a real GET), then positive


def with_credits(connection, payment_id, payment, parts, allocations, invoices):
    """Adjust `allocations` (one per bill part, same order) for the credits of each part, in place.
    Raise ValueError naming what a person must do."""
    from connector.models import CreditMemoRecord

    used = [(part, [vc for vc in part.get("vendorCredits") or [] if money(vc.get("amount"))]) for part in parts]
    if not any(credits for _, credits in used):
        return allocations
    cash = money(payment.get("amount"))
    parts_total = sum((money(p.get("amount")) for p in parts), Decimal(0))
    credit_sum = sum((money(vc.get("amount")) for _, credits in used for vc in credits), Decimal(0))
    gross = parts_total != cash and parts_total == cash + credit_sum  # the part amounts include the credits
    memos = {m.credit_id: m for m in CreditMemoRecord.objects.filter(
        connection=connection, credit_id__in=[vc.get("id") for _, credits in used for vc in credits])}
    for allocation, (part, credits) in zip(allocations, used, strict=True):
        invoice = invoices[part.get("billId")]
        paid = money(part.get("amount")) - (sum((money(vc["amount"]) for vc in credits), Decimal(0)) if gross else 0)
        applied, lines = paid, []
        for vc in credits:
            record = memos.get(vc.get("id"))
            if record is None:
                raise ValueError(f"BILL payment {payment_id} used vendor credit {vc.get('id')}, which was not made "
                                 "from an SAP credit memo by ml-connector: post this payment in SAP by hand")
            if record.base_entry == invoice.doc_entry:
                continue  # SAP cleared the memo against this invoice already
            applied += money(vc["amount"])
            lines.append({"credit_id": record.credit_id, "doc_entry": record.doc_entry, "doc_num": record.doc_num,
                          "amount": str(money(vc["amount"]))})
        allocation["amount"] = str(applied)
        allocation["paid"] = str(paid)
        if lines:
            allocation["credit_memos"] = lines
    return allocations


def credit_lines(allocations, start, sign):
    """The PaymentInvoices lines of the credit memos in these allocations."""
    lines = []
    for allocation in allocations:
        for memo in allocation.get("credit_memos") or []:
            lines.append({"LineNum": start + len(lines), "DocEntry": memo["doc_entry"],
                          "InvoiceType": "it_PurchaseCreditNote", "SumApplied": float(sign * Decimal(memo["amount"]))})
    return lines


def memo_total(allocations):
    return sum((Decimal(m["amount"]) for a in allocations for m in a.get("credit_memos") or []), Decimal(0))


def sign_refused(exc):
    """SAP refused the credit-memo line's sign (the other reading is tried)."""
    text = f"{getattr(exc, 'sap_message', '')} {exc}".lower()
    return bool(getattr(exc, "permanent", False)) and "credit memo" in text and any(
        w in text for w in ("negative", "positive", "must be", "sign"))
