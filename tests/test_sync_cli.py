"""`manage.py sync NAME --step bills [--dry-run]` (CONTRACT.md): output, exit codes 0/1/2, and a dry run that writes
nothing to SAP, to BILL or to our records.

The default `sync` runs every step including `payments`; these tests always name the step.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.apps import apps
from django.db import connection as db_connection

from connector import leases
from connector.models import Connection, InvoiceRecord, SyncCursor, SyncRun
from mappings.models import VendorLink
from tests.test_connections import run_cli
from tests.test_sync_bills import line, prepare, the_bill

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parent.parent
NAME = "demo-sandbox"


def run_shell(*args):
    """The real `python manage.py …` in a child process, on the test database."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "mlconnector.test_settings",
           "ML_TEST_DB_NAME": str(db_connection.settings_dict["NAME"])}
    proc = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def ready(conn):
    prepare(conn)
    return conn


def test_sync_bills_prints_progress_a_summary_and_the_records_that_need_attention(ready, sap_sim, bill_sim):
    ok = sap_sim.add_invoice("V1000", [line("6100", "245.00")], num_at_card="NW-10021")
    held = sap_sim.add_invoice("V1001", [line("6900", "980.00")], num_at_card="CF-INS-26")
    code, out, err = run_cli("sync", NAME, "--step", "bills")
    assert (code, err) == (0, "")  # records that could not be synced are listed, the cycle itself ran
    lines = out.splitlines()
    assert lines[0] == "sync demo/demo-sandbox: bills"
    assert "bills:" in lines and "  read 2 changed invoices from SAP" in lines and "  processed 2 invoices" in lines
    assert ("bills: read 2, created 1, adopted 0, updated 0, archived 0, held 1, failed 0, flagged 0, skipped 0, "
            "unchanged 0, busy 0") in lines
    assert "records that need attention (replay takes the record number):" in lines
    record = InvoiceRecord.objects.get(doc_entry=held["DocEntry"])
    assert (f"  invoice {held['DocNum']} (record {record.pk}, DocEntry {held['DocEntry']}, V1001) [held]: SAP account "
            "6900 Insurance (line 1) has no BILL mapping: map it to a BILL account") in lines
    assert lines[-1].startswith("done: completed with failed records in ")
    the_bill(bill_sim, ok["DocEntry"])
    run = SyncRun.objects.get()
    assert (run.trigger, run.steps, run.status, run.dry_run) == ("cli", "bills", "partial", False)


def test_a_clean_cycle_ends_with_done_completed(ready, sap_sim, bill_sim):
    sap_sim.add_invoice("V1000", [line("6100", "10.00")])
    code, out, _ = run_cli("sync", f"demo/{NAME}", "--step", "bills")  # TENANT/NAME works too
    assert code == 0
    assert "  invoice " not in out and out.splitlines()[-1].startswith("done: completed in ")


def test_exit_1_when_a_login_fails(ready, sap_sim, bill_sim):
    conn = Connection.objects.get(pk=ready.pk)
    conn.sap_password = "wrong"
    conn.save()
    from connector.models import RemoteSession

    RemoteSession.objects.filter(connection=conn).delete()  # no stored session to fall back on
    code, out, err = run_cli("sync", NAME, "--step", "bills")
    assert code == 1
    assert err == "sync failed: SapLoginFailed: wrong SAP user name or password for user manager " \
                  "(Fail to NONE-SSO login from SLD.) (code -304) [HTTP 401]"
    assert InvoiceRecord.objects.count() == 0
    assert SyncRun.objects.get().status == "failed"


def test_exit_1_while_another_cycle_of_the_connection_runs(ready, sap_sim, bill_sim):
    with leases.hold(f"run:{ready.pk}"):
        code, out, err = run_cli("sync", NAME, "--step", "bills")
    assert code == 1 and "another sync of demo/demo-sandbox is running" in err
    assert InvoiceRecord.objects.count() == 0 and SyncRun.objects.count() == 0


def test_exit_2_for_an_unknown_connection_name(ready):
    code, out, err = run_cli("sync", "no-such-connection", "--step", "bills")
    assert code == 2 and "no-such-connection" in err
    assert SyncRun.objects.count() == 0


def test_exit_codes_from_the_shell(ready, sap_sim, bill_sim):
    sap_sim.add_invoice("V1000", [line("6100", "10.00")])
    code, out, err = run_shell("sync", NAME, "--step", "bogus")
    assert code == 2 and "invalid choice: 'bogus'" in err
    code, out, err = run_shell("sync", "no-such-connection", "--step", "bills")
    assert code == 2 and "no-such-connection" in err
    code, out, err = run_shell("sync", NAME, "--step", "bills")
    assert code == 0, err
    assert "bills: read 1, created 1" in out


# --- dry run -----------------------------------------------------------------------------------------------------
BUSINESS_MODELS = ["connector.invoicerecord", "connector.synccursor", "mappings.vendorlink", "mappings.sapaccount",
                   "mappings.sapcostcenter", "mappings.saptaxcode", "mappings.sapexpensetype", "mappings.billaccount",
                   "mappings.billdepartment", "mappings.referencerefresh", "connector.connection", "connector.tenant"]


def snapshot():
    """Row counts of every table, and the full contents of the business tables."""
    counts = {m._meta.label_lower: m.objects.count() for m in apps.get_models()}
    rows = {label: sorted(map(repr, apps.get_model(label).objects.values())) for label in BUSINESS_MODELS}
    return counts, rows


def changes(sim):
    return {k: v for k, v in sim.requests_by_path.items() if not k.startswith("GET")}


