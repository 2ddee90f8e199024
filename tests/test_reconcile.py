"""Reconciliation finds exactly the differences people made on either side, to the cent, and nothing else."""

import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest

from connector.clients.bill import BillClient
from connector.clients.sap import SapClient
from connector.models import InvoiceRecord
from connector.sync.runner import run_sync
from mappings.suggest import apply_proposals, suggest_accounts, suggest_departments
from reconcile.csvexport import write_csv
from reconcile.models import Difference, ReconciliationRun
from reconcile.service import reconcile
from tests.test_connections import run_cli

D = Decimal


def map_everything(conn):
    proposals = suggest_accounts(conn) + suggest_departments(conn)
    apply_proposals([(p.sap_row, p.bill_row) for p in proposals])


@pytest.fixture
def billed(conn, sap_sim, bill_sim):
    """Six invoices synced to BILL, one paid in full and one in part in BILL and posted to SAP."""
    specs = [("V1000", "6100", "100.00", "A-1"), ("V1000", "6200", "250.00", "A-2"), ("V1000", "6300", "40.50", "A-3"),
             ("V1005", "6300", "75.00", "U-1"), ("V1002", "6100", "60.00", "H-1"), ("V1005", "6100", "30.00", "R-1")]
    for card, account, amount, ref in specs:
        sap_sim.add_invoice(card, [{"AccountCode": account, "LineTotal": amount, "CostingCode": "ADMIN"}],
                            num_at_card=ref, due_date="2026-12-31")
    run_sync(conn, ["reference"])
    map_everything(conn)
    run_sync(conn, ["vendors", "bills"])
    records = {r.invoice_number: r for r in InvoiceRecord.objects.filter(connection=conn)}
    assert all(r.status == "synced" for r in records.values()), [(r.invoice_number, r.last_error) for r in records.values()]
    bill_sim.pay_bills([(records["A-1"].bill_id, "100.00")], process_date="2026-11-20")
    bill_sim.pay_bills([(records["U-1"].bill_id, "25.00")], process_date="2026-11-21")
    assert run_sync(conn, ["payments"]).summary["payments"]["posted"] == 2
    return records


def found(run):
    return sorted((d.kind, d.sap_amount, d.bill_amount) for d in run.differences.all())


def bill_of(bill_sim, bill_id):
    return next(b for b in bill_sim.entities("bills") if b["id"] == bill_id)


@pytest.mark.django_db
def test_clean_connection_has_no_differences_and_equal_open_totals(conn, billed):
    run = reconcile(conn)
    assert run.status == ReconciliationRun.Status.CLEAN, [(d.kind, d.detail) for d in run.differences.all()]
    assert (run.invoices, run.bills, run.payments, run.difference_count) == (6, 6, 2, 0)
    # open: 0 + 250 + 40.50 + 50 (75 less 25) + 60 + 30
    assert run.sap_open == run.bill_open == D("430.50")
    assert run.summary["vendors"]["V1005"] == {"sap_open": "80.00", "bill_open": "80.00", "invoices": 2}
    # bulk reads: a login and a handful of list pages per side, never one request per invoice
    assert run.summary["requests"]["bill"] <= 4 and run.summary["requests"]["sap"] <= 5


