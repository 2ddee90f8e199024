"""Tenant isolation in the admin: every admin model × list/change/delete/history/action/export × own/other tenant.

alice edits tenant A, bob only views tenant A, charlie edits tenant B and must never see or touch A's data;
the operator (superuser) sees everything.
"""

import datetime as dt
from decimal import Decimal

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.test import Client
from django.urls import NoReverseMatch, reverse

from connector.connections import apply_connection
from connector.models import Membership
from connector.tenancy import TenantScopedAdmin, tenant_q
from tests.conftest import connection_file


def _factories():
    """How to make one row of each tenant-owned model for a connection (every scoped admin needs one)."""
    from audit.models import AuditEvent
    from connector.models import InvoiceRecord, PaymentRecord, SyncRun, WebhookEvent
    from mappings import models as m

    def bill_account(conn, n):
        return m.BillAccount.objects.create(connection=conn, bill_id=f"0caX{conn.pk}{n}", number=f"61{n}", name=f"Acct {n}")

    def bill_department(conn, n):
        return m.BillDepartment.objects.create(connection=conn, bill_id=f"0deX{conn.pk}{n}", name=f"Dept {n}")

    made = {
        "Tenant": lambda conn, n: conn.tenant,
        "Connection": lambda conn, n: conn,
        "SyncRun": lambda conn, n: SyncRun.objects.create(connection=conn, steps="bills", status="ok"),
        "InvoiceRecord": lambda conn, n: InvoiceRecord.objects.create(
            connection=conn, doc_entry=100 + n, doc_num=str(300 + n), card_code="V1", status="held",
            last_error="SAP account 6900 has no BILL mapping", doc_total=Decimal("10.00"), doc_date=dt.date(2026, 1, 2)),
        "PaymentRecord": lambda conn, n: PaymentRecord.objects.create(
            connection=conn, bill_payment_id=f"stp{conn.pk}{n}", status="failed", amount=Decimal("5.00")),
        "WebhookEvent": lambda conn, n: WebhookEvent.objects.create(
            connection=conn, event_id=f"evt-{conn.pk}-{n}", event_type="payment.updated", status="failed"),
        "AuditEvent": lambda conn, n: AuditEvent.objects.create(
            connection=conn, record_type="invoicerecord", record_id="1", kind="outcome", message="x"),
        "BillAccount": bill_account,
        "BillDepartment": bill_department,
        "SapAccount": lambda conn, n: m.SapAccount.objects.create(
            connection=conn, code=f"69{n}", format_code=f"69{n}", name="Insurance", bill_account=bill_account(conn, n + 50)),
        "SapCostCenter": lambda conn, n: m.SapCostCenter.objects.create(
            connection=conn, code=f"CC{n}", name="Admin", bill_department=bill_department(conn, n + 50)),
        "SapTaxCode": lambda conn, n: m.SapTaxCode.objects.create(connection=conn, code=f"T{n}", tax_account="1450"),
        "SapExpenseType": lambda conn, n: m.SapExpenseType.objects.create(connection=conn, code=f"{n}", expense_account="5100"),
        "ReferenceRefresh": lambda conn, n: m.ReferenceRefresh.objects.get_or_create(connection=conn)[0],
        "VendorLink": lambda conn, n: m.VendorLink.objects.create(
            connection=conn, card_code=f"V{n}", card_name="Globex", status="review",
            candidates=[{"id": "009A", "name": "Globex"}]),
    }
    for bill_name, sap_name, target in (("BillLocation", "SapLocationMapping", "bill_location"),
                                        ("BillClass", "SapClassMapping", "bill_class"),
                                        ("BillJob", "SapJobMapping", "bill_job")):
        bill_model, sap_model = getattr(m, bill_name), getattr(m, sap_name)

        def bill_row(conn, n, bill_model=bill_model):
            return bill_model.objects.create(connection=conn, bill_id=f"X{bill_model.__name__}{conn.pk}{n}", name=f"D {n}")

        made[bill_name] = bill_row
        made[sap_name] = (lambda conn, n, sap_model=sap_model, target=target, bill_row=bill_row:
                          sap_model.objects.create(connection=conn, code=f"R{n}", name="Region", source="dimension2",
                                                   **{target: bill_row(conn, n + 50)}))
    from connector.models import AttachmentRecord, CreditMemoRecord

    made["CreditMemoRecord"] = lambda conn, n: CreditMemoRecord.objects.create(
        connection=conn, doc_entry=500 + n, doc_num=str(500 + n), card_code="V1", status="held",
        last_error="SAP account 6900 has no BILL mapping", doc_total=Decimal("4.00"))
    made["AttachmentRecord"] = lambda conn, n: AttachmentRecord.objects.create(
        connection=conn, invoice=made["InvoiceRecord"](conn, n + 50), attachment_entry=n, file_name=f"f{n}.pdf",
        status="refused", last_error="too large")
    try:
        from audit.models import ReplayJob

        made["ReplayJob"] = lambda conn, n: ReplayJob.objects.create(
            connection=conn, record_type="invoicerecord", record_ids=[1])
    except ImportError:
        pass
    made.update(_reconcile_and_alert_factories())
    return made


