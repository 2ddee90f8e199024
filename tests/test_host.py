"""The host operators' page, the queue's backlog age in /healthz, and the 80 % budget warning."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.test import Client
from django.utils import timezone

from connector import budget
from connector.models import Membership, SyncRun, Tenant, WebhookEvent
from connector.sandbox import catalog

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _clean_budget(settings):
    if settings.REDIS_URL:
        budget.counter().clear()
    yield
    if settings.REDIS_URL:
        budget.counter().clear()


def login(username, superuser=False):
    if superuser:
        user = User.objects.create_superuser(username, password="pw", email=f"{username}@host.example")
    else:
        user = User.objects.create_user(username, password="pw", is_staff=True)
    client = Client()
    client.force_login(user)
    return client, user


def test_the_host_page_shows_budgets_lagging_and_failing_connections_and_the_queue(conn, settings):
    settings.BILL_REQUESTS_PER_HOUR = 100
    for _ in range(42):
        budget.take(catalog.BILL_DEV_KEY, level="high")
    SyncRun.objects.create(connection=conn, steps="bills", started_at=timezone.now() - timedelta(minutes=40),
                           status=SyncRun.Status.FAILED, error="Traceback ...\nTransportError: SAP unreachable")
    WebhookEvent.objects.create(connection=conn, event_id="e1", event_type="payment.updated")
    client, _ = login("operator", superuser=True)
    page = client.get("/admin/host/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "42 of 100 (42.0 %)" in text and budget.key_of(catalog.BILL_DEV_KEY) in text
    assert catalog.BILL_DEV_KEY not in text  # the key itself never
    assert "25 min" in text  # 40 min since the last start of a 15-minute schedule
    assert "TransportError: SAP unreachable" in text and "Traceback" not in text
    assert 'id="queue"' in text


def test_tenant_staff_cannot_open_the_host_page(conn):
    client, user = login("editor")
    Membership.objects.create(user=user, tenant=Tenant.objects.get(slug="demo"), role="editor")
    assert client.get("/admin/host/").status_code == 403
    assert Client().get("/admin/host/").status_code == 302  # to the login page


def test_healthz_reports_how_old_the_oldest_waiting_task_is(settings):
    from django_q.brokers import get_broker
    from django_q.signing import SignedPackage

    broker = get_broker()
    broker.purge_queue()
    assert Client().get("/healthz").json()["queue_backlog_age_seconds"] is None
    task = {"id": "t1", "name": "t1", "func": "math.floor", "args": (1,), "kwargs": {},
            "started": timezone.now() - timedelta(seconds=90)}
    broker.enqueue(SignedPackage.dumps(task))
    try:
        report = Client().get("/healthz").json()
        assert report["queue_pending"] >= 1 and report["queue_backlog_age_seconds"] >= 90
    finally:
        broker.purge_queue()


def test_operators_are_mailed_once_an_hour_past_80_percent(settings):
    from django.core.cache import cache

    from connector.host import warn_operators_about_budgets

    settings.BILL_REQUESTS_PER_HOUR = 10
    User.objects.create_superuser("op", password="pw", email="op@host.example")
    cache.delete_many([f"ml-connector:budget-warned:{budget.key_of('k1')}:{budget.hour_of():%Y%m%d%H}"])
    for _ in range(7):
        budget.take("k1", level="high")
    assert warn_operators_about_budgets() == 0  # 70 %
    budget.take("k1", level="high")
    assert warn_operators_about_budgets() == 1 and len(mail.outbox) == 1
    assert "80%" in mail.outbox[0].subject and "k1" not in mail.outbox[0].body
    assert warn_operators_about_budgets() == 0  # once per key and hour
