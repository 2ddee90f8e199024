"""The mapping and vendor-link admin: lists, autocomplete, propose action, CSV import/export, vendor review."""

import csv
import io

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from audit.models import AuditEvent
from connector.clients.bill import BillClient
from connector.clients.sap import SapClient
from connector.connections import apply_connection
from connector.models import SyncRun
from connector.sandbox import catalog
from connector.sync.vendors import VendorAligner
from mappings.models import BillAccount, BillDepartment, MappingStatus, SapAccount, SapCostCenter, VendorLink
from mappings.reference import refresh_reference
from mappings.suggest import apply_proposals
from tests.conftest import connection_file

BILL_6100 = "0ca01SBX00000006100"
BILL_6800_ARCHIVED = "0ca01SBX00000006800"
BILL_ADMIN = "0de01SBX0000000ADMIN"
CONTOSO, ACME, GLOBEX_EAST, GLOBEX_WEST = (v["id"] for v in catalog.BILL_VENDORS)

ACCOUNTS_URL = reverse("admin:mappings_sapaccount_changelist")
CENTERS_URL = reverse("admin:mappings_sapcostcenter_changelist")


def refresh(conn):
    refresh_reference(conn, SapClient.for_connection(conn), BillClient.for_connection(conn))


@pytest.fixture
def loaded(conn):
    refresh(conn)
    return conn


@pytest.fixture
def second(loaded, sap_sim, bill_sim):
    """Another connection of the same tenant, with the very same codes and BILL ids."""
    other, _ = apply_connection(connection_file(sap_sim.url, bill_sim.url, name="second"))
    refresh(other)
    return other


def account(conn, code):
    return SapAccount.objects.select_related("bill_account").get(connection=conn, code=code)


def bill_account(conn, bill_id):
    return BillAccount.objects.get(connection=conn, bill_id=bill_id)


def mapped(conn):
    return dict(SapAccount.objects.filter(connection=conn, bill_account__isnull=False)
                .values_list("code", "bill_account__bill_id"))


def messages_of(response):
    return [str(m) for m in response.context["messages"]] if response.context else []


# --- lists ------------------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_changelist_with_the_unmapped_filter_shows_what_to_fix(admin_client, loaded):
    apply_proposals([(account(loaded, "6100"), bill_account(loaded, BILL_6100)),
                     (account(loaded, "6800"), bill_account(loaded, BILL_6800_ARCHIVED))])
    response = admin_client.get(ACCOUNTS_URL, {"mapping_status__exact": "unmapped"})
    assert response.status_code == 200
    page = response.content.decode()
    assert "SAP account 6900 has no BILL mapping." in page
    assert "Office Supplies" not in page  # 6100 is mapped
    assert "?mapping_status__exact=unmapped" in page  # the filter is offered

    broken = admin_client.get(ACCOUNTS_URL, {"mapping_status__exact": "broken"}).content.decode()
    assert "which is archived in BILL" in broken and "Marketing" in broken
    everything = admin_client.get(ACCOUNTS_URL, {"q": "Office"}).content.decode()
    assert "Office Supplies" in everything and "0ca01SBX" not in everything


@pytest.mark.django_db
def test_cost_center_list_and_reference_lists_render(admin_client, loaded):
    page = admin_client.get(CENTERS_URL).content.decode()
    assert "SPLIT50" in page and "SAP cost center IT has no BILL mapping." in page
    for name in ("billaccount", "billdepartment", "saptaxcode", "sapexpensetype", "vendorlink"):
        response = admin_client.get(reverse(f"admin:mappings_{name}_changelist"))
        assert response.status_code == 200, name
    bill_list = admin_client.get(reverse("admin:mappings_billaccount_changelist"), {"archived__exact": "1"})
    assert "Marketing" in bill_list.content.decode()
    assert admin_client.get(reverse("admin:mappings_billaccount_add")).status_code == 403
    assert admin_client.get(reverse("admin:mappings_sapaccount_add")).status_code == 403


# --- autocomplete and the change form ------------------------------------------------------------------------------
def autocomplete(client, **params):
    query = {"app_label": "mappings", "model_name": "sapaccount", "field_name": "bill_account", "term": "", **params}
    response = client.get(reverse("admin:autocomplete"), query)
    assert response.status_code == 200
    return [int(r["id"]) for r in response.json()["results"]]


