"""Admin screens of A/P credit memos (→ BILL vendor credits) and invoice attachments (→ BILL bill documents).

Read-only records with their timeline and "Replay the failed step", tenant-scoped like the invoice and payment
screens (RecordAdmin → TenantScopedAdmin). An invoice's page lists its files and what did not go.
"""

from django.contrib import admin

from .admin import InvoiceRecordAdmin, RecordAdmin
from .models import AttachmentRecord, CreditMemoRecord


@admin.register(CreditMemoRecord)
class CreditMemoRecordAdmin(RecordAdmin):
    list_display = ("doc_num", "card_code", "card_name", "reference_number", "doc_total", "base_entry", "status",
                    "credit_id", "applied_bill_id", "short_error", "updated_at")
    list_filter = ("status", "next_step", "sap_state", "connection", "updated_at")
    search_fields = ("doc_num", "card_code", "card_name", "reference_number", "credit_id", "applied_bill_id",
                     "last_error")
    fieldsets = (
        (None, {"fields": ("connection", "status", "next_step", "last_error", "attempts")}),
        ("SAP credit memo", {"fields": ("doc_entry", "doc_num", "card_code", "card_name", "reference_number",
                                        "credit_date", "doc_total", "base_entry", "sap_state", "sap_updated")}),
        ("BILL vendor credit", {"fields": ("credit_id", "applied_bill_id", "applied_amount", "synced_at", "coded")}),
        ("History", {"fields": ("timeline_display",)}),
        ("Raw", {"classes": ["collapse"], "fields": ("document", "create_attempted_at")}),
    )

    @admin.display(description="what to do")
    def short_error(self, obj):
        return (obj.last_error[:120] + "…") if len(obj.last_error) > 120 else obj.last_error


@admin.register(AttachmentRecord)
class AttachmentRecordAdmin(RecordAdmin):
    list_display = ("file_name", "invoice_doc", "size", "status", "bill_id", "document_id", "last_error", "updated_at")
    list_filter = ("status", "connection", "updated_at")
    search_fields = ("file_name", "bill_id", "document_id", "upload_id", "invoice__doc_num", "last_error")
    list_select_related = ("invoice", "connection__tenant")
    fieldsets = (
        (None, {"fields": ("connection", "invoice", "status", "last_error", "attempts")}),
        ("SAP attachment", {"fields": ("attachment_entry", "line_num", "file_name", "size")}),
        ("BILL document", {"fields": ("bill_id", "upload_id", "document_id", "upload_attempted_at")}),
    )

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    @admin.display(description="SAP invoice", ordering="invoice__doc_num")
    def invoice_doc(self, obj):
        return obj.invoice.doc_num


class AttachmentInline(admin.TabularInline):
    model = AttachmentRecord
    fields = ("file_name", "size", "status", "document_id", "last_error")
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "attachments (SAP → BILL bill documents)"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


InvoiceRecordAdmin.inlines = [*InvoiceRecordAdmin.inlines, AttachmentInline]
