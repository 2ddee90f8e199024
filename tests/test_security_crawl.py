"""Issue 10: a crawl of every admin page a user can reach finds no stored secret, and no other tenant's data.

Tenant A (acme) and tenant B (globex) each have distinctive credentials and data. A viewer and an editor of A,
and a host operator, follow every link of the admin from its index (changelists, filters, change / history /
delete pages, the status and problems pages), plus the autocomplete endpoints and the CSV exports. No page
shows a secret of either tenant (operators included); A's staff never see B's data.
"""

import html
import re
from collections import deque
from decimal import Decimal
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.test import Client
from django.urls import NoReverseMatch, reverse

from connector.connections import apply_connection
from connector.models import Connection, InvoiceRecord, Membership, PaymentRecord, RemoteSession, SyncRun, WebhookEvent
from tests.conftest import connection_file

SECRETS = {
    "acme": {"sap": "sapPW-acme-Q7x9", "bill": "billPW-acme-K2m4", "dev": "devKEY-acme-Z8p1", "hook": "hookKEY-acme-W3r5",
             "prev": "prevKEY-acme-J6t2", "session": "SESSION-acme-N4v8"},
    "globex": {"sap": "sapPW-globex-H5c3", "bill": "billPW-globex-L9d7", "dev": "devKEY-globex-R1f6",
               "hook": "hookKEY-globex-T4g2", "prev": "prevKEY-globex-Y8h5", "session": "SESSION-globex-U2j9"},
}
B_MARKERS = ("GLOBEX-ONLY-SUPPLIER", "GLOBEX-INV-4711", "globex-prod", "SBO_GLOBEX")


def make_tenant(slug, name, company_db, supplier, invoice_number):
    from audit.models import AuditEvent, ReplayJob
    from mappings import models as m

    s = SECRETS[slug]
    conn, _ = apply_connection(connection_file(
        "http://sap.test:50000", "http://bill.test", tenant=slug, name=name,
        sap={"password": s["sap"], "company_db": company_db, "ca_bundle": ""},
        bill={"password": s["bill"], "dev_key": s["dev"], "webhook_security_key": s["prev"]}))
    conn = apply_connection(connection_file(
        "http://sap.test:50000", "http://bill.test", tenant=slug, name=name,
        sap={"password": s["sap"], "company_db": company_db},
        bill={"password": s["bill"], "dev_key": s["dev"], "webhook_security_key": s["hook"]}))[0]
    assert conn.bill_webhook_previous_key == s["prev"]
    RemoteSession.objects.create(connection=conn, system="bill", token=s["session"], generation=1)
    account = m.BillAccount.objects.create(connection=conn, bill_id=f"0ca{slug}", number="6100", name=f"{supplier} acct")
    m.SapAccount.objects.create(connection=conn, code="6100", format_code="6100", name=f"{supplier} gl",
                                bill_account=account, mapping_status="ok")
    m.SapAccount.objects.create(connection=conn, code="6900", name=f"{supplier} unmapped")
    dept = m.BillDepartment.objects.create(connection=conn, bill_id=f"0de{slug}", name=f"{supplier} dept")
    m.SapCostCenter.objects.create(connection=conn, code="CC1", name=f"{supplier} cc", bill_department=dept,
                                   mapping_status="ok")
    m.SapTaxCode.objects.create(connection=conn, code="T1", tax_account="1450", name=f"{supplier} tax")
    m.SapExpenseType.objects.create(connection=conn, code="1", expense_account="5100", name=f"{supplier} freight")
    link = m.VendorLink.objects.create(connection=conn, card_code="V1", card_name=supplier, status="review",
                                       candidates=[{"id": "009A", "name": supplier}])
    invoice = InvoiceRecord.objects.create(
        connection=conn, doc_entry=1, doc_num="301", card_code="V1", card_name=supplier, status="held",
        invoice_number=invoice_number, last_error=f"{supplier}: SAP account 6900 has no BILL mapping",
        doc_total=Decimal("10.00"))
    PaymentRecord.objects.create(connection=conn, bill_payment_id=f"stp{slug}", card_code="V1", status="failed",
                                 last_error=f"{supplier} payment")
    WebhookEvent.objects.create(connection=conn, event_id=f"evt-{slug}", event_type="payment.updated",
                                payload={"vendor": supplier}, status="failed")
    run = SyncRun.objects.create(connection=conn, steps="bills", status="partial", error=f"{supplier} run")
    AuditEvent.objects.create(connection=conn, record_type="invoicerecord", record_id=str(invoice.pk), kind="exchange",
                              system="bill", method="POST", path="/v3/login", status_code=200,
                              request_body={"username": "ap", "password": "***"}, message=f"{supplier} login")
    AuditEvent.objects.create(connection=conn, record_type="vendorlink", record_id=str(link.pk), kind="outcome",
                              message=f"{supplier} outcome")
    AuditEvent.objects.create(connection=conn, record_type="syncrun", record_id=str(run.pk), kind="note",
                              message=f"{supplier} note")
    ReplayJob.objects.create(connection=conn, record_type="invoicerecord", record_ids=[invoice.pk], status="done",
                             results=[{"record_type": "invoicerecord", "record_id": invoice.pk, "label": supplier,
                                       "message": "still held"}])
    return conn