@pytest.mark.django_db
def test_autocomplete_offers_only_usable_bill_rows_of_the_same_connection(admin_client, loaded, second):
    ids = autocomplete(admin_client, connection=loaded.pk)
    mine = set(BillAccount.objects.filter(connection=loaded, archived=False).values_list("pk", flat=True))
    assert set(ids) == mine
    assert bill_account(second, BILL_6100).pk not in ids
    assert bill_account(loaded, BILL_6800_ARCHIVED).pk not in autocomplete(admin_client, connection=loaded.pk,
                                                                            term="Marketing")
    assert autocomplete(admin_client, connection=loaded.pk, term="office") == [bill_account(loaded, BILL_6100).pk]
    assert autocomplete(admin_client) == []  # no connection named: nothing
    departments = autocomplete(admin_client, model_name="sapcostcenter", field_name="bill_department",
                               connection=second.pk)
    assert set(departments) == set(BillDepartment.objects.filter(connection=second).values_list("pk", flat=True))


@pytest.mark.django_db
def test_change_form_points_the_picker_at_its_connection_and_rejects_other_connections(admin_client, loaded, second):
    row = account(loaded, "6100")
    url = reverse("admin:mappings_sapaccount_change", args=[row.pk])
    page = admin_client.get(url).content.decode()
    assert f'data-ajax--url="/admin/autocomplete/?connection={loaded.pk}"' in page

    response = admin_client.post(url, {"bill_account": bill_account(second, BILL_6100).pk})
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    assert account(loaded, "6100").bill_account is None

    response = admin_client.post(url, {"bill_account": bill_account(loaded, BILL_6800_ARCHIVED).pk})
    assert "is archived in BILL" in response.content.decode()
    assert account(loaded, "6100").bill_account is None

    response = admin_client.post(url, {"bill_account": bill_account(loaded, BILL_6100).pk})
    assert response.status_code == 302
    saved = account(loaded, "6100")
    assert saved.bill_account.bill_id == BILL_6100 and saved.mapping_status == MappingStatus.OK


# --- actions --------------------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_propose_shows_a_confirmation_page_and_applies_only_the_ticked_rows(admin_client, loaded):
    selected = list(SapAccount.objects.filter(connection=loaded).values_list("pk", flat=True))
    response = admin_client.post(ACCOUNTS_URL, {"action": "propose_mappings", ACTION_CHECKBOX_NAME: selected})
    assert response.status_code == 200
    assert response.templates[0].name == "admin/mappings/propose_mappings.html"
    page = response.content.decode()
    assert "same account number" in page and "Repairs &amp; Upkeep" in page
    assert mapped(loaded) == {}  # shown, not applied

    keys = [row["key"] for row in response.context["rows"]]
    ticked = next(k for k in keys if k.startswith(f"sapaccount:{account(loaded, '6100').pk}:"))
    forged = f"sapaccount:{account(loaded, '6900').pk}:{bill_account(loaded, BILL_6100).pk}"  # never proposed
    response = admin_client.post(ACCOUNTS_URL, {"action": "propose_mappings", ACTION_CHECKBOX_NAME: selected,
                                                "apply": "yes", "proposal": [ticked, forged]}, follow=True)
    assert "1 mapping(s) applied." in messages_of(response)
    assert mapped(loaded) == {"6100": BILL_6100}
    assert account(loaded, "6100").mapping_status == MappingStatus.OK


@pytest.mark.django_db
def test_propose_on_cost_centers(admin_client, loaded):
    selected = list(SapCostCenter.objects.filter(connection=loaded).values_list("pk", flat=True))
    response = admin_client.post(CENTERS_URL, {"action": "propose_mappings", ACTION_CHECKBOX_NAME: selected})
    rows = {row["sap"]: row for row in response.context["rows"]}
    assert rows["ADMIN"]["bill_name"] == "Administration" and "IT" not in rows
    admin_client.post(CENTERS_URL, {"action": "propose_mappings", ACTION_CHECKBOX_NAME: selected, "apply": "yes",
                                     "proposal": [rows["ADMIN"]["key"]]})
    center = SapCostCenter.objects.get(connection=loaded, code="ADMIN")
    assert center.bill_department.bill_id == BILL_ADMIN and center.mapping_status == MappingStatus.OK


