"""Vendor alignment SAP suppliers ↔ BILL vendors (`sync NAME --step vendors`), on the simulators."""

import pytest
from django.utils import timezone

from connector.clients.bill import BillClient
from connector.clients.sap import SapClient
from connector.sandbox import catalog
from connector.sync.runner import run_sync
from connector.sync.vendors import VendorAligner
from mappings.models import VendorLink
from tests.test_connections import run_cli

Status = VendorLink.Status
CONTOSO, ACME, GLOBEX_EAST, GLOBEX_WEST = (v["id"] for v in catalog.BILL_VENDORS)
SUPPLIERS = [v for v in catalog.SAP_VENDORS if v.get("CardType", "cSupplier") == "cSupplier"]
TO_CREATE = ["V1000", "V1004", "V1005", "V1006", "V1007", "V1008", "V1010"]


def align(conn):
    return VendorAligner(conn, SapClient.for_connection(conn), BillClient.for_connection(conn)).run()


def bill_vendors(bill_sim):
    return bill_sim.entities("vendors")


def vendor(bill_sim, vendor_id):
    return next(v for v in bill_vendors(bill_sim) if v["id"] == vendor_id)


def named(bill_sim, name):
    return [v for v in bill_vendors(bill_sim) if v["name"] == name]


def link(conn, card_code):
    return VendorLink.objects.get(connection=conn, card_code=card_code)


def sap_patch(conn, card_code, body):
    SapClient.for_connection(conn).patch(f"BusinessPartners('{card_code}')", body)


DEFAULT_ADDRESS = [{"AddressName": "Pay To", "AddressType": "bo_BillTo", "Street": "1 Test Way", "City": "Austin",
                    "State": "TX", "ZipCode": "78701", "Country": "US"}]


def sap_add_supplier(conn, card_code, name, **fields):
    """A supplier as SAP customers have them: with a pay-to address unless the test gives its own (or [])."""
    body = {"CardCode": card_code, "CardName": name, "CardType": "cSupplier", "BPAddresses": DEFAULT_ADDRESS, **fields}
    SapClient.for_connection(conn).post("BusinessPartners", body)


def posts(bill_sim):
    stats = bill_sim.stats()["requests_by_path"]
    return stats.get("POST /v3/vendors", 0) + stats.get("POST /v3/vendors/bulk", 0)


# --- first run: match, hold, report, create ------------------------------------------------------------------
@pytest.mark.django_db
def test_first_run_matches_holds_reports_and_creates_in_bulk(conn, bill_sim):
    summary = align(conn)

    assert summary["linked"] == 2 and summary["created"] == len(TO_CREATE)
    assert summary["review"] == 1 and summary["invalid"] == 1 and summary["failed"] == 0
    by_tax = link(conn, "V1001")
    assert (by_tax.status, by_tax.bill_vendor_id) == (Status.LINKED, CONTOSO)
    assert by_tax.match_reason == "same tax id 52-1000002"
    by_name = link(conn, "V1002")
    assert (by_name.status, by_name.bill_vendor_id) == (Status.LINKED, ACME)
    assert by_name.match_reason == "same name and e-mail"
    for card_code in TO_CREATE:
        created = link(conn, card_code)
        assert created.status == Status.LINKED and created.match_reason == "created by ml-connector"
        assert vendor(bill_sim, created.bill_vendor_id)["name"] == created.card_name
    # customers are not vendors
    assert not VendorLink.objects.filter(card_code="C2000").exists()
    # one bulk request for all seven, no single creates
    stats = bill_sim.stats()["requests_by_path"]
    assert stats["POST /v3/vendors/bulk"] == 1 and "POST /v3/vendors" not in stats
    assert len(bill_vendors(bill_sim)) == len(catalog.BILL_VENDORS) + len(TO_CREATE)
    # created vendors carry SAP's data
    initech = vendor(bill_sim, link(conn, "V1004").bill_vendor_id)
    assert initech["email"] == "invoices@initech.example" and initech["additionalInfo"]["taxId"] == "94-1000004"
    assert initech["address"]["zipOrPostalCode"] == "78744"
    assert vendor(bill_sim, link(conn, "V1010").bill_vendor_id)["billCurrency"] == "EUR"


