"""The bills step end to end on the SAP and BILL simulators (issue 4): SAP purchase invoices → BILL bills.

Every test runs the real clients against the loopback simulators, with a connection whose reference data is
loaded, whose accounts and cost centres are mapped the way a person would confirm the suggestions, and whose
suppliers are aligned (V1003 stays ambiguous: two "Globex Services" in BILL). `transaction=True` because the
clients' request limiter refuses to work inside a test transaction, and for the tests that use threads.
"""

import os
import threading
import time
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import DatabaseError
from django.db import connection as db_connection
from django.utils import timezone

from connector import leases
from connector.clients.bill import BillClient
from connector.clients.errors import TransportError
from connector.clients.sap import SapClient
from connector.models import Connection, InvoiceRecord, Lease, SyncCursor, SyncRun
from connector.sandbox.catalog import SAP_COMPANY_DB as COMPANY
from connector.sync import bills as bills_module
from connector.sync.bills import STREAM, BillIndex, BillSync
from connector.sync.coding import marker, marker_in
from connector.sync.delta import start_of
from connector.sync.runner import AlreadyRunning, run_sync
from connector.sync.vendors import VendorAligner
from mappings.models import BillAccount, BillDepartment, SapAccount, SapCostCenter, VendorLink
from mappings.reference import refresh_reference
from mappings.suggest import apply_proposals, suggest_accounts, suggest_departments

pytestmark = pytest.mark.django_db(transaction=True)
Status = InvoiceRecord.Status


# --- helpers -------------------------------------------------------------------------------------------------
def prepare(conn, *, vendors=True):
    """Reference data, the suggested mappings confirmed, vendors aligned (as after onboarding)."""
    sap, bill = SapClient.for_connection(conn), BillClient.for_connection(conn)
    refresh_reference(conn, sap, bill)
    apply_proposals([(p.sap_row, p.bill_row) for p in suggest_accounts(conn) + suggest_departments(conn)])
    if vendors:
        VendorAligner(conn, sap, bill).run()


@pytest.fixture
def ready(conn):
    prepare(conn)
    return conn


def sync(conn, **kw):
    return run_sync(conn, ["bills"], **kw)


def line(account, amount, tax="EX", center="ADMIN", text=None, **extra):
    return {"AccountCode": account, "LineTotal": Decimal(amount), "TaxCode": tax, "CostingCode": center,
            "ItemDescription": text or f"Services {account}", **extra}


def bills_of(bill_sim, doc_entry, archived=False):
    return [b for b in bill_sim.entities("bills")
            if (b.get("description") or "").endswith(marker(doc_entry, COMPANY)) and b["archived"] == archived]


def the_bill(bill_sim, doc_entry):
    found = bills_of(bill_sim, doc_entry)
    assert len(found) == 1, f"DocEntry {doc_entry}: {len(found)} bills"
    return found[0]


def assert_one_bill_each(bill_sim, doc_entries):
    counts = {}
    for b in bill_sim.entities("bills"):
        if not b["archived"]:
            entry = marker_in(b["description"])[1]
            counts[entry] = counts.get(entry, 0) + 1
    assert {e: counts.get(e, 0) for e in doc_entries} == dict.fromkeys(doc_entries, 1)
    assert sum(counts.values()) == len(doc_entries)


def writes(sim):
    """Requests that change something (login aside), by 'METHOD path'."""
    return {k: v for k, v in sim.requests_by_path.items() if not k.startswith("GET") and "ogin" not in k}


def record(conn, doc_entry):
    return InvoiceRecord.objects.get(connection=conn, doc_entry=doc_entry)


def account_id(conn, number):
    return BillAccount.objects.get(connection=conn, number=number).bill_id


def department_id(conn, name):
    return BillDepartment.objects.get(connection=conn, name=name).bill_id


class Clock:
    """SAP's server-local clock, set by hand (the simulator stamps UpdateDate/UpdateTime from it)."""

    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


def recent_day(days_ago=10):
    # Near today: BILL stamps createdTime with the real clock, and we look our bills up from SAP's dates back.
    return date.today() - timedelta(days=days_ago)


def spy_filters(sap):
    """The invoice filters the delta reader sends, in order."""
    seen = []
    real = sap.page

    def page(entity, **kw):
        if entity == "PurchaseInvoices":
            seen.append(kw.get("filter"))
        return real(entity, **kw)

    sap.page = page
    return seen


# --- which invoices are read: the delta ----------------------------------------------------------------------
def test_where_a_delta_read_starts():
    assert start_of(None) is None and start_of({}) is None
    # the cursor minus the 2-minute overlap, across midnight too
    assert start_of({"stamp": "2026-03-01T10:00:50"}) == datetime(2026, 3, 1, 9, 58, 50)
    assert start_of({"stamp": "2026-03-02T00:01:00"}) == datetime(2026, 3, 1, 23, 59)
    # plus however long the read that recorded the cursor had been going
    assert start_of({"stamp": "2026-03-01T10:00:50", "read_seconds": 300}) == datetime(2026, 3, 1, 9, 53, 50)


def test_first_poll_starts_at_sync_from_and_delta_crosses_a_day_boundary(ready, sap_sim, bill_sim):
    day = recent_day()
    clock = Clock(datetime.combine(day - timedelta(days=3), datetime.min.time()).replace(hour=12))
    sap_sim.clock = clock
    old = sap_sim.add_invoice("V1000", [line("6100", "11.00")], num_at_card="BEFORE-SYNC-FROM")["DocEntry"]
    Connection.objects.filter(pk=ready.pk).update(sync_from=day)
    conn = Connection.objects.get(pk=ready.pk)

    clock.now = datetime.combine(day, datetime.min.time()).replace(hour=23, minute=58, second=30)
    late_evening = sap_sim.add_invoice("V1000", [line("6100", "100.00")], num_at_card="EVENING")["DocEntry"]
    sap = SapClient.for_connection(conn)
    filters = spy_filters(sap)
    assert sync(conn, sap=sap).status == SyncRun.Status.OK
    assert filters == [f"UpdateDate ge '{day.isoformat()}'"]  # first poll: from sync_from
    assert not InvoiceRecord.objects.filter(doc_entry=old).exists() and bills_of(bill_sim, old) == []
    the_bill(bill_sim, late_evening)
    cursor = SyncCursor.objects.get(connection=conn, stream=STREAM).value["stamp"]
    assert cursor == f"{day.isoformat()}T23:58:30"

    # Just after midnight: a later day, at an earlier clock time than the cursor's.
    next_day = day + timedelta(days=1)
    clock.now = datetime.combine(next_day, datetime.min.time()).replace(minute=0, second=40)
    after_midnight = sap_sim.add_invoice("V1001", [line("6200", "200.00")], num_at_card="MIDNIGHT")["DocEntry"]
    naive = f"UpdateDate ge '{day.isoformat()}' and UpdateTime ge '23:56:30'"
    assert after_midnight not in [d["DocEntry"] for d in sap.iterate("PurchaseInvoices", filter=naive)]  # the trap
    filters.clear()
    assert sync(conn, sap=sap).status == SyncRun.Status.OK
    assert filters == [f"(UpdateDate gt '{day.isoformat()}' or (UpdateDate eq '{day.isoformat()}' "
                       "and UpdateTime ge '23:56:00'))"]  # cursor − 2 minutes, to the minute
    the_bill(bill_sim, after_midnight)
    assert SyncCursor.objects.get(connection=conn, stream=STREAM).value["stamp"] == f"{next_day.isoformat()}T00:00:40"

    # Later that morning the first invoice is edited: found again, its bill updated, nothing duplicated.
    clock.now = clock.now.replace(hour=9)
    sap_sim.update_invoice(late_evening, lines=[line("6100", "150.00")])
    assert sync(conn, sap=sap).summary["bills"]["updated"] == 1
    assert Decimal(str(the_bill(bill_sim, late_evening)["amount"])) == Decimal("150.00")
    assert_one_bill_each(bill_sim, [late_evening, after_midnight])


