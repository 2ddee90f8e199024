"""A/P credit memos → BILL vendor credits (issue 13, parts 1, 2 and 5) on the SAP and BILL simulators.

One vendor credit per SAP credit memo whatever happens (lost answers, replays, overlapping runs; kills are in
test_crash_safety_documents.py), coded like bills (lines, tax, freight, total to the cent), applied to the unpaid
bill of the invoice it is based on; cancelled memos archive their unapplied credit; a BILL payment that used a
credit posts to SAP with the invoice and the credit memo, TransferSum = the money that left.
"""

from decimal import Decimal

import pytest

from connector.models import CreditMemoRecord, InvoiceRecord, PaymentRecord
from connector.sync.credits import CreditSync, credit_marker_in
from connector.sync.runner import run_sync
from tests.test_sync_bills import line, prepare

pytestmark = pytest.mark.django_db(transaction=True)
Status = CreditMemoRecord.Status


@pytest.fixture
def ready(conn):
    prepare(conn)
    return conn


def cycle(conn, *steps):
    return run_sync(conn, list(steps) or ["credits", "bills"])


def credits_of(bill_sim, doc_entry):
    return [c for c in bill_sim.entities("vendor-credits")
            if not c["archived"] and (credit_marker_in(c.get("description")) or (None, None))[1] == doc_entry]


def the_credit(bill_sim, doc_entry):
    found = credits_of(bill_sim, doc_entry)
    assert len(found) == 1, f"credit memo {doc_entry}: {len(found)} vendor credits"
    return found[0]


def memo(conn, doc_entry):
    return CreditMemoRecord.objects.get(connection=conn, doc_entry=doc_entry)


def bill_of(conn, bill_sim, doc_entry):
    bill_id = InvoiceRecord.objects.get(connection=conn, doc_entry=doc_entry).bill_id
    return next(b for b in bill_sim.entities("bills") if b["id"] == bill_id)


def test_based_on_invoice_credit_is_applied_to_its_unpaid_bill(ready, sap_sim, bill_sim):
    invoice = sap_sim.add_invoice("V1000", [line("6100", "500.00", tax="TX8")], num_at_card="INV-77")
    cycle(ready)
    credit_memo = sap_sim.add_credit_note("V1000", [line("6100", "100.00", tax="TX8")], num_at_card="CM-77",
                                          base_invoice=invoice["DocEntry"])
    run = cycle(ready)
    assert run.summary["credits"]["created"] == 1 and run.summary["credits"]["applied"] == 1
    credit = the_credit(bill_sim, credit_memo["DocEntry"])
    assert credit["referenceNumber"] == "CM-77" and credit["vendorId"] == the_vendor(ready, "V1000")
    assert Decimal(str(credit["amount"])) == Decimal(str(credit_memo["DocTotal"])) == Decimal("108.25")
    assert {li["description"] for li in credit["vendorCreditLineItems"]} == {"Services 6100", "Tax TX8"}
    bill = bill_of(ready, bill_sim, invoice["DocEntry"])
    assert bill["vendorCredits"] == [{"id": credit["id"], "amount": Decimal("108.25")}]
    assert bill["dueAmount"] == Decimal("433.00")  # BILL pays only what is owed: 541.25 - 108.25
    record = memo(ready, credit_memo["DocEntry"])
    assert record.status == Status.SYNCED and record.applied_bill_id == bill["id"]
    # SAP's invoice shows the credit in PaidToDate: the bills step knows it is ours (not paid outside BILL)
    assert InvoiceRecord.objects.get(connection=ready, doc_entry=invoice["DocEntry"]).status == "synced"
    again = cycle(ready)
    assert again.summary["credits"]["created"] == 0 and len(credits_of(bill_sim, credit_memo["DocEntry"])) == 1
    assert bill_of(ready, bill_sim, invoice["DocEntry"])["dueAmount"] == Decimal("433.00")


def the_vendor(conn, card_code):
    from mappings.models import VendorLink

    return VendorLink.objects.get(connection=conn, card_code=card_code).bill_vendor_id


