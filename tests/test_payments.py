"""BILL payments post back to SAP as outgoing payments, exactly once (end to end on the simulators)."""

import json
from decimal import Decimal

import pytest
import requests

from connector.clients.bill import BillClient
from connector.clients.sap import SapClient
from connector.models import InvoiceRecord, PaymentRecord, WebhookEvent
from connector.subscriptions import register, rotate_key
from connector.sync.payments import PaymentSync
from connector.sync.runner import run_sync
from connector.webhooks import sign
from mappings.suggest import apply_proposals, suggest_accounts, suggest_departments


def map_everything(conn):
    proposals = suggest_accounts(conn) + suggest_departments(conn)
    apply_proposals([(p.sap_row, p.bill_row) for p in proposals])


@pytest.fixture
def billed(conn, sap_sim):
    return make_billed(conn, sap_sim)


def make_billed(conn, sap_sim):
    """Three invoices of V1000 and one of V1005 synced to BILL; returns {invoice number: InvoiceRecord}."""
    sap_sim.add_invoice("V1000", [{"AccountCode": "6100", "LineTotal": "100.00", "CostingCode": "ADMIN"}], num_at_card="A-1")
    sap_sim.add_invoice("V1000", [{"AccountCode": "6200", "LineTotal": "250.00", "CostingCode": "OPS"}], num_at_card="A-2")
    sap_sim.add_invoice("V1000", [{"AccountCode": "6300", "LineTotal": "40.50", "CostingCode": "WH"}], num_at_card="A-3")
    sap_sim.add_invoice("V1005", [{"AccountCode": "6300", "LineTotal": "75.00", "CostingCode": "WH"}], num_at_card="U-1")
    run_sync(conn, ["reference"])
    map_everything(conn)
    run_sync(conn, ["vendors", "bills"])
    records = {r.invoice_number: r for r in InvoiceRecord.objects.filter(connection=conn)}
    assert all(r.status == "synced" for r in records.values()), [(r.invoice_number, r.last_error) for r in records.values()]
    return records


def sap_payments(sap_sim):
    return [p for p in sap_sim.entities("VendorPayments") if p.get("Cancelled") != "tYES"]


def invoice(sap_sim, doc_entry):
    return next(i for i in sap_sim.entities("PurchaseInvoices") if i["DocEntry"] == doc_entry)


def sync_payments(conn):
    return run_sync(conn, ["payments"]).summary["payments"]


@pytest.mark.django_db
def test_polling_alone_posts_full_partial_and_multi_bill_payments(conn, sap_sim, bill_sim, billed):
    """GIVEN no webhook subscription at all WHEN BILL pays bills THEN the payments step finds and posts them."""
    a1, a2, u1 = billed["A-1"], billed["A-2"], billed["U-1"]
    multi = bill_sim.pay_bills([(a1.bill_id, "100.00"), (a2.bill_id, "100.00")], process_date="2026-11-20")
    partial = bill_sim.pay_bills([(u1.bill_id, "25.00")], process_date="2026-11-21")
    summary = sync_payments(conn)
    assert summary["posted"] == 2 and summary["failed"] == 0
    posted = {p["TransferReference"]: p for p in sap_payments(sap_sim)}
    assert set(posted) == {multi["id"], partial["id"]}
    one = posted[multi["id"]]
    assert one["CardCode"] == "V1000" and Decimal(str(one["TransferSum"])) == Decimal("200.00")
    assert str(one["DocDate"])[:10] == "2026-11-20"
    applied = {line["DocEntry"]: Decimal(str(line["SumApplied"])) for line in one["PaymentInvoices"]}
    assert applied == {a1.doc_entry: Decimal("100.00"), a2.doc_entry: Decimal("100.00")}
    assert all(line["InvoiceType"] == "it_PurchaseInvoice" for line in one["PaymentInvoices"])
    assert Decimal(str(posted[partial["id"]]["TransferSum"])) == Decimal("25.00")
    assert Decimal(str(invoice(sap_sim, u1.doc_entry)["PaidToDate"])) == Decimal("25.00")
    assert invoice(sap_sim, a1.doc_entry)["DocumentStatus"] == "bost_Close"  # fully paid
    assert invoice(sap_sim, a2.doc_entry)["DocumentStatus"] == "bost_Open"  # 100 of 250
    # A second run posts nothing more.
    again = sync_payments(conn)
    assert again["posted"] == 0 and len(sap_payments(sap_sim)) == 2
    assert PaymentRecord.objects.filter(status="posted").count() == 2


