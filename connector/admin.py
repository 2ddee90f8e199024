"""Admin screens: tenants, connections (with a status page), invoices, payments, webhook events, sync runs.

Thin: the work happens in connections.py, sync/*, audit/*. Every tenant-owned screen is scoped by
TenantScopedAdmin (tenancy.py).
"""

from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.db.models import Count
from django.db.models.functions import TruncDate
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from audit.admin_actions import ReplayButtonMixin
from audit.problems import grouped_problems
from audit.trail import timeline

from .connections import TestRefused, request_connection_test, webhook_url
from .models import Connection, InvoiceRecord, Membership, PaymentRecord, SyncRun, Tenant, WebhookEvent
from .status import connection_overview
from .tenancy import TenantScopedAdmin, is_editor, is_operator, plain_error, shown_error

SECRET_FIELDS = Connection.SECRET_FIELDS


def replay_action():
    """The shared 'Replay the failed step' action (audit app), if installed."""
    try:
        from audit.admin_actions import replay_selected
    except ImportError:
        return []
    return [replay_selected]


class TimelineMixin:
    """Shows a record's audit timeline on its page."""

    @admin.display(description="timeline")
    def timeline_display(self, obj):
        if obj is None or obj.pk is None:
            return "-"
        events = list(timeline(obj).order_by("-created_at", "-id")[:200])
        return mark_safe(render_to_string("admin/audit/timeline.html", {"events": events}))  # noqa: S308 - template escapes


class ConnectionForm(forms.ModelForm):
    """Secrets are write-only: never rendered back; leaving a box empty keeps the stored value."""

    class Meta:
        model = Connection
        fields = (
            "tenant", "name", "enabled", "sap_base_url", "sap_company_db", "sap_username", "sap_password",
            "sap_verify_tls", "sap_ca_bundle", "sap_payment_account", "invoice_extra_filter", "bill_base_url",
            "bill_events_base_url", "bill_username", "bill_password", "bill_organization_id", "bill_dev_key",
            "bill_webhook_security_key", "bill_webhook_subscription_id", "cancel_sap_payment_on_void",
            "schedule_minutes", "schedule_cron", "sync_from", "allow_private_network",
        )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        editing = self.instance.pk is not None
        for name in SECRET_FIELDS:
            if name not in self.fields:
                continue
            field = self.fields[name]
            state = self.instance.secret_state(name) if editing else "not set"
            self.fields[name] = forms.CharField(
                label=field.label, required=not editing and name != "bill_webhook_security_key",
                widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
                help_text=(f"Currently {state}. Stored encrypted, never shown. Leave empty to keep the current value."
                           if editing else "Stored encrypted, never shown."),
            )
            self.initial[name] = ""

    def clean(self):
        data = super().clean()
        if self.instance.pk is not None:
            for name in SECRET_FIELDS:
                if name in self.fields and not data.get(name):
                    data[name] = getattr(self.instance, name)
        return data


@admin.register(Tenant)
class TenantAdmin(TenantScopedAdmin):
    list_display = ("slug", "name", "connection_count", "created_at")
    search_fields = ("slug", "name")
    tenant_can_change = False

    @admin.display(description="connections")
    def connection_count(self, obj):
        return obj.connections.count()


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    """Who belongs to which tenant, with which role. Host operators only."""

    list_display = ("user", "tenant", "role")
    list_filter = ("role", "tenant")
    autocomplete_fields = ("user",)

    def has_module_permission(self, request):
        return is_operator(request.user)

    has_view_permission = has_change_permission = has_add_permission = has_delete_permission = (
        lambda self, request, obj=None: is_operator(request.user))


def _secret_state_display(name, label):
    @admin.display(description=label)
    def show(self, obj):
        return obj.secret_state(name) if obj is not None and obj.pk else "not set"

    show.__name__ = f"{name}_state"
    return show