def test_stand_alone_memo_stays_available_reference_falls_back_to_docnum(ready, sap_sim, bill_sim):
    cm = sap_sim.add_credit_note("V1000", [line("6100", "40.00")],
                                 freight=[{"ExpenseCode": 1, "LineTotal": Decimal("5.00"), "TaxCode": "EX"}])
    run = cycle(ready, "credits")
    assert run.summary["credits"]["available"] == 1
    credit = the_credit(bill_sim, cm["DocEntry"])
    assert credit["referenceNumber"] == str(cm["DocNum"])
    assert sum(Decimal(str(li["amount"])) for li in credit["vendorCreditLineItems"]) == Decimal("45.00")
    assert memo(ready, cm["DocEntry"]).status == Status.SYNCED


def test_unmapped_account_holds_the_memo_until_mapped(ready, sap_sim, bill_sim):
    cm = sap_sim.add_credit_note("V1000", [line("6900", "25.00")])  # 6900 has no BILL account in the catalog
    cycle(ready, "credits")
    record = memo(ready, cm["DocEntry"])
    assert record.status == Status.HELD and "SAP account 6900" in record.last_error
    assert credits_of(bill_sim, cm["DocEntry"]) == []


def test_lost_answer_and_replay_end_with_one_credit(ready, sap_sim, bill_sim):
    cm = sap_sim.add_credit_note("V1001", [line("6100", "30.00")], num_at_card="CM-LOST")
    bill_sim.lose_next_response("POST", "/v3/vendor-credits")
    cycle(ready, "credits")
    assert len(credits_of(bill_sim, cm["DocEntry"])) == 1
    record = memo(ready, cm["DocEntry"])
    assert record.status == Status.SYNCED and record.credit_id
    # a replay (the record sent back to pending as `replay` does) adopts, never re-creates
    CreditMemoRecord.objects.filter(pk=record.pk).update(status=Status.FAILED, next_step="create", credit_id="")
    CreditSync(ready, *clients(ready)).process(only_ids=[record.pk])
    assert len(credits_of(bill_sim, cm["DocEntry"])) == 1
    assert memo(ready, cm["DocEntry"]).credit_id == record.credit_id


def test_a_credit_entered_by_hand_with_the_same_reference_flags_the_memo(ready, sap_sim, bill_sim):
    sap_cm = sap_sim.add_credit_note("V1000", [line("6100", "12.00")], num_at_card="HAND-1")
    bill, = clients(ready)[1:]
    bill.post("/v3/vendor-credits", {"vendorId": the_vendor(ready, "V1000"), "referenceNumber": "HAND-1",
                                     "creditDate": "2026-03-01", "vendorCreditLineItems": [{"amount": 12}]})
    cycle(ready, "credits")
    record = memo(ready, sap_cm["DocEntry"])
    assert record.status == Status.FLAGGED and "not made by ml-connector" in record.last_error


def clients(conn):
    from connector.clients.bill import BillClient
    from connector.clients.sap import SapClient

    return SapClient.for_connection(conn), BillClient.for_connection(conn)


def test_cancelled_memo_archives_its_credit_taken_off_the_unpaid_bill(ready, sap_sim, bill_sim):
    invoice = sap_sim.add_invoice("V1000", [line("6100", "200.00")])
    cycle(ready)
    cm = sap_sim.add_credit_note("V1000", [line("6100", "50.00")], base_invoice=invoice["DocEntry"])
    cycle(ready)
    assert bill_of(ready, bill_sim, invoice["DocEntry"])["dueAmount"] == Decimal("150.00")
    sap_sim.cancel_credit_note(cm["DocEntry"])
    run = cycle(ready)
    assert run.summary["credits"]["archived"] == 1
    assert credits_of(bill_sim, cm["DocEntry"]) == [] and memo(ready, cm["DocEntry"]).status == Status.ARCHIVED
    assert bill_of(ready, bill_sim, invoice["DocEntry"])["dueAmount"] == Decimal("200.00")
    assert InvoiceRecord.objects.get(connection=ready, doc_entry=invoice["DocEntry"]).status == "synced"


def test_cancelled_memo_whose_credit_was_used_in_a_payment_is_flagged_not_archived(ready, sap_sim, bill_sim):
    invoice = sap_sim.add_invoice("V1000", [line("6100", "80.00")])
    cm = sap_sim.add_credit_note("V1000", [line("6100", "20.00")])
    cycle(ready)
    bill_id = InvoiceRecord.objects.get(connection=ready, doc_entry=invoice["DocEntry"]).bill_id
    credit = the_credit(bill_sim, cm["DocEntry"])
    bill_sim.pay_bills_with_credits([(bill_id, "60.00")], {bill_id: [(credit["id"], "20.00")]})
    CreditMemoRecord.objects.filter(doc_entry=cm["DocEntry"]).update(next_step="archive", status="pending",
                                                                     sap_state="cancelled")
    cycle(ready, "credits")
    record = memo(ready, cm["DocEntry"])
    assert record.status == Status.FLAGGED and "already applied" in record.last_error
    assert len(credits_of(bill_sim, cm["DocEntry"])) == 1


