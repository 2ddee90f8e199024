"""Reference data, GL-account / cost-center mappings, the mapping CSV and auto-suggest (issue 3), on the simulators."""

import contextlib
import csv
import io

import pytest

from connector.clients.bill import BillClient
from connector.clients.sap import SapClient
from connector.connections import apply_connection
from connector.models import SyncRun
from connector.sandbox import catalog
from mappings import csvio
from mappings.models import (
    BillAccount,
    BillDepartment,
    MappingStatus,
    ReferenceRefresh,
    SapAccount,
    SapCostCenter,
    SapExpenseType,
    SapTaxCode,
)
from mappings.reference import reference_loaded, refresh_reference
from mappings.suggest import apply_proposals, suggest_accounts, suggest_departments
from tests.conftest import connection_file
from tests.test_connections import run_cli

BILL_6100 = "0ca01SBX00000006100"
BILL_6200 = "0ca01SBX00000006200"
BILL_6800_ARCHIVED = "0ca01SBX00000006800"
BILL_ADMIN = "0de01SBX0000000ADMIN"
BILL_SALES = "0de01SBX0000000SALES"


def refresh(conn, **sap_kw):
    return refresh_reference(conn, SapClient.for_connection(conn, **sap_kw), BillClient.for_connection(conn))


def mapping_set(conn):
    """{(kind, sap code): BILL id} of every mapping of a connection."""
    accounts = {("account", a.code): a.bill_account.bill_id
                for a in SapAccount.objects.filter(connection=conn, bill_account__isnull=False).select_related("bill_account")}
    departments = {("department", c.code): c.bill_department.bill_id
                   for c in SapCostCenter.objects.filter(connection=conn, bill_department__isnull=False)
                   .select_related("bill_department")}
    return {**accounts, **departments}


def write_csv(tmp_path, rows, header="kind,sap_code,bill_id"):
    path = tmp_path / "mappings.csv"
    path.write_text(header + "\n" + "".join(line + "\n" for line in rows), encoding="utf-8")
    return str(path)


@contextlib.contextmanager
def sim_changed(sap_sim, table):
    """Edit the SAP simulator's master data directly (Service Layer offers no writes for it)."""
    with sap_sim._lock:
        yield sap_sim._tables[table]
        sap_sim._changed(table)


# --- reference data ------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_reference_fetch_follows_paging_on_both_sides(conn, sap_sim, bill_sim):
    """GIVEN 200 BILL accounts (two full pages and BILL's empty last page) and a SAP page size of 4
    WHEN reference data is refreshed
    THEN every row of every page is stored, and both sides were really read page by page."""
    bill = BillClient.for_connection(conn)
    for n in range(200 - len(catalog.BILL_ACCOUNTS)):
        bill.post("/v3/classifications/chart-of-accounts", {"name": f"Extra {n}", "account": {"number": f"9{n:03d}"}})
    counts = refresh(conn, page_size=4)

    assert BillAccount.objects.filter(connection=conn).count() == 200
    assert counts["bill_accounts"] == {"new": 200, "updated": 0, "missing": 0}
    assert bill_sim.stats()["requests_by_path"]["GET /v3/classifications/chart-of-accounts"] == 3
    postable = [a for a in catalog.SAP_ACCOUNTS if a[3] == "tYES"]
    assert sorted(SapAccount.objects.filter(connection=conn).values_list("code", flat=True)) == sorted(a[0] for a in postable)
    assert sap_sim.stats()["requests_by_path"]["GET ChartOfAccounts"] == len(postable) // 4 + 1
    # 7 cost centres + the indirect rule SPLIT50 (direct rules are the cost centres themselves), 2+ pages of 4
    assert SapCostCenter.objects.filter(connection=conn).count() == 8
    assert sap_sim.stats()["requests_by_path"]["GET DistributionRules"] >= 2


