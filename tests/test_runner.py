"""One cycle per connection: the lease is kept alive while a cycle runs and expires soon after a crash."""

import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from connector import leases
from connector.models import Lease
from connector.sync.runner import AlreadyRunning, run_sync

pytestmark = pytest.mark.django_db(transaction=True)


def _dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_killed_cycles_lease_is_taken_over_at_once_on_its_host(conn):
    """GIVEN a cycle whose process was SIGKILLed on this host (its lease row is left, not expired)
    WHEN a sync starts right after THEN it runs at once (before this fix: refused for ~180 s)."""
    Lease.objects.create(key=f"run:{conn.pk}", token="dead", host=leases.HOST, pid=_dead_pid(),
                         expires_at=timezone.now() + timedelta(minutes=5))
    assert run_sync(conn, ["reference"]).status == "ok"
    assert not Lease.objects.filter(key=f"run:{conn.pk}").exists()  # released at the end


def test_a_lease_held_on_another_host_waits_for_its_ttl(conn):
    Lease.objects.create(key=f"run:{conn.pk}", token="remote", host="another-host", pid=1,
                         expires_at=timezone.now() + timedelta(seconds=0.6))
    with pytest.raises(AlreadyRunning):
        run_sync(conn, ["reference"])
    time.sleep(0.8)
    assert run_sync(conn, ["reference"]).status == "ok"


def test_a_long_cycle_keeps_its_lease_alive(conn, sap_sim, monkeypatch):
    monkeypatch.setattr(leases, "TTL", 1.0)
    monkeypatch.setattr(leases, "BEAT", 0.1)
    monkeypatch.setattr(leases, "HOST", "pretend-remote")  # only the heartbeat keeps it alive, not the pid check
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