def test_payment_with_a_stand_alone_credit_posts_invoice_and_credit_memo(ready, sap_sim, bill_sim):
    invoice = sap_sim.add_invoice("V1000", [line("6100", "80.00")])
    cm = sap_sim.add_credit_note("V1000", [line("6100", "20.00")], num_at_card="CM-PAY")
    cycle(ready)
    bill_id = InvoiceRecord.objects.get(connection=ready, doc_entry=invoice["DocEntry"]).bill_id
    credit = the_credit(bill_sim, cm["DocEntry"])
    payment = bill_sim.pay_bills_with_credits([(bill_id, "60.00")], {bill_id: [(credit["id"], "20.00")]})
    cycle(ready, "payments")
    posted = [p for p in sap_sim.entities("VendorPayments") if p["TransferReference"] == payment["id"]]
    assert len(posted) == 1
    lines = {(ln["InvoiceType"], ln["DocEntry"]): ln["SumApplied"] for ln in posted[0]["PaymentInvoices"]}
    assert lines == {("it_PurchaseInvoice", invoice["DocEntry"]): Decimal("80.00"),
                     ("it_PurchaseCreditNote", cm["DocEntry"]): Decimal("-20.00")}
    assert posted[0]["TransferSum"] == Decimal("60.00")  # the money that left
    sap_invoice = next(i for i in sap_sim.entities("PurchaseInvoices") if i["DocEntry"] == invoice["DocEntry"])
    assert sap_invoice["DocumentStatus"] == "bost_Close"  # closed in SAP as it closed in BILL
    sap_memo = next(m for m in sap_sim.entities("PurchaseCreditNotes") if m["DocEntry"] == cm["DocEntry"])
    assert sap_memo["DocumentStatus"] == "bost_Close"
    assert PaymentRecord.objects.get(bill_payment_id=payment["id"]).status == "posted"


def test_payment_of_a_bill_with_its_based_on_credit_posts_only_the_cash(ready, sap_sim, bill_sim):
    invoice = sap_sim.add_invoice("V1000", [line("6100", "300.00")])
    cycle(ready)
    sap_sim.add_credit_note("V1000", [line("6100", "100.00")], base_invoice=invoice["DocEntry"])
    cycle(ready)
    bill_id = InvoiceRecord.objects.get(connection=ready, doc_entry=invoice["DocEntry"]).bill_id
    payment = bill_sim.pay_bills([(bill_id, "200.00")])
    assert payment["billPayments"][0]["vendorCredits"]  # BILL reports the credit used on the bill
    cycle(ready, "payments")
    posted = [p for p in sap_sim.entities("VendorPayments") if p["TransferReference"] == payment["id"]]
    assert len(posted) == 1 and posted[0]["TransferSum"] == Decimal("200.00")
    assert [(ln["InvoiceType"], ln["SumApplied"]) for ln in posted[0]["PaymentInvoices"]] == [
        ("it_PurchaseInvoice", Decimal("200.00"))]  # SAP already cleared the memo against the invoice
    sap_invoice = next(i for i in sap_sim.entities("PurchaseInvoices") if i["DocEntry"] == invoice["DocEntry"])
    assert sap_invoice["DocumentStatus"] == "bost_Close" and sap_invoice["PaidToDate"] == Decimal("300.00")


