"""SAP currency codes (B1, not ISO) and branches (issue 11 points 4 and 5), on the strict simulators."""

import pytest
import requests

from connector.connections import BadInput, parse_connection_file
from connector.models import Connection, InvoiceRecord
from connector.sandbox import catalog
from connector.sync.coding import MappingBook, code_invoice, iso_currency
from connector.sync.runner import run_sync
from mappings.suggest import apply_proposals, suggest_accounts, suggest_departments
from tests.conftest import connection_file


def map_everything(conn):
    proposals = suggest_accounts(conn) + suggest_departments(conn)
    apply_proposals([(p.sap_row, p.bill_row) for p in proposals])


def sync_all(conn):
    run_sync(conn, ["reference"])
    map_everything(conn)
    run_sync(conn, ["vendors", "bills"])
    return {r.invoice_number: r for r in InvoiceRecord.objects.filter(connection=conn)}


def line(amount="100.00"):
    return [{"AccountCode": "6100", "LineTotal": amount, "CostingCode": "ADMIN"}]


# --- currency ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("code,codes,iso", [
    ("$", {}, "USD"), ("USD", {}, "USD"), ("EUR", {}, "EUR"), ("$", {"$": "CAD"}, "CAD"), ("Can", {}, ""),
    ("Can", {"Can": "CAD"}, "CAD"), ("##", {}, ""), ("", {}, ""),
])
def test_b1_currency_codes_to_iso(code, codes, iso):
    assert iso_currency(code, codes) == iso


def doc(currency, **extra):
    return {"DocEntry": 1, "DocNum": 30001, "CardCode": "V1", "DocCurrency": currency, "DocTotal": 10, "DocTotalFc": 0,
            "DocumentLines": [{"LineNum": 0, "AccountCode": "6100", "LineTotal": 10}], **extra}


def book(**kw):
    return MappingBook(accounts={"6100": ("0ca1", "6100 Office", "")}, vendors={"V1": ("009V", "linked", "")}, **kw)


def test_dollar_local_currency_is_usd_and_is_coded():
    body, problems = code_invoice(doc("$"), book(local_currency="$"))
    assert problems == [] and body["billLineItems"][0]["amount"] == 10.0


def test_foreign_currency_document_stays_held_with_todays_message():
    _, problems = code_invoice(doc("EUR", DocTotalFc=9.2), book(local_currency="$"))
    assert problems == ["currency EUR: BILL takes only USD bills for this organization: pay this invoice outside BILL "
                        "or post it in USD"]


def test_unknown_b1_code_is_held_saying_how_to_map_it():
    _, problems = code_invoice(doc("Can"), book(local_currency="Can"))
    assert any("sap_currency_codes" in p and '"Can"' in p for p in problems)
    body, problems = code_invoice(doc("Can"), book(local_currency="Can", currency_codes={"Can": "USD"}))
    assert problems == []


def test_connection_file_maps_currency_codes():
    data = connection_file("https://sap.example", "https://bill.example", sap={"currency_codes": {"$": "USD"}})
    assert parse_connection_file(data)[2]["sap_currency_codes"] == {"$": "USD"}
    bad = connection_file("https://sap.example", "https://bill.example", sap={"currency_codes": {"$": "dollar"}})
    with pytest.raises(BadInput, match="sap.currency_codes"):
        parse_connection_file(bad)


@pytest.mark.django_db
def test_company_whose_local_currency_is_dollar_sign_bills_in_usd(conn, sap_sim, bill_sim):
    """Before the fix every invoice of such a company was held: 'currency $: BILL takes only USD bills'."""
    sap_sim.configure_company(local_currency="$")
    sap_sim.add_invoice("V1000", line("120.00"), num_at_card="DOLLAR-1")
    sap_sim.add_invoice("V1000", line("50.00"), num_at_card="EURO-1", currency="EUR")
    records = sync_all(conn)
    conn.refresh_from_db()
    assert conn.sap_company["local_currency"] == "$" and conn.sap_company["branches_enabled"] is False
    dollar = records["DOLLAR-1"]
    assert dollar.status == "synced", dollar.last_error
    assert dollar.currency == "USD"
    bill = next(b for b in bill_sim.entities("bills") if b["id"] == dollar.bill_id)
    assert str(bill["amount"]) in ("120.0", "120.00", "120")
    assert records["EURO-1"].status == "held" and "currency EUR" in records["EURO-1"].last_error