@pytest.mark.django_db
def test_a_matched_vendor_gets_sap_data(conn, bill_sim):
    """V1001 matched by tax id though BILL spells the name differently: SAP's name is sent to BILL."""
    align(conn)
    assert vendor(bill_sim, CONTOSO)["name"] == "Contoso Facilities LLC"
    assert vendor(bill_sim, CONTOSO)["phone"] == "410-555-0101"
    assert link(conn, "V1001").synced_fingerprint == link(conn, "V1001").sap_fingerprint


@pytest.mark.django_db
def test_ambiguous_match_creates_nothing_and_keeps_the_candidates_for_a_person(conn, bill_sim):
    align(conn)
    held = link(conn, "V1003")
    assert held.status == Status.REVIEW and held.bill_vendor_id == ""
    assert {c["id"] for c in held.candidates} == {GLOBEX_EAST, GLOBEX_WEST}
    assert {c["email"] for c in held.candidates} == {"east@globex.example", "west@globex.example"}
    assert "Ambiguous match" in held.last_error and "create a new BILL vendor" in held.last_error
    assert len(named(bill_sim, "Globex Services")) == 2

    align(conn)  # still waiting for the person, still nothing created
    assert link(conn, "V1003").status == Status.REVIEW
    assert len(named(bill_sim, "Globex Services")) == 2


@pytest.mark.django_db
def test_a_frozen_supplier_is_reported_not_dropped(conn, bill_sim):
    code, out, err = run_cli("sync", "demo-sandbox", "--step", "vendors")
    assert code == 0, err
    frozen = link(conn, "V1009")
    assert frozen.status == Status.INVALID and "frozen" in frozen.last_error and "Unfreeze it in SAP" in frozen.last_error
    review = link(conn, "V1003")
    assert f"  vendor V1009 (record {frozen.pk}) [invalid]: {frozen.last_error}" in out.splitlines()
    assert f"  vendor V1003 (record {review.pk}) [review]: {review.last_error}" in out.splitlines()
    assert not named(bill_sim, "Frozen Foods Supply")


@pytest.mark.django_db
def test_a_supplier_without_a_name_is_invalid(conn, bill_sim):
    sap_add_supplier(conn, "V2001", "  ")
    align(conn)
    assert link(conn, "V2001").status == Status.INVALID
    assert "has no name" in link(conn, "V2001").last_error


@pytest.mark.django_db
def test_match_by_name_needs_the_same_email_or_address(conn, bill_sim):
    """Same normalized name but another e-mail and address: held for a person. Same address: matched."""
    sap_add_supplier(conn, "V2002", "Acme Office Supply LLC", EmailAddress="someone@else.example")
    sap_add_supplier(conn, "V2003", "Acme Office Supply Co", EmailAddress="x@y.example", BPAddresses=[
        {"AddressName": "Bill To", "AddressType": "bo_BillTo", "Street": "250 Wacker Drive", "ZipCode": "60606"}])
    SapClient.for_connection(conn).patch("BusinessPartners('V1002')", {"CardName": "Renamed Acme"})  # frees ACME
    align(conn)
    assert link(conn, "V2002").status == Status.REVIEW
    assert [c["id"] for c in link(conn, "V2002").candidates] == [ACME]
    v2003 = link(conn, "V2003")
    assert (v2003.status, v2003.bill_vendor_id, v2003.match_reason) == (Status.LINKED, ACME, "same name and address")


@pytest.mark.django_db
def test_another_tax_id_is_another_company_whatever_the_name(conn, bill_sim):
    sap_add_supplier(conn, "V2004", "Contoso Facilities", FederalTaxID="11-9999999", EmailAddress="billing@contoso.example")
    align(conn)
    assert link(conn, "V2004").bill_vendor_id not in ("", CONTOSO)
    assert link(conn, "V2004").match_reason == "created by ml-connector"


# --- second run, updates ---------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_second_run_changes_nothing(conn, bill_sim):
    first = align(conn)
    patches = bill_sim.stats()["requests_by_path"].get("PATCH /v3/vendors/{id}", 0)
    assert first["updated"] == patches == 2  # the two matched vendors got SAP's data
    count, before = len(bill_vendors(bill_sim)), posts(bill_sim)
    summary = align(conn)
    assert summary["created"] == 0 and summary["updated"] == 0 and summary["linked"] == 0
    assert summary["unchanged"] == 9
    assert len(bill_vendors(bill_sim)) == count and posts(bill_sim) == before
    assert bill_sim.stats()["requests_by_path"].get("PATCH /v3/vendors/{id}", 0) == patches


