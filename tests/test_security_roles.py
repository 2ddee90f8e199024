"""Issue 10: roles that mean what they say.

A viewer POSTs to every admin action and every admin URL (custom ones included: replay, import, status, test,
autocomplete…) with a payload that would trigger any of them, and nothing changes in our database, nothing is
sent to SAP or BILL and nothing is queued. Editors change their own tenant's connection settings (secrets stay
write-only) but never the tenant, the private-network override, memberships or tenants. "Test connection" is
queued, one at a time per connection and rate-limited.
"""

import io

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import User
from django.core import serializers
from django.core.cache import cache
from django.test import Client, RequestFactory
from django.urls import reverse

from connector.clients.http import Transport
from connector.models import Connection, Membership, Tenant
from tests import test_security_crawl
from tests.test_security_crawl import SECRETS

world = test_security_crawl.world  # the two-tenant fixture, shared

SNAPSHOT_APPS = ("connector", "mappings", "audit", "auth", "admin", "django_q", "reconcile", "alerts")


def snapshot():
    rows = {}
    for model in apps.get_models():
        if model._meta.app_label in SNAPSHOT_APPS:
            rows[model._meta.label] = serializers.serialize("json", model.objects.order_by("pk"))
    return rows


@pytest.fixture
def calls(monkeypatch):
    """Every attempt to reach SAP/BILL, start a sync or queue a task is recorded (and goes nowhere)."""
    made = []

    def no_send(self, method, url, **kw):
        made.append(("http", method, url))
        raise AssertionError(f"a viewer's request made us call {url}")

    def no_task(func, *args, **kw):
        made.append(("task", func, args))

    def no_sync(*args, **kw):
        made.append(("sync", args, kw))
        raise AssertionError("a viewer's request started a sync")

    monkeypatch.setattr(Transport, "send", no_send)
    monkeypatch.setattr("django_q.tasks.async_task", no_task)
    monkeypatch.setattr("connector.sync.runner.run_sync", no_sync)
    import mappings.admin

    monkeypatch.setattr(mappings.admin, "run_sync", no_sync, raising=False)
    return made


def login(user):
    client = Client()
    client.force_login(user)
    return client


def as_request(user):
    request = RequestFactory().get("/admin/")
    request.user = user
    return request


def own_object(model, model_admin, user):
    return model_admin.get_queryset(as_request(user)).order_by("pk").first()


def payload(conn, ids):
    """Keys that would make any of our endpoints do its work, were it allowed to."""
    csv = io.BytesIO(b"kind,sap_code,bill_id\naccount,6900,0caacme\n")
    csv.name = "mappings.csv"
    return {
        "_selected_action": ids, "select_across": "1", "index": "0", "post": "yes", "apply": "yes",
        "proposal": ["x"], "resolution": "create", "connection": conn.pk, "resource": "0", "format": "0",
        "import_file": csv, "import_file_name": "mappings.csv", "original_file_name": "mappings.csv",
        "name": "renamed", "sap_password": "new-password-by-viewer", "enabled": "", "allow_private_network": "on",
        "tenant": conn.tenant_id, "role": "editor",
    }


def viewer_posts_everywhere(client, user, conn):
    """POST every action of every admin, and every admin URL, as `user`. Returns [(url, status)]."""
    operator = User.objects.filter(is_superuser=True).first()
    answers = []
    for model, model_admin in admin.site._registry.items():
        obj = own_object(model, model_admin, user) or model._default_manager.order_by("pk").first()
        ids = [obj.pk] if obj is not None else []
        changelist = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        for action in model_admin.get_actions(as_request(operator)):  # every action there is, not only the viewer's
            answer = client.post(changelist, {**payload(conn, ids), "action": action})
            answers.append((f"{changelist} action={action}", answer.status_code))
        for pattern in model_admin.get_urls():
            if not pattern.name:
                continue
            kwargs = {name: obj.pk if obj is not None else 1 for name in pattern.pattern.converters}
            url = reverse(f"admin:{pattern.name}", kwargs=kwargs)
            answers.append((url, client.post(url, payload(conn, ids)).status_code))
    autocomplete = reverse("admin:autocomplete")
    answers.append((autocomplete, client.get(autocomplete, {"app_label": "mappings", "model_name": "sapaccount",
                                                            "field_name": "bill_account", "connection": conn.pk}).status_code))
    return answers