# --- branches: the SAP side ------------------------------------------------------------------------------------------
@pytest.fixture
def branches(sap_sim):
    sap_sim.configure_company(branches=[(1, "Main"), (2, "East"), (3, "Closed", True)])
    return sap_sim


def sim_post(sap_sim, path, body, version=1):
    root = f"{sap_sim.url}/b1s/v{version}"
    session = requests.Session()
    login = session.post(f"{root}/Login", json={"CompanyDB": sap_sim.company_db, "UserName": catalog.SAP_USER,
                                                  "Password": catalog.SAP_PASSWORD})
    assert login.status_code == 200
    return session.post(f"{root}/{path}", json=body)


def error(resp):
    err = resp.json()["error"]
    message = err["message"]["value"] if isinstance(err["message"], dict) else err["message"]
    return str(err["code"]), message


def test_simulator_admin_info_and_business_places(branches):
    resp = sim_post(branches, "CompanyService_GetAdminInfo", None)
    assert resp.status_code == 200 and resp.json()["EnableBranches"] == "tYES"
    assert resp.json()["LocalCurrency"] == "USD"


def test_simulator_branch_company_refuses_documents_and_payments_without_a_branch(branches):
    with pytest.raises(Exception, match=r"Specify an active branch \[OPCH.BPLId\]"):
        branches.add_invoice("V1000", line())
    with pytest.raises(Exception, match=r"Specify an active branch \[OPCH.BPLId\]"):
        branches.add_invoice("V1000", line(), branch=3)  # disabled
    inv = branches.add_invoice("V1000", line(), branch=2)
    assert (inv["BPL_IDAssignedToInvoice"], inv["BPLName"]) == (2, "East")
    payment = {"CardCode": "V1000", "TransferAccount": catalog.SAP_PAYMENT_ACCOUNT, "TransferSum": 100.0,
               "PaymentInvoices": [{"DocEntry": inv["DocEntry"], "SumApplied": 100.0, "InvoiceType": "it_PurchaseInvoice"}]}
    resp = sim_post(branches, "VendorPayments", payment)
    assert resp.status_code == 400 and error(resp) == ("-5002", "Specify an active branch [OVPM.BPLId]")
    resp = sim_post(branches, "VendorPayments", {**payment, "BPLID": 1}, version=2)
    assert resp.status_code == 400 and "[VPM2.BPLId]" in error(resp)[1]  # never mixes branches
    resp = sim_post(branches, "VendorPayments", {**payment, "BPLID": 2})
    assert resp.status_code == 201 and resp.json()["BPLID"] == 2


def test_simulator_without_branches_refuses_a_bplid_key(sap_sim):
    inv = sap_sim.add_invoice("V1000", line())
    assert inv["BPL_IDAssignedToInvoice"] is None
    payment = {"CardCode": "V1000", "TransferAccount": catalog.SAP_PAYMENT_ACCOUNT, "TransferSum": 100.0, "BPLID": None,
               "PaymentInvoices": [{"DocEntry": inv["DocEntry"], "SumApplied": 100.0, "InvoiceType": "it_PurchaseInvoice"}]}
    resp = sim_post(sap_sim, "VendorPayments", payment)
    assert resp.status_code == 400 and error(resp)[0] == "-5002"


@pytest.mark.django_db
def test_branch_company_invoices_keep_their_branch(conn, branches, bill_sim):
    branches.add_invoice("V1000", line("10.00"), num_at_card="BR-1", branch=1)
    branches.add_invoice("V1000", line("20.00"), num_at_card="BR-2", branch=2)
    records = sync_all(conn)
    conn = Connection.objects.get(pk=conn.pk)
    assert conn.sap_company["branches_enabled"] is True
    assert conn.sap_company["branches"] == {"1": "Main", "2": "East"}  # active ones only
    assert (records["BR-1"].branch_id, records["BR-1"].branch_name) == (1, "Main")
    assert (records["BR-2"].branch_id, records["BR-2"].branch_name) == (2, "East")
    assert all(r.status == "synced" for r in records.values())


@pytest.mark.django_db
def test_status_page_and_invoice_page_show_the_branch(conn, branches, bill_sim):
    from django.contrib.auth.models import User
    from django.test import Client

    branches.add_invoice("V1000", line("10.00"), num_at_card="BR-A", branch=2)
    records = sync_all(conn)
    web = Client()
    web.force_login(User.objects.create_superuser("op-branch", password="pw"))
    status = web.get(f"/admin/connector/connection/{conn.pk}/status/").content.decode()
    assert "SAP company" in status and "branch 2 East" in status and "synced 1" in status
    assert "branch 1 Main" in status  # a branch without invoices is listed too
    page = web.get(f"/admin/connector/invoicerecord/{records['BR-A'].pk}/change/").content.decode()
    assert "East" in page and "SAP branch" in page
    listing = web.get("/admin/connector/invoicerecord/").content.decode()
    assert "2 East" in listing