@admin.register(Connection)
class ConnectionAdmin(TenantScopedAdmin):
    """Editors change their own tenant's connection settings (secrets write-only); the tenant and
    `allow_private_network` are the host operator's. Nobody is ever shown a stored secret: "set, last changed …"."""

    form = ConnectionForm
    tenant_can_change = True
    list_display = ("name", "tenant", "enabled", "sap_company_db", "bill_organization_id", "schedule", "last_run",
                    "status_link")
    list_filter = ("enabled", "tenant")
    search_fields = ("name", "tenant__slug", "sap_company_db", "bill_organization_id")
    readonly_fields = ("webhook_url_display", "previous_key_state", "last_test_display", "created_at", "updated_at",
                       *(f"{name}_state" for name in SECRET_FIELDS))
    actions = ["test_connection", "sync_now", "refresh_reference"]
    for _name in SECRET_FIELDS:
        locals()[f"{_name}_state"] = _secret_state_display(_name, Connection._meta.get_field(_name).verbose_name)
    del _name
    fieldsets = (
        (None, {"fields": ("tenant", "name", "enabled", "allow_private_network", "last_test_display")}),
        ("SAP Business One", {"fields": (
            "sap_base_url", "sap_company_db", "sap_username", "sap_password", "sap_verify_tls", "sap_ca_bundle",
            "sap_payment_account", "invoice_extra_filter",
        )}),
        ("BILL", {"fields": (
            "bill_base_url", "bill_events_base_url", "bill_username", "bill_password", "bill_organization_id",
            "bill_dev_key", "bill_webhook_security_key", "previous_key_state", "bill_webhook_subscription_id",
            "webhook_url_display", "cancel_sap_payment_on_void",
        )}),
        ("Polling", {"fields": ("schedule_minutes", "schedule_cron", "sync_from")}),
        ("Record", {"fields": ("created_at", "updated_at")}),
    )

    def get_fieldsets(self, request, obj=None):
        """Where the user cannot edit, each secret is shown only as its state (a read-only field would show it)."""
        fieldsets = super().get_fieldsets(request, obj)
        editable = self.has_change_permission(request, obj) if obj is not None else self.has_add_permission(request)
        if editable:
            return fieldsets
        return [(title, {**opts, "fields": [f"{f}_state" if f in SECRET_FIELDS else f for f in opts["fields"]]})
                for title, opts in fieldsets]

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if not is_operator(request.user):
            readonly.append("allow_private_network")  # operator-only (or the connection file)
            if obj is not None:
                readonly.append("tenant")  # editors never move a connection to another tenant
        return readonly

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        leaked = set(SECRET_FIELDS) & set(self.get_readonly_fields(request, obj))
        assert not leaked, f"secret fields must never be read-only fields (they would be displayed): {leaked}"
        return form

    URL_FIELDS = ("sap_base_url", "bill_base_url", "bill_events_base_url")

    def save_model(self, request, obj, form, change):
        """The operator allowed private addresses for the URLs they saw: an editor who changes a URL loses that."""
        if change and obj.allow_private_network and not is_operator(request.user) and \
                set(self.URL_FIELDS) & set(form.changed_data):
            obj.allow_private_network = False
            self.message_user(request, "The server address changed, so private network addresses are no longer "
                                       "allowed for this connection: ask your host operator to allow them again.",
                              messages.WARNING)
        super().save_model(request, obj, form, change)

    @admin.display(description="previous webhook security key")
    def previous_key_state(self, obj):
        until = obj.bill_webhook_previous_key_until if obj is not None else None
        if obj is None or not obj.previous_webhook_key():
            return "none accepted"
        return f"set, still accepted until {until:%Y-%m-%d %H:%M} UTC"

    @admin.display(description="last connection test")
    def last_test_display(self, obj):
        test = (obj.last_test or {}) if obj is not None else {}
        if not test.get("sides"):
            return "never tested"
        from datetime import datetime

        sides = format_html_join(", ", "{}: {} ({})", (
            (side.upper(), "ok" if r.get("ok") else "failed", r.get("words", "")) for side, r in test["sides"].items()))
        return format_html("{} UTC by {}: {}", f"{datetime.fromisoformat(test['at']):%Y-%m-%d %H:%M}",
                           test.get("by") or "?", sides)

    def get_urls(self):
        return [
            path("<int:pk>/status/", self.admin_site.admin_view(self.status_view), name="connector_connection_status"),
            path("problems/", self.admin_site.admin_view(self.problems_view), name="connector_connection_problems"),
        ] + super().get_urls()

    @admin.display(description="webhook URL")
    def webhook_url_display(self, obj):
        return webhook_url(obj) if obj.pk else "(saved connections get one)"

    @admin.display(description="schedule")
    def schedule(self, obj):
        return f"cron {obj.schedule_cron}" if obj.schedule_cron else f"every {obj.schedule_minutes} min"

    @admin.display(description="last run")
    def last_run(self, obj):
        run = obj.sync_runs.exclude(status=SyncRun.Status.RUNNING).first()
        if not run:
            return "never"
        return format_html("{} ({})", run.started_at.strftime("%Y-%m-%d %H:%M"), run.get_status_display())

    @admin.display(description="status page")
    def status_link(self, obj):
        return format_html('<a href="{}">status</a>', reverse("admin:connector_connection_status", args=[obj.pk]))

    @admin.action(description="Test connection (log in to SAP and BILL, in the task queue)", permissions=["test"])
    def test_connection(self, request, queryset):
        """Queued (short timeouts), one at a time per connection, rate-limited; the result lands on the
        connection (shown here at once when the queue was quick, else on the connection's page)."""
        results = []
        for conn in queryset[:20]:
            asked = timezone.now().isoformat()
            try:
                request_connection_test(conn, request.user.get_username())
            except TestRefused as exc:
                self.message_user(request, str(exc), messages.WARNING)
                continue
            conn.refresh_from_db(fields=["last_test"])
            test = conn.last_test or {}
            if test.get("at", "") < asked:
                self.message_user(request, format_html(
                    '{}: test queued; the result appears on <a href="{}">the connection\'s page</a> within a minute.',
                    conn, reverse("admin:connector_connection_change", args=[conn.pk])), messages.INFO)
                continue
            sides = [(side.upper(), r["ok"], r["words"]) for side, r in test["sides"].items()]
            results.append({"connection": conn, "sides": sides})
            for side, ok, words in sides:
                level = messages.SUCCESS if ok else messages.ERROR
                self.message_user(request, f"{conn} – {side}: {'ok' if ok else 'failed'}: {words}", level)
        if not results:
            return None
        return TemplateResponse(request, "admin/connector/test_connection.html", {
            **self.admin_site.each_context(request), "results": results, "title": "Test connection",
            "opts": self.model._meta})

    def has_test_permission(self, request):
        """Editors and operators; a viewer only reads (a test logs in to both systems)."""
        return is_operator(request.user) or is_editor(request)

    def _run(self, request, queryset, steps, label):
        from connector.sync.runner import AlreadyRunning, run_sync

        for conn in queryset:
            try:
                run = run_sync(conn, steps, trigger="person", actor=request.user.get_username())
            except AlreadyRunning as exc:
                self.message_user(request, str(exc), messages.WARNING)
                continue
            level = messages.ERROR if run.status == SyncRun.Status.FAILED else messages.SUCCESS
            detail = run.error.splitlines()[-1] if run.error else run.summary
            self.message_user(request, f"{conn}: {label} {run.get_status_display()}: {detail}", level)

    @admin.action(description="Sync now (all steps, in the task queue)", permissions=["sync"])
    def sync_now(self, request, queryset):
        from django_q.tasks import async_task

        for conn in queryset:
            async_task("connector.tasks.run_sync_now", conn.pk, request.user.get_username(), task_name=f"sync-now-{conn.pk}")
            self.message_user(request, format_html(
                "{}: sync queued; its outcome appears under <a href=\"{}\">Sync runs</a> and on the status page.", conn,
                reverse("admin:connector_syncrun_changelist") + f"?connection__id__exact={conn.pk}"), messages.SUCCESS)

    @admin.action(description="Refresh reference data (accounts, cost centers, departments)", permissions=["sync"])
    def refresh_reference(self, request, queryset):
        self._run(request, queryset, ["reference"], "reference refresh")

    def has_sync_permission(self, request):
        """Editors may start a sync of their own tenant's connections; viewers may not."""
        return is_operator(request.user) or is_editor(request)

    def status_view(self, request, pk):
        conn = get_object_or_404(self.get_queryset(request), pk=pk)  # another tenant's id: 404
        overview = connection_overview(conn)
        from django_q.models import Schedule

        schedule = Schedule.objects.filter(name=f"sync:{conn.pk}").first()
        since = timezone.now() - timedelta(days=30)
        per_day = {}
        for model, field, label in ((InvoiceRecord, "synced_at", "bills"), (PaymentRecord, "updated_at", "payments")):
            qs = model.objects.filter(connection=conn, **{f"{field}__gte": since})
            if model is PaymentRecord:
                qs = qs.filter(status="posted")
            for row in qs.annotate(day=TruncDate(field)).values("day").annotate(n=Count("pk")):
                per_day.setdefault(row["day"], {"bills": 0, "payments": 0})[label] = row["n"]
        days = [timezone.localdate() - timedelta(days=n) for n in range(29, -1, -1)]
        chart = [{"day": d, **per_day.get(d, {"bills": 0, "payments": 0})} for d in days]
        peak = max([c["bills"] + c["payments"] for c in chart] + [1])
        for n, bar in enumerate(chart):  # SVG geometry: 100 px for the busiest day, baseline at y=120
            bar["x"] = n * 20
            bar["hb"] = round(bar["bills"] * 100 / peak, 1)
            bar["hp"] = round(bar["payments"] * 100 / peak, 1)
            bar["yb"] = 120 - bar["hb"]
            bar["yp"] = bar["yb"] - bar["hp"]
            bar["label"] = n % 5 == 0
        from audit.models import AuditEvent

        activity = AuditEvent.objects.filter(connection=conn, kind__in=["outcome", "change"]).order_by("-created_at")[:25]
        context = {
            **self.admin_site.each_context(request), "opts": self.model._meta, "title": f"Status of {conn}",
            "conn": conn, "overview": overview, "runs": conn.sync_runs.all()[:10], "schedule": schedule,
            "problems": grouped_problems([conn])[:30], "chart": chart, "peak": peak, "activity": activity,
        }
        return TemplateResponse(request, "admin/connector/status.html", context)

    def problems_view(self, request):
        connections = list(self.get_queryset(request))
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "title": "Open problems",
                   "problems": grouped_problems(connections)}
        return TemplateResponse(request, "admin/connector/problems.html", context)