@pytest.mark.django_db
def test_sync_step_reference_loads_both_sides_with_their_details(conn):
    code, out, err = run_cli("sync", "demo-sandbox", "--step", "reference")
    assert code == 0, err
    assert "reference: " in out
    assert reference_loaded(conn)
    # title account 6000 (ActiveAccount tNO) is not postable
    assert not SapAccount.objects.filter(connection=conn, code="6000").exists()
    bank = SapAccount.objects.get(connection=conn, code=catalog.SAP_PAYMENT_ACCOUNT)
    assert (bank.format_code, bank.name) == ("1020", "Bank - Operating")
    assert BillAccount.objects.get(connection=conn, bill_id=BILL_6800_ARCHIVED).archived
    assert not BillAccount.objects.get(connection=conn, bill_id=BILL_6100).archived
    east = SapCostCenter.objects.get(connection=conn, code="EAST")
    assert (east.dimension, east.is_rule, east.name) == (2, False, "East Region")
    split = SapCostCenter.objects.get(connection=conn, code="SPLIT50")
    assert split.is_rule and split.dimension == 1
    assert BillDepartment.objects.filter(connection=conn).count() == len(catalog.BILL_DEPARTMENTS)
    assert SapTaxCode.objects.get(connection=conn, code="TX8").tax_account == "1450"
    assert SapExpenseType.objects.get(connection=conn, code="1").expense_account == "5100"
    assert all(status == MappingStatus.UNMAPPED
               for status in SapAccount.objects.filter(connection=conn).values_list("mapping_status", flat=True))


@pytest.mark.django_db
def test_refresh_flags_mappings_to_archived_or_vanished_bill_objects(conn, sap_sim, bill_sim):
    """A mapping whose BILL object is archived or gone is flagged (status broken); a vanished SAP row is marked missing."""
    refresh(conn)
    apply_proposals([
        (SapAccount.objects.get(connection=conn, code="6100"), BillAccount.objects.get(connection=conn, bill_id=BILL_6100)),
        (SapAccount.objects.get(connection=conn, code="6200"), BillAccount.objects.get(connection=conn, bill_id=BILL_6200)),
        (SapCostCenter.objects.get(connection=conn, code="ADMIN"),
         BillDepartment.objects.get(connection=conn, bill_id=BILL_ADMIN)),
    ])
    assert SapAccount.objects.get(connection=conn, code="6100").mapping_status == MappingStatus.OK

    bill = BillClient.for_connection(conn)
    bill.post(f"/v3/classifications/chart-of-accounts/{BILL_6100}/archive")
    with bill_sim._lock:
        del bill_sim._org().departments[BILL_ADMIN]
    with sim_changed(sap_sim, "ChartOfAccounts") as accounts:
        accounts["6900"]["FrozenFor"] = "tYES"
    counts = refresh(conn)

    assert SapAccount.objects.get(connection=conn, code="6100").mapping_status == MappingStatus.BROKEN
    assert SapAccount.objects.get(connection=conn, code="6200").mapping_status == MappingStatus.OK
    admin = SapCostCenter.objects.get(connection=conn, code="ADMIN")
    assert admin.mapping_status == MappingStatus.BROKEN and admin.bill_department.missing
    assert SapAccount.objects.get(connection=conn, code="6900").missing
    assert counts["bill_departments"]["missing"] == 1 and counts["sap_accounts"]["missing"] == 1

    # restored in BILL: the flag goes away on the next refresh
    bill.post(f"/v3/classifications/chart-of-accounts/{BILL_6100}/restore")
    refresh(conn)
    assert SapAccount.objects.get(connection=conn, code="6100").mapping_status == MappingStatus.OK


@pytest.mark.django_db
def test_a_failed_refresh_is_recorded_and_keeps_the_old_data(conn, bill_sim):
    refresh(conn)
    before = BillAccount.objects.filter(connection=conn).count()
    bill_sim.fail_next("GET", "/v3/classifications/departments", 400, "BDC_1119", "no departments for you")
    code, out, err = run_cli("sync", "demo-sandbox", "--step", "reference")
    assert code == 1
    assert "no departments for you" in (out + err)
    run = SyncRun.objects.filter(connection=conn).first()
    assert run.status == SyncRun.Status.FAILED and "no departments for you" in run.error
    assert BillAccount.objects.filter(connection=conn).count() == before
    assert ReferenceRefresh.objects.get(connection=conn).refreshed_at is not None  # the earlier refresh still counts


