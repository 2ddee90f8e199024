"""BILL's hourly budgets per developer key: shared by every process, kept for payments and bills first."""

import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection as db_connection
from django.utils import timezone

from connector import budget
from connector.clients.errors import BillHourlyLimit
from connector.models import BudgetUse, InvoiceRecord
from connector.sandbox import catalog
from connector.sync.runner import run_sync
from mappings.models import ReferenceRefresh
from tests.test_sync_bills import line, prepare

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _clean_budget():
    if settings.REDIS_URL:
        budget.counter().clear()
    yield
    if settings.REDIS_URL:
        budget.counter().clear()


def spent(kind="request"):
    return sum(count for key, k, hour, count, deferred in budget.usage(1) if k == kind)


@pytest.mark.django_db(transaction=True)
def test_two_processes_share_one_budget_and_bill_never_refuses(conn, bill_sim, settings):
    """GIVEN a developer key whose BILL hour holds 40 requests (the simulator counts per key and refuses over it)
    WHEN two processes make 30 low-priority calls each, then 30 high-priority ones THEN together they send exactly
    what each priority may use (75 %, then 98 %), the rest is deferred or waits, and BILL refuses nothing."""
    bill_sim.hourly_limit = 40
    env = {**os.environ, "ML_TEST_DB_NAME": db_connection.settings_dict["NAME"],
           "ML_LIMITER_PREFIX": settings.LIMITER_PREFIX, "BILL_REQUESTS_PER_HOUR": "40"}

    def run(level, calls):
        procs = [subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "budget_worker.py"), str(conn.pk),
                                   level, str(calls)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True) for _ in range(2)]
        outputs = [p.communicate(timeout=120)[0] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outputs
        totals = {"sent": 0, "deferred": 0, "waiting": 0}
        for out in outputs:
            words = out.split()[-6:]
            for name, value in zip(words[::2], words[1::2], strict=True):
                totals[name] += int(value)
        return totals

    low = run("low", 30)
    assert low["sent"] + logins_sent(bill_sim) == 30  # 75 % of 40: the calls and the login(s) they needed
    assert low["sent"] + low["deferred"] == 60
    high = run("high", 30)
    assert high["sent"] + low["sent"] + logins_sent(bill_sim) == 39  # 98 % of 40
    assert high["waiting"] == 60 - high["sent"]
    assert bill_sim.rejected_hourly == 0 and spent() == 39


def logins_sent(bill_sim):
    return bill_sim.requests_by_path.get("POST /v3/login", 0)


@pytest.mark.django_db
def test_counts_per_key_hour_and_kind_and_refuses_past_the_share(settings):
    settings.BILL_REQUESTS_PER_HOUR = 10
    for _ in range(7):
        budget.take("key-a", level="low")
    with pytest.raises(budget.BudgetDeferred, match="kept for payments and bills"):
        budget.take("key-a", level="low")
    budget.take("key-b", level="low")  # another developer key has its own budget
    for _ in range(2):
        budget.take("key-a", level="high")
    with pytest.raises(BillHourlyLimit, match="resume at"):
        budget.take("key-a", level="high")
    next_hour = timezone.now() + timedelta(hours=1)
    budget.take("key-a", level="low", now=next_hour)  # a new hour, a new budget
    keys = {key for key, *_ in budget.usage(2)}
    assert budget.key_of("key-a") in keys and not any("key-a" == k for k in keys)  # hashed, never the key itself


@pytest.mark.django_db(transaction=True)
def test_a_low_budget_defers_housekeeping_and_still_bills_and_pays(conn, sap_sim, bill_sim, settings):
    prepare(conn)
    doc = sap_sim.add_invoice("V1000", [line("6100", "30.00")], num_at_card="BUDGET-1")["DocEntry"]
    settings.BILL_REQUESTS_PER_HOUR = 100
    hour = budget.hour_of()
    if settings.REDIS_URL:
        for _ in range(76):
            budget.take(catalog.BILL_DEV_KEY, level="high")
    else:
        BudgetUse.objects.update_or_create(key=budget.key_of(catalog.BILL_DEV_KEY), kind="request", hour=hour,
                                           defaults={"count": 76})
    ReferenceRefresh.objects.filter(connection=conn).update(refreshed_at=timezone.now() - timedelta(days=2))  # due
    run = run_sync(conn)
    assert run.summary["reference"] == {"deferred": 1}
    assert InvoiceRecord.objects.get(doc_entry=doc).status == "synced"
    assert run.status != "failed"
    assert bill_sim.rejected_hourly == 0