@pytest.mark.django_db
def test_sap_changes_flow_to_bill(conn, bill_sim):
    """Name, e-mail, phone, address and tax id changed in SAP are sent to the linked BILL vendor, once."""
    align(conn)
    vendor_id = link(conn, "V1000").bill_vendor_id
    sap_patch(conn, "V1000", {
        "CardName": "Northwind Paper & Pulp Co.", "EmailAddress": "billing@northwind.example", "Phone1": "612-555-0199",
        "FederalTaxID": "41-1000099",
        "BPAddresses": [{"AddressName": "Bill To", "AddressType": "bo_BillTo", "Street": "5 New Mill Rd",
                         "ZipCode": "55402", "City": "St Paul"}],
    })
    summary = align(conn)

    assert summary["updated"] == 1 and summary["created"] == 0
    current = vendor(bill_sim, vendor_id)
    assert current["name"] == "Northwind Paper & Pulp Co."
    assert current["email"] == "billing@northwind.example" and current["phone"] == "612-555-0199"
    assert current["additionalInfo"]["taxId"] == "41-1000099"
    assert current["address"]["line1"] == "5 New Mill Rd" and current["address"]["city"] == "St Paul"
    updated = link(conn, "V1000")
    assert updated.status == Status.LINKED and updated.bill_vendor_name == "Northwind Paper & Pulp Co."
    assert align(conn)["updated"] == 0


@pytest.mark.django_db
def test_a_refused_update_is_failed_with_the_reason_and_retried_without_a_new_vendor(conn, bill_sim):
    """GIVEN a linked supplier without tax id renamed in SAP, and BILL refusing the first update
    WHEN vendors are aligned twice THEN the first run marks it failed with BILL's words, the second
    updates the same BILL vendor: no second vendor is created for it."""
    align(conn)
    vendor_id = link(conn, "V1010").bill_vendor_id
    sap_patch(conn, "V1010", {"CardName": "Euro Components", "EmailAddress": "ap@eurocomponents.example"})
    bill_sim.fail_next("PATCH", "/v3/vendors/", 400, "BDC_1119", "Invalid field,value: email")
    align(conn)
    failed = link(conn, "V1010")
    assert failed.status == Status.FAILED and "Invalid field,value: email" in failed.last_error
    count = len(bill_vendors(bill_sim))

    align(conn)
    retried = link(conn, "V1010")
    assert (retried.status, retried.bill_vendor_id, retried.last_error) == (Status.LINKED, vendor_id, "")
    assert vendor(bill_sim, vendor_id)["name"] == "Euro Components"
    assert len(bill_vendors(bill_sim)) == count


@pytest.mark.django_db
def test_a_supplier_frozen_then_reactivated_keeps_its_bill_vendor(conn, bill_sim):
    align(conn)
    vendor_id = link(conn, "V1010").bill_vendor_id
    sap_patch(conn, "V1010", {"Frozen": "tYES", "Valid": "tNO"})
    align(conn)
    assert link(conn, "V1010").status == Status.INVALID
    sap_patch(conn, "V1010", {"Frozen": "tNO", "Valid": "tYES", "CardName": "Euro Components",
                              "EmailAddress": "ap@eurocomponents.example"})
    count = len(bill_vendors(bill_sim))
    align(conn)
    back = link(conn, "V1010")
    assert (back.status, back.bill_vendor_id, back.last_error) == (Status.LINKED, vendor_id, "")
    assert vendor(bill_sim, vendor_id)["name"] == "Euro Components"
    assert len(bill_vendors(bill_sim)) == count


@pytest.mark.django_db
def test_reactivated_without_changes_is_linked_again(conn, bill_sim):
    align(conn)
    sap_patch(conn, "V1004", {"Frozen": "tYES", "Valid": "tNO"})
    align(conn)
    sap_patch(conn, "V1004", {"Frozen": "tNO", "Valid": "tYES"})
    align(conn)
    assert link(conn, "V1004").status == Status.LINKED and link(conn, "V1004").last_error == ""


# --- lost responses and retries ------------------------------------------------------------------------------
@pytest.mark.django_db
def test_lost_bulk_create_response_does_not_duplicate(conn, bill_sim):
    bill_sim.lose_next_response("POST", "/v3/vendors")
    summary = align(conn)
    assert summary["created"] == len(TO_CREATE) and summary["failed"] == 0
    assert bill_sim.stats()["requests_by_path"]["POST /v3/vendors/bulk"] == 1
    for card_code in TO_CREATE:
        created = link(conn, card_code)
        assert created.status == Status.LINKED and created.match_reason == "found after a create whose answer was lost"
        assert len(named(bill_sim, created.card_name)) == 1
    assert len({link(conn, c).bill_vendor_id for c in TO_CREATE}) == len(TO_CREATE)

    count = len(bill_vendors(bill_sim))
    align(conn)
    assert len(bill_vendors(bill_sim)) == count


