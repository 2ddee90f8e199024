"""Admin screens of the audit app: replay jobs (read-only; they are made by the replay action)."""

from django.contrib import admin
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join

from connector.tenancy import TenantScopedAdmin, is_operator, plain_error, shown_error

from .models import AuditEvent, ReplayJob


@admin.register(ReplayJob)
class ReplayJobAdmin(TenantScopedAdmin):
    tenant_can_change = False
    list_display = ("id", "connection", "record_type", "status", "progress", "succeeded", "failed", "requested_by",
                    "created_at")
    list_filter = ("status", "record_type", "connection")
    search_fields = ("requested_by", "connection__name", "connection__tenant__slug")
    date_hierarchy = "created_at"
    fields = ("connection", "record_type", "status", "progress", "succeeded", "failed", "nothing_to_do",
              "requested_by", "trigger", "created_at", "started_at", "finished_at", "message", "still_failing",
              "record_ids")
    readonly_fields = (*fields, "message_words", "message_text")

    def get_fields(self, request, obj=None):
        shown = "message_text" if is_operator(request.user) else "message_words"  # staff: never a traceback
        return [shown if name == "message" else name for name in self.fields]

    @admin.display(description="message")
    def message_words(self, obj):
        return plain_error(obj.message)

    @admin.display(description="message")
    def message_text(self, obj):
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', shown_error(obj.message))

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("connection", "connection__tenant")

    @admin.display(description="progress")
    def progress(self, obj):
        return f"{obj.done}/{obj.total}"

    @admin.display(description="records still failing")
    def still_failing(self, obj):
        if not obj.results:
            return "-"
        return format_html("<ul>{}</ul>", format_html_join(
            "", "<li>{}: {}</li>", ((self._record_link(item), item.get("message", "")) for item in obj.results)))

    @staticmethod
    def _record_link(item):
        from .replay import record_models

        model = record_models().get(item.get("record_type"))
        if model is None:
            return item.get("label", "")
        try:
            url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[item["record_id"]])
        except NoReverseMatch:
            return item.get("label", "")
        return format_html('<a href="{}">{}</a>', url, item.get("label", ""))

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.status in (ReplayJob.Status.QUEUED, ReplayJob.Status.RUNNING):
            return False
        return super().has_delete_permission(request, obj)


@admin.register(AuditEvent)
class AuditEventAdmin(TenantScopedAdmin):
    """Every event of every record, searchable (each record's own page shows its timeline)."""

    tenant_can_change = False
    list_display = ("created_at", "connection", "record_type", "record_id", "kind", "trigger", "actor", "summary")
    list_filter = ("kind", "trigger", "record_type", "system", "connection")
    search_fields = ("record_id", "message", "path", "actor")
    date_hierarchy = "created_at"

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in AuditEvent._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # the trail is append-only; retention pruning (prune_audit) is the only delete

    @admin.display(description="what happened")
    def summary(self, obj):
        if obj.kind == AuditEvent.Kind.EXCHANGE:
            return f"{obj.system.upper()} {obj.method} {obj.path} → {obj.status_code or 'no answer'} ({obj.duration_ms} ms)"
        return obj.message[:160]