@pytest.fixture
def world(db):
    conns = {
        "acme": make_tenant("acme", "acme-prod", "SBO_ACME", "ACME-SUPPLIER", "ACME-INV-1"),
        "globex": make_tenant("globex", "globex-prod", "SBO_GLOBEX", "GLOBEX-ONLY-SUPPLIER", "GLOBEX-INV-4711"),
    }
    users = {}
    for username, role in (("acme-viewer", "viewer"), ("acme-editor", "editor")):
        users[username] = User.objects.create_user(username, password="pw", is_staff=True)
        Membership.objects.create(user=users[username], tenant=conns["acme"].tenant, role=role)
    users["operator"] = User.objects.create_superuser("operator", password="pw")
    # An operator edit puts the connection on its history page (and in the admin's log).
    operator = Client()
    operator.force_login(users["operator"])
    return {"conns": conns, "users": users}


def all_secrets():
    return [value for tenant in SECRETS.values() for value in tenant.values()]


LINK_RE = re.compile(r'(?:href|src|action|data-ajax--url)="([^"#]+)', re.I)
SKIP = ("/admin/logout/", "/admin/jsi18n/", "/static/", "/admin/password_change/")
FOLLOWED_FILTERS = ("connection__id__exact", "tenant__id__exact", "connection__tenant__id__exact", "status__exact")


def _normalise(url):
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("_changelist_filters", "o", "_to_field")]
    return parts.path + ("?" + urlencode(query) if query else "")


def crawl(client, extra=(), limit=1500):
    """GET every admin URL reachable from the index (query-string links one level deep). Returns {url: body}."""
    pages = {}
    queue = deque(["/admin/", *extra])
    while queue and len(pages) < limit:
        url = queue.popleft()
        if url in pages:
            continue
        answer = client.get(url)
        body = answer.content.decode("utf-8", "replace")
        pages[url] = body
        assert answer.status_code < 500, url
        if answer.status_code in (301, 302) and answer["Location"].startswith("/admin/"):
            queue.append(_normalise(answer["Location"]))
        if "html" not in answer.get("Content-Type", ""):
            continue
        for href in LINK_RE.findall(body):
            target = _normalise(urljoin(url, html.unescape(href)))
            if not target.startswith("/admin/") or target.startswith(SKIP) or target in pages:
                continue
            if "?" in target and ("?" in url or not any(f"{key}=" in target for key in FOLLOWED_FILTERS)):
                continue  # lists filtered by connection or tenant (one level); other filters show the same rows
            queue.append(target)
    return pages


