"""Tenant isolation for the admin: each customer's staff see and change only their own tenant's data.

Every admin of tenant-owned data uses `TenantScopedAdmin`. Everything the admin does goes through
`get_queryset` (change lists, change/delete/history pages, actions, exports, autocomplete), so scoping it
scopes all of them; foreign-key pickers and list filters are scoped too, and an id of another tenant's
object answers 404. Superusers are the host operators and see everything. Roles: viewer (read only),
editor (may change mappings, vendor links and replay records).
"""

from django.contrib import admin
from django.db.models import Q
from django.http import Http404

from .models import Membership, Tenant


def is_operator(user):
    return bool(user and user.is_active and user.is_superuser)


def membership(request):
    """The user's Membership (cached on the request), or None."""
    if not hasattr(request, "_ml_membership"):
        user = request.user
        found = None
        if user.is_authenticated and user.is_active and user.is_staff:
            found = Membership.objects.filter(user=user).select_related("tenant").first()
        request._ml_membership = found
    return request._ml_membership


def user_tenant(request):
    found = membership(request)
    return found.tenant if found else None


def is_editor(request):
    found = membership(request)
    return bool(found and found.role == Membership.Role.EDITOR)


def shown_error(text):
    """An error text as anyone may see it: whatever looks like a credential (password=…, "Password": "…",
    B1SESSION=…, user:password@ in a URL) redacted, in case a server echoed what we sent it."""
    from connector.logfilter import redact_text

    return redact_text((text or "").strip())


def plain_error(text):
    """The words of an error for tenant staff: a traceback's file paths and code lines left out (its last line
    says what happened); host operators see the whole text."""
    text = shown_error(text)
    if not text.startswith("Traceback") and 'File "' not in text:
        return text
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith((" ", "\t", "Traceback"))]
    return lines[-1] if lines else "an internal error (the host operator has the details)"


def tenant_q(model, tenant):
    """A filter selecting `model` rows that belong to `tenant`, or None if the model is not tenant-owned."""
    if model is Tenant:
        return Q(pk=tenant.pk)
    names = {f.name for f in model._meta.get_fields()}
    if "tenant" in names:
        return Q(tenant=tenant)
    if "connection" in names:
        return Q(connection__tenant=tenant)
    return None


class TenantScopedAdmin(admin.ModelAdmin):
    """Admin of tenant-owned data. Subclasses set what tenant staff may do beyond viewing."""

    tenant_can_add = False
    tenant_can_change = True
    tenant_can_delete = False

    # --- what the user may see -------------------------------------------------------------------------
    def get_queryset(self, request):
        qs = super().get_queryset(request)
        if is_operator(request.user):
            return qs
        tenant = user_tenant(request)
        if tenant is None:
            return qs.none()
        return qs.filter(tenant_q(self.model, tenant))

    def _owns(self, request, obj):
        if obj is None or is_operator(request.user):
            return True
        return self.get_queryset(request).filter(pk=obj.pk).exists()

    def has_module_permission(self, request):
        return is_operator(request.user) or membership(request) is not None

    def has_view_permission(self, request, obj=None):
        if is_operator(request.user):
            return True
        return membership(request) is not None and self._owns(request, obj)

    def has_change_permission(self, request, obj=None):
        if is_operator(request.user):
            return True
        return self.tenant_can_change and is_editor(request) and self._owns(request, obj)

    def has_add_permission(self, request):
        if is_operator(request.user):
            return True
        return self.tenant_can_add and is_editor(request)

    def has_delete_permission(self, request, obj=None):
        if is_operator(request.user):
            return True
        return self.tenant_can_delete and is_editor(request) and self._owns(request, obj)

    def _require_visible(self, request, object_id):
        from django.contrib.admin.utils import unquote

        if object_id is not None and self.get_object(request, unquote(object_id)) is None:
            raise Http404(f"No {self.model._meta.verbose_name} with id {object_id}")

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        self._require_visible(request, object_id)
        return super().changeform_view(request, object_id, form_url, extra_context)

    def delete_view(self, request, object_id, extra_context=None):
        self._require_visible(request, object_id)  # 404 before the permission check: another tenant's id is no id
        return super().delete_view(request, object_id, extra_context)

    def history_view(self, request, object_id, extra_context=None):
        self._require_visible(request, object_id)
        return super().history_view(request, object_id, extra_context)

    def _get_obj_does_not_exist_redirect(self, request, opts, object_id):
        # Django redirects to the index with "doesn't exist"; another tenant's id must look like no id at all.
        raise Http404(f"No {opts.verbose_name} with id {object_id}")

    # --- pickers and filters ---------------------------------------------------------------------------
    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        self._scope_field(field, db_field.related_model, request)
        return field

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        field = super().formfield_for_manytomany(db_field, request, **kwargs)
        self._scope_field(field, db_field.related_model, request)
        return field

    def _scope_field(self, field, related_model, request):
        if field is None or is_operator(request.user) or not hasattr(field, "queryset"):
            return
        tenant = user_tenant(request)
        condition = tenant_q(related_model, tenant) if tenant else None
        if tenant is None:
            field.queryset = field.queryset.none()
        elif condition is not None:
            field.queryset = field.queryset.filter(condition)

    def get_list_filter(self, request):
        filters = []
        for item in super().get_list_filter(request):
            # The default related filter lists every tenant's connections; list only those in view.
            if item in ("connection", "tenant"):
                item = (item, admin.RelatedOnlyFieldListFilter)
            filters.append(item)
        return filters
