"""An idle cycle costs (almost) nothing: at most one BILL request, and only the SAP reads the deltas need."""

from datetime import timedelta

import pytest
from django.utils import timezone

from connector.models import RemoteSession, SyncCursor, WebhookEvent
from connector.sync.runner import run_sync
from mappings.models import ReferenceRefresh, SapAccount
from tests.test_sync_bills import line, prepare

pytestmark = pytest.mark.django_db(transaction=True)


def bill_calls(bill_sim, before):
    return {k: v - before.get(k, 0) for k, v in bill_sim.requests_by_path.items()
            if v != before.get(k, 0) and "login" not in k}


@pytest.fixture
def settled(conn, sap_sim):
    prepare(conn)
    sap_sim.add_invoice("V1000", [line("6100", "30.00")], num_at_card="IDLE-1")
    run_sync(conn)
    return conn


def test_an_idle_cycle_with_working_webhooks_costs_no_bill_request(settled, sap_sim, bill_sim):
    """Before: 3 BILL requests per idle cycle (chart of accounts, departments, payments poll)."""
    WebhookEvent.objects.create(connection=settled, event_id="evt-recent", event_type="bill.updated",
                                status=WebhookEvent.Status.PROCESSED)
    before_bill, before_sap = dict(bill_sim.requests_by_path), dict(sap_sim.requests_by_path)
    run = run_sync(settled)
    assert bill_calls(bill_sim, before_bill) == {}
    assert run.summary["reference"] == {"fresh": 1}
    sap = {k: v - before_sap.get(k, 0) for k, v in sap_sim.requests_by_path.items() if v != before_sap.get(k, 0)}
    # one delta read per SAP document type (suppliers, invoices, credit memos), nothing else
    assert set(sap.values()) == {1} and all(k.startswith("GET ") for k in sap), sap


def test_an_idle_cycle_without_webhooks_polls_once(settled, bill_sim):
    for _ in range(2):
        before = dict(bill_sim.requests_by_path)
        run_sync(settled)
        assert bill_calls(bill_sim, before) == {"GET /v3/payments": 1}


def test_the_poll_runs_again_after_its_interval_or_to_keep_the_session_warm(settled, bill_sim, settings):
    WebhookEvent.objects.create(connection=settled, event_id="evt-1", event_type="bill.updated",
                                status=WebhookEvent.Status.PROCESSED)
    cursor = SyncCursor.objects.get(connection=settled, stream="bill-payments")
    cursor.value = {**cursor.value, "polled_at": (timezone.now() - timedelta(minutes=61)).isoformat()}
    cursor.save()
    before = dict(bill_sim.requests_by_path)
    run_sync(settled)
    assert bill_calls(bill_sim, before) == {"GET /v3/payments": 1}  # the hourly safety net
    RemoteSession.objects.filter(connection=settled, system="bill").update(
        last_used_at=timezone.now() - timedelta(minutes=26))
    before = dict(bill_sim.requests_by_path)
    run_sync(settled)
    assert bill_calls(bill_sim, before) == {"GET /v3/payments": 1}  # a poll instead of a login later


def test_reference_data_is_refreshed_on_its_own_cadence_or_when_an_invoice_needs_it(settled, sap_sim, bill_sim,
                                                                                  settings):
    WebhookEvent.objects.create(connection=settled, event_id="evt-2", event_type="bill.updated",
                                status=WebhookEvent.Status.PROCESSED)
    ReferenceRefresh.objects.filter(connection=settled).update(refreshed_at=timezone.now() - timedelta(hours=25))
    run = run_sync(settled)
    assert run.summary["reference"] != {"fresh": 1}  # a day old: fetched
    assert run_sync(settled).summary["reference"] == {"fresh": 1}
    # an invoice on a G/L account our reference data does not know (opened in SAP since) asks for a refresh
    SapAccount.objects.filter(connection=settled, code="6700").delete()
    sap_sim.add_invoice("V1000", [line("6700", "12.00")], num_at_card="NEW-ACCOUNT")
    run_sync(settled, ["bills"])
    assert run_sync(settled).summary["reference"] != {"fresh": 1}
    assert run_sync(settled).summary["reference"] == {"fresh": 1}


def test_asking_for_a_step_by_name_does_it_now(settled, bill_sim):
    WebhookEvent.objects.create(connection=settled, event_id="evt-3", event_type="bill.updated",
                                status=WebhookEvent.Status.PROCESSED)
    before = dict(bill_sim.requests_by_path)
    assert run_sync(settled, ["reference"]).summary["reference"] != {"fresh": 1}
    run_sync(settled, ["payments"])
    calls = bill_calls(bill_sim, before)
    assert calls["GET /v3/payments"] == 1 and calls["GET /v3/classifications/chart-of-accounts"] == 1


def test_the_sweep_keeps_idle_bill_sessions_warm_instead_of_logging_in_again(settled, bill_sim):
    """A connection on an hourly cadence would log in every cycle (BILL drops a session after 35 idle minutes,
    and allows 200 logins an hour per developer key): one read at ~20 idle minutes keeps the session instead."""
    from connector.tasks import warm_idle_bill_sessions

    session = RemoteSession.objects.get(connection=settled, system="bill")
    RemoteSession.objects.filter(pk=session.pk).update(last_used_at=timezone.now() - timedelta(minutes=5))
    assert warm_idle_bill_sessions() == 0
    RemoteSession.objects.filter(pk=session.pk).update(last_used_at=timezone.now() - timedelta(minutes=22))
    before = dict(bill_sim.requests_by_path)
    logins = bill_sim.requests_by_path.get("POST /v3/login", 0)
    assert warm_idle_bill_sessions() == 1  # the task queue runs it at once in the tests
    session_reads = bill_sim.requests_by_path.get("GET /v3/login/session", 0) - before.get("GET /v3/login/session", 0)
    assert session_reads == 1 and bill_calls(bill_sim, before) == {}
    assert bill_sim.requests_by_path.get("POST /v3/login", 0) == logins  # no new login
    session.refresh_from_db()
    assert timezone.now() - session.last_used_at < timedelta(minutes=1)
