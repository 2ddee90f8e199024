"""Payments that must never drift between BILL and SAP: voids after posting, "not paid after all" states,
partial card claims, two handlers of one payment, a worker killed after SAP accepted the post."""

import threading
from decimal import Decimal

import pytest
from django.db import connections

from audit.replay import STILL_FAILING, SUCCEEDED, replay_records
from connector.clients.bill import BillClient
from connector.clients.sap import SapClient
from connector.models import PaymentRecord
from connector.sync.payments import PaymentSync, payment_state
from connector.sync.runner import run_sync
from tests.test_payments import make_billed, sap_payments, sync_payments

pytestmark = pytest.mark.django_db


@pytest.fixture
def billed(conn, sap_sim):
    return make_billed(conn, sap_sim)


def replay(record):
    outcomes = []
    replay_records([record], progress=outcomes.append)
    return outcomes


def cancelled_sap_payments(sap_sim):
    return [p for p in sap_sim.entities("VendorPayments") if p.get("Cancelled") == "tYES"]


def posted(conn, bill_sim, bill_id, amount):
    payment = bill_sim.pay_bills([(bill_id, amount)])
    assert sync_payments(conn)["posted"] == 1
    return payment


def test_a_void_after_posting_stays_flagged_however_often_it_is_handled_again(conn, sap_sim, bill_sim, billed):
    """GIVEN a BILL payment posted to SAP and then voided in BILL WHEN it is handled again and again (the poll's
    overlap, a duplicate webhook, a replay) THEN it stays flagged while the SAP payment stands (before: the
    second handling set it to "not paid" and cleared the flag, leaving the SAP payment live)."""
    payment = posted(conn, bill_sim, billed["A-2"].bill_id, "250.00")
    bill_sim.void_payment(payment["id"])
    sync_payments(conn)
    record = PaymentRecord.objects.get(bill_payment_id=payment["id"])
    assert record.status == "flagged" and "cancel that SAP payment" in record.last_error
    for _ in range(2):
        sync_payments(conn)  # the record is watched by every run
        sync = PaymentSync(conn, SapClient.for_connection(conn), BillClient.for_connection(conn))
        sync.handle(payment["id"])  # a duplicate webhook
    outcomes = replay(PaymentRecord.objects.get(pk=record.pk))
    record.refresh_from_db()
    assert record.status == "flagged" and "cancel that SAP payment" in record.last_error
    assert outcomes[0].result == STILL_FAILING
    assert len(sap_payments(sap_sim)) == 1


def test_replay_after_allowing_cancellation_really_cancels(conn, sap_sim, bill_sim, billed):
    """Before: the replay reported success and the SAP payment stayed live."""
    payment = posted(conn, bill_sim, billed["A-2"].bill_id, "250.00")
    bill_sim.void_payment(payment["id"])
    sync_payments(conn)
    conn.cancel_sap_payment_on_void = True
    conn.save()
    outcomes = replay(PaymentRecord.objects.get(bill_payment_id=payment["id"]))
    record = PaymentRecord.objects.get(bill_payment_id=payment["id"])
    assert record.status == "reversed"
    assert outcomes[0].result == SUCCEEDED and "cancelled" in outcomes[0].message.lower()
    assert sap_payments(sap_sim) == [] and len(cancelled_sap_payments(sap_sim)) == 1
    sync_payments(conn)  # and nothing more happens afterwards
    assert len(cancelled_sap_payments(sap_sim)) == 1 and PaymentRecord.objects.get(pk=record.pk).status == "reversed"


def test_a_person_cancelling_the_sap_payment_resolves_the_flag(conn, sap_sim, bill_sim, billed):
    payment = posted(conn, bill_sim, billed["A-2"].bill_id, "250.00")
    bill_sim.void_payment(payment["id"])
    sync_payments(conn)
    record = PaymentRecord.objects.get(bill_payment_id=payment["id"])
    sap_sim.cancel_payment(record.sap_doc_entry)
    sync_payments(conn)
    record.refresh_from_db()
    assert record.status == "reversed" and len(sap_payments(sap_sim)) == 0


def test_lost_answer_to_the_cancellation_is_checked_in_sap(conn, sap_sim, bill_sim, billed):
    conn.cancel_sap_payment_on_void = True
    conn.save()
    payment = posted(conn, bill_sim, billed["A-2"].bill_id, "250.00")
    bill_sim.void_payment(payment["id"])
    record = PaymentRecord.objects.get(bill_payment_id=payment["id"])
    sap_sim.lose_next_response("POST", f"VendorPayments({record.sap_doc_entry})/Cancel")
    sync_payments(conn)
    record.refresh_from_db()
    assert record.status == "reversed" and len(cancelled_sap_payments(sap_sim)) == 1


@pytest.mark.parametrize("single", ["DISBURSEMENT_FAILED_ACTION_NEEDED", "FUNDING_FAILED_ACTION_NEEDED",
                                    "VOID_PENDING", "CANCELLATION_IN_PROGRESS"])
def test_not_paid_after_all_states_are_never_posted(conn, sap_sim, bill_sim, billed, single):
    """Before: a PAID payment with one of these single statuses was posted to SAP."""
    payment = bill_sim.pay_bills([(billed["A-1"].bill_id, "100.00")], status="PAID", single_status=single)
    summary = sync_payments(conn)
    assert summary["posted"] == 0 and sap_payments(sap_sim) == []
    record = PaymentRecord.objects.get(bill_payment_id=payment["id"])
    assert record.status == "waiting" and single in record.last_error