def test_a_viewer_posting_to_every_action_and_endpoint_changes_nothing_and_calls_nothing(world, calls):
    viewer, conn = world["users"]["acme-viewer"], world["conns"]["acme"]
    client = login(viewer)
    before = snapshot()
    answers = viewer_posts_everywhere(client, viewer, conn)
    assert len(answers) > 100
    assert calls == []
    after = snapshot()
    changed = [label for label in before if before[label] != after[label]]
    assert changed == []
    assert all(status < 500 for _, status in answers), [a for a in answers if a[1] >= 500]


def test_an_editor_cannot_change_memberships_tenants_or_the_operator_settings(world):
    editor, conn = world["users"]["acme-editor"], world["conns"]["acme"]
    other = world["conns"]["globex"]
    client = login(editor)
    membership = Membership.objects.get(user=editor)
    assert client.post(reverse("admin:connector_membership_change", args=[membership.pk]),
                       {"user": editor.pk, "tenant": other.tenant_id, "role": "editor"}).status_code == 403
    assert client.post(reverse("admin:connector_membership_add"),
                       {"user": editor.pk, "tenant": other.tenant_id, "role": "editor"}).status_code == 403
    assert client.post(reverse("admin:connector_tenant_change", args=[conn.tenant_id]),
                       {"slug": "hijacked", "name": "x"}).status_code == 403
    assert client.post(reverse("admin:auth_user_change", args=[editor.pk]), {"is_superuser": "on"}).status_code == 403
    assert Membership.objects.get(user=editor).tenant_id == conn.tenant_id
    assert Tenant.objects.get(pk=conn.tenant_id).slug == "acme"
    assert not User.objects.get(pk=editor.pk).is_superuser


def connection_form(conn, **over):
    form = {field: getattr(conn, field) for field in (
        "name", "sap_base_url", "sap_company_db", "sap_username", "bill_base_url", "bill_username",
        "bill_organization_id", "schedule_minutes")}
    form.update({"enabled": "on", "sap_verify_tls": "on", "sap_password": "", "bill_password": "", "bill_dev_key": "",
                 "bill_webhook_security_key": "", "schedule_cron": "", "sync_from": conn.sync_from.isoformat(),
                 "sap_ca_bundle": "", "sap_payment_account": "", "invoice_extra_filter": "", "bill_events_base_url": "",
                 "bill_webhook_subscription_id": ""})
    form.update(over)
    return form


def test_an_editor_changes_own_connection_settings_with_secrets_write_only(world):
    editor, conn = world["users"]["acme-editor"], world["conns"]["acme"]
    conn.allow_private_network = False
    conn.save()
    client = login(editor)
    url = reverse("admin:connector_connection_change", args=[conn.pk])
    page = client.get(url).content.decode()
    assert 'name="sap_password"' in page and SECRETS["acme"]["sap"] not in page
    assert 'name="allow_private_network"' not in page and 'name="tenant"' not in page  # shown read-only
    answer = client.post(url, connection_form(conn, sap_username="clerk", bill_password="rotated-bill-pw",
                                              tenant=world["conns"]["globex"].tenant_id, allow_private_network="on"))
    assert answer.status_code == 302, answer.content.decode()[:3000]
    fresh = Connection.objects.get(pk=conn.pk)
    assert fresh.sap_username == "clerk" and fresh.bill_password == "rotated-bill-pw"
    assert fresh.sap_password == SECRETS["acme"]["sap"]  # empty box: kept
    assert fresh.tenant_id == conn.tenant_id and fresh.allow_private_network is False
    assert "bill_password" in fresh.secrets_changed
    assert client.post(reverse("admin:connector_connection_change", args=[world["conns"]["globex"].pk]),
                       connection_form(world["conns"]["globex"])).status_code == 404


def test_only_an_operator_sets_allow_private_network_in_the_admin(world):
    conn = world["conns"]["acme"]
    conn.allow_private_network = False
    conn.save()
    client = login(world["users"]["operator"])
    url = reverse("admin:connector_connection_change", args=[conn.pk])
    answer = client.post(url, connection_form(conn, tenant=conn.tenant_id, allow_private_network="on"))
    assert answer.status_code == 302, answer.content.decode()[:3000]
    assert Connection.objects.get(pk=conn.pk).allow_private_network