@pytest.mark.django_db
def test_scheduled_then_paid_posts_only_once_paid(conn, sap_sim, bill_sim, billed):
    payment = bill_sim.pay_bills([(billed["A-3"].bill_id, "40.50")], status="SCHEDULED", single_status="SCHEDULED")
    assert sync_payments(conn)["waiting"] == 1 and sap_payments(sap_sim) == []
    bill_sim.settle_payment(payment["id"])
    assert sync_payments(conn)["posted"] == 1 and len(sap_payments(sap_sim)) == 1


@pytest.mark.django_db
def test_voided_payment_posts_nothing_and_a_posted_one_is_flagged_or_cancelled(conn, sap_sim, bill_sim, billed):
    voided_early = bill_sim.pay_bills([(billed["A-1"].bill_id, "100.00")])
    bill_sim.void_payment(voided_early["id"])
    assert sync_payments(conn)["not_paid"] == 1 and sap_payments(sap_sim) == []

    late = bill_sim.pay_bills([(billed["A-2"].bill_id, "250.00")])
    sync_payments(conn)
    assert len(sap_payments(sap_sim)) == 1
    bill_sim.void_payment(late["id"])
    sync_payments(conn)
    record = PaymentRecord.objects.get(bill_payment_id=late["id"])
    assert record.status == "flagged" and "cancel that SAP payment" in record.last_error
    assert len(sap_payments(sap_sim)) == 1  # nothing undone behind a person's back

    conn.cancel_sap_payment_on_void = True
    conn.save()
    PaymentRecord.objects.filter(pk=record.pk).update(status="posted")
    sync_payments(conn)
    assert PaymentRecord.objects.get(pk=record.pk).status == "reversed"
    assert sap_payments(sap_sim) == []
    assert Decimal(str(invoice(sap_sim, billed["A-2"].doc_entry)["PaidToDate"])) == Decimal("0")


@pytest.mark.django_db
def test_lost_sap_answer_never_posts_twice(conn, sap_sim, bill_sim, billed):
    bill_sim.pay_bills([(billed["U-1"].bill_id, "75.00")])
    sap_sim.lose_next_response("POST", "VendorPayments")
    summary = sync_payments(conn)
    assert summary["adopted"] == 1 and summary["failed"] == 0
    assert len(sap_payments(sap_sim)) == 1
    sync_payments(conn)
    assert len(sap_payments(sap_sim)) == 1


@pytest.mark.django_db
def test_payment_of_a_bill_we_did_not_create_is_flagged(conn, sap_sim, bill_sim, billed):
    bill = BillClient.for_connection(conn)
    foreign = bill.post("/v3/bills", {
        "vendorId": bill_sim.entities("bills")[0]["vendorId"], "dueDate": "2026-12-01",
        "invoice": {"invoiceNumber": "MANUAL-1", "invoiceDate": "2026-11-01"},
        "billLineItems": [{"amount": 10, "description": "entered by hand"}],
    })
    payment = bill_sim.pay_bills([(foreign["id"], "10.00")])
    sync_payments(conn)
    record = PaymentRecord.objects.get(bill_payment_id=payment["id"])
    assert record.status == "flagged" and "not created from an SAP invoice" in record.last_error
    assert sap_payments(sap_sim) == []


