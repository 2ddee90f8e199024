"""The reconciliation page: latest run by kind, CSV export, "Reconcile now" for editors only, tenant-scoped;
the status page shows the reconciliation state and its chart."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from connector.connections import apply_connection
from connector.models import Membership
from reconcile.models import Difference, ReconciliationRun
from tests.conftest import connection_file


def client_for(user):
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def world(conn):
    other, _ = apply_connection(connection_file("http://sap.test:50000", "http://bill.test", tenant="other", name="prod"))
    users = {}
    for name, tenant, role in (("editor", conn.tenant, "editor"), ("viewer", conn.tenant, "viewer"),
                               ("stranger", other.tenant, "editor")):
        users[name] = User.objects.create_user(name, password="pw", is_staff=True)
        Membership.objects.create(user=users[name], tenant=tenant, role=role)
    run = ReconciliationRun.objects.create(connection=conn, since=conn.sync_from, status="differences",
                                           finished_at=conn.created_at, difference_count=2, new_count=1,
                                           sap_open=Decimal("310.00"), bill_open=Decimal("60.00"))
    Difference.objects.create(run=run, connection=conn, kind="missing_bill", key="missing:1", card_code="V1000",
                              sap_ref="DocNum 30001 (DocEntry 1)", bill_ref="00nGONE", sap_amount=Decimal("250.00"),
                              action="=replay the invoice", is_new=True)
    Difference.objects.create(run=run, connection=conn, kind="amount", key="amount:2", card_code="V1000",
                              sap_ref="DocNum 30002 (DocEntry 2)", bill_ref="00nB", sap_amount=Decimal("40.50"),
                              bill_amount=Decimal("45.00"), action="Correct the bill in BILL.", is_new=False)
    return {"conn": conn, "other": other, "users": users, "run": run}


@pytest.mark.django_db(transaction=True)
def test_editor_sees_groups_exports_csv_and_reconciles_in_the_queue(world, sap_sim, bill_sim):
    conn = world["conn"]
    editor = client_for(world["users"]["editor"])
    page = editor.get(reverse("admin:reconcile_connection_page", args=[conn.pk])).content.decode()
    assert "SAP invoice without a BILL bill: 1 (1 new)" in page
    assert "bill amount differs from the SAP invoice: 1" in page and "SAP 40.50 · BILL 45.00" in page
    assert "Reconcile now" in page and "open in SAP" not in page
    assert "SAP 310.00 · BILL 60.00" in page and "gap 250.00" in page
    csv_text = editor.get(reverse("admin:reconcile_run_csv", args=[world["run"].pk])).content.decode()
    assert "'=replay the invoice" in csv_text and "250.00" in csv_text
    # "Reconcile now" queues the work (the test queue runs it at once) and returns to the page
    answer = editor.post(reverse("admin:reconcile_connection_now", args=[conn.pk]))
    assert answer.status_code == 302
    latest = ReconciliationRun.objects.filter(connection=conn).order_by("-started_at").first()
    assert latest.pk != world["run"].pk and (latest.trigger, latest.actor) == ("person", "editor")
    assert latest.status == "clean"


@pytest.mark.django_db
def test_viewer_cannot_reconcile_and_other_tenants_get_404(world):
    conn = world["conn"]
    viewer = client_for(world["users"]["viewer"])
    page = viewer.get(reverse("admin:reconcile_connection_page", args=[conn.pk])).content.decode()
    assert "Reconcile now" not in page and "00nGONE" in page
    assert viewer.post(reverse("admin:reconcile_connection_now", args=[conn.pk])).status_code == 403
    stranger = client_for(world["users"]["stranger"])
    assert stranger.get(reverse("admin:reconcile_connection_page", args=[conn.pk])).status_code == 404
    assert stranger.post(reverse("admin:reconcile_connection_now", args=[conn.pk])).status_code == 404
    assert stranger.get(reverse("admin:reconcile_run_csv", args=[world["run"].pk])).status_code == 404
    assert ReconciliationRun.objects.filter(connection=conn).count() == 1


@pytest.mark.django_db
def test_status_page_shows_reconciliation_state_and_chart(world):
    conn = world["conn"]
    page = client_for(world["users"]["viewer"]).get(
        reverse("admin:connector_connection_status", args=[conn.pk])).content.decode()
    assert 'id="reconciliation"' in page and reverse("admin:reconcile_connection_page", args=[conn.pk]) in page
    assert "SAP 310.00 · BILL 60.00" in page and 'aria-label="reconciliation differences per run"' in page
    assert "2 differences" in page


@pytest.mark.django_db
def test_daily_schedule_per_connection_on_by_default_and_switchable(world):
    from django_q.models import Schedule

    from reconcile.models import ReconcileSetting

    conn = world["conn"]
    schedule = Schedule.objects.get(name=f"reconcile:{conn.pk}")
    assert schedule.schedule_type == Schedule.DAILY and schedule.func == "reconcile.tasks.run_scheduled_reconcile"
    assert schedule.next_run.hour == 5 and schedule.next_run > conn.created_at  # after the first syncs, not at once
    ReconcileSetting.objects.create(connection=conn, daily=False)
    assert not Schedule.objects.filter(name=f"reconcile:{conn.pk}").exists()
    setting = ReconcileSetting.objects.get(connection=conn)
    setting.daily = True
    setting.save()
    assert Schedule.objects.filter(name=f"reconcile:{conn.pk}").exists()