def test_overlap_rereads_late_commits_and_deduplicates(ready, sap_sim, bill_sim):
    day = recent_day()
    clock = Clock(datetime.combine(day, datetime.min.time()).replace(hour=10, minute=0, second=50))
    sap_sim.clock = clock
    first = sap_sim.add_invoice("V1000", [line("6100", "10.00")])["DocEntry"]
    assert sync(ready).summary["bills"]["created"] == 1
    # An invoice committed late: stamped 30 s before the cursor (SAP time filters only see minutes).
    clock.now = clock.now.replace(second=20)
    late = sap_sim.add_invoice("V1001", [line("6200", "20.00")])["DocEntry"]
    posts_before = writes(bill_sim)
    summary = sync(ready).summary["bills"]
    assert summary["created"] == 1 and summary["read"] == 2  # the first one was re-read ...
    assert record(ready, first).status == Status.SYNCED  # ... and recognised as unchanged
    assert sum(writes(bill_sim).values()) == sum(posts_before.values()) + 1
    assert_one_bill_each(bill_sim, [first, late])


def test_paging_reads_every_page_to_the_end(ready, sap_sim, bill_sim):
    entries = sap_sim.seed_invoices(23, min_lines=1, max_lines=3)
    sap = SapClient.for_connection(ready, page_size=5)
    sap_sim.reset_stats()
    run = sync(ready, sap=sap)
    assert run.summary["bills"]["read"] == 23
    # one minute bucket: a forward page, then the bucket by DocEntry (5 + 5 + 5 + 5 + 3), then the empty next minute
    assert sap_sim.requests_by_path["GET PurchaseInvoices"] == 7
    held = set(InvoiceRecord.objects.filter(connection=ready, status=Status.HELD).values_list("doc_entry", flat=True))
    assert {r.doc_entry for r in InvoiceRecord.objects.filter(connection=ready)} == set(entries)
    # V1003 (ambiguous vendor) is held; every other invoice has exactly one bill
    assert held == {r.doc_entry for r in InvoiceRecord.objects.filter(connection=ready, card_code="V1003")}
    assert_one_bill_each(bill_sim, sorted(set(entries) - held))


def stamped_invoices(sap_sim, count):
    """`count` invoices, one SAP minute apart (distinct UpdateDate/UpdateTime stamps)."""
    clock = Clock(datetime.combine(recent_day(), datetime.min.time()).replace(hour=8))
    sap_sim.clock = clock
    entries = []
    for i in range(count):
        clock.now += timedelta(minutes=1)
        entries.append(sap_sim.add_invoice("V1000", [line("6100", f"{i + 1}.00")], num_at_card=f"P-{i}")["DocEntry"])
    return entries, clock


def test_cursor_advances_only_past_pages_that_were_recorded(ready, sap_sim, bill_sim, monkeypatch):
    entries, clock = stamped_invoices(sap_sim, 12)
    sap = SapClient.for_connection(ready, page_size=5)
    real_request, calls = sap.request, []

    def request(method, path, **kw):
        if "PurchaseInvoices" in path:
            calls.append(path)
            if len(calls) == 3:  # page 1: minutes 1-4 complete, minute 5 read whole; then the next page fails
                raise TransportError("connection to SAP dropped", path=path)
        return real_request(method, path, **kw)

    monkeypatch.setattr(sap, "request", request)
    run = sync(ready, sap=sap)
    assert run.status == SyncRun.Status.FAILED and "dropped" in run.error
    # page 1 is in the ledger and the cursor is at its last invoice, not further
    assert sorted(InvoiceRecord.objects.values_list("doc_entry", flat=True)) == entries[:5]
    assert SyncCursor.objects.get(connection=ready, stream=STREAM).value["stamp"] == record(ready, entries[4]).sap_updated
    monkeypatch.undo()
    assert sync(ready).status == SyncRun.Status.OK
    assert_one_bill_each(bill_sim, entries)


def test_cursor_does_not_move_when_recording_a_page_fails(ready, sap_sim, bill_sim, monkeypatch):
    entries, clock = stamped_invoices(sap_sim, 12)
    sap = SapClient.for_connection(ready, page_size=5)
    real_bulk_create, calls = InvoiceRecord.objects.bulk_create, []

    def bulk_create(objs, **kw):
        calls.append(len(objs))
        if len(calls) == 3:  # minutes 1-4, then minute 5 (read whole), then the next page fails to record
            raise DatabaseError("disk I/O error")
        return real_bulk_create(objs, **kw)

    monkeypatch.setattr(InvoiceRecord.objects, "bulk_create", bulk_create)
    with pytest.raises(DatabaseError):
        sync(ready, sap=sap)
    assert sorted(InvoiceRecord.objects.values_list("doc_entry", flat=True)) == entries[:5]
    assert SyncCursor.objects.get(connection=ready, stream=STREAM).value["stamp"] == record(ready, entries[4]).sap_updated
    monkeypatch.undo()
    assert sync(ready).status == SyncRun.Status.OK
    assert_one_bill_each(bill_sim, entries)


def test_only_posted_open_invoices_become_bills(ready, sap_sim, bill_sim):
    open_one = sap_sim.add_invoice("V1000", [line("6100", "10.00")])["DocEntry"]
    cancelled = sap_sim.add_invoice("V1000", [line("6100", "20.00")])["DocEntry"]
    cancellation = sap_sim.cancel_invoice(cancelled)["DocEntry"]
    closed = sap_sim.add_invoice("V1000", [line("6100", "30.00")])["DocEntry"]
    sap_sim.close_invoice(closed)
    sync(ready)
    the_bill(bill_sim, open_one)
    assert bills_of(bill_sim, cancelled) == [] and bills_of(bill_sim, closed) == []
    assert not InvoiceRecord.objects.filter(doc_entry=cancellation).exists()  # a cancellation document is no invoice
    assert record(ready, cancelled).status == Status.SKIPPED
    assert record(ready, cancelled).last_error == "cancelled in SAP before a bill was created"
    assert record(ready, closed).status == Status.SKIPPED


def test_a_connection_can_add_its_own_filter(ready, sap_sim, bill_sim):
    Connection.objects.filter(pk=ready.pk).update(invoice_extra_filter="CardCode ne 'V1001'")
    conn = Connection.objects.get(pk=ready.pk)
    wanted = sap_sim.add_invoice("V1000", [line("6100", "10.00")])["DocEntry"]
    unwanted = sap_sim.add_invoice("V1001", [line("6100", "10.00")])["DocEntry"]
    sap = SapClient.for_connection(conn)
    filters = spy_filters(sap)
    sync(conn, sap=sap)
    assert filters == ["(UpdateDate ge '2026-01-01') and (CardCode ne 'V1001')"]  # one page: all there is
    the_bill(bill_sim, wanted)
    assert not InvoiceRecord.objects.filter(doc_entry=unwanted).exists()


