"""Admin: the reconciliation page of each connection (latest run, differences by kind, CSV, "Reconcile now"),
the run history, and the per-connection daily switch. Scoped per tenant like every other screen."""

import io

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from connector.models import Connection
from connector.tenancy import TenantScopedAdmin, is_editor, is_operator, tenant_q, user_tenant

from .csvexport import write_csv
from .models import Difference, ReconcileSetting, ReconciliationRun
from .views import grouped, latest_run, record_link, state


def visible_connections(request):
    qs = Connection.objects.select_related("tenant")
    if is_operator(request.user):
        return qs
    tenant = user_tenant(request)
    return qs.filter(tenant_q(Connection, tenant)) if tenant else qs.none()


def may_reconcile(request):
    return is_operator(request.user) or is_editor(request)


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(TenantScopedAdmin):
    tenant_can_change = False
    list_display = ("connection", "started_at", "trigger", "status", "invoices", "bills", "payments",
                    "difference_count", "new_count", "sap_open", "bill_open", "page_link")
    list_filter = ("status", "trigger", "connection")
    date_hierarchy = "started_at"

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in ReconciliationRun._meta.fields]

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("connection/<int:pk>/", wrap(self.page_view), name="reconcile_connection_page"),
            path("connection/<int:pk>/now/", wrap(self.reconcile_now_view), name="reconcile_connection_now"),
            path("<int:pk>/csv/", wrap(self.csv_view), name="reconcile_run_csv"),
        ] + super().get_urls()

    @admin.display(description="page")
    def page_link(self, obj):
        return format_html('<a href="{}">differences</a>', reverse("admin:reconcile_connection_page",
                                                                   args=[obj.connection_id]) + f"?run={obj.pk}")

    def _connection(self, request, pk):
        conn = visible_connections(request).filter(pk=pk).first()
        if conn is None:
            raise Http404("No such connection")  # another tenant's id answers like no id
        return conn

    def page_view(self, request, pk):
        conn = self._connection(request, pk)
        run = None
        if request.GET.get("run", "").isdigit():
            run = ReconciliationRun.objects.filter(connection=conn, pk=int(request.GET["run"])).first()
        run = run or latest_run(conn)
        history = ReconciliationRun.objects.filter(connection=conn).order_by("-started_at")[:20]
        context = {
            **self.admin_site.each_context(request), "opts": self.model._meta, "title": f"Reconciliation of {conn}",
            "conn": conn, "run": run, "groups": grouped(run), "history": history, "panel": state(conn),
            "can_reconcile": may_reconcile(request),
        }
        return TemplateResponse(request, "admin/reconcile/page.html", context)

    def reconcile_now_view(self, request, pk):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        conn = self._connection(request, pk)
        if not may_reconcile(request):
            raise PermissionDenied("Only accounting editors may start a reconciliation.")
        from django_q.tasks import async_task

        # In the task queue, never in the web worker: reading both sides can take minutes at month-end.
        async_task("reconcile.tasks.run_reconcile_now", conn.pk, request.user.get_username(),
                   task_name=f"reconcile-now-{conn.pk}")
        self.message_user(request, f"{conn}: reconciliation queued; this page shows it when it has finished.",
                          messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:reconcile_connection_page", args=[conn.pk]))

    def csv_view(self, request, pk):
        run = ReconciliationRun.objects.filter(pk=pk, connection__in=visible_connections(request)).first()
        if run is None:
            raise Http404("No such reconciliation run")
        fh = io.StringIO()
        base = request.build_absolute_uri("/")[:-1]
        write_csv(fh, run.differences.order_by("kind", "card_code", "sap_ref"),
                  link=lambda d: (base + record_link(d)) if record_link(d) else "")
        response = HttpResponse(fh.getvalue(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = (f'attachment; filename="reconciliation-{run.connection.name}-'
                                           f'{run.started_at:%Y%m%d-%H%M}.csv"')
        return response


@admin.register(Difference)
class DifferenceAdmin(TenantScopedAdmin):
    tenant_can_change = False
    list_display = ("kind", "connection", "card_code", "sap_ref", "bill_ref", "sap_amount", "bill_amount", "is_new",
                    "expected_to_clear", "record", "action")
    list_filter = ("kind", "is_new", "expected_to_clear", "connection")
    search_fields = ("sap_ref", "bill_ref", "card_code", "action")

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in Difference._meta.fields]

    @admin.display(description="record")
    def record(self, obj):
        link = record_link(obj)
        return format_html('<a href="{}">open</a>', link) if link else "-"


@admin.register(ReconcileSetting)
class ReconcileSettingAdmin(TenantScopedAdmin):
    """Editors turn the daily reconciliation of their connections off or on again."""

    tenant_can_add = True
    tenant_can_change = True
    list_display = ("connection", "daily")
    list_filter = ("daily",)
