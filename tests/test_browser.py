"""Real-browser tests of the admin's main flow (Playwright driving Debian's Chromium on a live server).

A tenant's accounting editor logs in, maps the SAP account that holds an invoice, replays the invoice and
sees it synced; another tenant's user cannot reach it.
"""

import re

import pytest
from django.contrib.auth.models import User

from connector.clients.bill import BillClient
from connector.connections import apply_connection
from connector.models import InvoiceRecord, Membership
from connector.sync.runner import run_sync
from tests.conftest import connection_file
from tests.test_payments import map_everything

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def held_invoice(conn, sap_sim, bill_sim):
    """One invoice held because SAP account 6900 has no BILL mapping; BILL has an 'Insurance' account for it."""
    BillClient.for_connection(conn).post("/v3/classifications/chart-of-accounts",
                                         {"name": "Insurance", "account": {"type": "EXPENSE", "number": "6900"}})
    sap_sim.add_invoice("V1000", [{"AccountCode": "6900", "LineTotal": "321.00", "CostingCode": "ADMIN"}],
                        num_at_card="INS-2026")
    run_sync(conn, ["reference"])
    map_everything(conn)
    from mappings.models import SapAccount

    SapAccount.objects.filter(connection=conn, code="6900").update(bill_account=None, mapping_status="unmapped")
    run_sync(conn, ["vendors", "bills"])
    record = InvoiceRecord.objects.get(connection=conn, invoice_number="INS-2026")
    assert record.status == "held" and "6900" in record.last_error
    return record


def staff(username, conn, role="editor"):
    user = User.objects.create_user(username, password="pass-1234", is_staff=True)
    Membership.objects.create(user=user, tenant=conn.tenant, role=role)
    return user


def log_in(page, live_server, username):
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", "pass-1234")
    page.click("input[type=submit]")
    page.wait_for_selector("#content")


def test_editor_maps_account_replays_held_invoice_and_sees_it_synced(page, live_server, conn, bill_sim, held_invoice):
    staff("alice", conn)
    log_in(page, live_server, "alice")

    # The held invoice says what to fix.
    page.goto(f"{live_server.url}/admin/connector/invoicerecord/?status__exact=held")
    assert "SAP account 6900 Insurance" in page.content()

    # Map 6900 through the autocomplete picker on its mapping page.
    page.goto(f"{live_server.url}/admin/mappings/sapaccount/?mapping_status__exact=unmapped")
    page.get_by_role("link", name=re.compile("^6900$")).first.click()
    page.click(".select2-selection")
    page.fill(".select2-search__field", "Insurance")
    page.wait_for_selector(".select2-results__option--highlighted, .select2-results__option >> text=Insurance")
    page.keyboard.press("Enter")
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist")
    assert "was changed successfully" in page.content()

    # Replay the held invoice from the invoice list.
    page.goto(f"{live_server.url}/admin/connector/invoicerecord/?status__exact=held")
    page.check(f"input[name=_selected_action][value='{held_invoice.pk}']")
    page.select_option("select[name=action]", "replay_selected")
    page.click("button[name=index]")
    page.wait_for_selector(".messagelist")

    page.goto(f"{live_server.url}/admin/connector/invoicerecord/{held_invoice.pk}/change/")
    content = page.content()
    assert "synced" in content and "Replayed by alice" in content
    held_invoice.refresh_from_db()
    assert held_invoice.status == "synced"
    bills = [b for b in bill_sim.entities("bills") if b["invoice"]["invoiceNumber"] == "INS-2026"]
    assert len(bills) == 1 and bills[0]["billLineItems"][0]["classifications"]["chartOfAccountId"]


def test_another_tenants_user_cannot_reach_the_invoice(page, live_server, conn, held_invoice, sap_sim, bill_sim):
    other, _ = apply_connection(connection_file(sap_sim.url, bill_sim.url, tenant="globex", name="globex-prod"))
    staff("charlie", other)
    log_in(page, live_server, "charlie")
    response = page.goto(f"{live_server.url}/admin/connector/invoicerecord/{held_invoice.pk}/change/")
    assert response.status == 404
    page.goto(f"{live_server.url}/admin/connector/invoicerecord/")
    assert "INS-2026" not in page.content()
    response = page.goto(f"{live_server.url}/admin/connector/connection/{conn.pk}/status/")
    assert response.status == 404


def test_status_page_renders_for_the_tenant(page, live_server, conn, held_invoice):
    staff("bob", conn, role="viewer")
    log_in(page, live_server, "bob")
    page.goto(f"{live_server.url}/admin/connector/connection/{conn.pk}/status/")
    text = page.inner_text("#content")
    assert "Open problems, grouped by cause" in text and "6900" in text
    assert "Documents synced per day" in text


def test_replay_button_on_the_record_page(page, live_server, conn, bill_sim, held_invoice):
    """GIVEN a held invoice whose account gets mapped WHEN the editor presses Replay on its page THEN it syncs."""
    from mappings.models import BillAccount, SapAccount

    SapAccount.objects.filter(connection=conn, code="6900").update(
        bill_account=BillAccount.objects.get(connection=conn, name="Insurance"), mapping_status="ok")
    staff("erin", conn)
    log_in(page, live_server, "erin")
    page.goto(f"{live_server.url}/admin/connector/invoicerecord/{held_invoice.pk}/change/")
    page.get_by_role("button", name="Replay the failed step").click()
    page.wait_for_selector(".messagelist")
    held_invoice.refresh_from_db()
    assert held_invoice.status == "synced"
    assert "Replayed by erin" in page.content()