@pytest.mark.django_db
def test_refresh_action_runs_the_reference_step_as_the_person(admin_client, admin_user, loaded):
    BillClient.for_connection(loaded).post(f"/v3/classifications/chart-of-accounts/{BILL_6100}/archive")
    selected = [account(loaded, "6100").pk]
    response = admin_client.post(ACCOUNTS_URL, {"action": "refresh_reference_data", ACTION_CHECKBOX_NAME: selected},
                                 follow=True)
    assert any("reference data refreshed" in m for m in messages_of(response))
    run = SyncRun.objects.get(connection=loaded)
    assert (run.trigger, run.steps, run.status) == ("person", "reference", SyncRun.Status.OK)
    assert bill_account(loaded, BILL_6100).archived


# --- CSV import / export -------------------------------------------------------------------------------------------
def upload(client, conn, text, url="admin:mappings_sapaccount_import"):
    """Step 1 of the admin import: the preview (a dry run)."""
    data = {"connection": conn.pk, "resource": "0", "format": "0",
            "import_file": SimpleUploadedFile("mappings.csv", text.encode("utf-8"), content_type="text/csv")}
    return client.post(reverse(url), data)


def confirm(client, preview, url="admin:mappings_sapaccount_process_import"):
    """Step 2: the confirmation, with the hidden fields the preview page carries."""
    form = preview.context["confirm_form"]
    return client.post(reverse(url), {name: form.initial.get(name, "") for name in form.fields}, follow=True)


@pytest.mark.django_db
def test_admin_import_previews_then_applies_to_the_chosen_connection_only(admin_client, loaded, second):
    page = admin_client.get(reverse("admin:mappings_sapaccount_import")).content.decode()
    assert 'name="connection"' in page and "kind,sap_code,bill_id" in page

    text = (f"kind,sap_code,bill_id,sap_name,bill_name\naccount,6100,{BILL_6100},ignored,ignored\n"
            f"department,ADMIN,{BILL_ADMIN},,\naccount,6200,0ca01SBX00000006200,,\n")
    preview = upload(admin_client, second, text)
    assert preview.status_code == 200 and preview.context["confirm_form"] is not None
    assert mapped(second) == {}  # the preview changes nothing
    assert preview.context["confirm_form"].initial["connection"] == second.pk

    response = confirm(admin_client, preview)
    assert any("Import finished" in m for m in messages_of(response))
    assert mapped(second) == {"6100": BILL_6100, "6200": "0ca01SBX00000006200"}
    assert account(second, "6100").mapping_status == MappingStatus.OK
    assert mapped(loaded) == {}
    # the department row belongs to the cost-center screen: checked, skipped here
    assert SapCostCenter.objects.get(connection=second, code="ADMIN").bill_department is None


@pytest.mark.django_db
def test_admin_import_rejects_a_file_with_a_bad_row_and_changes_nothing(admin_client, loaded):
    text = f"kind,sap_code,bill_id\naccount,6100,{BILL_6100}\naccount,6300,0ca-nope\naccount,6800,{BILL_6800_ARCHIVED}\n"
    preview = upload(admin_client, loaded, text)
    page = preview.content.decode()
    assert "row 3: BILL chart-of-accounts entry 0ca-nope does not exist in BILL" in page
    assert "row 4: BILL chart-of-accounts entry 0ca01SBX00000006800 (Marketing) is archived in BILL" in page
    assert preview.context.get("confirm_form") is None
    assert mapped(loaded) == {}

    bad_header = upload(admin_client, loaded, f"code,bill\n6100,{BILL_6100}\n").content.decode()
    assert "row 1: header must start with kind,sap_code,bill_id" in bad_header
    assert mapped(loaded) == {}


@pytest.mark.django_db
def test_admin_import_is_all_or_nothing_at_the_confirm_step_too(admin_client, loaded):
    """The data changed between the preview and the confirmation: nothing is imported, the person is told why."""
    preview = upload(admin_client, loaded, f"kind,sap_code,bill_id\naccount,6100,{BILL_6100}\n"
                                           "account,6200,0ca01SBX00000006200\n")
    assert preview.context["confirm_form"] is not None
    BillAccount.objects.filter(connection=loaded, bill_id="0ca01SBX00000006200").update(archived=True)
    response = confirm(admin_client, preview)
    assert any("Nothing imported" in m and "row 3:" in m for m in messages_of(response))
    assert mapped(loaded) == {}


