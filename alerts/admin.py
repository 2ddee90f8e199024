"""Admin: each tenant's alert recipients and thresholds (editable by its editors), the alerts and mails sent,
and each connection's failure streak. Scoped per tenant."""

from django.contrib import admin

from connector.tenancy import TenantScopedAdmin

from .models import Alert, AlertPolicy, AlertRecipient, ConnectionHealth, Notification


@admin.register(AlertRecipient)
class AlertRecipientAdmin(TenantScopedAdmin):
    tenant_can_add = tenant_can_change = tenant_can_delete = True
    list_display = ("email", "name", "tenant", "immediate", "daily_digest", "active")
    list_filter = ("immediate", "daily_digest", "active", "tenant")
    search_fields = ("email", "name")


@admin.register(AlertPolicy)
class AlertPolicyAdmin(TenantScopedAdmin):
    tenant_can_add = tenant_can_change = True
    list_display = ("tenant", "warn_after", "pause_after", "problems", "reconciliation")


class ReadOnlyAdmin(TenantScopedAdmin):
    tenant_can_change = False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ("title", "connection", "category", "status", "count", "opened_at", "notified_at", "resolved_at",
                    "times_opened")
    list_filter = ("status", "category", "connection")
    search_fields = ("title", "detail")


@admin.register(ConnectionHealth)
class ConnectionHealthAdmin(ReadOnlyAdmin):
    list_display = ("connection", "consecutive_failures", "paused_at", "resumed_at", "last_error")
    list_filter = ("connection",)


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ("subject", "tenant", "category", "recipients", "sent_at", "error")
    list_filter = ("category", "tenant")
    search_fields = ("subject", "body")