# --- the bill: coding ----------------------------------------------------------------------------------------
def test_every_line_is_coded_with_its_account_department_and_the_header(ready, sap_sim, bill_sim):
    lines = [line("6100", "120.00", "TX8", "ADMIN", "Toner"), line("6700", "310.50", "TX8", "OPS", "Printer repair"),
             line("6600", "89.99", "EX", "SALES", "Courier"), line("6300", "45.00", "TX5", "WH", "Water"),
             line("6500", "3200.00", "EX", None, "Legal advice", CostingCode2="EAST")]
    doc = sap_sim.add_invoice("V1000", lines, num_at_card="NW-7", doc_date=recent_day(5),
                              due_date=recent_day(5) + timedelta(days=45), comments="monthly")
    sync(ready)
    bill = the_bill(bill_sim, doc["DocEntry"])
    link = VendorLink.objects.get(connection=ready, card_code="V1000")
    assert bill["vendorId"] == link.bill_vendor_id
    assert bill["invoice"] == {"invoiceNumber": "NW-7", "invoiceDate": recent_day(5).isoformat()}
    assert bill["dueDate"] == (recent_day(5) + timedelta(days=45)).isoformat()
    assert bill["description"] == (
        f"SAP A/P invoice {doc['DocNum']} – vendor ref NW-7: monthly [SAP SBODEMOUS DocEntry {doc['DocEntry']}]")
    got = [(li["description"], f"{Decimal(str(li['amount'])):.2f}", li["classifications"].get("chartOfAccountId"),
            li["classifications"].get("departmentId")) for li in bill["billLineItems"]]
    assert got == [
        ("Toner", "120.00", account_id(ready, "6100"), department_id(ready, "Administration")),
        ("Printer repair", "310.50", account_id(ready, "6700"), department_id(ready, "Operations")),
        ("Courier", "89.99", account_id(ready, "6600"), department_id(ready, "Sales")),
        ("Water", "45.00", account_id(ready, "6300"), department_id(ready, "Warehouse")),
        ("Legal advice", "3200.00", account_id(ready, "6500"), department_id(ready, "East Region")),
        ("Tax TX5", "2.25", account_id(ready, "1450"), None),
        ("Tax TX8", "35.52", account_id(ready, "1450"), None),
    ]
    assert Decimal(str(bill["amount"])) == doc["DocTotal"]


TOTALS = [
    pytest.param([line("6100", "500.00", "TX8"), line("6100", "150.00", "TX8")], {"discount_percent": Decimal("10")},
                 id="discount"),
    pytest.param([line("6700", "800.00", "TX5", "WH")],
                 {"freight": [{"ExpenseCode": 1, "LineTotal": Decimal("75.00"), "TaxCode": "TX5"}]}, id="freight"),
    pytest.param([line("6300", "1234.56", "TX8", "OPS")], {"rounding": True}, id="rounding"),
    pytest.param([line("6100", "999.99", "TX8"), line("6200", "0.99", "TX5"), line("6700", "250.25")],
                 {"discount_percent": Decimal("5"), "rounding": True,
                  "freight": [{"ExpenseCode": 1, "LineTotal": Decimal("12.50"), "TaxCode": "TX8"}]},
                 id="discount-tax-freight-rounding"),
    pytest.param([line("6100", "33.33", "TX8"), line("6200", "33.33", "TX8"), line("6300", "33.34", "TX8")],
                 {"discount_percent": Decimal("3")}, id="odd-cents"),
]


@pytest.mark.parametrize("lines,options", TOTALS)
def test_bill_total_equals_sap_total_to_the_cent(ready, sap_sim, bill_sim, lines, options):
    doc = sap_sim.add_invoice("V1002", lines, **options)
    sync(ready)
    bill = the_bill(bill_sim, doc["DocEntry"])
    assert Decimal(str(bill["amount"])) == doc["DocTotal"]
    assert sum((Decimal(str(li["amount"])) for li in bill["billLineItems"]), Decimal(0)) == doc["DocTotal"]
    taxes = {li["description"]: Decimal(str(li["amount"])) for li in bill["billLineItems"] if li["description"].startswith("Tax")}
    assert sum(taxes.values(), Decimal(0)) == doc["VatSum"]  # tax never dropped
    if options.get("freight"):
        freight = [li for li in bill["billLineItems"] if li["description"] == "Freight"]
        assert [(Decimal(str(li["amount"])), li["classifications"]["chartOfAccountId"]) for li in freight] == [
            (options["freight"][0]["LineTotal"], account_id(ready, "5100"))]
    assert record(ready, doc["DocEntry"]).doc_total == doc["DocTotal"]


def test_same_vendor_reference_twice_makes_two_bills_and_docnum_is_the_fallback(ready, sap_sim, bill_sim):
    a = sap_sim.add_invoice("V1007", [line("6600", "640.00")], num_at_card="WT-0001")
    b = sap_sim.add_invoice("V1007", [line("6600", "212.40")], num_at_card="WT-0001")
    c = sap_sim.add_invoice("V1007", [line("6600", "10.00")], num_at_card="")
    sync(ready)
    assert the_bill(bill_sim, a["DocEntry"])["invoice"]["invoiceNumber"] == "WT-0001"
    assert the_bill(bill_sim, b["DocEntry"])["invoice"]["invoiceNumber"] == "WT-0001"
    assert the_bill(bill_sim, c["DocEntry"])["invoice"]["invoiceNumber"] == str(c["DocNum"])


# --- held invoices, released by themselves --------------------------------------------------------------------
def test_held_invoices_name_what_is_missing_and_go_through_once_fixed(ready, sap_sim, bill_sim):
    insurance = sap_sim.add_invoice("V1001", [line("6900", "980.00")])["DocEntry"]
    it_dept = sap_sim.add_invoice("V1004", [line("6400", "2400.00", center="IT")])["DocEntry"]
    euro = sap_sim.add_invoice("V1010", [line("6700", "1500.00", center="WH")], currency="EUR")["DocEntry"]
    ambiguous = sap_sim.add_invoice("V1003", [line("6500", "900.00", center="OPS")])["DocEntry"]
    fine = sap_sim.add_invoice("V1000", [line("6100", "5.00")])["DocEntry"]
    run = sync(ready)
    assert run.status == SyncRun.Status.PARTIAL and run.summary["bills"]["held"] == 4
    held = {r.doc_entry: (r.status, r.last_error) for r in InvoiceRecord.objects.filter(status=Status.HELD)}
    assert held == {
        insurance: ("held", "SAP account 6900 Insurance (line 1) has no BILL mapping: map it to a BILL account"),
        it_dept: ("held", "SAP cost center IT Information Technology has no BILL department mapping: map it"),
        euro: ("held", "currency EUR: BILL takes only USD bills for this organization: pay this invoice outside "
                       "BILL or post it in USD"),
        ambiguous: ("held", "SAP supplier V1003 is not linked to a BILL vendor (review): Ambiguous match: BILL has 2 "
                            "vendor(s) named like 'Globex Services' with another e-mail and address. Pick the right "
                            "BILL vendor or choose 'create a new BILL vendor' in the admin."),
    }
    the_bill(bill_sim, fine)
    assert [bills_of(bill_sim, e) for e in (insurance, it_dept, euro, ambiguous)] == [[], [], [], []]

    # A person maps the account and the cost centre and picks the right Globex in the admin.
    apply_proposals([(SapAccount.objects.get(connection=ready, code="6900"),
                      BillAccount.objects.get(connection=ready, number="6500"))])
    apply_proposals([(SapCostCenter.objects.get(connection=ready, code="IT"),
                      BillDepartment.objects.get(connection=ready, name="Operations"))])
    link = VendorLink.objects.get(connection=ready, card_code="V1003")
    link.bill_vendor_id, link.status, link.last_error = link.candidates[1]["id"], "linked", ""
    link.save()
    run = sync(ready)  # the bills step alone: nobody replays anything
    assert run.summary["bills"]["created"] == 3 and run.summary["bills"]["held"] == 1
    assert_one_bill_each(bill_sim, [insurance, it_dept, ambiguous, fine])
    assert the_bill(bill_sim, ambiguous)["vendorId"] == link.bill_vendor_id
    assert the_bill(bill_sim, insurance)["billLineItems"][0]["classifications"]["chartOfAccountId"] == account_id(ready, "6500")
    assert record(ready, euro).status == Status.HELD
    assert {r.status for r in InvoiceRecord.objects.exclude(doc_entry=euro)} == {Status.SYNCED}