# --- auto-suggest --------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_suggest_matches_numbers_and_names_and_skips_archived_and_mapped(conn):
    refresh(conn)
    proposals = {p.sap_row.code: (p.bill_row.bill_id, p.reason) for p in suggest_accounts(conn)}
    assert proposals["6100"] == (BILL_6100, "same number and name")
    assert proposals["6700"] == ("0ca01SBX00000006700", "same account number")  # "Repairs & Upkeep" in BILL
    assert proposals[catalog.SAP_PAYMENT_ACCOUNT] == ("0ca01SBX00000001020", "same account number")
    assert "6800" not in proposals  # only an archived BILL account matches
    assert "6900" not in proposals and "2100" not in proposals  # nothing in BILL
    assert SapAccount.objects.filter(connection=conn, bill_account__isnull=False).count() == 0  # nothing saved

    departments = {p.sap_row.code: (p.bill_row.bill_id, p.reason) for p in suggest_departments(conn)}
    assert departments["ADMIN"] == (BILL_ADMIN, "same name")
    assert departments["EAST"] == ("0de01SBX00000000EAST", "same name")
    assert "IT" not in departments and "SPLIT50" not in departments

    applied = apply_proposals([(p.sap_row, p.bill_row) for p in suggest_accounts(conn) if p.sap_row.code == "6100"])
    assert applied == 1
    assert SapAccount.objects.get(connection=conn, code="6100").mapping_status == MappingStatus.OK
    assert "6100" not in {p.sap_row.code for p in suggest_accounts(conn)}  # mapped rows are not proposed again


# --- CSV -----------------------------------------------------------------------------------------------------
def map_everything(conn):
    proposals = suggest_accounts(conn) + suggest_departments(conn)
    pairs = [(p.sap_row, p.bill_row) for p in proposals]
    pairs.append((SapCostCenter.objects.get(connection=conn, code="SPLIT50"),
                  BillDepartment.objects.get(connection=conn, bill_id=BILL_SALES)))
    apply_proposals(pairs)


@pytest.mark.django_db
def test_csv_round_trip_export_then_import_gives_the_same_mappings(conn, tmp_path):
    refresh(conn)
    map_everything(conn)
    before = mapping_set(conn)
    assert len(before) > 10

    out_file = tmp_path / "export.csv"
    code, out, err = run_cli("mappings", "export", "demo-sandbox", "--output", str(out_file))
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out_file.read_text(encoding="utf-8"))))
    assert list(rows[0]) == csvio.EXPORT_HEADER
    assert {"kind": "account", "sap_code": "6700", "bill_id": "0ca01SBX00000006700",
            "sap_name": "Repairs and Maintenance", "bill_name": "Repairs & Upkeep"} in rows
    assert len(rows) == len(before)

    SapAccount.objects.filter(connection=conn).update(bill_account=None, mapping_status=MappingStatus.UNMAPPED)
    SapCostCenter.objects.filter(connection=conn).update(bill_department=None, mapping_status=MappingStatus.UNMAPPED)
    assert mapping_set(conn) == {}

    code, out, err = run_cli("mappings", "import", "demo-sandbox", str(out_file))
    assert code == 0, err
    assert mapping_set(conn) == before
    assert not SapAccount.objects.filter(connection=conn, bill_account__isnull=False).exclude(mapping_status="ok").exists()

    code, out, err = run_cli("mappings", "import", "demo-sandbox", str(out_file))
    assert code == 0 and f"{len(before)} unchanged" in out


@pytest.mark.django_db
def test_export_to_stdout_has_names(conn):
    refresh(conn)
    map_everything(conn)
    code, out, err = run_cli("mappings", "export", "demo-sandbox")
    assert code == 0
    assert out.splitlines()[0] == "kind,sap_code,bill_id,sap_name,bill_name"
    assert "department,SPLIT50,0de01SBX0000000SALES,Admin/Sales 50-50,Sales" in out.splitlines()