@pytest.mark.django_db
def test_lost_single_create_response_does_not_duplicate(conn, bill_sim):
    align(conn)
    sap_add_supplier(conn, "V2005", "Brand New Supplies", EmailAddress="ar@brandnew.example")
    bill_sim.lose_next_response("POST", "/v3/vendors")
    align(conn)
    assert bill_sim.stats()["requests_by_path"]["POST /v3/vendors"] == 1
    assert link(conn, "V2005").status == Status.LINKED
    assert len(named(bill_sim, "Brand New Supplies")) == 1
    align(conn)
    assert len(named(bill_sim, "Brand New Supplies")) == 1


@pytest.mark.django_db
def test_same_named_suppliers_in_a_lost_bulk_create_get_one_vendor_each(conn, bill_sim):
    """Two SAP suppliers that share a name (different tax ids): after the lost answer each adopts its own vendor."""
    align(conn)
    sap_add_supplier(conn, "V2006", "Twin Supplies", FederalTaxID="12-0000001", EmailAddress="north@twin.example")
    sap_add_supplier(conn, "V2007", "Twin Supplies", FederalTaxID="12-0000002", EmailAddress="south@twin.example")
    bill_sim.lose_next_response("POST", "/v3/vendors")
    align(conn)
    ids = {link(conn, "V2006").bill_vendor_id, link(conn, "V2007").bill_vendor_id}
    assert len(named(bill_sim, "Twin Supplies")) == 2
    assert ids == {v["id"] for v in named(bill_sim, "Twin Supplies")}
    taxes = {v["id"]: v["additionalInfo"]["taxId"] for v in named(bill_sim, "Twin Supplies")}
    assert taxes[link(conn, "V2006").bill_vendor_id] == "12-0000001"


@pytest.mark.django_db
def test_a_crash_after_the_create_is_resolved_by_the_next_run(conn, bill_sim):
    """GIVEN a link left in 'creating' (the process died after BILL made the vendor, before we stored its id)
    WHEN the next run starts THEN it adopts that vendor instead of creating a second one."""
    align(conn)
    sap_add_supplier(conn, "V2008", "Crashy Components", EmailAddress="ar@crashy.example")
    made = BillClient.for_connection(conn).post("/v3/vendors", {"name": "Crashy Components", "accountType": "BUSINESS",
                                                                "address": {"line1": "1 Test Way", "city": "Austin",
                                                                            "zipOrPostalCode": "78701", "country": "US"}})
    VendorLink.objects.create(connection=conn, card_code="V2008", card_name="Crashy Components",
                              status=Status.CREATING, create_attempted_at=timezone.now())
    before = posts(bill_sim)
    align(conn)
    adopted = link(conn, "V2008")
    assert (adopted.status, adopted.bill_vendor_id) == (Status.LINKED, made["id"])
    assert posts(bill_sim) == before
    assert len(named(bill_sim, "Crashy Components")) == 1


@pytest.mark.django_db
def test_a_create_refused_by_bill_is_failed_and_retried_later(conn, bill_sim):
    bill_sim.fail_next("POST", "/v3/vendors", 503, "BDC_1001", "System error occurred.")
    summary = align(conn)
    assert summary["failed"] == len(TO_CREATE)
    assert "BILL refused to create the vendor" in link(conn, "V1000").last_error
    assert len(bill_vendors(bill_sim)) == len(catalog.BILL_VENDORS)
    summary = align(conn)
    assert summary["created"] == len(TO_CREATE)
    assert len(bill_vendors(bill_sim)) == len(catalog.BILL_VENDORS) + len(TO_CREATE)


@pytest.mark.django_db
def test_one_bad_vendor_does_not_sink_the_bulk(conn, bill_sim):
    """BILL's bulk create is all-or-nothing: the batch is retried one by one and only the bad one fails."""
    sap_add_supplier(conn, "V2009", "Bad Mail Inc", EmailAddress="not-an-email")
    align(conn)
    assert link(conn, "V2009").status == Status.FAILED and "email" in link(conn, "V2009").last_error
    for card_code in TO_CREATE:
        assert link(conn, card_code).status == Status.LINKED