def test_supplier_without_vendor_link_is_aligned_first(conn, sap_sim, bill_sim):
    prepare(conn, vendors=False)  # the vendors step never ran
    doc = sap_sim.add_invoice("V1004", [line("6400", "99.00", center="OPS")])["DocEntry"]
    existing = sap_sim.add_invoice("V1001", [line("6200", "4200.00")])["DocEntry"]
    run = sync(conn)
    assert run.summary["bills"]["created"] == 2
    link = VendorLink.objects.get(connection=conn, card_code="V1004")
    assert link.status == "linked" and the_bill(bill_sim, doc)["vendorId"] == link.bill_vendor_id
    # V1001 is the BILL vendor that already existed (same tax id): reused, not created again
    assert the_bill(bill_sim, existing)["vendorId"] == "00901SBXVEND0000001"


def test_create_new_vendor_decision_releases_the_held_invoice_on_the_next_bills_run(ready, sap_sim, bill_sim):
    doc = sap_sim.add_invoice("V1003", [line("6500", "900.00", center="OPS")])["DocEntry"]
    sync(ready)
    assert record(ready, doc).status == Status.HELD
    VendorLink.objects.filter(connection=ready, card_code="V1003").update(create_new=True)  # a person decided
    run = sync(ready)
    assert run.summary["bills"]["created"] == 1
    link = VendorLink.objects.get(connection=ready, card_code="V1003")
    assert link.status == "linked" and link.bill_vendor_id not in ("00901SBXVEND0000003", "00901SBXVEND0000004")
    assert the_bill(bill_sim, doc)["vendorId"] == link.bill_vendor_id


def test_a_supplier_that_cannot_be_aligned_now_holds_only_its_invoices_tried_once_per_run(ready, sap_sim, bill_sim,
                                                                                          monkeypatch):
    monkeypatch.setattr(bills_module, "CHUNK", 3)
    VendorLink.objects.filter(connection=ready, card_code="V1004").delete()
    entries = [sap_sim.add_invoice("V1004", [line("6400", f"{i}.00", center="OPS")])["DocEntry"] for i in range(1, 8)]
    other = sap_sim.add_invoice("V1000", [line("6100", "1.00")])["DocEntry"]
    bill_sim.fail_next("GET", "/v3/vendors", 503, "BDC_1001", "System error occurred.")
    sap_sim.reset_stats()
    vendor_lists = bill_sim.requests_by_path["GET /v3/vendors"]
    lines = []
    run = sync(ready, out=lines.append)
    assert run.status == SyncRun.Status.PARTIAL and run.summary["bills"]["held"] == 7
    assert any(text.startswith("  could not align suppliers V1004: System error occurred.") for text in lines)
    assert record(ready, entries[0]).last_error == "SAP supplier V1004 has no BILL vendor yet: run the vendors step"
    assert sap_sim.requests_by_path["GET BusinessPartners"] == 1  # 3 chunks, one attempt
    assert bill_sim.requests_by_path["GET /v3/vendors"] == vendor_lists + 1
    assert all(bills_of(bill_sim, e) == [] for e in entries)
    the_bill(bill_sim, other)
    sync(ready)  # BILL answers again: aligned and billed without anyone replaying anything
    assert_one_bill_each(bill_sim, entries + [other])


# --- changes after creation ------------------------------------------------------------------------------------
def test_edit_in_sap_updates_the_unpaid_bill(ready, sap_sim, bill_sim):
    doc = sap_sim.add_invoice("V1000", [line("6100", "100.00", "TX8")], num_at_card="E-1")["DocEntry"]
    sync(ready)
    bill_id = the_bill(bill_sim, doc)["id"]
    edited = sap_sim.update_invoice(doc, lines=[line("6100", "120.00", "TX8"), line("6700", "30.00", center="OPS")],
                                    num_at_card="E-1b")
    run = sync(ready)
    assert run.summary["bills"]["updated"] == 1 and run.summary["bills"]["created"] == 0
    bill = the_bill(bill_sim, doc)
    assert bill["id"] == bill_id and Decimal(str(bill["amount"])) == edited["DocTotal"]
    assert bill["invoice"]["invoiceNumber"] == "E-1b"
    assert [li["description"] for li in bill["billLineItems"]] == ["Services 6100", "Services 6700", "Tax TX8"]
    assert record(ready, doc).status == Status.SYNCED and bill_sim.requests_by_path["PUT /v3/bills/{id}"] == 1
    # SAP records a partial payment outside BILL: nothing is sent, and a person is told BILL would pay too much
    sap = SapClient.for_connection(ready)
    sap.post("VendorPayments", {"CardCode": "V1000", "TransferAccount": "_SYS00000000004", "TransferSum": 10.0,
                                "PaymentInvoices": [{"DocEntry": doc, "SumApplied": 10.0}]})
    before = dict(writes(bill_sim))
    assert sync(ready).summary["bills"]["flagged"] == 1
    assert writes(bill_sim) == before
    assert "10.00 paid, credited or closed in SAP" in record(ready, doc).last_error


def test_cancel_in_sap_archives_the_unpaid_bill(ready, sap_sim, bill_sim):
    doc = sap_sim.add_invoice("V1000", [line("6100", "75.00")])["DocEntry"]
    sync(ready)
    bill_id = the_bill(bill_sim, doc)["id"]
    sap_sim.cancel_invoice(doc)
    run = sync(ready)
    assert run.summary["bills"]["archived"] == 1 and run.summary["bills"]["created"] == 0
    assert bills_of(bill_sim, doc) == [] and [b["id"] for b in bills_of(bill_sim, doc, archived=True)] == [bill_id]
    assert record(ready, doc).status == Status.ARCHIVED
    assert sync(ready).summary["bills"]["archived"] == 0  # once


def test_cancel_is_seen_even_when_sap_does_not_touch_the_original(ready, sap_sim, bill_sim):
    """GIVEN a Service Layer where cancelling leaves the original's UpdateDate alone (unconfirmed either way)
    WHEN only the cancellation document shows up in the delta THEN its BaseEntry leads to the original."""
    sap_sim.touch_original_on_cancel = False
    doc = sap_sim.add_invoice("V1000", [line("6100", "75.00")])["DocEntry"]
    sync(ready)
    sap_sim.cancel_invoice(doc)
    assert sync(ready).summary["bills"]["archived"] == 1
    assert bills_of(bill_sim, doc) == [] and record(ready, doc).status == Status.ARCHIVED