# --- branches: payments ------------------------------------------------------------------------------------------------
def live_payments(sap_sim):
    return [p for p in sap_sim.entities("VendorPayments") if p.get("Cancelled") != "tYES"]


@pytest.mark.django_db
def test_branch_payments_carry_bplid_and_a_two_branch_payment_gives_two_sap_payments_once(conn, branches, bill_sim):
    """Before the fix every payment of a branch company was refused by SAP (-5002 "Specify an active branch")."""
    from connector.models import PaymentRecord

    branches.add_invoice("V1000", line("100.00"), num_at_card="P-HQ", branch=1)
    branches.add_invoice("V1000", line("40.00"), num_at_card="P-EAST", branch=2)
    branches.add_invoice("V1000", line("25.00"), num_at_card="P-EAST2", branch=2)
    records = sync_all(conn)
    single = bill_sim.pay_bills([(records["P-EAST2"].bill_id, "25.00")], process_date="2026-11-20")
    both = bill_sim.pay_bills([(records["P-HQ"].bill_id, "100.00"), (records["P-EAST"].bill_id, "40.00")],
                              process_date="2026-11-21")
    summary = run_sync(conn, ["payments"]).summary["payments"]
    assert summary["failed"] == 0, PaymentRecord.objects.values_list("last_error", flat=True)
    by_ref = {}
    for p in live_payments(branches):
        by_ref.setdefault(p["TransferReference"], []).append(p)
    assert [(p["BPLID"], p["PaymentInvoices"][0]["DocEntry"]) for p in by_ref[single["id"]]] == [
        (2, records["P-EAST2"].doc_entry)]
    two = {p["BPLID"]: p for p in by_ref[both["id"]]}
    assert set(two) == {1, 2}
    assert [line["DocEntry"] for line in two[1]["PaymentInvoices"]] == [records["P-HQ"].doc_entry]
    assert [line["DocEntry"] for line in two[2]["PaymentInvoices"]] == [records["P-EAST"].doc_entry]
    assert (float(two[1]["TransferSum"]), float(two[2]["TransferSum"])) == (100.0, 40.0)
    record = PaymentRecord.objects.get(connection=conn, bill_payment_id=both["id"])
    assert record.status == "posted" and "+" in record.sap_doc_num
    # Exactly once: a second run and a replay post nothing more.
    run_sync(conn, ["payments"])
    PaymentRecord.objects.filter(pk=record.pk).update(status="failed", sap_doc_entry=None, sap_doc_num="")
    run_sync(conn, ["payments"])
    assert len(live_payments(branches)) == 3


@pytest.mark.django_db
def test_a_lost_answer_on_one_branch_is_found_again_by_payment_id_and_branch(conn, branches, bill_sim):
    branches.add_invoice("V1000", line("70.00"), num_at_card="L-HQ", branch=1)
    branches.add_invoice("V1000", line("30.00"), num_at_card="L-EAST", branch=2)
    records = sync_all(conn)
    both = bill_sim.pay_bills([(records["L-HQ"].bill_id, "70.00"), (records["L-EAST"].bill_id, "30.00")],
                              process_date="2026-11-21")
    branches.lose_next_response("POST", "VendorPayments", count=1)  # SAP posts the first, the answer is lost
    run_sync(conn, ["payments"])
    run_sync(conn, ["payments"])
    mine = [p for p in live_payments(branches) if p["TransferReference"] == both["id"]]
    assert sorted(p["BPLID"] for p in mine) == [1, 2]


@pytest.mark.django_db
def test_without_branches_the_bplid_key_is_not_sent(conn, sap_sim, bill_sim):
    sap_sim.add_invoice("V1000", line("12.00"), num_at_card="NB-1")
    records = sync_all(conn)
    bill_sim.pay_bills([(records["NB-1"].bill_id, "12.00")], process_date="2026-11-21")
    assert run_sync(conn, ["payments"]).summary["payments"]["posted"] == 1  # the strict simulator refuses a BPLID key
    assert live_payments(sap_sim)[0]["BPLID"] is None