@pytest.mark.django_db
def test_more_than_twenty_new_suppliers_go_in_several_bulk_requests(conn, bill_sim):
    for n in range(20):
        sap_add_supplier(conn, f"V3{n:03d}", f"Many Supplier {n}")
    summary = align(conn)
    assert summary["created"] == len(TO_CREATE) + 20
    assert bill_sim.stats()["requests_by_path"]["POST /v3/vendors/bulk"] == 2


@pytest.mark.django_db
def test_dry_run_writes_nothing(conn, bill_sim):
    run = run_sync(conn, ["vendors"], dry_run=True)
    assert run.status in ("ok", "partial")
    assert not VendorLink.objects.filter(connection=conn).exists()
    assert len(bill_vendors(bill_sim)) == len(catalog.BILL_VENDORS)


# --- address (api-facts-addendum §3: BILL vendors are created with an address) --------------------------------------
@pytest.mark.django_db
def test_supplier_without_an_address_is_held_then_released_once_sap_has_one(conn, sap_sim, bill_sim):
    align(conn)
    sap_add_supplier(conn, "V2100", "Nowhere Supplies", BPAddresses=[])
    before = posts(bill_sim)
    summary = align(conn)
    held = link(conn, "V2100")
    assert held.status == Status.INVALID and not held.bill_vendor_id and summary["invalid"] >= 1
    assert "no pay-to address" in held.last_error and "Street, City, Zip Code and Country" in held.last_error
    assert posts(bill_sim) == before  # nothing sent, nothing invented
    # Someone fills in half of it: the message names exactly what is still missing.
    SapClient.for_connection(conn).patch("BusinessPartners('V2100')", {"BPAddresses": [
        {"AddressName": "Pay To", "AddressType": "bo_BillTo", "Street": "9 Elm St", "Country": "US"}]})
    align(conn)
    held = link(conn, "V2100")
    assert held.status == Status.INVALID
    assert "lacks City, Zip Code, State" in held.last_error and "'Pay To'" in held.last_error
    SapClient.for_connection(conn).patch("BusinessPartners('V2100')", {"BPAddresses": [
        {"AddressName": "Pay To", "AddressType": "bo_BillTo", "Street": "9 Elm St", "City": "Reno", "State": "NV",
         "ZipCode": "89501", "Country": "US"}]})
    align(conn)
    released = link(conn, "V2100")
    assert released.status == Status.LINKED and released.bill_vendor_id
    vendor = bill_sim.entities("vendors")
    made = next(v for v in vendor if v["id"] == released.bill_vendor_id)
    assert made["address"]["line1"] == "9 Elm St" and made["address"]["zipOrPostalCode"] == "89501"
    assert made["address"]["stateOrProvince"] == "NV" and made["address"]["country"] == "US"


@pytest.mark.django_db
def test_pay_to_address_is_used_never_the_ship_to(conn, sap_sim, bill_sim):
    align(conn)
    sap_add_supplier(conn, "V2101", "Two Address Co", BilltoDefault="Remit", BPAddresses=[
        {"AddressName": "Warehouse", "AddressType": "bo_ShipTo", "Street": "1 Dock Rd", "City": "Oakland",
         "State": "CA", "ZipCode": "94607", "Country": "US"},
        {"AddressName": "Office", "AddressType": "bo_BillTo", "Street": "2 Office Pl", "City": "Denver",
         "State": "CO", "ZipCode": "80202", "Country": "US"},
        {"AddressName": "Remit", "AddressType": "bo_BillTo", "Street": "PO Box 77", "City": "Denver",
         "State": "CO", "ZipCode": "80201", "Country": "US"}])
    align(conn)
    made = next(v for v in bill_sim.entities("vendors") if v["id"] == link(conn, "V2101").bill_vendor_id)
    assert made["address"]["line1"] == "PO Box 77"  # the default pay-to address (BilltoDefault)


@pytest.mark.django_db
def test_supplier_with_only_a_ship_to_address_is_held(conn, sap_sim, bill_sim):
    align(conn)
    sap_add_supplier(conn, "V2102", "Ship Only Co", BPAddresses=[
        {"AddressName": "Warehouse", "AddressType": "bo_ShipTo", "Street": "1 Dock Rd", "City": "Oakland",
         "State": "CA", "ZipCode": "94607", "Country": "US"}])
    align(conn)
    assert link(conn, "V2102").status == Status.INVALID
    assert "no pay-to address" in link(conn, "V2102").last_error