@pytest.mark.django_db
def test_import_errors_name_every_bad_row_and_change_nothing(conn, tmp_path):
    refresh(conn)
    path = write_csv(tmp_path, [
        f"account,6100,{BILL_6100}",                   # row 2: fine
        "account,6200,0ca-does-not-exist",             # row 3: unknown BILL id
        f"account,6800,{BILL_6800_ARCHIVED}",          # row 4: archived in BILL
        f"ledger,6300,{BILL_6100}",                    # row 5: bad kind
        f"department,NOPE,{BILL_ADMIN}",               # row 6: unknown cost center
        f"account,6100,{BILL_6200}",                   # row 7: 6100 twice, to another id
        "department,ADMIN,",                           # row 8: empty bill_id
    ])
    code, out, err = run_cli("mappings", "import", "demo-sandbox", path)
    assert code == 2
    for number, words in [(3, "0ca-does-not-exist does not exist in BILL"), (4, "is archived in BILL"),
                          (5, "kind must be"), (6, "SAP cost center NOPE does not exist"),
                          (7, "mapped twice"), (8, "bill_id is empty")]:
        assert f"row {number}: " in err and words in err, (number, err)
    assert "row 2:" not in err
    assert "nothing imported: 6 row(s)" in err
    assert mapping_set(conn) == {}


@pytest.mark.django_db
def test_import_with_a_bad_header_names_row_1(conn, tmp_path):
    refresh(conn)
    path = write_csv(tmp_path, [f"account,6100,{BILL_6100}"], header="type,code,bill")
    code, out, err = run_cli("mappings", "import", "demo-sandbox", path)
    assert code == 2 and "row 1: header" in err
    assert mapping_set(conn) == {}


@pytest.mark.django_db
def test_import_fetches_reference_data_first_if_it_never_was(conn, tmp_path):
    assert not reference_loaded(conn)
    path = write_csv(tmp_path, [f"account,6100,{BILL_6100}", f"department,ADMIN,{BILL_ADMIN}"])
    code, out, err = run_cli("mappings", "import", "demo-sandbox", path)
    assert code == 0, err
    assert "fetching it" in out
    assert mapping_set(conn) == {("account", "6100"): BILL_6100, ("department", "ADMIN"): BILL_ADMIN}


@pytest.mark.django_db
def test_import_only_touches_the_named_connection(conn, sap_sim, bill_sim, tmp_path):
    """Two connections with identical codes and BILL ids: importing into one leaves the other alone."""
    other, _ = apply_connection(connection_file(sap_sim.url, bill_sim.url, name="second"))
    refresh(conn)
    refresh(other)
    path = write_csv(tmp_path, [f"account,6100,{BILL_6100}"])
    code, out, err = run_cli("mappings", "import", "demo/second", path)
    assert code == 0, err
    assert mapping_set(other) == {("account", "6100"): BILL_6100}
    assert mapping_set(conn) == {}
    mapped = SapAccount.objects.get(connection=other, code="6100")
    assert mapped.bill_account.connection_id == other.pk


@pytest.mark.django_db
def test_import_errors_count_blank_lines_and_reject_non_utf8(conn, tmp_path):
    from mappings.csvio import MappingImportError, read_rows

    rows = read_rows("kind,sap_code,bill_id\n\naccount,6100,0ca01SBX00000006100\n\nnope,1,2\n")
    assert [n for n, _ in rows] == [3, 5]
    with pytest.raises(MappingImportError):
        read_rows("sap_code,bill_id\n")
    latin1 = tmp_path / "excel.csv"
    latin1.write_bytes("kind,sap_code,bill_id\naccount,6100,Caf\xe9\n".encode("latin-1"))
    code, _, err = run_cli("mappings", "import", "demo-sandbox", str(latin1))
    assert code == 2 and "is not UTF-8" in err