@pytest.mark.django_db
def test_each_hand_made_difference_is_found_exactly_to_the_cent(conn, sap_sim, bill_sim, billed):
    bill = BillClient.for_connection(conn)
    sap = SapClient.for_connection(conn)
    # 1. a bill deleted in BILL
    bill_sim.delete_bill(billed["A-2"].bill_id)
    # 2. an amount changed in BILL by hand (40.50 -> 45.00)
    a3 = bill_of(bill_sim, billed["A-3"].bill_id)
    bill.patch(f"/v3/bills/{a3['id']}", {"billLineItems": [{"id": a3["billLineItems"][0]["id"], "amount": 45}]})
    # 3. an amount changed in SAP (R-1: 30.00 -> 33.10): the next sync is expected to fix it
    sap_sim.update_invoice(billed["R-1"].doc_entry, lines=[{"AccountCode": "6100", "LineTotal": "33.10",
                                                            "CostingCode": "ADMIN"}])
    # 4. a payment voided in BILL after it was posted to SAP
    paid = bill_sim.entities("payments")
    a1_payment = next(p for p in paid if p["billPayments"][0]["billId"] == billed["A-1"].bill_id)
    bill_sim.void_payment(a1_payment["id"])
    # 5. an SAP outgoing payment posted by hand with a BILL-looking reference
    sap.post("VendorPayments", {
        "CardCode": "V1002", "DocType": "rSupplier", "DocDate": "2026-11-25", "TransferAccount": "_SYS00000000004",
        "TransferSum": 60.0, "TransferReference": "stp01HANDMADE0000001",
        "PaymentInvoices": [{"LineNum": 0, "DocEntry": billed["H-1"].doc_entry, "InvoiceType": "it_PurchaseInvoice",
                             "SumApplied": 60.0}]})
    # 6. a bill archived by hand in BILL while its invoice is open
    sap_sim.add_invoice("V1006", [{"AccountCode": "6100", "LineTotal": "12.34", "CostingCode": "ADMIN"}],
                        num_at_card="S-1", due_date="2026-12-31")
    run_sync(conn, ["vendors", "bills"])
    s1 = InvoiceRecord.objects.get(connection=conn, invoice_number="S-1")
    assert s1.status == "synced", s1.last_error
    bill.post(f"/v3/bills/{s1.bill_id}/archive")
    # the sync above already updated R-1's bill: change SAP again so the difference is there to find
    sap_sim.update_invoice(billed["R-1"].doc_entry, lines=[{"AccountCode": "6100", "LineTotal": "35.00",
                                                            "CostingCode": "ADMIN"}])

    run = reconcile(conn)
    assert found(run) == sorted([
        ("missing_bill", D("250.00"), None),
        ("amount", D("40.50"), D("45.00")),
        ("amount", D("35.00"), D("33.10")),
        ("posted_not_paid", D("100.00"), D("0.00")),
        ("unknown_payment", D("60.00"), None),
        ("archived_bill", D("12.34"), D("0.00")),
    ])
    by_kind = {d.kind: d for d in run.differences.all() if d.kind != "amount"}
    assert by_kind["missing_bill"].bill_ref == billed["A-2"].bill_id
    assert by_kind["missing_bill"].invoice_id == billed["A-2"].pk and "deleted in BILL" in by_kind["missing_bill"].action
    assert by_kind["posted_not_paid"].bill_ref == a1_payment["id"] and "cancel SAP" in by_kind["posted_not_paid"].action
    assert by_kind["unknown_payment"].bill_ref == "stp01HANDMADE0000001"
    assert by_kind["archived_bill"].bill_ref == s1.bill_id
    amounts = {d.sap_ref: d for d in run.differences.filter(kind="amount")}
    edited_in_sap = next(d for d in amounts.values() if d.sap_amount == D("35.00"))
    assert edited_in_sap.expected_to_clear and "next sync" in edited_in_sap.action
    edited_in_bill = next(d for d in amounts.values() if d.sap_amount == D("40.50"))
    assert not edited_in_bill.expected_to_clear
    assert all(d.is_new for d in run.differences.all())

    # The sync fixes what it is expected to fix; the rest stays, and is no longer new.
    run_sync(conn, ["bills"])
    again = reconcile(conn)
    assert ("amount", D("35.00"), D("33.10")) not in found(again)
    assert len(found(again)) == 5 and not any(d.is_new for d in again.differences.all())


