"""Alerts: one mail per grouped cause, never repeated while open, again after it was resolved and came back;
warn and then pause after repeated login failures, resume after a passing test; new reconciliation
differences mailed once; tenants' recipients never get another tenant's alerts; digests."""

from decimal import Decimal

import pytest
from django.core import mail

from alerts.digest import operator_digest, tenant_digest
from alerts.engine import problems_changed
from alerts.models import Alert, AlertPolicy, AlertRecipient, ConnectionHealth
from connector.connections import apply_connection, run_connection_test
from connector.models import InvoiceRecord
from connector.sync.runner import run_sync
from mappings.models import SapAccount
from reconcile.service import reconcile
from tests.conftest import connection_file
from tests.test_reconcile import billed, map_everything  # noqa: F401 - fixture

UNMAPPED = "SAP account 6900 Insurance has no BILL mapping"


@pytest.fixture
def mailed(conn):
    AlertRecipient.objects.create(tenant=conn.tenant, email="ap@demo.example")
    AlertRecipient.objects.create(tenant=conn.tenant, email="digest-only@demo.example", immediate=False,
                                  daily_digest=True)
    return conn


def sent_to(address):
    return [m for m in mail.outbox if address in m.bcc + m.to]


def sync(conn, capture, steps=("reference", "vendors", "bills", "payments")):
    with capture(execute=True):
        return run_sync(conn, list(steps))


@pytest.mark.django_db
def test_one_mail_per_cause_none_while_open_again_after_reopen(mailed, sap_sim, django_capture_on_commit_callbacks):
    conn = mailed
    for n in range(3):
        sap_sim.add_invoice("V1000", [{"AccountCode": "6900", "LineTotal": f"1{n}.00", "CostingCode": "ADMIN"}],
                            num_at_card=f"INS-{n}")
    sap_sim.add_invoice("V1000", [{"AccountCode": "6100", "LineTotal": "10.00", "CostingCode": "ADMIN"}],
                        num_at_card="OK-1")
    run_sync(conn, ["reference"])
    map_everything(conn)
    sync(conn, django_capture_on_commit_callbacks, ["vendors", "bills"])
    held = [m for m in sent_to("ap@demo.example") if UNMAPPED in m.subject]
    assert len(held) == 1, [m.subject for m in mail.outbox]
    assert "3 invoices held" in held[0].subject and "/admin/connector/connection/" in held[0].body
    assert sent_to("digest-only@demo.example") == []  # digest recipients get no immediate mails
    first = len(mail.outbox)

    # Still open: later runs mail nothing about it.
    sync(conn, django_capture_on_commit_callbacks, ["bills"])
    sap_sim.add_invoice("V1000", [{"AccountCode": "6900", "LineTotal": "99.00", "CostingCode": "ADMIN"}],
                        num_at_card="INS-9")
    sync(conn, django_capture_on_commit_callbacks, ["bills"])
    assert len(mail.outbox) == first
    alert = Alert.objects.get(connection=conn, category="problem", detail__startswith=UNMAPPED)
    assert alert.status == "open" and alert.count == 4

    # Fixed: the held invoices go through by themselves and the alert resolves, silently.
    target = SapAccount.objects.get(connection=conn, code="6100").bill_account
    SapAccount.objects.filter(connection=conn, code="6900").update(bill_account=target)
    sync(conn, django_capture_on_commit_callbacks, ["bills"])
    assert not InvoiceRecord.objects.filter(connection=conn, status="held").exists()
    alert.refresh_from_db()
    assert alert.status == "resolved" and len(mail.outbox) == first

    # Broken again, a new invoice held for the same cause: mailed again, once.
    SapAccount.objects.filter(connection=conn, code="6900").update(bill_account=None)
    sap_sim.add_invoice("V1000", [{"AccountCode": "6900", "LineTotal": "5.00", "CostingCode": "ADMIN"}],
                        num_at_card="INS-10")
    sync(conn, django_capture_on_commit_callbacks, ["bills"])
    sync(conn, django_capture_on_commit_callbacks, ["bills"])
    again = [m for m in mail.outbox[first:] if UNMAPPED in m.subject]
    assert len(again) == 1 and "1 invoice held" in again[0].subject
    alert.refresh_from_db()
    assert alert.status == "open" and alert.times_opened == 2