class RecordAdmin(ReplayButtonMixin, TimelineMixin, TenantScopedAdmin):
    """Shared shape of synced-record admins: read-only data, a timeline, replay."""

    tenant_can_change = True  # editors may replay; fields themselves are read-only

    def get_actions(self, request):
        actions = super().get_actions(request)
        for func in replay_action():
            if self.has_change_permission(request):
                actions[func.__name__] = (func, func.__name__, func.short_description)
        return actions

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields] + ["timeline_display"]


@admin.register(InvoiceRecord)
class InvoiceRecordAdmin(RecordAdmin):
    list_display = ("doc_num", "card_code", "card_name", "invoice_number", "doc_total", "branch", "status", "bill_link",
                    "short_error", "updated_at")
    list_filter = ("status", "next_step", "sap_state", "connection", "branch_name", "updated_at")
    search_fields = ("doc_num", "card_code", "card_name", "invoice_number", "bill_id", "last_error")
    date_hierarchy = "updated_at"
    fieldsets = (
        (None, {"fields": ("connection", "status", "next_step", "last_error", "attempts")}),
        ("SAP invoice", {"fields": ("doc_entry", "doc_num", "card_code", "card_name", "invoice_number", "doc_date",
                                    "due_date", "currency", "doc_total", "branch_id", "branch_name", "sap_state",
                                    "sap_updated")}),
        ("BILL bill", {"fields": ("bill_id", "bill_payment_status", "synced_at", "coded")}),
        ("History", {"fields": ("timeline_display",)}),
        ("Raw", {"classes": ["collapse"], "fields": ("document", "coded_hash", "synced_hash", "create_attempted_at")}),
    )

    @admin.display(description="SAP branch", ordering="branch_id")
    def branch(self, obj):
        return f"{obj.branch_id} {obj.branch_name}".strip() if obj.branch_id is not None else "-"

    @admin.display(description="BILL bill", ordering="bill_id")
    def bill_link(self, obj):
        return obj.bill_id or "-"

    @admin.display(description="what to do")
    def short_error(self, obj):
        return (obj.last_error[:120] + "…") if len(obj.last_error) > 120 else obj.last_error


