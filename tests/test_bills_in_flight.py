"""Bulk creates overlap up to BILL's 3 requests in flight per organization, and every invoice still gets one bill."""

import time

import pytest

from connector.sandbox import catalog
from connector.sync import bills as bills_module
from tests.test_sync_bills import assert_one_bill_each, line, prepare, sync

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ready(conn):
    prepare(conn)
    return conn


def seed(sap_sim, count):
    return [sap_sim.add_invoice("V1000", [line("6100", f"{i + 1}.00")], num_at_card=f"FL-{i}")["DocEntry"]
            for i in range(count)]


def test_bulk_creates_overlap_up_to_three_in_flight(ready, sap_sim, bill_sim, monkeypatch):
    monkeypatch.setattr(bills_module, "CHUNK", 4)
    monkeypatch.setattr(bills_module, "BULK_LIMIT", 4)
    entries = seed(sap_sim, 24)  # 6 bulk creates
    bill_sim.latency = 0.3
    started = time.monotonic()
    run = sync(ready)
    elapsed = time.monotonic() - started
    bill_sim.latency = 0
    assert run.summary["bills"]["created"] == 24
    assert bill_sim.max_in_flight_seen[(catalog.BILL_DEV_KEY, catalog.BILL_ORG_ID)] == 3
    assert bill_sim.rejected_concurrent == 0
    assert bill_sim.requests_by_path["POST /v3/bills/bulk"] == 6
    assert_one_bill_each(bill_sim, entries)
    assert elapsed < 6 * 0.3 + 2.0  # not one after the other (6 × 0.3 s of creates alone, plus the look-ups)


def test_lost_and_refused_answers_among_overlapping_creates_end_with_one_bill_each(ready, sap_sim, bill_sim,
                                                                                  monkeypatch):
    monkeypatch.setattr(bills_module, "CHUNK", 4)
    monkeypatch.setattr(bills_module, "BULK_LIMIT", 4)
    entries = seed(sap_sim, 16)
    bill_sim.latency = 0.1
    bill_sim.lose_next_response("POST", "/v3/bills/bulk")  # created in BILL, answer lost
    bill_sim.fail_next("POST", "/v3/bills/bulk", 500, "BDC_1000", "Internal error")  # nothing created, no answer
    first = sync(ready)
    bill_sim.latency = 0
    second = sync(ready)
    assert first.summary["bills"]["created"] + first.summary["bills"]["adopted"] + \
        second.summary["bills"]["created"] + second.summary["bills"]["adopted"] == 16
    assert_one_bill_each(bill_sim, entries)