def test_positive_reading_of_the_credit_line_sign(ready, sap_sim, bill_sim):
    """The sign SAP wants on a credit-memo line is unconfirmed: a Service Layer refusing negatives gets positives."""
    sap_sim.credit_note_sum_sign = "positive"
    invoice = sap_sim.add_invoice("V1000", [line("6100", "50.00")])
    cm = sap_sim.add_credit_note("V1000", [line("6100", "10.00")])
    cycle(ready)
    bill_id = InvoiceRecord.objects.get(connection=ready, doc_entry=invoice["DocEntry"]).bill_id
    credit = the_credit(bill_sim, cm["DocEntry"])
    payment = bill_sim.pay_bills_with_credits([(bill_id, "40.00")], {bill_id: [(credit["id"], "10.00")]})
    cycle(ready, "payments")
    posted = [p for p in sap_sim.entities("VendorPayments") if p["TransferReference"] == payment["id"]]
    assert len(posted) == 1 and posted[0]["TransferSum"] == Decimal("40.00")
    assert PaymentRecord.objects.get(bill_payment_id=payment["id"]).status == "posted"


def test_replay_of_a_held_credit_memo_after_mapping_sends_one_credit(ready, sap_sim, bill_sim):
    from django.core.management import call_command

    from mappings.models import BillAccount, SapAccount

    cm = sap_sim.add_credit_note("V1000", [line("6900", "25.00")], num_at_card="RPL-CM")
    cycle(ready, "credits")
    assert memo(ready, cm["DocEntry"]).status == Status.HELD
    row = SapAccount.objects.get(connection=ready, code="6900")
    row.bill_account = BillAccount.objects.filter(connection=ready, archived=False).first()
    row.refresh_status()
    row.save()
    call_command("replay", "demo-sandbox", "--type", "credit")
    call_command("replay", "demo-sandbox", "--type", "credit")  # nothing left to replay: never a second credit
    assert memo(ready, cm["DocEntry"]).status == Status.SYNCED
    assert len(credits_of(bill_sim, cm["DocEntry"])) == 1


def test_both_readings_of_the_bill_payment_amount(ready):
    """billPayments[].amount may be the money paid (60) or include the credit (80): either way the invoice gets 80
    and the memo 20, and a credit from a memo based on that invoice adds no memo line."""
    from connector.sync.credit_payments import credit_lines, memo_total, with_credits

    invoice = InvoiceRecord.objects.create(connection=ready, doc_entry=7, doc_num="307", card_code="V1000", bill_id="b1")
    CreditMemoRecord.objects.create(connection=ready, doc_entry=9, doc_num="509", card_code="V1000", credit_id="vcrA")
    CreditMemoRecord.objects.create(connection=ready, doc_entry=10, doc_num="510", card_code="V1000", credit_id="vcrB",
                                    base_entry=7)
    for part_amount in ("60.00", "80.00"):
        part = {"billId": "b1", "amount": part_amount, "vendorCredits": [{"id": "vcrA", "amount": "20.00"}]}
        allocations = with_credits(ready, "stp1", {"amount": "60.00"}, [part], [{"bill_id": "b1", "amount": part_amount}],
                                   {"b1": invoice})
        assert allocations[0]["amount"] == "80.00" and allocations[0]["paid"] == "60.00"
        assert memo_total(allocations) == Decimal("20.00")
        assert credit_lines(allocations, 1, -1) == [{"LineNum": 1, "DocEntry": 9, "InvoiceType": "it_PurchaseCreditNote",
                                                     "SumApplied": -20.0}]
    based = {"billId": "b1", "amount": "60.00", "vendorCredits": [{"id": "vcrB", "amount": "20.00"}]}
    allocations = with_credits(ready, "stp2", {"amount": "60.00"}, [based], [{"bill_id": "b1", "amount": "60.00"}],
                               {"b1": invoice})
    assert allocations[0]["amount"] == "60.00" and "credit_memos" not in allocations[0]
    stranger = {"billId": "b1", "amount": "60.00", "vendorCredits": [{"id": "vcrX", "amount": "5.00"}]}
    with pytest.raises(ValueError, match="not made from an SAP credit memo by ml-connector"):
        with_credits(ready, "stp3", {"amount": "60.00"}, [stranger], [{"bill_id": "b1", "amount": "60.00"}],
                     {"b1": invoice})


def test_a_failing_credit_memo_read_does_not_stop_billing(ready, sap_sim, bill_sim):
    doc = sap_sim.add_invoice("V1000", [line("6100", "33.00")], num_at_card="STILL-BILLED")
    sap_sim.fail_next("GET", "PurchaseCreditNotes", 403, -1, "No permission for A/P credit memos")
    run = cycle(ready)
    assert run.summary["credits"]["failed"] == 1
    assert InvoiceRecord.objects.get(connection=ready, doc_entry=doc["DocEntry"]).status == "synced"