@pytest.mark.django_db
def test_no_mail_while_an_automatic_retry_is_expected(mailed):
    conn = mailed
    record = InvoiceRecord.objects.create(connection=conn, doc_entry=7, card_code="V1000", status="failed",
                                          attempts=1, last_error="could not reach BILL: timeout")
    problems_changed(conn)
    assert mail.outbox == [] and not Alert.objects.exists()
    InvoiceRecord.objects.filter(pk=record.pk).update(attempts=5)  # retries used up: now a person must look
    problems_changed(conn)
    assert len(mail.outbox) == 1 and "could not reach BILL: timeout" in mail.outbox[0].subject


@pytest.mark.django_db
def test_warn_then_pause_after_repeated_login_failures_and_resume_after_a_passing_test(
        mailed, django_capture_on_commit_callbacks):
    from django_q.models import Schedule

    conn = mailed
    AlertPolicy.objects.create(tenant=conn.tenant, warn_after=2, pause_after=3)
    assert Schedule.objects.filter(name=f"sync:{conn.pk}").exists()
    conn.bill_password = "wrong"
    conn.save()
    assert sync(conn, django_capture_on_commit_callbacks).status == "failed"
    assert mail.outbox == []  # one failure: the next run may well succeed
    sync(conn, django_capture_on_commit_callbacks)
    assert [m.subject for m in mail.outbox] == [f"[ml-connector] {conn}: 2 failed runs in a row"]
    assert "wrong BILL user name or password" in mail.outbox[0].body
    sync(conn, django_capture_on_commit_callbacks)
    assert len(mail.outbox) == 2 and "schedule paused after 3 failed runs" in mail.outbox[1].subject
    assert not Schedule.objects.filter(name=f"sync:{conn.pk}").exists()
    conn.save()  # saving the connection does not bring the schedule back while paused
    assert not Schedule.objects.filter(name=f"sync:{conn.pk}").exists()
    health = ConnectionHealth.objects.get(connection=conn)
    assert health.paused_at and health.consecutive_failures == 3

    # A failing "Test connection" changes nothing; a passing one resumes the schedule.
    run_connection_test(conn.pk, "alice")
    assert not Schedule.objects.filter(name=f"sync:{conn.pk}").exists()
    conn.bill_password = "demo-password"
    conn.save()
    assert run_connection_test(conn.pk, "alice") == "sap: ok; bill: ok"
    assert Schedule.objects.filter(name=f"sync:{conn.pk}").exists()
    health.refresh_from_db()
    assert health.paused_at is None and health.consecutive_failures == 0 and health.resumed_at
    assert "schedule resumed" in mail.outbox[-1].subject
    assert Alert.objects.get(connection=conn, category="failures").status == "resolved"


@pytest.mark.django_db
def test_tenant_recipients_never_receive_another_tenants_alerts(mailed):
    conn = mailed
    other, _ = apply_connection(connection_file("http://sap.test:50000", "http://bill.test", tenant="globex",
                                                name="prod"))
    AlertRecipient.objects.create(tenant=other.tenant, email="ap@globex.example", daily_digest=True)
    InvoiceRecord.objects.create(connection=conn, doc_entry=1, card_code="V1", status="held",
                                 last_error="DEMO-ONLY cause")
    InvoiceRecord.objects.create(connection=other, doc_entry=1, card_code="G1", status="held",
                                 last_error="GLOBEX-ONLY cause")
    problems_changed(conn)
    problems_changed(other)
    assert [m.subject for m in sent_to("ap@demo.example")] == [f"[ml-connector] {conn}: 1 invoice held: DEMO-ONLY cause"]
    assert [m.subject for m in sent_to("ap@globex.example")] == [
        f"[ml-connector] {other}: 1 invoice held: GLOBEX-ONLY cause"]
    assert all(len(m.bcc) == 1 for m in mail.outbox)
    mail.outbox.clear()
    tenant_digest(other.tenant)
    (digest,) = mail.outbox
    assert digest.bcc == ["ap@globex.example"] and "GLOBEX-ONLY" in digest.body and "DEMO-ONLY" not in digest.body