def _reconcile_and_alert_factories():
    """Rows of the reconcile and alerts apps (their own admins are tenant-scoped too)."""
    from reconcile.models import Difference, ReconcileSetting, ReconciliationRun

    def run(conn, n):
        return ReconciliationRun.objects.create(connection=conn, since=dt.date(2026, 1, 1), status="differences")

    made = {
        "ReconciliationRun": run,
        "Difference": lambda conn, n: Difference.objects.create(
            run=run(conn, n), connection=conn, kind="amount", key=f"amount:{n}", sap_amount=Decimal("1.00"),
            bill_amount=Decimal("2.00"), action="check"),
        "ReconcileSetting": lambda conn, n: ReconcileSetting.objects.get_or_create(connection=conn)[0],
    }
    try:
        from alerts import models as a
    except ImportError:
        return made
    made.update({
        "AlertRecipient": lambda conn, n: a.AlertRecipient.objects.create(tenant=conn.tenant, email=f"ap{n}@example.com"),
        "AlertPolicy": lambda conn, n: a.AlertPolicy.objects.get_or_create(tenant=conn.tenant)[0],
        "Alert": lambda conn, n: a.Alert.objects.create(tenant=conn.tenant, connection=conn, category="problem",
                                                        key=f"k{n}", title="t"),
        "ConnectionHealth": lambda conn, n: a.ConnectionHealth.objects.get_or_create(connection=conn)[0],
        "Notification": lambda conn, n: a.Notification.objects.create(tenant=conn.tenant, connection=conn,
                                                                      category="problem", subject="s", recipients="r",
                                                                      body="b"),
    })
    return made


SCOPED = [(model, model_admin) for model, model_admin in admin.site._registry.items()
          if isinstance(model_admin, TenantScopedAdmin)]


def url(model, view, *args):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def world(db):
    conns = {}
    for tenant in ("tenant-a", "tenant-b"):
        conns[tenant], _ = apply_connection(connection_file("http://sap.test:50000", "http://bill.test", tenant=tenant,
                                                            name="prod"))
    users = {}
    for name, tenant, role in (("alice", "tenant-a", "editor"), ("bob", "tenant-a", "viewer"),
                               ("charlie", "tenant-b", "editor")):
        user = User.objects.create_user(name, password="pw", is_staff=True)
        Membership.objects.create(user=user, tenant=conns[tenant].tenant, role=role)
        users[name] = user
    users["operator"] = User.objects.create_superuser("operator", password="pw")
    rows = {}
    factories = _factories()
    for model, _ in SCOPED:
        make = factories[model.__name__]
        rows[model] = {tenant: make(conn, i) for i, (tenant, conn) in enumerate(conns.items(), start=1)}
    return {"conns": conns, "users": users, "rows": rows}


def client_for(user):
    client = Client()
    client.force_login(user)
    return client


def test_every_tenant_owned_model_in_the_admin_is_scoped():
    for model, model_admin in admin.site._registry.items():
        names = {f.name for f in model._meta.get_fields()}
        if "connection" in names or "tenant" in names or model.__name__ == "Tenant":
            if model.__name__ == "Membership":
                continue  # operators only, checked below
            assert isinstance(model_admin, TenantScopedAdmin), f"{model.__name__} admin is not tenant-scoped"
    assert set(_factories()) >= {m.__name__ for m, _ in SCOPED}


