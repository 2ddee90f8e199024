"""A real `manage.py sync` SIGKILLed at awkward moments, then run again at once: exactly one BILL vendor per
supplier, one bill per invoice, one SAP payment per BILL payment, nothing left stuck.

The kill comes from the simulator itself, at the exact moment that matters: right after BILL accepted a
vendor or bill create (the answer never reaches the dead worker), between two SAP page reads, right after SAP
accepted a VendorPayments post. The next sync must start immediately (its lease knows the holder died) and
recover the half-done record in that same run.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.db import connection as db_connection

from connector.connections import apply_connection
from connector.models import InvoiceRecord, Lease, PaymentRecord
from connector.sandbox.bill import BillSimulator
from connector.sandbox.sap import SapSimulator
from connector.sandbox.server import serve
from connector.sync.coding import marker_in
from mappings.models import VendorLink
from tests.conftest import connection_file
from tests.test_sync_bills import line, prepare

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
ROOT = Path(__file__).resolve().parent.parent


class KillSwitch:
    """WSGI middleware: SIGKILL the sync process when a request matches, before or after the simulator handled it."""

    def __init__(self, app):
        self.app = app
        self.armed = None  # (method, path fragment, nth match, "before" | "after")
        self.seen = 0
        self.pid = None
        self.fired = threading.Event()

    def arm(self, method, fragment, nth=1, when="after"):
        self.armed, self.seen = (method, fragment, nth, when), 0
        self.fired.clear()

    def _kill(self):
        self.armed = None
        os.kill(self.pid, signal.SIGKILL)
        self.fired.set()

    def __call__(self, environ, start_response):
        armed = self.armed
        hit = False
        if armed and self.pid and environ["REQUEST_METHOD"] == armed[0] and armed[1] in (
                environ.get("PATH_INFO", "") + "?" + environ.get("QUERY_STRING", "")):
            self.seen += 1
            hit = self.seen == armed[2]
        if hit and armed[3] == "before":
            self._kill()
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"gone"]
        if not hit:
            return self.app(environ, start_response)
        captured = {}

        def keep(status, headers, exc_info=None):
            captured["args"] = (status, headers)
            return lambda data: None

        body = b"".join(self.app(environ, keep))  # the simulator has done the work: the change is made
        self._kill()
        start_response(*captured["args"])
        return [body]


@pytest.fixture
def world(db):
    sap_sim, bill_sim = SapSimulator(), BillSimulator()
    bill_sim.webhook_sync = True
    sap_switch, bill_switch = KillSwitch(sap_sim), KillSwitch(bill_sim)
    sap_server, bill_server = serve(sap_switch), serve(bill_switch)
    conn, _ = apply_connection(connection_file(sap_server.url, bill_server.url))
    prepare(conn, vendors=False)
    yield conn, sap_sim, bill_sim, sap_switch, bill_switch, vendor_names(bill_sim)
    sap_server.stop()
    bill_server.stop()


def env():
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "mlconnector.test_settings",
            "ML_TEST_DB_NAME": str(db_connection.settings_dict["NAME"]), "SAP_PAGE_SIZE": "4"}


def killed_sync(switch, *args):
    """Start `manage.py sync` with the switch armed; return once it was killed (or finished)."""
    proc = subprocess.Popen([sys.executable, "manage.py", "sync", "demo-sandbox", *args], cwd=ROOT, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    switch.pid = proc.pid
    out, err = proc.communicate(timeout=120)
    assert switch.fired.is_set(), f"the kill never came (exit {proc.returncode}): {out[-2000:]} {err[-2000:]}"
    assert proc.returncode == -signal.SIGKILL
    return proc


def sync_again(*args):
    """The next sync, started at once: returns (seconds until it finished, its output)."""
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "manage.py", "sync", "demo-sandbox", *args], cwd=ROOT, env=env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "another sync" not in proc.stderr + proc.stdout
    return time.monotonic() - started, proc.stdout


def vendor_names(bill_sim):
    names = {}
    for vendor in bill_sim.entities("vendors"):
        names[vendor["name"]] = names.get(vendor["name"], 0) + 1
    return names


def assert_exactly_once(conn, sap_sim, bill_sim, seeded_vendors):
    ours = [b for b in bill_sim.entities("bills") if not b["archived"] and marker_in(b.get("description"))]
    by_entry = {}
    for bill in ours:
        by_entry.setdefault(marker_in(bill["description"])[1], []).append(bill["id"])
    assert all(len(ids) == 1 for ids in by_entry.values()), {k: v for k, v in by_entry.items() if len(v) > 1}
    doubled = {name: n for name, n in vendor_names(bill_sim).items() if n > max(seeded_vendors.get(name, 0), 1)}
    assert not doubled, f"a supplier got two BILL vendors: {doubled}"
    references = [p.get("TransferReference") for p in sap_sim.entities("VendorPayments") if p.get("Cancelled") != "tYES"]
    assert len(references) == len(set(references)), "a BILL payment was posted twice"
    assert not InvoiceRecord.objects.filter(status="creating").exists()
    assert not PaymentRecord.objects.filter(status="posting").exists()
    assert not VendorLink.objects.filter(status="creating").exists()
    assert not Lease.objects.filter(key=f"run:{conn.pk}").exists()
    return by_entry


def seed(sap_sim, count=10):
    return [sap_sim.add_invoice(f"V100{i % 3}", [line("6100", f"{i + 10}.00")], num_at_card=f"CRASH-{i}")["DocEntry"]
            for i in range(count)]


@pytest.mark.parametrize("system,method,fragment,nth,when", [
    ("bill", "POST", "/v3/vendors", 1, "after"),  # the vendor create reached BILL; its answer did not come back
    ("bill", "POST", "/v3/bills", 1, "after"),  # the first bulk bill create reached BILL
    ("sap", "GET", "PurchaseInvoices", 2, "before"),  # between two page reads
    ("sap", "GET", "PurchaseInvoices", 3, "before"),  # a page later, with two pages recorded
])
def test_a_sync_killed_mid_cycle_is_finished_by_the_next_one_exactly_once(world, system, method, fragment, nth, when):
    conn, sap_sim, bill_sim, sap_switch, bill_switch, seeded = world
    entries = seed(sap_sim)
    switch = bill_switch if system == "bill" else sap_switch
    switch.arm(method, fragment, nth, when)
    killed_sync(switch)
    seconds, out = sync_again()
    by_entry = assert_exactly_once(conn, sap_sim, bill_sim, seeded)
    held = set(InvoiceRecord.objects.filter(status="held").values_list("doc_entry", flat=True))
    assert set(by_entry) == set(entries) - held
    assert InvoiceRecord.objects.filter(doc_entry__in=entries).count() == len(entries)
    print(f"\nkilled at {method} {fragment} #{nth} ({when}): the next sync ran at once and finished in {seconds:.1f} s")


def test_a_payments_sync_killed_right_after_sap_accepted_the_post_is_adopted(world):
    conn, sap_sim, bill_sim, sap_switch, bill_switch, seeded = world
    entries = seed(sap_sim, 4)
    sync_again()
    record = InvoiceRecord.objects.filter(doc_entry__in=entries, status="synced").first()
    payment = bill_sim.pay_bills([(record.bill_id, str(record.doc_total))])
    sap_switch.arm("POST", "VendorPayments", 1, "after")
    killed_sync(sap_switch, "--step", "payments")
    assert PaymentRecord.objects.get(bill_payment_id=payment["id"]).status == "posting"
    seconds, out = sync_again("--step", "payments")
    assert_exactly_once(conn, sap_sim, bill_sim, seeded)
    posted = [p for p in sap_sim.entities("VendorPayments") if p.get("TransferReference") == payment["id"]]
    assert len(posted) == 1
    assert PaymentRecord.objects.get(bill_payment_id=payment["id"]).status == "posted"
    assert "adopted 1" in out
    print(f"\nkilled right after SAP accepted the payment: recovered by the next sync in {seconds:.1f} s")