@pytest.mark.django_db
def test_duplicates_vendor_due_date_orphans_payments_and_vendor_totals(conn, sap_sim, bill_sim, billed):
    bill = BillClient.for_connection(conn)
    sap = SapClient.for_connection(conn)
    a2 = bill_of(bill_sim, billed["A-2"].bill_id)
    # a second bill carrying A-2's marker (entered by hand, copying the description)
    copy = bill.post("/v3/bills", {"vendorId": a2["vendorId"], "dueDate": "2026-12-31", "description": a2["description"],
                                   "invoice": {"invoiceNumber": "A-2 copy", "invoiceDate": "2026-11-01"},
                                   "billLineItems": [{"amount": 250, "description": "copy"}]})
    # A-3's bill moved to another vendor; H-1's due date changed in BILL
    other_vendor = next(v["id"] for v in bill_sim.entities("vendors") if v["id"] != a2["vendorId"] and not v["archived"])
    bill.patch(f"/v3/bills/{billed['A-3'].bill_id}", {"vendorId": other_vendor})
    bill.patch(f"/v3/bills/{billed['H-1'].bill_id}", {"dueDate": "2027-01-15"})
    # R-1 cancelled in SAP (its bill is still open in BILL until the next sync archives it)
    sap_sim.cancel_invoice(billed["R-1"].doc_entry)
    # A-2 paid in BILL (not yet posted: the next payments sync does it); U-1's SAP payment applies a wrong amount
    paid = bill_sim.pay_bills([(copy["id"], "10.00")])
    u1 = bill_sim.pay_bills([(billed["U-1"].bill_id, "5.00")])
    sap.post("VendorPayments", {
        "CardCode": "V1005", "DocType": "rSupplier", "DocDate": "2026-11-25", "TransferAccount": "_SYS00000000004",
        "TransferSum": 4.0, "TransferReference": u1["id"],
        "PaymentInvoices": [{"LineNum": 0, "DocEntry": billed["U-1"].doc_entry, "InvoiceType": "it_PurchaseInvoice",
                             "SumApplied": 4.0}]})
    # a vendor's open total off without any other difference: an invoice closed in SAP by hand
    extra = sap_sim.add_invoice("V1001", [{"AccountCode": "6100", "LineTotal": "19.99", "CostingCode": "ADMIN"}],
                                num_at_card="C-1", due_date="2026-12-31")
    run_sync(conn, ["vendors", "bills"])
    sap_sim.close_invoice(extra["DocEntry"])  # closed in SAP by hand: SAP owes nothing, BILL still 19.99

    run = reconcile(conn)
    kinds = found(run)
    assert kinds == sorted([
        ("duplicate_bill", D("250.00"), D("500.00")),
        ("vendor", None, None),
        ("due_date", None, None),
        ("paid_not_posted", None, D("10.00")),
        ("payment_amount", D("4.00"), D("5.00")),
        ("open_total", D("0.00"), D("19.99")),
    ]), [(d.kind, d.detail) for d in run.differences.all()]
    diffs = {d.kind: d for d in run.differences.all()}
    assert copy["id"] in diffs["duplicate_bill"].bill_ref
    assert diffs["vendor"].bill_ref == billed["A-3"].bill_id and other_vendor in diffs["vendor"].detail
    assert "2027-01-15" in diffs["due_date"].detail
    assert diffs["paid_not_posted"].bill_ref == paid["id"]
    assert diffs["open_total"].card_code == "V1001"


@pytest.mark.django_db
def test_cancelled_invoice_with_open_bill_is_an_orphan_until_the_sync_archives_it(conn, sap_sim, billed):
    sap_sim.cancel_invoice(billed["R-1"].doc_entry)
    run = reconcile(conn)
    assert found(run) == [("orphan_bill", None, D("30.00"))]
    orphan = run.differences.get()
    assert orphan.bill_ref == billed["R-1"].bill_id and orphan.expected_to_clear
    run_sync(conn, ["bills"])
    assert reconcile(conn).difference_count == 0


@pytest.mark.django_db
def test_command_prints_summary_and_lines_exit_codes_and_csv(conn, bill_sim, billed, tmp_path):
    code, out, _ = run_cli("reconcile", "demo-sandbox")
    assert code == 0 and "reconciled: 6 invoices, 6 bills, 2 payments: 0 differences" in out
    assert "reading SAP and BILL:" in out  # progress
    bill_sim.delete_bill(billed["A-2"].bill_id)
    target = tmp_path / "diff.csv"
    code, out, _ = run_cli("reconcile", "demo/demo-sandbox", "--csv", str(target))
    assert code == 0
    assert "reconciled: 6 invoices, 5 bills, 2 payments: 1 differences" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("  missing_bill"))
    assert billed["A-2"].bill_id in line and "SAP 250.00" in line
    rows = list(csv.DictReader(target.open()))
    assert len(rows) == 1 and rows[0]["kind"] == "missing_bill" and rows[0]["sap_amount"] == "250.00"
    assert rows[0]["bill_id"] == billed["A-2"].bill_id and rows[0]["difference"] == "250.00"
    code, _, _ = run_cli("reconcile", "demo-sandbox", "--strict")
    assert code == 1
    code, _, err = run_cli("reconcile", "demo-sandbox", "--since", "yesterday")
    assert code == 2 and "--since" in err
    code, _, _ = run_cli("reconcile", "nope")
    assert code == 2
    code, out, _ = run_cli("reconcile", "demo-sandbox", "--since", "2030-01-01")
    # Nothing was updated or created since 2030, but the bills our ledger knows are fetched by id, and their
    # invoices by DocEntry, so they are still compared (the deleted bill's invoice lies outside the window).
    assert code == 0 and "reconciled: 5 invoices, 5 bills, 0 payments: 0 differences" in out