@pytest.mark.parametrize("model,model_admin", SCOPED, ids=[m.__name__ for m, _ in SCOPED])
def test_other_tenants_rows_are_invisible_and_untouchable(world, model, model_admin):
    own, other = world["rows"][model]["tenant-b"], world["rows"][model]["tenant-a"]
    charlie = client_for(world["users"]["charlie"])
    listing = charlie.get(url(model, "changelist"))
    assert listing.status_code == 200
    shown = set(listing.context["cl"].queryset.values_list("pk", flat=True))
    assert own.pk in shown and other.pk not in shown
    for view in ("change", "delete", "history"):
        assert charlie.get(url(model, view, other.pk)).status_code == 404, view
    assert charlie.post(url(model, "change", other.pk), {}).status_code == 404
    assert charlie.post(url(model, "delete", other.pk), {"post": "yes"}).status_code == 404
    assert model.objects.filter(pk=other.pk).exists()
    assert charlie.get(url(model, "change", own.pk)).status_code == 200
    # Actions only ever see the user's own rows, whatever ids are posted.
    for action in model_admin.get_actions(_request(world["users"]["charlie"])):
        answer = charlie.post(url(model, "changelist"), {"action": action, "_selected_action": [other.pk]})
        assert answer.status_code in (200, 302)
    assert model.objects.filter(pk=other.pk).exists()
    # Exports (import-export) are built from the same scoped queryset.
    try:
        export = url(model, "export")
    except NoReverseMatch:
        export = None
    if export:
        answer = charlie.post(export, {"format": "0", "export_items": [other.pk, own.pk]})
        if answer.status_code == 200 and answer.get("Content-Disposition"):
            assert str(other.pk) not in _csv_ids(answer.content) or model.__name__ in ("Tenant",)


def _csv_ids(content):
    return {line.split(",")[0] for line in content.decode(errors="replace").splitlines()[1:]}


def _request(user):
    from django.test import RequestFactory

    request = RequestFactory().get("/admin/")
    request.user = user
    return request


@pytest.mark.parametrize("model,model_admin", SCOPED, ids=[m.__name__ for m, _ in SCOPED])
def test_viewer_reads_but_cannot_change_and_operator_sees_all(world, model, model_admin):
    own = world["rows"][model]["tenant-a"]
    bob = client_for(world["users"]["bob"])
    assert bob.get(url(model, "change", own.pk)).status_code == 200
    assert not model_admin.has_change_permission(_request(world["users"]["bob"]), own)
    assert not model_admin.has_delete_permission(_request(world["users"]["bob"]), own)
    assert bob.post(url(model, "delete", own.pk), {"post": "yes"}).status_code == 403
    assert model.objects.filter(pk=own.pk).exists()
    operator = client_for(world["users"]["operator"])
    listing = operator.get(url(model, "changelist"))
    shown = set(listing.context["cl"].queryset.values_list("pk", flat=True))
    assert {r.pk for r in world["rows"][model].values()} <= shown


def test_staff_without_membership_see_nothing(world):
    loner = User.objects.create_user("loner", password="pw", is_staff=True)
    client = client_for(loner)
    for model, _ in SCOPED:
        assert client.get(url(model, "changelist")).status_code == 403


def test_foreign_key_pickers_and_filters_list_only_own_connections(world):
    from connector.models import InvoiceRecord

    charlie = client_for(world["users"]["charlie"])
    page = charlie.get(url(InvoiceRecord, "changelist")).content.decode()
    assert "tenant-a" not in page  # (a one-choice filter is not even shown)
    model_admin = admin.site._registry[InvoiceRecord]
    field = model_admin.formfield_for_foreignkey(InvoiceRecord._meta.get_field("connection"),
                                                 _request(world["users"]["charlie"]))
    assert list(field.queryset) == [world["conns"]["tenant-b"]]


def test_status_page_of_another_tenants_connection_is_404(world):
    charlie = client_for(world["users"]["charlie"])
    own, other = world["conns"]["tenant-b"], world["conns"]["tenant-a"]
    assert charlie.get(reverse("admin:connector_connection_status", args=[own.pk])).status_code == 200
    assert charlie.get(reverse("admin:connector_connection_status", args=[other.pk])).status_code == 404
    problems = charlie.get(reverse("admin:connector_connection_problems")).content.decode()
    assert "tenant-b" in problems and "tenant-a" not in problems


def test_tenant_q_covers_every_scoped_model(world):
    tenant = world["conns"]["tenant-a"].tenant
    for model, _ in SCOPED:
        assert tenant_q(model, tenant) is not None


def test_record_page_replay_refuses_other_tenants_and_viewers(world):
    from connector.models import InvoiceRecord

    other = world["rows"][InvoiceRecord]["tenant-a"]
    replay_url = reverse("admin:connector_invoicerecord_replay", args=[other.pk])
    assert client_for(world["users"]["charlie"]).post(replay_url).status_code == 404
    assert client_for(world["users"]["bob"]).post(replay_url).status_code == 403
    assert client_for(world["users"]["alice"]).get(replay_url).status_code == 405
