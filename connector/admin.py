"""Admin screens for tenants, connections and sync runs. Thin: the work happens in connections.py / sync."""

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.utils.html import format_html

from .connections import ping_connection, webhook_url
from .models import Connection, SyncRun, Tenant

SECRET_FIELDS = ("sap_password", "bill_password", "bill_dev_key", "bill_webhook_security_key")


class ConnectionForm(forms.ModelForm):
    """Secrets are write-only: never rendered back; leaving a box empty keeps the stored value."""

    class Meta:
        model = Connection
        fields = (
            "tenant", "name", "enabled", "sap_base_url", "sap_company_db", "sap_username", "sap_password",
            "sap_verify_tls", "sap_ca_bundle", "sap_payment_account", "invoice_extra_filter", "bill_base_url",
            "bill_events_base_url", "bill_username", "bill_password", "bill_organization_id", "bill_dev_key",
            "bill_webhook_security_key", "bill_webhook_subscription_id", "schedule_minutes", "schedule_cron", "sync_from",
        )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        editing = self.instance.pk is not None
        for name in SECRET_FIELDS:
            field = self.fields[name]
            self.fields[name] = forms.CharField(
                label=field.label, required=not editing and name != "bill_webhook_security_key",
                widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
                help_text="Stored encrypted. Leave empty to keep the current value." if editing else "Stored encrypted.",
            )
            self.initial[name] = ""

    def clean(self):
        data = super().clean()
        if self.instance.pk is not None:
            for name in SECRET_FIELDS:
                if not data.get(name):
                    data[name] = getattr(self.instance, name)
        return data


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "connection_count", "created_at")
    search_fields = ("slug", "name")

    @admin.display(description="connections")
    def connection_count(self, obj):
        return obj.connections.count()


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
    form = ConnectionForm
    list_display = ("name", "tenant", "enabled", "sap_company_db", "bill_organization_id", "schedule", "last_run")
    list_filter = ("enabled", "tenant")
    search_fields = ("name", "tenant__slug", "sap_company_db", "bill_organization_id")
    readonly_fields = ("webhook_url_display", "created_at", "updated_at")
    actions = ["test_connection"]
    fieldsets = (
        (None, {"fields": ("tenant", "name", "enabled")}),
        ("SAP Business One", {"fields": (
            "sap_base_url", "sap_company_db", "sap_username", "sap_password", "sap_verify_tls", "sap_ca_bundle",
            "sap_payment_account", "invoice_extra_filter",
        )}),
        ("BILL", {"fields": (
            "bill_base_url", "bill_events_base_url", "bill_username", "bill_password", "bill_organization_id",
            "bill_dev_key", "bill_webhook_security_key", "bill_webhook_subscription_id", "webhook_url_display",
        )}),
        ("Polling", {"fields": ("schedule_minutes", "schedule_cron", "sync_from")}),
        ("Record", {"fields": ("created_at", "updated_at")}),
    )

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

    @admin.action(description="Test connection (log in to SAP and BILL)", permissions=["view"])
    def test_connection(self, request, queryset):
        results = []
        for conn in queryset:
            outcome = ping_connection(conn)
            results.append({"connection": conn, "sides": [(side.upper(), *outcome[side]) for side in ("sap", "bill")]})
            for side, (ok, words) in outcome.items():
                level = messages.SUCCESS if ok else messages.ERROR
                self.message_user(request, f"{conn} – {side.upper()}: {'ok' if ok else 'failed'}: {words}", level)
        return TemplateResponse(
            request, "admin/connector/test_connection.html",
            {**self.admin_site.each_context(request), "results": results, "title": "Test connection",
             "opts": self.model._meta},
        )


@admin.register(SyncRun)
class SyncRunAdmin(admin.ModelAdmin):
    list_display = ("connection", "steps", "trigger", "dry_run", "started_at", "finished_at", "status")
    list_filter = ("status", "trigger", "connection")
    readonly_fields = [f.name for f in SyncRun._meta.fields]

    def has_add_permission(self, request):
        return False