@pytest.mark.django_db
def test_admin_export_is_contract_csv_and_round_trips(admin_client, loaded, second):
    apply_proposals([(account(loaded, "6100"), bill_account(loaded, BILL_6100)),
                     (account(loaded, "6700"), bill_account(loaded, "0ca01SBX00000006700"))])
    export_url = reverse("admin:mappings_sapaccount_export")

    refused = admin_client.get(export_url, follow=True)  # two connections in the list: which one?
    assert any("filter the list by connection" in m for m in messages_of(refused))

    response = admin_client.post(f"{export_url}?connection__id__exact={loaded.pk}", {"format": "0", "resource": "0"})
    assert response.status_code == 200
    assert f'mappings-account-demo-{loaded.name}.csv' in response["Content-Disposition"]
    text = response.content.decode("utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == ["kind", "sap_code", "bill_id", "sap_name", "bill_name"]
    assert [(r["kind"], r["sap_code"], r["bill_id"]) for r in rows] == [
        ("account", "6100", BILL_6100), ("account", "6700", "0ca01SBX00000006700")]
    assert rows[1]["bill_name"] == "Repairs & Upkeep" and rows[1]["sap_name"] == "Repairs and Maintenance"

    # the same file into the other connection gives it the same mappings
    confirm(admin_client, upload(admin_client, second, text))
    assert mapped(second) == mapped(loaded)


# --- vendor review ---------------------------------------------------------------------------------------------------
def align(conn):
    return VendorAligner(conn, SapClient.for_connection(conn), BillClient.for_connection(conn)).run()


def change_url(link):
    return reverse("admin:mappings_vendorlink_change", args=[link.pk])


@pytest.mark.django_db
def test_vendor_review_shows_the_candidates_and_links_the_one_picked(admin_client, conn, bill_sim):
    align(conn)
    held = VendorLink.objects.get(connection=conn, card_code="V1003")
    page = admin_client.get(change_url(held)).content.decode()
    for candidate in (GLOBEX_EAST, GLOBEX_WEST, "east@globex.example", "west@globex.example"):
        assert candidate in page
    assert 'value="create"' in page and f'value="link:{GLOBEX_WEST}"' in page

    response = admin_client.post(change_url(held), {"resolution": f"link:{GLOBEX_WEST}"}, follow=True)
    assert any("now linked to BILL vendor" in m for m in messages_of(response))
    held.refresh_from_db()
    assert (held.status, held.bill_vendor_id, held.candidates, held.synced_fingerprint) == ("linked", GLOBEX_WEST, [], "")
    assert "picked by admin" in held.match_reason
    assert AuditEvent.objects.filter(record_type="vendorlink", record_id=str(held.pk), actor="admin").exists()

    count = len(bill_sim.entities("vendors"))
    align(conn)  # the next run sends SAP's data to the chosen vendor, creates nothing
    west = next(v for v in bill_sim.entities("vendors") if v["id"] == GLOBEX_WEST)
    assert west["email"] == "ap@globex.example" and west["address"]["zipOrPostalCode"] == "97209"
    assert len(bill_sim.entities("vendors")) == count
    assert VendorLink.objects.get(pk=held.pk).status == "linked"


@pytest.mark.django_db
def test_vendor_review_can_ask_for_a_new_vendor(admin_client, conn, bill_sim):
    align(conn)
    held = VendorLink.objects.get(connection=conn, card_code="V1003")
    admin_client.post(change_url(held), {"resolution": "create"})
    held.refresh_from_db()
    assert (held.status, held.create_new, held.bill_vendor_id) == ("pending", True, "")
    align(conn)
    held.refresh_from_db()
    globex = [v["id"] for v in bill_sim.entities("vendors") if v["name"] == "Globex Services"]
    assert len(globex) == 3 and held.status == "linked" and held.bill_vendor_id not in (GLOBEX_EAST, GLOBEX_WEST)


@pytest.mark.django_db
def test_vendor_review_refuses_a_vendor_that_is_not_a_candidate_or_is_taken(admin_client, conn):
    align(conn)
    held = VendorLink.objects.get(connection=conn, card_code="V1003")
    response = admin_client.post(change_url(held), {"resolution": f"link:{CONTOSO}"})
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    VendorLink.objects.filter(connection=conn, card_code="V1000").update(bill_vendor_id=GLOBEX_EAST)
    response = admin_client.post(change_url(held), {"resolution": f"link:{GLOBEX_EAST}"})
    assert "already linked to SAP supplier V1000" in response.content.decode()
    held.refresh_from_db()
    assert held.status == "review" and len(held.candidates) == 2


@pytest.mark.django_db
def test_vendor_list_filters_by_status_and_the_align_action_runs(admin_client, conn):
    align(conn)
    url = reverse("admin:mappings_vendorlink_changelist")
    page = admin_client.get(url, {"status__exact": "review"}).content.decode()
    assert "V1003" in page and "Ambiguous match" in page and "V1001" not in page
    linked = VendorLink.objects.get(connection=conn, card_code="V1001")
    assert "resolution" not in admin_client.get(change_url(linked)).content.decode()
    response = admin_client.post(url, {"action": "align_vendors", ACTION_CHECKBOX_NAME: [linked.pk]}, follow=True)
    assert any("vendors" in m for m in messages_of(response))
    assert SyncRun.objects.get(connection=conn).trigger == "person"


# --- tenant staff ------------------------------------------------------------------------------------------------
@pytest.fixture
def other_tenant(loaded, sap_sim, bill_sim):
    foreign, _ = apply_connection(connection_file(sap_sim.url, bill_sim.url, tenant="globex", name="globex-prod"))
    refresh(foreign)
    return foreign


def staff_client(client, conn, role):
    from django.contrib.auth.models import User

    from connector.models import Membership

    user = User.objects.create_user(f"{role}-{conn.tenant.slug}", password="pw", is_staff=True)
    Membership.objects.create(user=user, tenant=conn.tenant, role=role)
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_tenant_editor_imports_only_into_own_connections(client, loaded, other_tenant):
    editor = staff_client(client, loaded, "editor")
    form = editor.get(reverse("admin:mappings_sapaccount_import")).context["form"]
    assert list(form.fields["connection"].queryset) == [loaded]
    assert form.initial["connection"] == loaded.pk  # the only choice is preselected

    preview = upload(editor, other_tenant, f"kind,sap_code,bill_id\naccount,6100,{BILL_6100}\n")
    assert "Select a valid choice" in preview.content.decode()
    assert mapped(other_tenant) == {}
    # the autocomplete does not answer for another tenant's connection either
    assert autocomplete(editor, connection=other_tenant.pk) == []
    assert autocomplete(editor, connection=loaded.pk)

    confirm(editor, upload(editor, loaded, f"kind,sap_code,bill_id\naccount,6100,{BILL_6100}\n"))
    assert mapped(loaded) == {"6100": BILL_6100} and mapped(other_tenant) == {}


@pytest.mark.django_db
def test_tenant_viewer_can_neither_import_nor_run_actions(client, loaded):
    viewer = staff_client(client, loaded, "viewer")
    assert viewer.get(reverse("admin:mappings_sapaccount_import")).status_code == 403
    page = viewer.get(ACCOUNTS_URL)
    assert page.status_code == 200 and "propose_mappings" not in page.content.decode()
    response = viewer.post(ACCOUNTS_URL, {"action": "propose_mappings", "apply": "yes", "proposal": ["x"],
                                          ACTION_CHECKBOX_NAME: [account(loaded, "6100").pk]})
    assert response.status_code in (200, 302)
    assert mapped(loaded) == {}


@pytest.mark.django_db
def test_tenant_viewer_sees_the_candidates_but_cannot_decide(client, conn):
    align(conn)
    held = VendorLink.objects.get(connection=conn, card_code="V1003")
    viewer = staff_client(client, conn, "viewer")
    page = viewer.get(change_url(held)).content.decode()
    assert GLOBEX_EAST in page and "west@globex.example" in page and 'value="create"' not in page
    assert viewer.post(change_url(held), {"resolution": f"link:{GLOBEX_EAST}"}).status_code == 403
    held.refresh_from_db()
    assert held.status == "review"