def test_invoice_paid_in_sap_outside_bill_has_its_unpaid_bill_archived(ready, sap_sim, bill_sim):
    """Paid in SAP (not by a BILL payment of ours) while the bill is unpaid: BILL must not pay it again."""
    doc = sap_sim.add_invoice("V1000", [line("6100", "60.00")])
    sync(ready)
    bill_id = the_bill(bill_sim, doc["DocEntry"])["id"]
    sap = SapClient.for_connection(ready)
    sap.post("VendorPayments", {"CardCode": "V1000", "TransferAccount": "_SYS00000000004", "TransferSum": 60.0,
                                "PaymentInvoices": [{"DocEntry": doc["DocEntry"], "SumApplied": 60.0}]})
    assert sap.get(f"PurchaseInvoices({doc['DocEntry']})")["DocumentStatus"] == "bost_Close"
    sync(ready)
    assert bills_of(bill_sim, doc["DocEntry"]) == []
    assert bills_of(bill_sim, doc["DocEntry"], archived=True)[0]["id"] == bill_id
    rec = record(ready, doc["DocEntry"])
    assert rec.status == Status.ARCHIVED and rec.sap_state == "closed" and "not by a BILL payment" in rec.last_error


@pytest.mark.parametrize("payment_status,words", [("PAID", "paid (paid 100.00, scheduled 0.00)"),
                                                  ("SCHEDULED", "scheduled (paid 0.00, scheduled 100.00)")])
def test_paid_or_scheduled_bill_is_never_overwritten_and_the_record_is_flagged(ready, sap_sim, bill_sim,
                                                                               payment_status, words):
    doc = sap_sim.add_invoice("V1000", [line("6100", "100.00")])["DocEntry"]
    sync(ready)
    bill = the_bill(bill_sim, doc)
    bill_sim.pay_bills([(bill["id"], Decimal("100.00"))], status=payment_status)
    sap_sim.update_invoice(doc, lines=[line("6100", "130.00")])
    run = sync(ready)
    assert run.summary["bills"]["flagged"] == 1 and run.status == SyncRun.Status.PARTIAL
    rec = record(ready, doc)
    assert rec.status == Status.FLAGGED
    assert rec.last_error == (f"SAP invoice was edited after BILL bill {bill['id']} was {words}: not overwritten. "
                              "Check the amounts with AP.")
    assert "PUT /v3/bills/{id}" not in bill_sim.requests_by_path
    assert Decimal(str(the_bill(bill_sim, doc)["amount"])) == Decimal("100.00")
    # still flagged and untouched when SAP then cancels it; the next run leaves it to the person
    sap_sim.cancel_invoice(doc)
    sync(ready)
    assert record(ready, doc).status == Status.FLAGGED
    assert "POST /v3/bills/{id}/archive" not in bill_sim.requests_by_path
    assert the_bill(bill_sim, doc)["id"] == bill["id"]


def test_cancel_of_a_paid_bill_is_flagged_not_archived(ready, sap_sim, bill_sim):
    doc = sap_sim.add_invoice("V1000", [line("6100", "40.00")])["DocEntry"]
    sync(ready)
    bill = the_bill(bill_sim, doc)
    bill_sim.pay_bills([(bill["id"], Decimal("40.00"))])
    sap_sim.cancel_invoice(doc)
    sync(ready)
    rec = record(ready, doc)
    assert rec.status == Status.FLAGGED
    assert rec.last_error == (f"Cancelled in SAP, but BILL bill {bill['id']} is paid (paid 40.00, scheduled "
                              "0.00): not archived. Stop or reverse the payment in BILL (or the vendor is paid for a "
                              "cancelled invoice).")
    assert the_bill(bill_sim, doc)["id"] == bill["id"]


# --- exactly one bill ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("count", [1, 5], ids=["single-create", "bulk-create"])
def test_lost_create_response_ends_with_exactly_one_bill(ready, sap_sim, bill_sim, count):
    entries = [sap_sim.add_invoice("V1000", [line("6100", f"{i}.50")])["DocEntry"] for i in range(1, count + 1)]
    bill_sim.lose_next_response("POST", "/v3/bills")
    run = sync(ready)
    assert run.summary["bills"]["adopted"] == count and run.summary["bills"]["created"] == 0
    assert {record(ready, e).status for e in entries} == {Status.SYNCED}
    assert_one_bill_each(bill_sim, entries)
    assert record(ready, entries[0]).bill_id == the_bill(bill_sim, entries[0])["id"]
    sync(ready)
    assert_one_bill_each(bill_sim, entries)


def test_lost_response_with_failed_lookup_is_resolved_by_the_next_run(ready, sap_sim, bill_sim, monkeypatch):
    entries = [sap_sim.add_invoice("V1000", [line("6100", f"{i}.00")])["DocEntry"] for i in (1, 2, 3)]
    bill_sim.lose_next_response("POST", "/v3/bills")
    real = BillSync._recover_lost

    def recover_lost(self, batch, exc):
        bill_sim.fail_next("GET", "/v3/bills", 500, "BDC_1001", "System error occurred.")
        return real(self, batch, exc)

    monkeypatch.setattr(BillSync, "_recover_lost", recover_lost)
    run = sync(ready)
    assert run.summary["bills"]["failed"] == 3
    assert {record(ready, e).status for e in entries} == {Status.FAILED}
    assert "the next run looks again before sending" in record(ready, entries[0]).last_error
    monkeypatch.undo()
    posts = bill_sim.requests_by_path["POST /v3/bills/bulk"]
    run = sync(ready)
    assert run.summary["bills"]["adopted"] == 3
    assert bill_sim.requests_by_path["POST /v3/bills/bulk"] == posts  # nothing sent again
    assert_one_bill_each(bill_sim, entries)


class Killed(BaseException):
    """The worker died (SIGKILL, OOM, deploy): nothing after this point ran."""


def kill_after_post(monkeypatch):
    real = BillSync._post

    def post_then_die(self, batch):
        real(self, batch)
        raise Killed()

    monkeypatch.setattr(BillSync, "_post", post_then_die)


@pytest.mark.parametrize("claim_age_minutes", [0, 11], ids=["fresh-claim", "expired-claim"])
def test_killed_run_resumed_ends_with_exactly_one_bill(ready, sap_sim, bill_sim, monkeypatch, claim_age_minutes):
    entries = [sap_sim.add_invoice("V1000", [line("6100", f"{i}.00")])["DocEntry"] for i in (1, 2, 3, 4)]
    kill_after_post(monkeypatch)
    with pytest.raises(Killed):
        sync(ready)
    monkeypatch.undo()
    assert {record(ready, e).status for e in entries} == {Status.CREATING}  # the claim survived the crash
    assert_one_bill_each(bill_sim, entries)  # and BILL did make the bills
    InvoiceRecord.objects.update(create_attempted_at=timezone.now() - timedelta(minutes=claim_age_minutes))
    posts = bill_sim.requests_by_path["POST /v3/bills/bulk"]
    run = sync(ready)
    assert run.summary["bills"]["adopted"] == 4 and run.summary["bills"]["created"] == 0
    assert bill_sim.requests_by_path["POST /v3/bills/bulk"] == posts
    assert {record(ready, e).status for e in entries} == {Status.SYNCED}
    assert_one_bill_each(bill_sim, entries)