def test_a_cleared_ach_rejected_later_flags_the_posted_payment(conn, sap_sim, bill_sim, billed):
    payment = bill_sim.pay_bills([(billed["A-1"].bill_id, "100.00")], status="PAID", single_status="CLEARED")
    assert sync_payments(conn)["posted"] == 1
    bill_sim.settle_payment(payment["id"], status="PAID", single_status="DISBURSEMENT_FAILED_ACTION_NEEDED")
    sync_payments(conn)
    record = PaymentRecord.objects.get(bill_payment_id=payment["id"])
    assert record.status == "flagged" and "DISBURSEMENT_FAILED_ACTION_NEEDED" in record.last_error
    assert len(sap_payments(sap_sim)) == 1  # not cancelled behind anyone's back: BILL has not settled it
    bill_sim.settle_payment(payment["id"], status="PAID", single_status="CLEARED")  # BILL resent it
    sync_payments(conn)
    record.refresh_from_db()
    assert record.status == "posted" and len(sap_payments(sap_sim)) == 1


def test_a_partially_claimed_card_posts_only_what_was_claimed(conn, sap_sim, bill_sim, billed):
    payment = bill_sim.pay_bills([(billed["A-2"].bill_id, "250.00")], status="PAID", single_status="PARTIALLY_CLAIMED")
    bill_sim._org().payments[payment["id"]]["claimedAmount"] = 180.0
    sync_payments(conn)
    (sap,) = sap_payments(sap_sim)
    assert Decimal(str(sap["TransferSum"])) == Decimal("180.00")
    assert Decimal(str(sap["PaymentInvoices"][0]["SumApplied"])) == Decimal("180.00")


def test_a_partially_claimed_card_without_the_claimed_amount_is_flagged(conn, sap_sim, bill_sim, billed):
    payment = bill_sim.pay_bills([(billed["A-2"].bill_id, "250.00")], status="PAID", single_status="PARTIALLY_CLAIMED")
    sync_payments(conn)
    record = PaymentRecord.objects.get(bill_payment_id=payment["id"])
    assert record.status == "flagged" and sap_payments(sap_sim) == []


@pytest.mark.parametrize("payment,state", [
    ({"status": "PAID", "singleStatus": "DISBURSEMENT_FAILED_ACTION_NEEDED"}, "reverting"),
    ({"status": "PAID", "singleStatus": "VOID_PENDING"}, "reverting"),
    ({"status": "PAID", "cancelRequestSubmitted": True}, "reverting"),
    ({"singleStatus": "PARTIALLY_CLAIMED"}, "partial"),
    ({"status": "PAID", "singleStatus": "SCHEDULED"}, "waiting"),
    ({"status": "PAID", "singleStatus": "SOMETHING_NEW"}, "waiting"),
    ({"status": "PAID"}, "paid"),
])
def test_payment_states_never_count_unknown_or_failing_as_paid(payment, state):
    assert payment_state(payment) == state


@pytest.mark.django_db(transaction=True)
def test_two_handlers_of_one_payment_post_it_once_and_keep_the_news(conn, sap_sim, bill_sim, billed):
    """GIVEN a webhook task and the scheduled cycle handling the same payment at once, and BILL voiding it while
    the first is posting WHEN both are done THEN SAP has exactly one payment for it and the record knows of the
    void (flagged), not "posted"."""
    payment = bill_sim.pay_bills([(billed["A-1"].bill_id, "100.00")])
    sap_sim.latency = 0.3
    started = threading.Event()
    real_post = SapClient.post

    def slow_post(self, path, *args, **kwargs):
        if path == "VendorPayments":
            started.set()
        return real_post(self, path, *args, **kwargs)

    SapClient.post = slow_post
    errors = []

    def first():
        try:
            PaymentSync(conn, SapClient.for_connection(conn), BillClient.for_connection(conn)).handle(payment["id"])
        except BaseException as exc:  # noqa: B036 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    try:
        worker = threading.Thread(target=first)
        worker.start()
        assert started.wait(20)
        bill_sim.void_payment(payment["id"])  # the news arrives while the first handler posts
        second = PaymentSync(conn, SapClient.for_connection(conn), BillClient.for_connection(conn))
        second.handle(payment["id"])
        worker.join(60)
    finally:
        SapClient.post = real_post
        sap_sim.latency = 0
    assert not errors
    record = PaymentRecord.objects.get(bill_payment_id=payment["id"])
    assert len(sap_sim.entities("VendorPayments")) == 1
    assert record.status == "flagged" and "cancel that SAP payment" in record.last_error
    assert record.claimed_by == ""


def test_killed_after_sap_accepted_the_post_is_adopted_by_the_next_run(conn, sap_sim, bill_sim, billed, monkeypatch):
    """Before: the record stayed `posting` for 10 minutes ("another attempt is posting it")."""

    class Killed(BaseException):
        pass

    payment = bill_sim.pay_bills([(billed["U-1"].bill_id, "75.00")])
    real_post = SapClient.post

    def post_then_die(self, path, *args, **kwargs):
        answer = real_post(self, path, *args, **kwargs)
        if path == "VendorPayments":
            raise Killed()
        return answer

    monkeypatch.setattr(SapClient, "post", post_then_die)
    with pytest.raises(Killed):
        run_sync(conn, ["payments"])
    monkeypatch.undo()
    assert PaymentRecord.objects.get(bill_payment_id=payment["id"]).status == "posting"
    summary = sync_payments(conn)
    assert summary["adopted"] == 1 and summary["posted"] == 0
    assert len(sap_payments(sap_sim)) == 1
    assert PaymentRecord.objects.get(bill_payment_id=payment["id"]).status == "posted"