def extra_urls(world):
    """Pages no link leads to: autocomplete answers, CSV exports, every connection's status page."""
    urls = []
    for conn in world["conns"].values():
        urls.append(reverse("admin:connector_connection_status", args=[conn.pk]))
        for model_name, field in (("sapaccount", "bill_account"), ("sapcostcenter", "bill_department")):
            urls.append("/admin/autocomplete/?" + urlencode(
                {"app_label": "mappings", "model_name": model_name, "field_name": field, "connection": conn.pk,
                 "term": ""}))
    urls.append("/admin/autocomplete/?app_label=connector&model_name=membership&field_name=user&term=")
    return urls


def exports(client):
    """Every import-export export, all rows, as CSV."""
    bodies = {}
    for model in admin.site._registry:
        try:
            url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_export")
        except NoReverseMatch:
            continue
        answer = client.post(url, {"format": "0", "resource": "0"})
        bodies[url] = answer.content.decode("utf-8", "replace")
    return bodies


def login(user):
    client = Client()
    client.force_login(user)
    return client


def leaks(pages, needles):
    return sorted({(needle, url) for url, body in pages.items() for needle in needles if needle in body})


@pytest.mark.parametrize("username", ["acme-viewer", "acme-editor"])
def test_tenant_staff_crawl_finds_no_secret_and_no_other_tenants_data(world, username):
    client = login(world["users"][username])
    pages = crawl(client, extra_urls(world))
    pages.update(exports(client))
    reached = [url for url in pages if "/change/" in url]
    assert any(f"/connection/{world['conns']['acme'].pk}/change/" in url for url in reached)
    assert any("/invoicerecord/" in url for url in reached) and any("/history/" in url for url in pages)
    assert "ACME-SUPPLIER" in "".join(pages.values())  # the crawl did see the tenant's own data
    assert leaks(pages, all_secrets()) == []
    assert leaks(pages, B_MARKERS) == []


def test_operator_crawl_finds_no_plaintext_secret(world):
    operator = login(world["users"]["operator"])
    conn = world["conns"]["acme"]
    # An operator types a new password in the admin, so the history page (and the admin log) has a change to show.
    url = reverse("admin:connector_connection_change", args=[conn.pk])
    form = {field: getattr(conn, field) for field in (
        "name", "sap_base_url", "sap_company_db", "sap_username", "bill_base_url", "bill_username",
        "bill_organization_id", "schedule_minutes", "sap_ca_bundle", "sap_payment_account", "invoice_extra_filter",
        "bill_events_base_url", "bill_webhook_subscription_id", "schedule_cron")}
    form.update({"tenant": conn.tenant_id, "enabled": "on", "sap_verify_tls": "on", "sap_password": "sapPW-acme-NEW9",
                 "bill_password": "", "bill_dev_key": "", "bill_webhook_security_key": "", "allow_private_network": "on",
                 "sync_from": conn.sync_from.isoformat()})
    answer = operator.post(url, form)
    assert answer.status_code == 302, answer.content.decode()[:2000]
    assert Connection.objects.get(pk=conn.pk).sap_password == "sapPW-acme-NEW9"
    pages = crawl(operator, extra_urls(world))
    pages.update(exports(operator))
    assert "GLOBEX-ONLY-SUPPLIER" in "".join(pages.values())  # operators see every tenant
    assert any("/history/" in url and "SAP password" in body for url, body in pages.items())
    assert leaks(pages, [*all_secrets(), "sapPW-acme-NEW9"]) == []


def test_connection_page_says_set_or_not_set_and_when_changed(world):
    client = login(world["users"]["acme-viewer"])
    conn = world["conns"]["acme"]
    body = client.get(reverse("admin:connector_connection_change", args=[conn.pk])).content.decode()
    assert "set, last changed" in body
    Connection.objects.filter(pk=conn.pk).update(bill_webhook_security_key="")
    body = client.get(reverse("admin:connector_connection_change", args=[conn.pk])).content.decode()
    assert "not set" in body