def test_killed_before_sending_is_sent_once_by_the_next_run(ready, sap_sim, bill_sim, monkeypatch):
    """GIVEN a run that claimed two invoices and died before sending WHEN the next run starts THEN it sends them
    at once, once (before: the dead run's claims blocked them for 10 minutes)."""
    entries = [sap_sim.add_invoice("V1000", [line("6100", f"{i}.00")])["DocEntry"] for i in (1, 2)]

    def die(self, batch):
        raise Killed()

    monkeypatch.setattr(BillSync, "_post", die)
    with pytest.raises(Killed):
        sync(ready)
    monkeypatch.undo()
    assert {record(ready, e).status for e in entries} == {Status.CREATING}
    run = sync(ready)
    assert run.summary["bills"]["created"] == 2 and run.summary["bills"]["busy"] == 0
    assert_one_bill_each(bill_sim, entries)


def test_claims_of_a_live_holder_are_left_alone(ready, sap_sim, bill_sim):
    """A record another live worker is creating is not sent; once that worker's lease is gone, it is."""
    entries = [sap_sim.add_invoice("V1000", [line("6100", f"{i}.00")])["DocEntry"] for i in (1, 2)]
    BillSync(ready, SapClient.for_connection(ready), BillClient.for_connection(ready)).read_changes()
    Lease.objects.create(key="holder:other", token="other", host=leases.HOST, pid=os.getpid(),
                         expires_at=timezone.now() + timedelta(minutes=1))
    InvoiceRecord.objects.filter(doc_entry__in=entries).update(
        status=Status.CREATING, claimed_by="other", create_attempted_at=timezone.now())
    run = sync(ready)
    assert run.summary["bills"]["busy"] == 2 and bills_of(bill_sim, entries[0]) == []
    Lease.objects.filter(token="other").delete()  # that worker finished (or died) without resolving them
    run = sync(ready)
    assert run.summary["bills"]["created"] == 2
    assert_one_bill_each(bill_sim, entries)


def test_record_attempted_by_another_run_after_our_lookup_is_not_sent_again(ready, sap_sim, bill_sim, monkeypatch):
    """The race the claim closes: our index was read, then another run sent the bill and lost the answer."""
    entries = [sap_sim.add_invoice("V1000", [line("6100", f"{i}.00")])["DocEntry"] for i in (1, 2)]
    real_ensure = BillIndex.ensure
    other_run_done = []

    def ensure(self, vendor_ids, since, refresh=False):
        real_ensure(self, vendor_ids, since, refresh)
        if not other_run_done:
            other_run_done.append(True)
            # meanwhile another run claims, creates the bills in BILL, loses the answer and fails its look-up
            other = BillSync(ready, SapClient.for_connection(ready), BillClient.for_connection(ready))
            batch = list(InvoiceRecord.objects.filter(doc_entry__in=entries))
            book = bills_module.MappingBook.load(ready)
            for rec in batch:
                rec.coded = bills_module.code_invoice(rec.document, book)[0]
            other._post(batch)
            InvoiceRecord.objects.filter(doc_entry__in=entries).update(
                status=Status.FAILED, create_attempted_at=timezone.now(), attempts=1)

    monkeypatch.setattr(BillIndex, "ensure", ensure)
    run = sync(ready)
    assert run.summary["bills"]["created"] == 0 and run.summary["bills"]["busy"] == 2
    assert_one_bill_each(bill_sim, entries)
    monkeypatch.undo()
    run = sync(ready)
    assert run.summary["bills"]["adopted"] == 2
    assert_one_bill_each(bill_sim, entries)


def test_retried_record_is_looked_up_again_after_it_is_claimed(ready, sap_sim, bill_sim, monkeypatch):
    """An earlier attempt's bill that our first look-up could not see is found before anything is sent."""
    entries = [sap_sim.add_invoice("V1000", [line("6100", f"{i}.00")])["DocEntry"] for i in (1, 2)]
    bill_sim.lose_next_response("POST", "/v3/bills")
    monkeypatch.setattr(BillSync, "_recover_lost", lambda self, batch, exc: [
        self._fail(r, "BILL did not answer") for r in batch])
    sync(ready)
    monkeypatch.undo()
    assert {record(ready, e).status for e in entries} == {Status.FAILED}
    real_ensure = BillIndex.ensure

    def stale_first_lookup(self, vendor_ids, since, refresh=False):
        if refresh:
            return real_ensure(self, vendor_ids, since, refresh)
        self.loaded.update(dict.fromkeys(vendor_ids, since))  # as if read before the earlier attempt's bills existed

    monkeypatch.setattr(BillIndex, "ensure", stale_first_lookup)
    posts = bill_sim.requests_by_path["POST /v3/bills/bulk"]
    run = sync(ready)
    assert run.summary["bills"]["adopted"] == 2
    assert bill_sim.requests_by_path["POST /v3/bills/bulk"] == posts
    assert_one_bill_each(bill_sim, entries)


@pytest.mark.parametrize("change", ["edit", "cancel"])
def test_invoice_changed_in_sap_while_its_bill_was_being_created_is_followed_up(ready, sap_sim, bill_sim, monkeypatch,
                                                                                change):
    doc = sap_sim.add_invoice("V1000", [line("6100", "100.00")])["DocEntry"]
    real = BillSync._post

    def post_while_another_run_reads_a_newer_version(self, batch):
        created = real(self, batch)
        if change == "edit":
            sap_sim.update_invoice(doc, lines=[line("6100", "120.00")])
        else:
            sap_sim.cancel_invoice(doc)
        BillSync(ready, SapClient.for_connection(ready), BillClient.for_connection(ready)).read_changes()
        return created

    monkeypatch.setattr(BillSync, "_post", post_while_another_run_reads_a_newer_version)
    sync(ready)
    monkeypatch.undo()
    rec = record(ready, doc)
    bill = the_bill(bill_sim, doc)
    # the bill we made is recorded, and the newer SAP version is not mistaken for what we sent
    assert rec.bill_id == bill["id"] and rec.status == Status.PENDING
    assert rec.next_step == ("update" if change == "edit" else "archive")
    sync(ready)
    if change == "edit":
        assert Decimal(str(the_bill(bill_sim, doc)["amount"])) == Decimal("120.00")
        assert record(ready, doc).status == Status.SYNCED
    else:
        assert bills_of(bill_sim, doc) == [] and len(bills_of(bill_sim, doc, archived=True)) == 1
        assert record(ready, doc).status == Status.ARCHIVED


def test_invoice_cancelled_after_a_create_of_unknown_outcome_has_its_bill_archived(ready, sap_sim, bill_sim, monkeypatch):
    doc = sap_sim.add_invoice("V1000", [line("6100", "100.00")])["DocEntry"]
    bill_sim.lose_next_response("POST", "/v3/bills")
    monkeypatch.setattr(BillSync, "_recover_lost", lambda self, batch, exc: [
        self._fail(r, "BILL did not answer") for r in batch])
    sync(ready)
    monkeypatch.undo()
    assert record(ready, doc).status == Status.FAILED and record(ready, doc).bill_id == ""
    sap_sim.cancel_invoice(doc)
    run = sync(ready)
    assert run.summary["bills"]["archived"] == 1
    assert bills_of(bill_sim, doc) == [] and len(bills_of(bill_sim, doc, archived=True)) == 1
    assert record(ready, doc).status == Status.ARCHIVED


