"""End to end on the strict simulators (issue 11): the product behaves as the real SAP and BILL require."""

import pytest

from connector.models import InvoiceRecord, PaymentRecord
from connector.sync.runner import run_sync
from mappings.suggest import apply_proposals, suggest_accounts, suggest_departments


def map_everything(conn):
    proposals = suggest_accounts(conn) + suggest_departments(conn)
    apply_proposals([(p.sap_row, p.bill_row) for p in proposals])


def bill_invoices(conn, sap_sim, *invoices):
    for card_code, amount, ref in invoices:
        sap_sim.add_invoice(card_code, [{"AccountCode": "6100", "LineTotal": amount, "CostingCode": "ADMIN"}],
                            num_at_card=ref)
    run_sync(conn, ["reference"])
    map_everything(conn)
    run_sync(conn, ["vendors", "bills"])
    records = {r.invoice_number: r for r in InvoiceRecord.objects.filter(connection=conn)}
    assert set(records) >= {ref for _, _, ref in invoices}, list(records)
    assert all(r.status == "synced" for r in records.values()), [(r.invoice_number, r.last_error) for r in records.values()]
    return records


@pytest.mark.django_db
def test_bad_payment_account_fails_one_record_with_sap_words_and_no_extra_login(conn, sap_sim, bill_sim):
    records = bill_invoices(conn, sap_sim, ("V1000", "100.00", "PA-1"))
    conn.sap_payment_account = "9999"  # not an account of the company
    conn.save(update_fields=["sap_payment_account"])
    bill_sim.pay_bills([(records["PA-1"].bill_id, "100.00")], process_date="2026-11-20")
    logins_before = sap_sim.login_count
    posts_before = sap_sim.stats()["requests_by_path"].get("POST VendorPayments", 0)
    summary = run_sync(conn, ["payments"]).summary["payments"]
    assert summary["failed"] == 1
    failed = PaymentRecord.objects.get(connection=conn)
    assert failed.status == "failed"
    assert "Code undefined [OVPM.TrsfrAcct]" in failed.last_error
    assert "payment_account" in failed.last_error
    assert sap_sim.login_count == logins_before  # the -5002 is not taken for an expired session
    assert sap_sim.stats()["requests_by_path"].get("POST VendorPayments", 0) - posts_before == 1
    assert not sap_sim.entities("VendorPayments")


@pytest.mark.django_db
def test_bill_refused_with_three_field_errors_shows_all_three(conn, sap_sim, bill_sim):
    sap_sim.add_invoice("V1000", [{"AccountCode": "6100", "LineTotal": "80.00", "CostingCode": "ADMIN"}],
                        num_at_card="THREE-1")
    run_sync(conn, ["reference"])
    map_everything(conn)
    run_sync(conn, ["vendors"])
    problems = ["invoice.invoiceNumber: size must be between 1 and 21", "dueDate: must not be before invoiceDate",
                "billLineItems[0].classifications.chartOfAccountId: account is inactive"]
    for path in ("/v3/bills/bulk", "/v3/bills"):  # the bulk request, then the one-by-one retry that isolates it
        bill_sim.fail_next("POST", path, 400, None, "", count=3, entries=[
            {"code": None, "message": problems[0], "params": {}}, {"message": problems[1]},
            {"code": "BDC_1119", "message": problems[2], "params": [{"name": "field", "value": "chartOfAccountId"}]}])
    run_sync(conn, ["bills"])
    record = InvoiceRecord.objects.get(connection=conn, invoice_number="THREE-1")
    assert record.status != "synced"
    for problem in problems:
        assert problem in record.last_error, record.last_error


@pytest.mark.django_db
def test_a_422_refused_payment_filter_falls_back_like_a_400(conn, sap_sim, bill_sim):
    records = bill_invoices(conn, sap_sim, ("V1000", "33.00", "F422-1"))
    payment = bill_sim.pay_bills([(records["F422-1"].bill_id, "33.00")])
    bill_sim.fail_next("GET", "/v3/payments", 422, None, "", count=2, entries=[
        {"code": None, "message": "filters: updatedTime is not filterable"}])
    assert run_sync(conn, ["payments"]).summary["payments"]["posted"] == 1
    assert [p["TransferReference"] for p in sap_sim.entities("VendorPayments")] == [payment["id"]]