@pytest.mark.django_db
def test_login_failure_exits_1_and_records_a_failed_run(conn, billed):
    conn.bill_password = "wrong"
    conn.save()
    code, _, err = run_cli("reconcile", "demo-sandbox")
    assert code == 1 and "reconcile failed" in err
    assert ReconciliationRun.objects.filter(connection=conn).first().status == "failed"


def test_csv_escapes_formula_like_cells():
    d = Difference(kind="amount", card_code="=HYPERLINK(\"x\")", sap_ref="+1", bill_ref="@cmd", action="-2+3",
                   detail="plain", sap_amount=D("-5.00"), bill_amount=D("1.00"))
    fh = io.StringIO()
    write_csv(fh, [d])
    row = list(csv.DictReader(io.StringIO(fh.getvalue())))[0]
    assert row["sap_supplier"].startswith("'=") and row["sap_id"] == "'+1" and row["bill_id"] == "'@cmd"
    assert row["what_to_do"] == "'-2+3" and row["detail"] == "plain"
    assert row["sap_amount"] == "-5.00" and row["difference"] == "-6.00"  # numbers stay numbers


@pytest.mark.django_db
def test_a_refused_bill_filter_falls_back_to_the_whole_list(conn, bill_sim, billed):
    """BILL's filterable fields are only partly documented: a refused filter must not stop the reconciliation."""
    bill_sim.fail_next("GET", "/v3/bills", 400, "BDC_1129", "Invalid parameter value for parameter,value: filters")
    bill_sim.fail_next("GET", "/v3/payments", 400, "BDC_1129", "Invalid parameter value for parameter,value: filters")
    run = reconcile(conn)
    assert run.status == "clean" and (run.bills, run.payments) == (6, 2)


@pytest.fixture
def clean_budget(settings):
    """Redis budget counts outlive a test (the database ones roll back): start and end with none."""
    from connector import budget

    if settings.REDIS_URL:
        budget.counter().clear()
    yield
    if settings.REDIS_URL:
        budget.counter().clear()


@pytest.mark.django_db
def test_past_three_quarters_of_the_bill_hour_the_daily_run_is_deferred_not_failed_loudly(conn, billed, settings,
                                                                                           clean_budget):
    from django_q.models import Schedule

    from connector import budget
    from connector.models import BudgetUse
    from connector.sandbox import catalog
    from reconcile.tasks import run_scheduled_reconcile

    settings.BILL_REQUESTS_PER_HOUR = 100
    if settings.REDIS_URL:
        budget.counter().clear()  # the billed fixture spent some of this hour already
        for _ in range(76):
            budget.take(catalog.BILL_DEV_KEY, level="high")
    else:
        BudgetUse.objects.update_or_create(key=budget.key_of(catalog.BILL_DEV_KEY), kind="request",
                                           hour=budget.hour_of(), defaults={"count": 76})
    assert run_scheduled_reconcile(conn.pk).startswith("deferred to")
    run = ReconciliationRun.objects.filter(connection=conn).first()
    assert run.status == "failed" and "kept for payments and bills" in run.error
    retry = Schedule.objects.get(name=f"reconcile-retry:{conn.pk}")
    assert retry.schedule_type == Schedule.ONCE and retry.next_run == budget.hour_of() + timedelta(hours=1)
