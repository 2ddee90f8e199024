"""One cycle per connection: the lease is kept alive while a cycle runs and expires soon after a crash."""

import threading
import time

import pytest
from django.db import connections

from connector.limiter import get_limiter
from connector.sync import runner
from connector.sync.runner import AlreadyRunning, run_sync

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_crashed_cycles_lease_expires_after_the_lease_time(conn, monkeypatch):
    monkeypatch.setattr(runner, "RUN_LEASE", 0.5)
    get_limiter().acquire(f"run:{conn.pk}", 1, ttl=runner.RUN_LEASE)  # a cycle whose process was SIGKILLed
    with pytest.raises(AlreadyRunning):
        run_sync(conn, ["reference"])
    time.sleep(0.7)
    assert run_sync(conn, ["reference"]).status == "ok"


def test_a_long_cycle_keeps_its_lease_alive(conn, sap_sim, monkeypatch):
    monkeypatch.setattr(runner, "RUN_LEASE", 1.0)
    monkeypatch.setattr(runner, "RUN_RENEW", 0.1)
    sap_sim.latency = 0.4  # the reference step makes several SAP calls: well over the lease time in total
    outcome = {}

    def long_cycle():
        try:
            outcome["run"] = run_sync(conn, ["reference"])
        finally:
            connections.close_all()

    worker = threading.Thread(target=long_cycle)
    worker.start()
    time.sleep(2.2)  # past two lease periods: only renewal keeps it
    assert worker.is_alive()
    with pytest.raises(AlreadyRunning):
        run_sync(conn, ["reference"])
    worker.join(30)
    assert outcome["run"].status == "ok"
    assert run_sync(conn, ["reference"]).status == "ok"  # released at the end
