"""Connection admin: secrets are write-only, "Test connection" explains each side, "Sync now" runs a cycle."""

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from connector.models import Connection, Membership, SyncRun


@pytest.fixture
def operator_client(db):
    client = Client()
    client.force_login(User.objects.create_superuser("op", password="pw"))
    return client


def changelist_action(client, action, conn):
    return client.post(reverse("admin:connector_connection_changelist"),
                       {"action": action, "_selected_action": [conn.pk]}, follow=True)


@pytest.mark.django_db(transaction=True)
def test_test_connection_shows_each_side(operator_client, conn):
    page = changelist_action(operator_client, "test_connection", conn).content.decode()
    assert "logged in to SBODEMOUS as manager" in page and "logged in to organization" in page
    conn.sap_password = "wrong"
    conn.save()
    page = changelist_action(operator_client, "test_connection", conn).content.decode()
    assert "tested less than 30 seconds ago" in page  # rate-limited per connection
    from django.core.cache import cache

    from connector.connections import _test_keys

    cache.delete_many(_test_keys(conn))  # (never cache.clear(): with Redis it would flush everyone's keys)
    page = changelist_action(operator_client, "test_connection", conn).content.decode()
    assert "wrong SAP user name or password" in page


@pytest.mark.django_db(transaction=True)
def test_sync_now_runs_a_cycle_attributed_to_the_person(operator_client, conn, sap_sim):
    sap_sim.add_invoice("V1000", [{"AccountCode": "6100", "LineTotal": "12.00"}])
    page = changelist_action(operator_client, "sync_now", conn).content.decode()
    assert "sync queued" in page
    run = SyncRun.objects.get(connection=conn)
    assert (run.trigger, run.steps) == ("person", "reference,vendors,credits,bills,documents,payments")
    assert run.summary["bills"]["read"] == 1


@pytest.mark.django_db
def test_secrets_are_never_rendered_and_blank_keeps_them(operator_client, conn):
    url = reverse("admin:connector_connection_change", args=[conn.pk])
    page = operator_client.get(url).content.decode()
    for secret in ("1234", "demo-password", "sandbox-dev-key"):
        assert f'value="{secret}"' not in page
    form = {field: getattr(conn, field) for field in (
        "name", "sap_base_url", "sap_company_db", "sap_username", "bill_base_url", "bill_username",
        "bill_organization_id", "schedule_minutes", "sync_from")}
    form.update({"tenant": conn.tenant_id, "enabled": "on", "sap_verify_tls": "on", "sap_password": "",
                 "bill_password": "", "bill_dev_key": "", "bill_webhook_security_key": "", "schedule_cron": "",
                 "sync_from": conn.sync_from.isoformat()})
    answer = operator_client.post(url, form)
    assert answer.status_code == 302, answer.content.decode()[:2000]
    fresh = Connection.objects.get(pk=conn.pk)
    assert (fresh.sap_password, fresh.bill_password, fresh.bill_dev_key) == ("1234", "demo-password", "sandbox-dev-key")


@pytest.mark.django_db
def test_viewers_cannot_start_a_sync(conn):
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    Membership.objects.create(user=viewer, tenant=conn.tenant, role="viewer")
    client = Client()
    client.force_login(viewer)
    page = client.get(reverse("admin:connector_connection_changelist")).content.decode()
    assert "test_connection" not in page and "sync_now" not in page  # a viewer only reads
    changelist_action(client, "sync_now", conn)
    assert not SyncRun.objects.exists()
