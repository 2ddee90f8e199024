"""Coding lines to BILL locations, accounting classes and jobs (issue 13, part 4) on the simulators.

A connection says which SAP source (dimension 1-5, project, branch) feeds which BILL classification; each has its
own mapping table and CSV kind; a line whose configured source value is unmapped is held like an unmapped account.
Without a `coding` setting, the first cost-center code goes to the department as before.
"""

from decimal import Decimal

import pytest

from connector.connections import BadInput, apply_connection, parse_connection_file
from connector.models import InvoiceRecord
from connector.sync.dimensions import CodingError, parse_coding
from connector.sync.runner import run_sync
from mappings.csvio import MappingImportError, export_rows, import_csv
from mappings.models import SapClassMapping, SapLocationMapping
from tests.conftest import connection_file
from tests.test_sync_bills import prepare

pytestmark = pytest.mark.django_db(transaction=True)


def coded_conn(sap_sim, bill_sim, coding):
    conn, _ = apply_connection(connection_file(sap_sim.url, bill_sim.url, coding=coding))
    prepare(conn)
    return conn


def line(center="ADMIN", region=None, project=None, amount="100.00"):
    data = {"AccountCode": "6100", "LineTotal": Decimal(amount), "TaxCode": "EX", "CostingCode": center,
            "ItemDescription": "Office services"}
    if region:
        data["CostingCode2"] = region
    if project:
        data["ProjectCode"] = project
    return data


def bill_of(bill_sim, doc_entry):
    found = [b for b in bill_sim.entities("bills") if b["description"].endswith(f"DocEntry {doc_entry}]")]
    assert len(found) == 1
    return found[0]


def test_parse_coding_defaults_and_refusals():
    assert parse_coding({}) == {"department": "first"}
    assert parse_coding({"location": "dimension2", "class": "project"}) == {
        "department": "first", "location": "dimension2", "class": "project"}
    for bad, words in (({"location": "dimension9"}, "coding.location must be one of"),
                       ({"place": "dimension2"}, "unknown key coding.place"),
                       ({"location": "dimension2", "job": "dimension2"}, "feeds both location and job"),
                       ({"class": "first"}, "coding.class must be one of")):
        with pytest.raises(CodingError, match=words):
            parse_coding(bad)
    with pytest.raises(BadInput, match="coding.location"):
        parse_connection_file(connection_file("http://s", "http://b", coding={"location": 2}))


def test_dimension2_to_location_project_to_class_and_holds(sap_sim, bill_sim):
    conn = coded_conn(sap_sim, bill_sim, {"department": "dimension1", "location": "dimension2", "class": "project"})
    # reference data brought the dimension-2 cost centers and the projects, unmapped
    assert set(SapLocationMapping.objects.filter(connection=conn).values_list("code", flat=True)) == {"EAST", "WEST"}
    assert set(SapClassMapping.objects.filter(connection=conn).values_list("code", flat=True)) == {
        "P-FIT", "P-MOVE", "P-NEW"}
    ok = sap_sim.add_invoice("V1000", [line(region="EAST", project="P-FIT")], num_at_card="LOC-1")["DocEntry"]
    no_region = sap_sim.add_invoice("V1000", [line(project="P-MOVE")], num_at_card="LOC-2")["DocEntry"]
    run_sync(conn, ["bills"])
    held = InvoiceRecord.objects.get(connection=conn, doc_entry=ok)
    assert held.status == InvoiceRecord.Status.HELD
    assert "SAP cost center (dimension 2) EAST East Region (line 1) has no BILL location mapping" in held.last_error
    assert "P-FIT" in held.last_error and "BILL accounting class" in held.last_error

    counts = import_csv(conn, "kind,sap_code,bill_id\nlocation,EAST,loc01SBX00000000EAST\n"
                              "class,P-FIT,cls01SBX00000000CAPX\nclass,P-MOVE,cls01SBX00000000OPEX\n")
    assert counts["location"] == 1 and counts["class"] == 2
    run_sync(conn, ["bills"])
    assert InvoiceRecord.objects.get(connection=conn, doc_entry=ok).status == InvoiceRecord.Status.SYNCED
    classes = bill_of(bill_sim, ok)["billLineItems"][0]["classifications"]
    assert classes["locationId"] == "loc01SBX00000000EAST"
    assert classes["accountingClassId"] == "cls01SBX00000000CAPX"
    assert classes["departmentId"] == "0de01SBX0000000ADMIN"
    # a line without a dimension-2 code sends no location (nothing to hold)
    other = bill_of(bill_sim, no_region)["billLineItems"][0]["classifications"]
    assert "locationId" not in other and other["accountingClassId"] == "cls01SBX00000000OPEX"
    exported = {(r["kind"], r["sap_code"]) for r in export_rows(conn)}
    assert {("location", "EAST"), ("class", "P-FIT"), ("class", "P-MOVE")} <= exported


def test_csv_refuses_archived_location_and_unconfigured_kind(sap_sim, bill_sim):
    conn = coded_conn(sap_sim, bill_sim, {"location": "dimension2"})
    with pytest.raises(MappingImportError) as err:
        import_csv(conn, "kind,sap_code,bill_id\nlocation,WEST,loc01SBX0000000NORTH\njob,P-FIT,job01SBX0000000J1001\n")
    assert "row 2: BILL location loc01SBX0000000NORTH (North) is archived in BILL" in err.value.errors
    assert any(e.startswith("row 3: this connection does not code lines to a BILL job") for e in err.value.errors)
    assert not SapLocationMapping.objects.filter(connection=conn, bill_location__isnull=False).exists()


def test_default_coding_unchanged_first_cost_center_to_department(sap_sim, bill_sim, conn):
    prepare(conn)
    entry = sap_sim.add_invoice("V1000", [line(center="", region="EAST")], num_at_card="DEF-1")["DocEntry"]
    run_sync(conn, ["bills"])
    classes = bill_of(bill_sim, entry)["billLineItems"][0]["classifications"]
    assert classes == {"chartOfAccountId": classes["chartOfAccountId"], "departmentId": "0de01SBX00000000EAST"}
    assert not SapLocationMapping.objects.filter(connection=conn).exists()