def test_bulk_request_refused_is_split_and_the_culprit_stands_alone(ready, sap_sim, bill_sim):
    entries = [sap_sim.add_invoice("V1000", [line("6100", f"{i}.00", center="ADMIN")])["DocEntry"] for i in range(1, 7)]
    culprit = sap_sim.add_invoice("V1001", [line("6200", "50.00", center="SALES")])["DocEntry"]
    # BILL archived the Sales department after our reference data was read: the mapping looks fine to us
    BillClient.for_connection(ready).post(f"/v3/classifications/departments/{department_id(ready, 'Sales')}/archive")
    run = sync(ready)
    assert run.summary["bills"]["created"] == 6 and run.summary["bills"]["failed"] == 1
    assert_one_bill_each(bill_sim, entries)
    rec = record(ready, culprit)
    assert rec.status == Status.FAILED and "archived" in rec.last_error and rec.last_error.startswith("BILL refused the bill")
    assert bills_of(bill_sim, culprit) == []
    # after a reference refresh the broken mapping holds it with words a person can act on
    refresh_reference(ready, SapClient.for_connection(ready), BillClient.for_connection(ready))
    sync(ready)
    assert record(ready, culprit).status == Status.HELD
    assert record(ready, culprit).last_error == ("SAP cost center SALES Sales is mapped to a BILL department that is "
                                                 "archived: map it again")


def test_bulk_refused_once_is_sent_again_in_halves(ready, sap_sim, bill_sim):
    entries = [sap_sim.add_invoice("V1000", [line("6100", f"{i}.00")])["DocEntry"] for i in range(1, 7)]
    bill_sim.fail_next("POST", "/v3/bills/bulk", 400, "BDC_1119", "Invalid field,value: [0].vendorId.")
    run = sync(ready)
    assert run.summary["bills"]["created"] == 6
    assert bill_sim.requests_by_path["POST /v3/bills/bulk"] == 3  # 6 refused, then 3 + 3
    assert {record(ready, e).status for e in entries} == {Status.SYNCED}
    assert_one_bill_each(bill_sim, entries)


def test_bill_entered_by_hand_with_the_same_number_is_not_duplicated(ready, sap_sim, bill_sim):
    vendor = VendorLink.objects.get(connection=ready, card_code="V1000").bill_vendor_id
    BillClient.for_connection(ready).post("/v3/bills", {
        "vendorId": vendor, "dueDate": "2026-12-31", "invoice": {"invoiceNumber": "HAND-1", "invoiceDate": "2026-12-01"},
        "billLineItems": [{"amount": 10.0, "description": "typed in BILL"}]})
    doc = sap_sim.add_invoice("V1000", [line("6100", "10.00")], num_at_card="HAND-1")["DocEntry"]
    sync(ready)
    rec = record(ready, doc)
    assert rec.status == Status.FLAGGED and "not made by ml-connector" in rec.last_error
    assert bills_of(bill_sim, doc) == []


def test_two_overlapping_run_syncs_the_second_is_refused(ready, sap_sim, bill_sim):
    entries = sap_sim.seed_invoices(6, min_lines=1, max_lines=2)
    bill_sim.latency = 0.3
    outcome = {}

    def first():
        try:
            outcome["run"] = sync(Connection.objects.get(pk=ready.pk))
        except BaseException as exc:  # noqa: B036 - reported below
            outcome["error"] = exc
        finally:
            db_connection.close()

    worker = threading.Thread(target=first)
    worker.start()
    deadline = time.monotonic() + 10
    while not Lease.objects.filter(key=f"run:{ready.pk}").exists():
        assert time.monotonic() < deadline, "the first run never started"
        time.sleep(0.01)
    with pytest.raises(AlreadyRunning, match="another sync of demo/demo-sandbox is running"):
        sync(ready)
    worker.join(30)
    assert "error" not in outcome and outcome["run"].status in (SyncRun.Status.OK, SyncRun.Status.PARTIAL)
    bill_sim.latency = 0
    synced = list(InvoiceRecord.objects.filter(status=Status.SYNCED).values_list("doc_entry", flat=True))
    assert_one_bill_each(bill_sim, sorted(synced))
    assert set(synced) == set(entries) - set(InvoiceRecord.objects.filter(card_code="V1003").values_list("doc_entry", flat=True))
    assert sync(ready).status != SyncRun.Status.FAILED  # the lock was released


@pytest.mark.parametrize("bill_latency", [0.0, 0.08])
def test_two_concurrent_bill_syncs_bypassing_the_lock_make_one_bill_each(ready, sap_sim, bill_sim, bill_latency,
                                                                         monkeypatch):
    monkeypatch.setattr(bills_module, "CHUNK", 7)  # small chunks and bulks: the two runs interleave claims
    monkeypatch.setattr(bills_module, "BULK_LIMIT", 4)
    VendorLink.objects.filter(connection=ready, card_code="V1003").update(
        bill_vendor_id="00901SBXVEND0000003", status="linked", last_error="")
    entries = sap_sim.seed_invoices(60, min_lines=1, max_lines=3)
    sap_sim.latency, bill_sim.latency = 0.01, bill_latency
    start = threading.Barrier(2)
    summaries, errors = [], []

    def worker():
        try:
            conn = Connection.objects.get(pk=ready.pk)
            sync_ = BillSync(conn, SapClient.for_connection(conn, page_size=10), BillClient.for_connection(conn))
            start.wait(10)
            sync_.read_changes()
            summaries.append(sync_.process())
        except BaseException as exc:  # noqa: B036 - reported below
            errors.append(exc)
        finally:
            db_connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    sap_sim.latency = bill_sim.latency = 0
    assert_one_bill_each(bill_sim, entries)
    assert sum(s["created"] for s in summaries) == len(entries)  # each bill was sent exactly once
    assert {r.status for r in InvoiceRecord.objects.all()} == {Status.SYNCED}
    assert InvoiceRecord.objects.count() == len(entries)


def test_second_run_changes_nothing(ready, sap_sim, bill_sim):
    entries = sap_sim.seed_invoices(12)
    first = sync(ready).summary["bills"]
    before_writes, before_updates = dict(writes(bill_sim)), {r.pk: r.updated_at for r in InvoiceRecord.objects.all()}
    second = sync(ready).summary["bills"]
    assert second["created"] == second["updated"] == second["adopted"] == 0 and first["created"] > 0
    assert writes(bill_sim) == before_writes
    unchanged = {r.pk: r.updated_at for r in InvoiceRecord.objects.exclude(status=Status.HELD)}
    assert all(before_updates[pk] == at for pk, at in unchanged.items())
    synced = InvoiceRecord.objects.filter(status=Status.SYNCED).values_list("doc_entry", flat=True)
    assert_one_bill_each(bill_sim, sorted(synced))
    assert len(entries) == InvoiceRecord.objects.count()


def test_replaying_synced_records_makes_no_second_bill(ready, sap_sim, bill_sim):
    entries = [sap_sim.add_invoice("V1000", [line("6100", f"{i}.00")])["DocEntry"] for i in (1, 2, 3)]
    sync(ready)
    ids = list(InvoiceRecord.objects.values_list("pk", flat=True))
    posts = dict(writes(bill_sim))
    replay = BillSync(ready, SapClient.for_connection(ready), BillClient.for_connection(ready))
    replay.process(only_ids=ids)
    assert writes(bill_sim) == posts
    assert_one_bill_each(bill_sim, entries)