@pytest.mark.django_db
def test_operator_digest_covers_every_tenant(mailed, settings):
    settings.ALERT_OPERATOR_EMAILS = ["ops@host.example"]
    other, _ = apply_connection(connection_file("http://sap.test:50000", "http://bill.test", tenant="globex",
                                                name="prod"))
    InvoiceRecord.objects.create(connection=mailed, doc_entry=1, card_code="V1", status="held", last_error="cause A")
    InvoiceRecord.objects.create(connection=other, doc_entry=1, card_code="G1", status="held", last_error="cause B")
    problems_changed(mailed)
    problems_changed(other)
    mail.outbox.clear()
    operator_digest()
    (digest,) = mail.outbox
    assert digest.bcc == ["ops@host.example"] and "== demo" in digest.body and "== globex" in digest.body
    assert "cause A" in digest.body and "cause B" in digest.body and "2 open alerts" in digest.subject


@pytest.mark.django_db
def test_new_reconciliation_differences_mailed_once_and_again_after_reopen(mailed, bill_sim, billed):  # noqa: F811
    conn = mailed
    from connector.clients.bill import BillClient

    bill = BillClient.for_connection(conn)
    assert reconcile(conn).difference_count == 0 and mail.outbox == []
    bill.post(f"/v3/bills/{billed['A-2'].bill_id}/archive")
    reconcile(conn)
    (first,) = mail.outbox
    assert "1 new reconciliation difference" in first.subject and "SAP 250.00 / BILL 0.00" in first.body
    assert "/admin/reconcile/reconciliationrun/connection/" in first.body
    reconcile(conn)
    assert len(mail.outbox) == 1  # still open: not mailed again
    bill.post(f"/v3/bills/{billed['A-2'].bill_id}/restore")
    assert reconcile(conn).difference_count == 0
    assert Alert.objects.get(connection=conn, category="reconciliation").status == "resolved"
    bill.post(f"/v3/bills/{billed['A-2'].bill_id}/archive")
    reconcile(conn)
    assert len(mail.outbox) == 2 and Decimal("250.00") == reconcile(conn).differences.get().sap_amount
    assert len(mail.outbox) == 2


@pytest.mark.django_db
def test_an_alert_opened_before_anyone_was_listening_is_mailed_once_a_recipient_exists(conn):
    InvoiceRecord.objects.create(connection=conn, doc_entry=1, card_code="V1", status="held", last_error="cause X")
    problems_changed(conn)
    assert mail.outbox == [] and Alert.objects.get().notified_at is None
    AlertRecipient.objects.create(tenant=conn.tenant, email="late@demo.example")
    problems_changed(conn)
    problems_changed(conn)
    assert [m.bcc for m in mail.outbox] == [["late@demo.example"]]


@pytest.mark.django_db
def test_editors_choose_their_own_tenants_recipients_only(conn):
    from django.contrib.auth.models import User
    from django.test import Client
    from django.urls import reverse

    from connector.models import Membership

    other, _ = apply_connection(connection_file("http://sap.test:50000", "http://bill.test", tenant="globex",
                                                name="prod"))
    editor = User.objects.create_user("alice", password="pw", is_staff=True)
    Membership.objects.create(user=editor, tenant=conn.tenant, role="editor")
    client = Client()
    client.force_login(editor)
    add = reverse("admin:alerts_alertrecipient_add")
    form = {"email": "ap@demo.example", "immediate": "on", "active": "on"}
    assert client.post(add, {**form, "tenant": other.tenant.pk}).status_code == 200  # not a choice: form error
    assert not AlertRecipient.objects.exists()
    assert client.post(add, {**form, "tenant": conn.tenant.pk}).status_code == 302
    assert list(AlertRecipient.objects.values_list("tenant__slug", "email")) == [("demo", "ap@demo.example")]
