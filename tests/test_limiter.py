"""The per-organization limit: never a 4th BILL request in flight, across threads and processes."""

import os
import subprocess
import sys
import threading
import time

import pytest
from django.conf import settings
from django.db import connection as db_connection
from django.db import connections, transaction

from connector.limiter import DatabaseLimiter, RedisLimiter, SlotTimeout
from connector.sandbox import catalog

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def hammer(limiter, key, threads=8, rounds=15, hold=0.004):
    state = {"now": 0, "max": 0}
    lock = threading.Lock()
    errors = []

    def work():
        try:
            for _ in range(rounds):
                with limiter.slot(key, 3, wait=30):
                    with lock:
                        state["now"] += 1
                        state["max"] = max(state["max"], state["now"])
                    time.sleep(hold)
                    with lock:
                        state["now"] -= 1
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connections.close_all()

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not errors
    return state["max"]


@pytest.mark.django_db(transaction=True)
def test_database_limiter_holds_three_in_flight_across_threads():
    assert hammer(DatabaseLimiter(), "bill:threads") == 3


@pytest.mark.django_db(transaction=True)
def test_a_crashed_holders_lease_expires():
    limiter = DatabaseLimiter()
    for _ in range(3):
        limiter.acquire("bill:crash", 3, ttl=0.2)  # never released: the holders "crashed"
    with pytest.raises(SlotTimeout):
        limiter.acquire("bill:crash", 3, ttl=0.2, wait=0.05)
    started = time.monotonic()
    token = limiter.acquire("bill:crash", 3, ttl=5, wait=5)
    assert token and time.monotonic() - started < 2


@pytest.mark.django_db(transaction=True)
def test_slots_are_refused_inside_a_transaction(settings):
    settings.LIMITER_REFUSE_IN_TRANSACTION = True
    with transaction.atomic(), pytest.raises(RuntimeError, match="inside a database transaction"):
        DatabaseLimiter().acquire("bill:tx", 3)


@pytest.mark.skipif(not settings.REDIS_URL, reason="REDIS_URL not set")
def test_redis_limiter_holds_three_in_flight():
    limiter = RedisLimiter(settings.REDIS_URL)
    key = f"bill:redis-test-{os.getpid()}"
    assert hammer(limiter, key) == 3


@pytest.mark.django_db(transaction=True)
def test_two_processes_never_put_a_fourth_request_in_flight(conn, bill_sim):
    """GIVEN a BILL org that rejects a 4th concurrent request, WHEN two processes × 4 threads call it, THEN none is rejected."""
    bill_sim.latency = 0.03
    env = {**os.environ, "ML_TEST_DB_NAME": db_connection.settings_dict["NAME"], "ML_LIMITER_PREFIX": settings.LIMITER_PREFIX}
    procs = [
        subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "tests", "limiter_worker.py"), str(conn.pk), "4", "8"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    key = (catalog.BILL_DEV_KEY, catalog.BILL_ORG_ID)
    assert bill_sim.max_in_flight_seen[key] == 3
    assert bill_sim.rejected_concurrent == 0
    assert bill_sim.requests_by_path["GET /v3/classifications/departments"] == 2 * 4 * 8
