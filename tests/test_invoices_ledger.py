"""SAP invoices that must never be lost or paid twice: edits during a delta read, the fall-back hour,
invoices closed in SAP while their bill is payable, frozen suppliers, cancellations of flagged records,
hand-entered bills made weeks earlier."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from connector.clients.sap import SapClient
from connector.models import InvoiceRecord
from connector.sync import bills as bills_module
from connector.sync.delta import repeated_interval
from mappings.models import VendorLink
from tests.test_sync_bills import (
    Clock,
    assert_one_bill_each,
    bills_of,
    line,
    prepare,
    recent_day,
    record,
    sync,
    the_bill,
)

pytestmark = pytest.mark.django_db(transaction=True)
Status = InvoiceRecord.Status


@pytest.fixture
def ready(conn):
    prepare(conn)
    return conn


def stamped(sap_sim, count, start):
    clock = Clock(start)
    sap_sim.clock = clock
    entries = []
    for i in range(count):
        clock.now += timedelta(minutes=1)
        entries.append(sap_sim.add_invoice("V1000", [line("6100", f"{i + 1}.00")], num_at_card=f"K-{i}")["DocEntry"])
    return entries, clock


# --- 1. an invoice edited while the delta is being read -----------------------------------------------------
def test_an_edit_between_two_page_reads_hides_no_invoice(ready, sap_sim, bill_sim, monkeypatch):
    """GIVEN 12 invoices, pages of 5, and invoice 1 edited (by a person, or by our own payment posting) right
    after page 1 was read WHEN the delta is read THEN every invoice is recorded and billed once (before: with
    $skip paging, DocEntry 6 was skipped, and the cursor passed it for good)."""
    entries, clock = stamped(sap_sim, 12, datetime.combine(recent_day(), datetime.min.time()).replace(hour=8))
    sap = SapClient.for_connection(ready, page_size=5)
    real_request, reads = sap.request, []

    def request(method, path, **kw):
        answer = real_request(method, path, **kw)
        if method == "GET" and path.startswith("PurchaseInvoices") and "(" not in path.split("?")[0]:
            reads.append(path)
            if len(reads) == 1:
                clock.now += timedelta(minutes=5)
                sap_sim.update_invoice(entries[0], comments="edited while the delta was being read")
        return answer

    monkeypatch.setattr(sap, "request", request)
    sync(ready, sap=sap)
    monkeypatch.undo()
    recorded = set(InvoiceRecord.objects.filter(connection=ready).values_list("doc_entry", flat=True))
    assert recorded == set(entries)
    assert_one_bill_each(bill_sim, entries)
    assert "edited while" in the_bill(bill_sim, entries[0])["description"]


def test_edits_during_every_page_read_still_hide_nothing(ready, sap_sim, bill_sim, monkeypatch):
    """A busier SAP: after each page, the first not-yet-edited invoice is edited."""
    entries, clock = stamped(sap_sim, 17, datetime.combine(recent_day(), datetime.min.time()).replace(hour=9))
    sap = SapClient.for_connection(ready, page_size=4)
    real_request, edited = sap.request, []

    def request(method, path, **kw):
        answer = real_request(method, path, **kw)
        if method == "GET" and path.startswith("PurchaseInvoices") and "(" not in path.split("?")[0] \
                and len(edited) < 6:
            clock.now += timedelta(minutes=1)
            entry = entries[len(edited) * 2]
            edited.append(entry)
            sap_sim.update_invoice(entry, comments=f"edit {len(edited)}")
        return answer

    monkeypatch.setattr(sap, "request", request)
    sync(ready, sap=sap)
    monkeypatch.undo()
    assert set(InvoiceRecord.objects.values_list("doc_entry", flat=True)) == set(entries)
    sync(ready)  # the edits made during the read are picked up (now or by the next run), each bill once
    assert_one_bill_each(bill_sim, entries)


def test_a_minute_holding_more_invoices_than_a_page_is_read_whole(ready, sap_sim, bill_sim):
    clock = Clock(datetime.combine(recent_day(), datetime.min.time()).replace(hour=7, minute=30, second=5))
    sap_sim.clock = clock
    entries = []
    for i in range(13):
        clock.now += timedelta(seconds=3)  # 13 invoices within one minute, seconds apart
        entries.append(sap_sim.add_invoice("V1000", [line("6100", f"{i + 1}.00")], num_at_card=f"M-{i}")["DocEntry"])
    sync(ready, sap=SapClient.for_connection(ready, page_size=4))
    assert set(InvoiceRecord.objects.values_list("doc_entry", flat=True)) == set(entries)
    assert_one_bill_each(bill_sim, entries)


# --- 8. the fall-back hour ------------------------------------------------------------------------------------
def test_invoices_stamped_in_the_repeated_hour_are_read(ready, sap_sim, bill_sim):
    """GIVEN SAP's server clock in a zone that falls back at 02:00 (the US on 2026-11-01) WHEN an invoice is
    stamped 01:50 (first pass), read, and another 01:10 (second pass) THEN the second is read too (before: the
    2-minute overlap started the next read at 01:48 and the second invoice was never read)."""
    assert repeated_interval(datetime(2026, 11, 1, 1, 50)) == timedelta(hours=1)
    clock = Clock(datetime(2026, 11, 1, 1, 50))
    sap_sim.clock = clock
    first = sap_sim.add_invoice("V1000", [line("6100", "10.00")], num_at_card="FIRST-PASS")["DocEntry"]
    sync(ready)
    clock.now = datetime(2026, 11, 1, 1, 10)  # 02:00 came, the clock went back to 01:00
    second = sap_sim.add_invoice("V1001", [line("6200", "20.00")], num_at_card="SECOND-PASS")["DocEntry"]
    sync(ready)
    assert record(ready, second).status == Status.SYNCED
    assert_one_bill_each(bill_sim, [first, second])


def test_an_ordinary_night_reads_no_extra_hour():
    assert repeated_interval(datetime(2026, 6, 15, 1, 50)) == timedelta(0)


# --- 3. closed in SAP while the bill is payable -----------------------------------------------------------
def pay_in_sap_by_hand(conn, doc_entry, amount):
    """An SAP check run / manual outgoing payment that ml-connector did not post."""
    sap = SapClient.for_connection(conn)
    invoice = sap.get(f"PurchaseInvoices({doc_entry})")
    return sap.post("VendorPayments", {
        "CardCode": invoice["CardCode"], "DocType": "rSupplier", "TransferAccount": conn.sap_payment_account,
        "TransferSum": float(amount), "TransferReference": "CHECK-RUN-17",
        "PaymentInvoices": [{"LineNum": 0, "DocEntry": doc_entry, "InvoiceType": "it_PurchaseInvoice",
                             "SumApplied": float(amount)}]})


def sap_patch(conn, card_code, body):
    SapClient.for_connection(conn).patch(f"BusinessPartners('{card_code}')", body)


def hand_entered_bill(conn, bill_sim, card_code, number, amount, days_ago):
    """A bill AP keyed into BILL from the vendor's PDF, `days_ago` days ago (no ml-connector marker)."""
    from connector.clients.bill import BillClient

    vendor_id = VendorLink.objects.get(connection=conn, card_code=card_code).bill_vendor_id
    created = BillClient.for_connection(conn).post("/v3/bills", {
        "vendorId": vendor_id, "invoice": {"invoiceNumber": number, "invoiceDate": recent_day(days_ago).isoformat()},
        "dueDate": recent_day(days_ago - 30).isoformat(), "description": "keyed from the vendor's PDF",
        "billLineItems": [{"amount": float(amount), "description": "as on the PDF"}]})
    stored = bill_sim._org().bills[created["id"]]
    stored["createdTime"] = (datetime.now(UTC) - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%S.000+00:00")
    return created


@pytest.mark.parametrize("how", ["payment", "close"])
def test_an_invoice_closed_in_sap_archives_its_unpaid_bill(ready, sap_sim, bill_sim, how):
    """GIVEN a synced invoice whose bill is unpaid in BILL WHEN it is closed in SAP without a payment of ours
    (paid by a check run, or closed by hand) THEN its bill is archived with the reason (before: the bill stayed
    payable and BILL paid the vendor a second time)."""
    doc = sap_sim.add_invoice("V1000", [line("6100", "80.00")], num_at_card="CLOSE-1")["DocEntry"]
    sync(ready)
    bill_id = record(ready, doc).bill_id
    if how == "payment":
        pay_in_sap_by_hand(ready, doc, Decimal("80.00"))
    else:
        sap_sim.close_invoice(doc)
    sync(ready)
    rec = record(ready, doc)
    assert rec.status == Status.ARCHIVED and "closed in SAP" in rec.last_error + rec_outcome(rec)
    assert bills_of(bill_sim, doc) == [] and bills_of(bill_sim, doc, archived=True)[0]["id"] == bill_id


def rec_outcome(rec):
    from audit.models import AuditEvent

    return " ".join(AuditEvent.objects.filter(record_type="invoicerecord", record_id=str(rec.pk))
                    .values_list("message", flat=True))


def test_an_invoice_closed_in_sap_while_its_bill_is_scheduled_is_flagged(ready, sap_sim, bill_sim):
    doc = sap_sim.add_invoice("V1000", [line("6100", "80.00")], num_at_card="CLOSE-2")["DocEntry"]
    sync(ready)
    bill_sim.pay_bills([(record(ready, doc).bill_id, "80.00")], status="SCHEDULED", single_status="SCHEDULED")
    pay_in_sap_by_hand(ready, doc, Decimal("80.00"))
    sync(ready)
    rec = record(ready, doc)
    assert rec.status == Status.FLAGGED and "stop" in rec.last_error.lower() and "scheduled" in rec.last_error.lower()
    assert len(bills_of(bill_sim, doc)) == 1  # left for the person


def test_an_invoice_closed_by_our_own_payment_keeps_its_bill(ready, sap_sim, bill_sim):
    from connector.sync.runner import run_sync

    doc = sap_sim.add_invoice("V1000", [line("6100", "80.00")], num_at_card="CLOSE-3")["DocEntry"]
    sync(ready)
    bill_sim.pay_bills([(record(ready, doc).bill_id, "80.00")])
    run_sync(ready, ["payments"])
    sync(ready)
    rec = record(ready, doc)
    assert rec.status == Status.SYNCED and rec.sap_state == "closed"
    assert len(bills_of(bill_sim, doc)) == 1


def test_a_partial_payment_in_sap_of_an_unpaid_bill_is_flagged(ready, sap_sim, bill_sim):
    """A partial credit memo or payment entered in SAP lowers what is owed while BILL would pay it all."""
    doc = sap_sim.add_invoice("V1000", [line("6100", "80.00")], num_at_card="PART-1")["DocEntry"]
    sync(ready)
    pay_in_sap_by_hand(ready, doc, Decimal("30.00"))
    sync(ready)
    rec = record(ready, doc)
    assert rec.status == Status.FLAGGED and "50.00" in rec.last_error and "80.00" in rec.last_error
    assert len(bills_of(bill_sim, doc)) == 1


# --- 4. frozen suppliers ---------------------------------------------------------------------------------------
def test_invoices_of_a_frozen_supplier_are_held_until_it_is_unfrozen(ready, sap_sim, bill_sim):
    """Before: the vendor link said "its invoices are held", yet new invoices became bills."""
    from connector.sync.runner import run_sync

    doc = sap_sim.add_invoice("V1000", [line("6100", "15.00")], num_at_card="FROZEN-1")["DocEntry"]
    sap_patch(ready, "V1000", {"Frozen": "tYES", "Valid": "tNO"})  # frozen after the invoice was entered
    run_sync(ready, ["vendors"])
    sync(ready)
    rec = record(ready, doc)
    assert rec.status == Status.HELD and "frozen" in rec.last_error.lower() and bills_of(bill_sim, doc) == []
    sap_patch(ready, "V1000", {"Frozen": "tNO", "Valid": "tYES"})
    run_sync(ready, ["vendors", "bills"])
    assert record(ready, doc).status == Status.SYNCED and len(bills_of(bill_sim, doc)) == 1


# --- 5. a cancellation of a flagged invoice -------------------------------------------------------------------
def test_a_cancellation_reaches_a_flagged_invoice(ready, sap_sim, bill_sim):
    doc = sap_sim.add_invoice("V1000", [line("6100", "60.00")], num_at_card="FLAG-1")["DocEntry"]
    sync(ready)
    bill_sim.pay_bills([(record(ready, doc).bill_id, "60.00")], status="SCHEDULED", single_status="SCHEDULED")
    sap_sim.update_invoice(doc, lines=[line("6100", "65.00")])
    sync(ready)
    assert record(ready, doc).status == Status.FLAGGED  # edited after the bill was scheduled
    sap_sim.cancel_invoice(doc)
    sync(ready)
    rec = record(ready, doc)
    assert rec.status == Status.FLAGGED and "cancelled in sap" in rec.last_error.lower()
    assert "stop or reverse" in rec.last_error.lower()
    assert "cancelled in sap" in rec_outcome(rec).lower()


# --- 7. hand-entered bills weeks earlier --------------------------------------------------------------------
def test_a_bill_keyed_by_hand_weeks_before_sap_posts_the_invoice_is_found(ready, sap_sim, bill_sim):
    """Before: only bills created since the SAP creation date minus 7 days were looked at: a second bill."""
    hand = hand_entered_bill(ready, bill_sim, "V1000", "INV-HAND-1", "42.00", days_ago=40)
    doc = sap_sim.add_invoice("V1000", [line("6100", "42.00")], num_at_card="INV-HAND-1")["DocEntry"]
    sync(ready)
    rec = record(ready, doc)
    assert rec.status == Status.FLAGGED and hand["id"] in rec.last_error
    assert bills_of(bill_sim, doc) == []


def test_the_look_up_sees_old_bills_in_every_chunk_of_a_run(ready, sap_sim, bill_sim, monkeypatch):
    monkeypatch.setattr(bills_module, "CHUNK", 2)
    entries = [sap_sim.add_invoice("V1000", [line("6100", f"{i}.00")], num_at_card=f"CH-{i}")["DocEntry"]
               for i in range(1, 5)]
    # the last chunk's invoice carries an older vendor date than the first chunks' (read first, from a later day)
    entries.append(sap_sim.add_invoice("V1000", [line("6100", "5.00")], num_at_card="CH-5",
                                       doc_date=recent_day(100))["DocEntry"])
    hand = hand_entered_bill(ready, bill_sim, "V1000", "CH-5", "5.00", days_ago=150)
    sync(ready)
    assert record(ready, entries[-1]).status == Status.FLAGGED and hand["id"] in record(ready, entries[-1]).last_error
    assert [len(bills_of(bill_sim, e)) for e in entries] == [1, 1, 1, 1, 0]