def test_connection_test_is_queued_one_at_a_time_and_rate_limited(world, calls):
    from connector import connections

    editor, conn = world["users"]["acme-editor"], world["conns"]["acme"]
    cache.delete_many(connections._test_keys(conn))
    client = login(editor)
    changelist = reverse("admin:connector_connection_changelist")
    page = client.post(changelist, {"action": "test_connection", "_selected_action": [conn.pk]}, follow=True)
    assert "test queued" in page.content.decode()
    assert [c[1] for c in calls if c[0] == "task"] == ["connector.connections.run_connection_test"]
    again = client.post(changelist, {"action": "test_connection", "_selected_action": [conn.pk]}, follow=True)
    assert "already running" in again.content.decode()  # the first one has not finished
    cache.delete(connections._test_keys(conn)[0])  # it finished
    again = client.post(changelist, {"action": "test_connection", "_selected_action": [conn.pk]}, follow=True)
    assert "tested less than 30 seconds ago" in again.content.decode()
    assert len([c for c in calls if c[0] == "task"]) == 1
    assert connections.TEST_TIMEOUT[0] <= 5 and sum(connections.TEST_TIMEOUT) <= 20  # never a minute per side


@pytest.mark.django_db(transaction=True)
def test_connection_test_result_lands_on_the_connection_without_secrets(conn):
    from connector.connections import run_connection_test

    conn.sap_password = "a-wrong-password"
    conn.save()
    assert "sap: failed" in run_connection_test(conn.pk, "alice")
    conn.refresh_from_db()
    assert conn.last_test["by"] == "alice" and conn.last_test["sides"]["bill"]["ok"]
    assert "wrong SAP user name or password" in conn.last_test["sides"]["sap"]["words"]
    assert "a-wrong-password" not in str(conn.last_test)
    client = login(User.objects.create_superuser("op", password="pw"))
    page = client.get(reverse("admin:connector_connection_change", args=[conn.pk])).content.decode()
    assert "by alice" in page and "a-wrong-password" not in page


def test_audit_events_cannot_be_deleted_through_the_admin(world):
    from audit.models import AuditEvent

    operator = login(world["users"]["operator"])
    event = AuditEvent.objects.first()
    assert operator.post(reverse("admin:audit_auditevent_delete", args=[event.pk]), {"post": "yes"}).status_code == 403
    operator.post(reverse("admin:audit_auditevent_changelist"),
                  {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"})
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_tenant_staff_see_plain_words_not_tracebacks(world):
    from connector.models import SyncRun

    conn = world["conns"]["acme"]
    run = SyncRun.objects.create(connection=conn, steps="bills", status="failed", error=(
        'Traceback (most recent call last):\n  File "/srv/app/connector/sync/bills.py", line 42, in run\n'
        "KeyError: 'DocEntry'"))
    page = login(world["users"]["acme-viewer"]).get(
        reverse("admin:connector_syncrun_change", args=[run.pk])).content.decode()
    assert "Traceback" not in page and "/srv/app" not in page and "DocEntry" in page
    page = login(world["users"]["operator"]).get(reverse("admin:connector_syncrun_change", args=[run.pk])).content.decode()
    assert "Traceback" in page  # the host operator may debug
    from audit.models import ReplayJob

    job = ReplayJob.objects.create(connection=conn, record_type="invoicerecord", status="failed", message=run.error)
    page = login(world["users"]["acme-editor"]).get(
        reverse("admin:audit_replayjob_change", args=[job.pk])).content.decode()
    assert "Traceback" not in page and "/srv/app" not in page and "KeyError" in page
    echoed = SyncRun.objects.create(connection=conn, steps="reference", status="failed",
                                    error='SAP login failed: proxy said 400 for {"Password": "echoed-secret-1"}')
    for user in ("acme-viewer", "operator"):
        page = login(world["users"][user]).get(reverse("admin:connector_syncrun_change", args=[echoed.pk]))
        assert "echoed-secret-1" not in page.content.decode() and "proxy said 400" in page.content.decode()


def test_an_editor_changing_a_url_loses_the_private_network_override(world):
    editor, conn = world["users"]["acme-editor"], world["conns"]["acme"]
    assert conn.allow_private_network  # set by the operator's connection file
    client = login(editor)
    url = reverse("admin:connector_connection_change", args=[conn.pk])
    assert client.post(url, connection_form(conn, sap_username="clerk")).status_code == 302
    assert Connection.objects.get(pk=conn.pk).allow_private_network  # no URL changed: kept
    answer = client.post(url, connection_form(conn, sap_base_url="http://10.0.0.5:50000/b1s/v1"), follow=True)
    assert "no longer allowed" in answer.content.decode()
    fresh = Connection.objects.get(pk=conn.pk)
    assert fresh.sap_base_url == "http://10.0.0.5:50000/b1s/v1" and not fresh.allow_private_network