@pytest.mark.django_db(transaction=True)
def test_signed_webhooks_drive_payments_end_to_end(conn, sap_sim, bill_sim, billed, live_server, settings):
    """GIVEN a registered subscription WHEN BILL pays THEN its signed webhook posts the SAP payment, duplicates ignored."""
    settings.PUBLIC_BASE_URL = live_server.url
    bill = BillClient.for_connection(conn)
    outcome, _ = register(conn, bill)
    assert outcome == "created" and conn.bill_webhook_security_key
    assert register(conn, bill)[0] == "unchanged"
    bill_sim.webhook_duplicate_rate = 1.0  # every event delivered twice
    payment = bill_sim.pay_bills([(billed["A-1"].bill_id, "100.00")])
    bill_sim.wait_for_webhooks(10)
    assert any(d[1] == "payment.updated" and d[3] == 200 for d in bill_sim.deliveries)
    events = WebhookEvent.objects.filter(connection=conn, event_type="payment.updated")
    assert events.count() == 1 and events.get().status == "processed"
    assert [p["TransferReference"] for p in sap_payments(sap_sim)] == [payment["id"]]

    # Key rotation: BILL signs with the new key; the old one would still be accepted.
    rotate_key(conn, bill)
    conn.refresh_from_db()
    assert conn.bill_webhook_previous_key and conn.bill_webhook_previous_key != conn.bill_webhook_security_key
    second = bill_sim.pay_bills([(billed["U-1"].bill_id, "75.00")])
    bill_sim.wait_for_webhooks(10)
    assert {p["TransferReference"] for p in sap_payments(sap_sim)} == {payment["id"], second["id"]}


@pytest.mark.django_db(transaction=True)
def test_disabled_subscription_is_re_enabled_and_out_of_order_events_converge(conn, sap_sim, bill_sim, billed,
                                                                               live_server, settings):
    settings.PUBLIC_BASE_URL = live_server.url
    bill = BillClient.for_connection(conn)
    register(conn, bill)
    bill.patch(f"/v3/subscriptions/{conn.bill_webhook_subscription_id}", {"status": {"enabled": False}}, events=True)
    assert register(conn, bill)[0] == "enabled"
    # Out of order: BILL delivers the "voided" event before the "paid" one. Events are hints; the truth wins.
    bill.patch(f"/v3/subscriptions/{conn.bill_webhook_subscription_id}", {"status": {"enabled": False}}, events=True)
    payment = bill_sim.pay_bills([(billed["A-3"].bill_id, "40.50")])
    bill_sim.void_payment(payment["id"])
    conn.refresh_from_db()
    url = f"{live_server.url}/webhooks/bill/{conn.webhook_token}/"
    for event_id, status in (("evt-void", "VOIDED"), ("evt-paid", "PROCESSED")):
        body = json.dumps({"metadata": {"eventId": event_id, "eventType": "payment.updated", "version": "1"},
                           "payment": {"id": payment["id"], "status": status}}, separators=(",", ":")).encode()
        answer = requests.post(url, data=body, headers={"x-bill-sha-signature": sign(body, conn.bill_webhook_security_key),
                                                       "Content-Type": "application/json"}, timeout=10)
        assert answer.status_code == 200
    assert sap_payments(sap_sim) == []
    assert PaymentRecord.objects.get(bill_payment_id=payment["id"]).status == "not_paid"
    assert WebhookEvent.objects.filter(connection=conn, status="processed").count() == 2


@pytest.mark.django_db
def test_pending_events_are_processed_by_the_payments_step(conn, sap_sim, bill_sim, billed):
    """A deployment without a running task cluster loses nothing: `sync --step payments` processes stored events."""
    payment = bill_sim.pay_bills([(billed["A-1"].bill_id, "100.00")])
    WebhookEvent.objects.create(connection=conn, event_id="evt-1", event_type="payment.updated", entity_id=payment["id"],
                                payload={"metadata": {"eventId": "evt-1", "eventType": "payment.updated"},
                                         "payment": {"id": payment["id"]}})
    sync = PaymentSync(conn, SapClient.for_connection(conn), BillClient.for_connection(conn))
    sync.run()
    assert WebhookEvent.objects.get(event_id="evt-1").status == "processed"
    assert sync.summary["events"] == 1 and sync.summary["posted"] == 1