def test_replaying_a_flagged_record_after_the_person_fixed_it_creates_its_bill(ready, sap_sim, bill_sim):
    vendor = VendorLink.objects.get(connection=ready, card_code="V1000").bill_vendor_id
    by_hand = BillClient.for_connection(ready).post("/v3/bills", {
        "vendorId": vendor, "dueDate": "2026-12-31", "invoice": {"invoiceNumber": "HAND-2", "invoiceDate": "2026-12-01"},
        "billLineItems": [{"amount": 10.0, "description": "typed in BILL"}]})
    doc = sap_sim.add_invoice("V1000", [line("6100", "10.00")], num_at_card="HAND-2")["DocEntry"]
    sync(ready)
    assert record(ready, doc).status == Status.FLAGGED
    assert sync(ready).summary["bills"]["flagged"] == 0  # a normal run leaves it to the person
    BillClient.for_connection(ready).post(f"/v3/bills/{by_hand['id']}/archive")  # the person archives the duplicate
    replay = BillSync(ready, SapClient.for_connection(ready), BillClient.for_connection(ready))
    assert replay.process(only_ids=[record(ready, doc).pk])["created"] == 1
    assert record(ready, doc).status == Status.SYNCED
    the_bill(bill_sim, doc)


def test_every_outcome_is_on_the_audit_trail(ready, sap_sim, bill_sim):
    from audit import trail
    from audit.models import AuditEvent

    doc = sap_sim.add_invoice("V1000", [line("6100", "12.00")])["DocEntry"]
    held = sap_sim.add_invoice("V1001", [line("6900", "12.00")])["DocEntry"]
    sync(ready)
    events = list(trail.timeline(record(ready, doc)))
    assert [(e.kind, e.after) for e in events if e.kind == AuditEvent.Kind.CHANGE] == [
        ("change", {"status": "synced", "bill_id": record(ready, doc).bill_id})]
    assert [e.message for e in events if e.kind == AuditEvent.Kind.OUTCOME] == [
        f"Created BILL bill {record(ready, doc).bill_id}"]
    held_events = list(trail.timeline(record(ready, held)))
    assert [e.after for e in held_events] == [{"status": "held", "last_error": record(ready, held).last_error}]


def test_two_sap_companies_billing_into_one_bill_org_never_take_each_others_bills(db, sap_sim, bill_sim):
    """GIVEN two SAP companies whose invoices share a DocEntry WHEN both sync into the same BILL organization
    THEN each gets its own bill: the marker names the company, so neither adopts (or overwrites) the other's."""
    from connector.connections import apply_connection
    from connector.sandbox.sap import SapSimulator
    from connector.sandbox.server import serve
    from tests.conftest import connection_file
    from tests.test_payments import map_everything

    other = SapSimulator(company_db="SBO_SECOND")
    server = serve(other)
    try:
        first, _ = apply_connection(connection_file(sap_sim.url, bill_sim.url, name="company-a"))
        second, _ = apply_connection(connection_file(server.url, bill_sim.url, name="company-b",
                                                     sap={"company_db": "SBO_SECOND"}))
        a = sap_sim.add_invoice("V1000", [line("6100", "100.00")], num_at_card="SAME-REF")
        b = other.add_invoice("V1000", [line("6100", "999.00")], num_at_card="SAME-REF")
        assert a["DocEntry"] == b["DocEntry"]
        for conn in (first, second):
            run_sync(conn, ["reference"])
            map_everything(conn)
            run_sync(conn, ["vendors", "bills"])
        ra, rb = InvoiceRecord.objects.get(connection=first), InvoiceRecord.objects.get(connection=second)
        assert ra.status == rb.status == Status.SYNCED and ra.bill_id != rb.bill_id
        amounts = {bill["id"]: Decimal(str(bill["amount"])) for bill in bill_sim.entities("bills")}
        assert (amounts[ra.bill_id], amounts[rb.bill_id]) == (Decimal("100.00"), Decimal("999.00"))
    finally:
        server.stop()


@pytest.mark.parametrize("rendered", ["13:45:07", "134507", "13:45:07.0000000", "PT13H45M7S", "1899-12-30T13:45:07"])
def test_update_time_renderings_give_one_cursor_stamp(rendered):
    from connector.sync.bills import stamp_of

    assert stamp_of({"UpdateDate": "2026-03-01T00:00:00Z", "UpdateTime": rendered}) == "2026-03-01T13:45:07"
    assert stamp_of({"UpdateDate": "2026-03-01", "UpdateTime": "13:45"}) == "2026-03-01T13:45:00"


def test_a_v2_service_that_wants_bare_v4_literals_still_gets_read(db, sap_sim, bill_sim):
    """Quoted date literals on /b1s/v2 are unconfirmed: when the quoted filter is refused, bare V4 literals are sent."""
    from connector.connections import apply_connection
    from tests.conftest import connection_file

    conn, _ = apply_connection(connection_file(sap_sim.url, bill_sim.url, sap={"base_url": f"{sap_sim.url}/b1s/v2"}))
    prepare(conn)
    doc = sap_sim.add_invoice("V1000", [line("6100", "33.00")])["DocEntry"]
    # Both the $select attempt and the retry without $select are refused, as for a quoted literal.
    sap_sim.fail_next("GET", "PurchaseInvoices", 400, "201", "Query string error - Invalid filter condition", count=2)
    run = sync(conn)
    assert run.status == SyncRun.Status.OK, run.error
    assert run.summary["bills"]["created"] == 1 and the_bill(bill_sim, doc)
    sap = SapClient.for_connection(conn)
    filters = spy_filters(sap)
    sap_sim.fail_next("GET", "PurchaseInvoices", 400, "201", "Query string error - Invalid filter condition", count=2)
    sync(conn, sap=sap)
    assert filters[0].startswith("(UpdateDate gt '") and filters[1].startswith("(UpdateDate gt 20")


def test_a_refused_repeated_invoice_number_still_gives_two_bills(ready, sap_sim, bill_sim):
    """If BILL refuses a vendor's repeated invoice number (unconfirmed), the second bill carries the SAP DocNum too."""
    first = sap_sim.add_invoice("V1000", [line("6100", "10.00")], num_at_card="REPEAT-1")
    sync(ready)
    second = sap_sim.add_invoice("V1000", [line("6100", "20.00")], num_at_card="REPEAT-1")
    bill_sim.fail_next("POST", "/v3/bills", 400, "BDC_1171", "Duplicate invoice number REPEAT-1 for this vendor")
    run = sync(ready)
    assert run.summary["bills"]["created"] == 1 and run.summary["bills"]["failed"] == 0
    assert the_bill(bill_sim, first["DocEntry"])["invoice"]["invoiceNumber"] == "REPEAT-1"
    assert the_bill(bill_sim, second["DocEntry"])["invoice"]["invoiceNumber"] == f"REPEAT-1 (SAP {second['DocNum']})"


def test_the_unique_number_survives_an_edit_in_sap(ready, sap_sim, bill_sim):
    sap_sim.add_invoice("V1000", [line("6100", "10.00")], num_at_card="REPEAT-2")
    sync(ready)
    second = sap_sim.add_invoice("V1000", [line("6100", "20.00")], num_at_card="REPEAT-2")
    bill_sim.fail_next("POST", "/v3/bills", 400, "BDC_1171", "Duplicate invoice number REPEAT-2 for this vendor")
    sync(ready)
    sap_sim.update_invoice(second["DocEntry"], lines=[line("6100", "25.00")])
    run = sync(ready)
    assert run.summary["bills"]["updated"] == 1
    bill = the_bill(bill_sim, second["DocEntry"])
    assert bill["invoice"]["invoiceNumber"] == f"REPEAT-2 (SAP {second['DocNum']})" and Decimal(str(bill["amount"])) == 25