@admin.register(PaymentRecord)
class PaymentRecordAdmin(RecordAdmin):
    list_display = ("bill_payment_id", "card_code", "amount", "process_date", "bill_status", "status", "sap_doc_num",
                    "last_error", "updated_at")
    list_filter = ("status", "connection", "updated_at")
    search_fields = ("bill_payment_id", "card_code", "sap_doc_num", "last_error")
    fieldsets = (
        (None, {"fields": ("connection", "status", "last_error", "attempts")}),
        ("BILL payment", {"fields": ("bill_payment_id", "vendor_id", "amount", "process_date", "bill_status",
                                     "allocations")}),
        ("SAP outgoing payment", {"fields": ("card_code", "sap_doc_entry", "sap_doc_num", "post_attempted_at")}),
        ("History", {"fields": ("timeline_display",)}),
    )


@admin.register(WebhookEvent)
class WebhookEventAdmin(RecordAdmin):
    list_display = ("event_type", "entity_id", "event_id", "received_at", "status", "signed_with", "last_error")
    list_filter = ("status", "event_type", "connection")
    search_fields = ("event_id", "entity_id")


@admin.register(SyncRun)
class SyncRunAdmin(TenantScopedAdmin):
    list_display = ("connection", "steps", "trigger", "dry_run", "started_at", "finished_at", "status", "summary_text")
    list_filter = ("status", "trigger", "connection")
    tenant_can_change = False

    def get_fields(self, request, obj=None):
        # tenant staff read plain words, never a traceback; operators the whole text; both with credentials redacted
        shown = "error_text" if is_operator(request.user) else "error_words"
        return [shown if f.name == "error" else f.name for f in SyncRun._meta.fields]

    def get_readonly_fields(self, request, obj=None):
        return [*(f.name for f in SyncRun._meta.fields), "error_words", "error_text"]

    @admin.display(description="error")
    def error_words(self, obj):
        return plain_error(obj.error)

    @admin.display(description="error")
    def error_text(self, obj):
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', shown_error(obj.error))


from . import admin_documents  # noqa: E402,F401  (credit memos and attachments: registered there)