@pytest.mark.django_db
def test_polling_falls_back_when_bill_refuses_the_payment_filter(conn, sap_sim, bill_sim, billed):
    """Payments' filterable fields are only partly documented: a refused filter/sort must not stop the poll."""
    payment = bill_sim.pay_bills([(billed["A-3"].bill_id, "40.50")])
    bill_sim.fail_next("GET", "/v3/payments", 400, "BDC_1130", "Invalid filter field: updatedTime", count=2)
    summary = sync_payments(conn)
    assert summary["posted"] == 1
    assert [p["TransferReference"] for p in sap_payments(sap_sim)] == [payment["id"]]


@pytest.mark.django_db
def test_a_run_that_dies_after_polling_loses_no_payment(conn, sap_sim, bill_sim, billed, monkeypatch):
    """GIVEN the poll moved its cursor past two payments WHEN the worker dies before posting them THEN the next
    run still posts both (they were recorded as pending together with the cursor)."""
    from connector.sync import payments as payments_module

    clock = [1_800_000_000.0]
    bill_sim._clock = lambda: clock[0]  # the simulator's clock: the two payments are an hour apart
    early = bill_sim.pay_bills([(billed["A-1"].bill_id, "100.00")])
    clock[0] += 3600
    late = bill_sim.pay_bills([(billed["U-1"].bill_id, "75.00")])

    def worker_killed(self, payment_id):
        raise RuntimeError("worker killed at its task timeout")

    real = payments_module.PaymentSync.handle
    monkeypatch.setattr(payments_module.PaymentSync, "handle", worker_killed)
    with pytest.raises(RuntimeError):
        run_sync(conn, ["payments"])
    assert set(PaymentRecord.objects.values_list("bill_payment_id", "status")) == {
        (early["id"], "pending"), (late["id"], "pending")}
    monkeypatch.setattr(payments_module.PaymentSync, "handle", real)
    assert sync_payments(conn)["posted"] == 2
    assert {p["TransferReference"] for p in sap_payments(sap_sim)} == {early["id"], late["id"]}


@pytest.mark.django_db
def test_sync_lists_payments_that_need_attention(conn, sap_sim, bill_sim, billed):
    from tests.test_connections import run_cli

    conn.sap_payment_account = ""
    conn.save()
    payment = bill_sim.pay_bills([(billed["A-1"].bill_id, "100.00")])
    code, out, _ = run_cli("sync", "demo-sandbox", "--step", "payments")
    record = PaymentRecord.objects.get(bill_payment_id=payment["id"])
    assert code == 0 and record.status == "flagged"
    assert (f"  payment {payment['id']} (record {record.pk}, V1000) [flagged]: no SAP payment account is set for this "
            "connection (sap.payment_account): set it, then replay this payment") in out.splitlines()


@pytest.mark.parametrize("payment,state", [
    ({"status": "PAID"}, "paid"), ({"status": "SCHEDULED", "singleStatus": "PROCESSED"}, "paid"),
    ({"status": "PROCESSED"}, "paid"), ({"status": "CLEARED"}, "paid"), ({"status": "SCHEDULED"}, "waiting"),
    ({"status": "APPROVING", "singleStatus": "SCHEDULED"}, "waiting"), ({"status": "VOID"}, "undone"),
    ({"status": "PAID", "singleStatus": "VOIDED"}, "undone"), ({"status": "FAILED"}, "undone"),
    ({"singleStatus": "FUNDING_FAILED_VOIDED"}, "undone"), ({}, "waiting"),
])
def test_payment_states_in_either_vocabulary(payment, state):
    from connector.sync.payments import payment_state

    assert payment_state(payment) == state
