"""Each connection is polled on its own django-q2 schedule; one connection's failure stops no other."""

import pytest
from django.test import Client
from django_q.models import Schedule

from connector.connections import apply_connection
from connector.models import SyncRun
from connector.scheduling import SWEEP_NAME, ensure_sweep
from connector.tasks import run_scheduled_sync
from tests.conftest import connection_file


@pytest.mark.django_db
def test_schedule_follows_the_connection_settings():
    conn, _ = apply_connection(connection_file("http://sap.test:50000", "http://bill.test", schedule={"minutes": 5}))
    schedule = Schedule.objects.get(name=f"sync:{conn.pk}")
    assert (schedule.schedule_type, schedule.minutes, schedule.func) == ("I", 5, "connector.tasks.run_scheduled_sync")
    assert schedule.args == f"({conn.pk},)"

    apply_connection(connection_file("http://sap.test:50000", "http://bill.test", schedule={"cron": "0 */2 * * *"}))
    schedule.refresh_from_db()
    assert (schedule.schedule_type, schedule.cron) == ("C", "0 */2 * * *")
    assert schedule.next_run.minute == 0

    apply_connection(connection_file("http://sap.test:50000", "http://bill.test", enabled=False))
    assert not Schedule.objects.filter(name=f"sync:{conn.pk}").exists()
    apply_connection(connection_file("http://sap.test:50000", "http://bill.test", enabled=True))
    assert Schedule.objects.filter(name=f"sync:{conn.pk}").count() == 1
    conn.delete()
    assert not Schedule.objects.filter(name=f"sync:{conn.pk}").exists()


@pytest.mark.django_db
def test_periodic_jobs_exist_once():
    ensure_sweep()
    ensure_sweep()
    assert Schedule.objects.filter(name=SWEEP_NAME).count() == 1
    assert Schedule.objects.filter(name="ml-connector:prune-audit").count() == 1


@pytest.mark.django_db
def test_a_failing_connection_does_not_stop_the_others(sap_sim, bill_sim):
    sap_sim.add_invoice("V1000", [{"AccountCode": "6100", "LineTotal": "10.00"}])
    good, _ = apply_connection(connection_file(sap_sim.url, bill_sim.url, name="good"))
    bad, _ = apply_connection(connection_file(sap_sim.url, bill_sim.url, name="bad", sap={"password": "wrong"}))
    for conn in (bad, good):
        run_scheduled_sync(conn.pk)
    bad_run = SyncRun.objects.get(connection=bad)
    good_run = SyncRun.objects.get(connection=good)
    assert bad_run.status == "failed" and "wrong SAP user name or password" in bad_run.error
    assert bad_run.trigger == "schedule"
    assert good_run.status in ("ok", "partial") and good_run.summary["bills"]["read"] == 1


@pytest.mark.django_db
def test_disabled_connections_are_not_polled(sap_sim, bill_sim):
    conn, _ = apply_connection(connection_file(sap_sim.url, bill_sim.url, enabled=False))
    assert run_scheduled_sync(conn.pk) == "connection missing or disabled"
    assert not SyncRun.objects.exists()


@pytest.mark.django_db
def test_healthz_reports_database_and_queue():
    answer = Client().get("/healthz")
    assert answer.status_code == 200
    assert answer.json()["database"] == "ok" and answer.json()["queue"] == "ok"