def assert_dry_run_wrote_nothing(before, after, sap_sim, bill_sim, sap_writes, bill_writes):
    (counts_before, rows_before), (counts_after, rows_after) = before, after
    assert rows_after == rows_before
    grown = {label: counts_after[label] - counts_before[label] for label in counts_after
             if counts_after[label] != counts_before[label]}
    # A dry run records nothing of its own either (no run, no audit rows). The only rows that may appear are
    # infrastructure: the request limiter's lease rows and a stored login session, created on first use.
    assert set(grown) <= {"connector.concurrencyslot", "connector.remotesession"}
    sent = {f"sap {k}": v - sap_writes.get(k, 0) for k, v in changes(sap_sim).items() if v != sap_writes.get(k, 0)}
    sent.update({f"bill {k}": v - bill_writes.get(k, 0) for k, v in changes(bill_sim).items()
                 if v != bill_writes.get(k, 0)})
    assert set(sent) <= {"sap POST Login", "bill POST /v3/login"}  # only reads (and at most a login) were sent


def test_dry_run_shows_bills_and_their_coding_and_writes_nothing_anywhere(conn, sap_sim, bill_sim):
    prepare(conn, vendors=False)  # vendors not aligned yet: the dry run also shows what it would do about them
    entries = sap_sim.seed_demo_invoices()
    before = snapshot()
    sap_writes, bill_writes = changes(sap_sim), changes(bill_sim)
    code, out, err = run_cli("sync", NAME, "--step", "bills", "--dry-run")
    assert (code, err) == (0, "")
    assert_dry_run_wrote_nothing(before, snapshot(), sap_sim, bill_sim, sap_writes, bill_writes)

    lines = out.splitlines()
    assert lines[0] == "sync demo/demo-sandbox: bills (dry run: nothing is written)"
    assert "  would link SAP V1001 'Contoso Facilities LLC' to BILL vendor 00901SBXVEND0000001 (same tax id 52-1000002)" in lines
    assert "  would create BILL vendor for SAP V1000 'Northwind Paper Co.'" in lines
    first = sap_sim.entities("PurchaseInvoices")[0]
    assert (f"  would create bill for SAP invoice {first['DocNum']} (V1000, invoice NW-10021, due "
            f"{first['DocDueDate'].isoformat()}, total 245.00):") in lines
    index = lines.index(f"  would create bill for SAP invoice {first['DocNum']} (V1000, invoice NW-10021, due "
                        f"{first['DocDueDate'].isoformat()}, total 245.00):")
    assert lines[index + 1].split() == ["245.00", "Copy", "paper,", "50", "cases", "account", "0ca01SBX00000006100",
                                        "department", "0de01SBX0000000ADMIN"]
    rent = next(i for i, text in enumerate(lines) if "invoice CF-2026-01," in text)
    assert [text.split()[-4:] for text in lines[rent + 1:rent + 3]] == [
        ["account", "0ca01SBX00000006200", "department", "0de01SBX0000000ADMIN"],
        ["account", "0ca01SBX00000001450", "department", "-"]]  # the tax line, on the tax account
    assert any(text.startswith("  would hold SAP invoice ") and "(V1001): SAP account 6900 Insurance (line 1) has no "
               "BILL mapping" in text for text in lines)
    assert sum(text.startswith("  would create bill for ") for text in lines) == 13
    assert "records that need attention" not in out  # a dry run lists what it would do, not the ledger

    # nothing was recorded, so the real run that follows does all of it
    code, out, _ = run_cli("sync", NAME, "--step", "bills")
    assert code == 0 and "bills: read 20, created 13," in out
    assert InvoiceRecord.objects.filter(status="synced").count() == 13
    assert {r.doc_entry for r in InvoiceRecord.objects.all()} == set(entries)
    assert VendorLink.objects.filter(connection=conn, status="linked").count() >= 7


def test_dry_run_shows_updates_and_archives_of_existing_bills_and_writes_nothing(ready, sap_sim, bill_sim):
    edited = sap_sim.add_invoice("V1000", [line("6100", "100.00")], num_at_card="ED-1")["DocEntry"]
    cancelled = sap_sim.add_invoice("V1000", [line("6100", "50.00")], num_at_card="CA-1")["DocEntry"]
    assert run_cli("sync", NAME, "--step", "bills")[0] == 0
    bill_id = the_bill(bill_sim, cancelled)["id"]
    sap_sim.update_invoice(edited, lines=[line("6100", "110.00")])
    sap_sim.cancel_invoice(cancelled)
    cursor = SyncCursor.objects.get().value
    before = snapshot()
    sap_writes, bill_writes = changes(sap_sim), changes(bill_sim)
    code, out, _ = run_cli("sync", NAME, "--step", "bills", "--dry-run")
    assert code == 0
    assert_dry_run_wrote_nothing(before, snapshot(), sap_sim, bill_sim, sap_writes, bill_writes)
    assert SyncCursor.objects.get().value == cursor
    doc_num = InvoiceRecord.objects.get(doc_entry=edited).doc_num
    assert any(text.startswith(f"  would update bill for SAP invoice {doc_num} (V1000, invoice ED-1,") and
               text.endswith("total 110.00):") for text in out.splitlines())
    cancelled_num = InvoiceRecord.objects.get(doc_entry=cancelled).doc_num
    assert f"  would archive BILL bill {bill_id} (SAP invoice {cancelled_num} cancelled)" in out.splitlines()
    assert "bills: read 2, created 0, adopted 0, updated 1, archived 1," in out
    # and the real run does exactly that
    code, out, _ = run_cli("sync", NAME, "--step", "bills")
    assert "bills: read 2, created 0, adopted 0, updated 1, archived 1," in out
