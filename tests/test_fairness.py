"""One customer's backfill never holds the queue: bounded cycles hand it back, other connections run in between."""

import time

import pytest

from connector import tasks
from connector.connections import apply_connection
from connector.models import InvoiceRecord
from connector.sandbox.bill import BillSimulator
from connector.sandbox.sap import SapSimulator
from connector.sandbox.server import serve
from tests.conftest import connection_file
from tests.test_sync_bills import assert_one_bill_each, line, prepare

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def small_customer(db):
    sap_sim, bill_sim = SapSimulator(), BillSimulator()
    servers = serve(sap_sim), serve(bill_sim)
    conn, _ = apply_connection(connection_file(servers[0].url, servers[1].url, tenant="small", name="small-prod"))
    prepare(conn)
    yield conn, sap_sim
    for server in servers:
        server.stop()


def test_a_backfill_does_not_starve_another_connections_cycle(conn, sap_sim, bill_sim, small_customer, settings,
                                                             monkeypatch):
    """GIVEN a connection with a 60-invoice backfill (slow SAP: 50 ms a page of 5) and a small one, both due
    WHEN one worker takes cycles from the queue THEN the backfill's cycle stops after CYCLE_MAX_SECONDS and queues
    its continuation behind the small connection's cycle, which runs second; the backfill finishes later with
    exactly one bill each."""
    prepare(conn)
    small, small_sap = small_customer
    big_entries = [sap_sim.add_invoice("V1000", [line("6100", f"{i + 1}.00")], num_at_card=f"BF-{i}")["DocEntry"]
                   for i in range(60)]
    small_entry = small_sap.add_invoice("V1000", [line("6100", "9.00")], num_at_card="SMALL-1")["DocEntry"]
    settings.SAP_PAGE_SIZE = 5
    settings.CYCLE_MAX_SECONDS = 1
    sap_sim.latency = 0.1  # 12+ pages: well over one cycle's reading half on any machine
    queue = [conn.pk, small.pk]  # both cycles due, the backfill first
    monkeypatch.setattr("django_q.tasks.async_task", lambda func, pk, **kw: queue.append(pk))
    ran, started = [], time.monotonic()
    waited_small = None
    while queue:
        pk = queue.pop(0)
        if pk == small.pk and waited_small is None:
            waited_small = time.monotonic() - started
        ran.append(pk)
        tasks.run_scheduled_sync(pk)
        assert len(ran) < 40, "the backfill never finished"
    assert ran[1] == small.pk  # the small connection's cycle came right after one bounded backfill cycle
    assert ran.count(conn.pk) >= 2  # the backfill went on in several bounded cycles
    # one bounded cycle (its other steps included, on a loaded machine), not the whole backfill
    assert waited_small < settings.CYCLE_MAX_SECONDS + 15
    assert InvoiceRecord.objects.get(connection=small, doc_entry=small_entry).status == "synced"
    assert_one_bill_each(bill_sim, big_entries)
    print(f"\nsmall connection waited {waited_small:.1f} s behind the backfill; backfill cycles: {ran.count(conn.pk)}")
