"""Admin for reference data, GL-account / cost-center mappings and vendor links (issue 3).

Thin: fetching, checking, suggesting and aligning live in reference.py, csvio.py, suggest.py and
connector.sync.vendors. Every admin is a `TenantScopedAdmin`, and every queryset here comes from a
ModelAdmin's `get_queryset`: list pages, actions, autocomplete results, exports, and the connections offered
on the import form, which come from the rows the user may see.

CSV import/export uses django-import-export with CONTRACT.md's format (`kind,sap_code,bill_id`, export adds
`sap_name,bill_name`). Each row is checked by `csvio.RowChecker` against the connection chosen on the import
form, so a row can only touch that connection's rows; one bad row rolls the whole file back.
"""

from collections import defaultdict

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import AutocompleteSelect
from django.core.exceptions import ValidationError
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from import_export import resources
from import_export.admin import ImportExportMixin
from import_export.fields import Field
from import_export.forms import ConfirmImportForm, ExportForm, ImportForm

from audit import trail
from audit.admin_actions import ReplayButtonMixin, replay_selected
from connector.models import Connection, SyncRun
from connector.sync.runner import AlreadyRunning, run_sync
from connector.tenancy import TenantScopedAdmin

from . import csvio
from .models import (
    BillAccount,
    BillDepartment,
    SapAccount,
    SapCostCenter,
    SapExpenseType,
    SapTaxCode,
    VendorLink,
)
from .suggest import apply_proposals, suggest_accounts, suggest_departments

KIND_OF_MODEL = {SapAccount: "account", SapCostCenter: "department"}
BILL_WORDS = {"account": "BILL account", "department": "BILL department"}


def target_of(sap_row):
    """The BILL object a SAP account / cost center is mapped to (or None)."""
    return getattr(sap_row, csvio.KINDS[KIND_OF_MODEL[type(sap_row)]][2])


def mapping_problem(sap_row):
    """What a person has to fix about one mapping, in words ('' when nothing)."""
    target = target_of(sap_row)
    if sap_row.missing:
        return f"{sap_row.label} no longer exists in SAP (or is frozen there); its mapping is not used."
    if target is None:
        return f"{sap_row.label} has no BILL mapping."
    words = BILL_WORDS[KIND_OF_MODEL[type(sap_row)]]
    if target.archived:
        return f"{sap_row.label} is mapped to {words} {target.name!r}, which is archived in BILL: map it to another one."
    if target.missing:
        return f"{sap_row.label} is mapped to {words} {target.name!r}, which no longer exists in BILL: map it to another one."
    return ""


def connections_of(queryset):
    return Connection.objects.filter(pk__in=queryset.values("connection")).select_related("tenant")


def propose(model, queryset):
    """Proposals (mappings.suggest) for the selected SAP rows, connection by connection."""
    suggest = suggest_accounts if model is SapAccount else suggest_departments
    by_connection = defaultdict(list)
    for row in queryset.select_related("connection__tenant", csvio.KINDS[KIND_OF_MODEL[model]][2]):
        by_connection[row.connection].append(row)
    proposals = []
    for connection, rows in by_connection.items():
        proposals += suggest(connection, sap_rows=rows)
    return proposals


def refresh_reference_for(model_admin, request, connections):
    """Run the `reference` step for each connection (as `sync NAME --step reference` does) and report it."""
    for conn in connections:
        try:
            run = run_sync(conn, ["reference"], trigger="person", actor=request.user.get_username())
        except AlreadyRunning as exc:
            model_admin.message_user(request, str(exc), messages.WARNING)
            continue
        if run.status == SyncRun.Status.FAILED:
            reason = run.error.strip().splitlines()[-1] if run.error else "see the sync run"
            model_admin.message_user(request, f"{conn}: reference data could not be refreshed: {reason}", messages.ERROR)
        else:
            counts = ", ".join(f"{table} {n}" for table, n in (run.summary.get("reference") or {}).items())
            model_admin.message_user(request, f"{conn}: reference data refreshed ({counts}).", messages.SUCCESS)


def resolve_vendor_review(link, resolution, actor=""):
    """Apply a person's decision on an ambiguous vendor match: link to a candidate, or create a new vendor.

    Linking clears `synced_fingerprint`, so the next vendor run sends SAP's data to the chosen BILL vendor.
    Returns a sentence for the person.
    """
    Status = VendorLink.Status
    before = {"status": link.status, "bill_vendor_id": link.bill_vendor_id, "create_new": link.create_new}
    who = actor or "a person"
    if resolution.startswith("link:"):
        vendor_id = resolution.removeprefix("link:")
        candidate = next(c for c in link.candidates if c["id"] == vendor_id)
        link.bill_vendor_id, link.bill_vendor_name = vendor_id, candidate.get("name") or ""
        link.status, link.last_error, link.create_new = Status.LINKED, "", False
        link.match_reason = f"picked by {who} in the admin"
        link.synced_fingerprint = ""
        message = (f"SAP supplier {link.card_code} is now linked to BILL vendor {vendor_id}; "
                   "the next vendor sync sends SAP's data to it.")
    elif resolution == "create":
        link.create_new, link.status, link.last_error = True, Status.PENDING, ""
        link.match_reason = f"{who} decided none of the BILL candidates is this supplier"
        message = f"The next vendor sync creates a new BILL vendor for SAP supplier {link.card_code}."
    else:
        raise ValueError(f"unknown resolution {resolution!r}")
    link.candidates = []
    link.save()
    with trail.triggered_by("person", actor):
        after = {"status": link.status, "bill_vendor_id": link.bill_vendor_id, "create_new": link.create_new}
        trail.log_change(link, f"Vendor {link.card_code}: {message}", before, after)
    return message


# --- CSV (django-import-export) --------------------------------------------------------------------------------
class MappingDiff(resources.Diff):
    """The import preview shows the columns as exported (kind, BILL id and name come from dehydrate methods)."""

    def __init__(self, resource, instance, new):
        super().__init__(resource, instance, new)
        self.left = self.columns(resource, instance)

    def compare_with(self, resource, instance):
        self.right = self.columns(resource, instance)

    @staticmethod
    def columns(resource, instance):
        return [resource.export_field(f, instance) if instance is not None else "" for f in resource.get_import_fields()]


class MappingResource(resources.ModelResource):
    """CONTRACT.md's mapping CSV for the rows of one kind, checked against one connection's reference data.

    Rows of the other kind are checked too (the file is all-or-nothing) but skipped: they are imported on the
    other screen. Rows never create SAP or BILL rows; they only set the mapping of an existing SAP row.
    """

    kind_name = ""

    kind = Field(column_name="kind")
    sap_code = Field(column_name="sap_code", attribute="code")
    bill_id = Field(column_name="bill_id")
    sap_name = Field(column_name="sap_name", attribute="name", readonly=True)
    bill_name = Field(column_name="bill_name", readonly=True)

    class Meta:
        fields = ("kind", "sap_code", "bill_id", "sap_name", "bill_name")
        export_order = ("kind", "sap_code", "bill_id", "sap_name", "bill_name")
        import_id_fields = ("sap_code",)
        use_transactions = True
        skip_unchanged = True
        report_skipped = True

    def __init__(self, connection=None, **kwargs):
        super().__init__(**kwargs)
        self.connection = connection
        self.checker = None
        self._row_number = None
        self._planned = None

    @property
    def target(self):
        return csvio.KINDS[self.kind_name][2]

    def get_diff_class(self):
        return MappingDiff

    def get_queryset(self):
        queryset = super().get_queryset()
        return queryset.filter(connection=self.connection) if self.connection is not None else queryset.none()

    # export: only rows that are mapped, like `mappings export`
    def filter_export(self, queryset, **kwargs):
        return queryset.filter(**{f"{self.target}__isnull": False}).select_related(self.target)

    def dehydrate_kind(self, obj):
        return KIND_OF_MODEL[type(obj)]

    def dehydrate_bill_id(self, obj):
        target = target_of(obj)
        return target.bill_id if target else ""

    def dehydrate_bill_name(self, obj):
        target = target_of(obj)
        return target.name if target else ""

    # import
    def before_import(self, dataset, **kwargs):
        if self.connection is None:
            dataset.wipe()
            raise ValueError("Choose the connection to import into.")
        try:
            dataset.headers = csvio.check_header(dataset.headers)
        except csvio.MappingImportError as exc:
            dataset.wipe()  # nothing to import row by row
            raise ValueError(str(exc)) from None
        self.checker = csvio.RowChecker(self.connection)

    def before_import_row(self, row, **kwargs):
        self._row_number = kwargs["row_number"] + 1  # CSV row: the header is row 1

    def get_or_init_instance(self, instance_loader, row):
        clean = {str(k).strip(): csvio.unescape_cell(("" if v is None else str(v)).strip()) for k, v in row.items() if k}
        try:
            sap_row, bill_row, kind = self.checker.check(self._row_number, clean)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None
        self._planned = (bill_row, kind)
        return sap_row, False  # never a new row

    def import_instance(self, instance, row, **kwargs):
        bill_row, kind = self._planned
        if kind == self.kind_name:
            setattr(instance, self.target, bill_row)
            instance.refresh_status()

    def skip_row(self, instance, original, row, import_validation_errors=None):
        bill_row, kind = self._planned
        return kind != self.kind_name or getattr(original, f"{self.target}_id") == bill_row.pk

    def do_instance_save(self, instance, is_create):
        instance.save(update_fields=[self.target, "mapping_status", "updated_at"])


class SapAccountResource(MappingResource):
    kind_name = "account"

    class Meta(MappingResource.Meta):
        model = SapAccount
        name = "GL-account mappings"


class SapCostCenterResource(MappingResource):
    kind_name = "department"

    class Meta(MappingResource.Meta):
        model = SapCostCenter
        name = "cost-center mappings"


class ConnectionChoiceMixin:
    def __init__(self, *args, connections=None, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["connection"]
        field.queryset = connections if connections is not None else Connection.objects.none()
        if field.queryset.count() == 1 and not self.is_bound:
            self.initial.setdefault("connection", field.queryset.first().pk)


class MappingImportForm(ConnectionChoiceMixin, ImportForm):
    connection = forms.ModelChoiceField(
        queryset=Connection.objects.none(), label="Connection",
        help_text="The rows of the file are checked against, and applied to, this connection only.",
    )
    field_order = ["connection", "resource", "import_file", "format"]

    def clean_import_file(self):
        upload = self.cleaned_data.get("import_file")
        if upload is not None:
            try:
                csvio.check_size(upload.size)
            except csvio.MappingImportError as exc:
                raise ValidationError(str(exc)) from None
        return upload


class MappingConfirmImportForm(ConnectionChoiceMixin, ConfirmImportForm):
    connection = forms.ModelChoiceField(queryset=Connection.objects.none(), widget=forms.HiddenInput())


# --- mapping admins --------------------------------------------------------------------------------------------
class ConnectionScopedAutocomplete(AutocompleteSelect):
    """Autocomplete whose AJAX URL names the connection of the row being edited (see BillReferenceAdmin)."""

    connection_id = None

    def get_url(self):
        url = super().get_url()
        return f"{url}?{urlencode({'connection': self.connection_id})}" if self.connection_id else url


class MappingForm(forms.ModelForm):
    """Only the BILL rows of the edited row's connection can be chosen (and posted)."""

    target = ""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields.get(self.target)
        if field is None:
            return
        field.queryset = field.queryset.filter(connection_id=self.instance.connection_id)
        widget = getattr(field.widget, "widget", field.widget)
        if isinstance(widget, ConnectionScopedAutocomplete):
            widget.connection_id = self.instance.connection_id

    def clean(self):
        data = super().clean()
        chosen = data.get(self.target)
        if chosen is not None and self.target in self.changed_data and not chosen.usable:
            state = "archived" if chosen.archived else "no longer there"
            self.add_error(self.target, f"{chosen} is {state} in BILL: choose another one.")
        return data


class SapAccountForm(MappingForm):
    target = "bill_account"


class SapCostCenterForm(MappingForm):
    target = "bill_department"


class MappingAdmin(ImportExportMixin, TenantScopedAdmin):
    """Shared by the GL-account and cost-center mapping screens."""

    target = ""
    formats = [csvio.SafeCSV]  # formula-like cells escaped on export
    import_form_class = MappingImportForm
    confirm_form_class = MappingConfirmImportForm
    export_form_class = ExportForm  # fixed columns: the CSV is a public format
    import_template_name = "admin/mappings/import.html"
    actions = ["propose_mappings", "refresh_reference_data"]
    list_per_page = 100

    def has_add_permission(self, request):
        return False  # rows come from SAP (reference refresh)

    def has_delete_permission(self, request, obj=None):
        return False

    def has_import_permission(self, request):
        return super().has_import_permission(request) and self.has_change_permission(request)

    def get_readonly_fields(self, request, obj=None):
        return [f for f in self.get_fields(request, obj) if f != self.target]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name in self.get_autocomplete_fields(request):
            kwargs.setdefault("widget", ConnectionScopedAutocomplete(db_field, self.admin_site, using=kwargs.get("using")))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        obj.refresh_status()
        super().save_model(request, obj, form, change)

    # list columns
    @admin.display(description="what to fix")
    def problem(self, obj):
        return mapping_problem(obj)

    # import / export
    def connection_choices(self, request):
        return connections_of(self.get_queryset(request)).order_by("tenant__slug", "name")

    def get_valid_export_item_pks(self, request):
        return self.get_queryset(request).values_list("pk", flat=True)

    def get_import_form_kwargs(self, request):
        return {**super().get_import_form_kwargs(request), "connections": self.connection_choices(request)}

    def get_confirm_form_kwargs(self, request, import_form=None):
        return {**super().get_confirm_form_kwargs(request, import_form), "connections": self.connection_choices(request)}

    def get_confirm_form_initial(self, request, import_form):
        initial = super().get_confirm_form_initial(request, import_form)
        if import_form is not None:
            initial["connection"] = import_form.cleaned_data["connection"].pk
        return initial

    def get_import_resource_kwargs(self, request, *args, **kwargs):
        form = kwargs.get("form")
        cleaned = getattr(form, "cleaned_data", None) or {}
        return {"connection": cleaned.get("connection")}

    def get_import_data_kwargs(self, **kwargs):
        # all-or-nothing: a row that fails its checks rolls every other row back (also at the confirm step)
        return {**super().get_import_data_kwargs(**kwargs), "rollback_on_validation_errors": True}

    def process_result(self, result, request):
        if result.has_errors() or result.has_validation_errors():
            # the data changed between the preview and the confirmation: nothing was imported
            errors = [str(e.error) for _, row_errors in result.row_errors() for e in row_errors]
            errors += [str(e.error) for e in result.base_errors]
            for invalid in result.invalid_rows:
                errors += invalid.error.messages
            self.message_user(request, "Nothing imported: " + "; ".join(errors[:20]), messages.ERROR)
            return HttpResponseRedirect(reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist"))
        return super().process_result(result, request)

    def export_action(self, request):
        connections = self.get_export_queryset(request).order_by().values_list("connection", flat=True).distinct()
        if len(connections) > 1:
            self.message_user(request, "The CSV holds the mappings of one connection: filter the list by connection "
                                       "first, then export.", messages.ERROR)
            changelist = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist")
            return HttpResponseRedirect(f"{changelist}?{request.GET.urlencode()}" if request.GET else changelist)
        return super().export_action(request)

    def get_export_filename(self, request, queryset, file_format):
        conn = connections_of(queryset).first()
        name = f"{conn.tenant.slug}-{conn.name}" if conn else "none"
        return f"mappings-{KIND_OF_MODEL[self.model]}-{name}.{file_format.get_extension()}"

    # actions
    @admin.action(description="Propose mappings by account number and name (you confirm)", permissions=["change"])
    def propose_mappings(self, request, queryset):
        proposals = propose(self.model, queryset)
        if request.POST.get("apply") == "yes":
            chosen = set(request.POST.getlist("proposal"))
            # recomputed from current data: only a proposal that is still valid and was ticked is applied
            applied = apply_proposals([(p.sap_row, p.bill_row) for p in proposals if p.key in chosen])
            self.message_user(request, f"{applied} mapping(s) applied.", messages.SUCCESS if applied else messages.INFO)
            return None
        if not proposals:
            self.message_user(request, "No proposals: no unmapped row of the selection matches a BILL number or name.",
                              messages.INFO)
            return None
        return TemplateResponse(request, "admin/mappings/propose_mappings.html", {
            **self.admin_site.each_context(request),
            "title": "Confirm proposed mappings",
            "opts": self.opts,
            "rows": [{
                "key": p.key, "connection": p.sap_row.connection, "sap": getattr(p.sap_row, "format_code", "") or p.sap_row.code,
                "sap_name": p.sap_row.name, "bill": getattr(p.bill_row, "number", "") or p.bill_row.bill_id,
                "bill_name": p.bill_row.name, "reason": p.reason, "current": target_of(p.sap_row),
            } for p in proposals],
            "selected": queryset.values_list("pk", flat=True),
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            "bill_words": BILL_WORDS[KIND_OF_MODEL[self.model]],
        })

    @admin.action(description="Refresh reference data from SAP and BILL", permissions=["change"])
    def refresh_reference_data(self, request, queryset):
        refresh_reference_for(self, request, connections_of(queryset))


@admin.register(SapAccount)
class SapAccountAdmin(MappingAdmin):
    target = "bill_account"
    form = SapAccountForm
    resource_classes = [SapAccountResource]
    list_display = ("sap_number", "name", "bill_number", "bill_name", "mapping_status", "problem", "connection")
    list_display_links = ("sap_number", "name")
    list_filter = ("mapping_status", ("connection", admin.RelatedOnlyFieldListFilter), "missing", "account_type")
    list_select_related = ("connection__tenant", "bill_account")
    search_fields = ("code", "format_code", "name", "bill_account__name", "bill_account__number")
    autocomplete_fields = ["bill_account"]
    fields = ("connection", "code", "format_code", "name", "account_type", "missing", "bill_account", "mapping_status",
              "refreshed_at", "updated_at")

    @admin.display(description="SAP number", ordering="format_code")
    def sap_number(self, obj):
        return obj.format_code or obj.code

    @admin.display(description="BILL number", ordering="bill_account__number")
    def bill_number(self, obj):
        return obj.bill_account.number if obj.bill_account else "—"

    @admin.display(description="BILL name", ordering="bill_account__name")
    def bill_name(self, obj):
        return str(obj.bill_account.name) if obj.bill_account else "—"


@admin.register(SapCostCenter)
class SapCostCenterAdmin(MappingAdmin):
    target = "bill_department"
    form = SapCostCenterForm
    resource_classes = [SapCostCenterResource]
    list_display = ("code", "name", "dimension", "is_rule", "bill_name", "mapping_status", "problem", "connection")
    list_display_links = ("code", "name")
    list_filter = ("mapping_status", ("connection", admin.RelatedOnlyFieldListFilter), "dimension", "is_rule", "missing")
    list_select_related = ("connection__tenant", "bill_department")
    search_fields = ("code", "name", "bill_department__name", "bill_department__short_name")
    autocomplete_fields = ["bill_department"]
    fields = ("connection", "code", "name", "dimension", "is_rule", "active", "missing", "bill_department",
              "mapping_status", "refreshed_at", "updated_at")

    @admin.display(description="BILL department", ordering="bill_department__name")
    def bill_name(self, obj):
        return str(obj.bill_department) if obj.bill_department else "—"


# --- reference data (read-only) ----------------------------------------------------------------------------------
class ReadOnlyAdmin(TenantScopedAdmin):
    """Reference rows are what the remote systems say: refreshed, never edited here."""

    list_select_related = ("connection__tenant",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class BillReferenceAdmin(ReadOnlyAdmin):
    """Target of the mapping autocompletes: answers only with usable rows of the connection named in the URL."""

    autocomplete_sources = {("sapaccount", "bill_account"), ("sapcostcenter", "bill_department")}

    def get_search_results(self, request, queryset, search_term):
        queryset, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        source = (request.GET.get("model_name"), request.GET.get("field_name"))
        if source in self.autocomplete_sources:
            connection = request.GET.get("connection", "")
            if not connection.isdigit():
                return queryset.none(), may_have_duplicates
            queryset = queryset.filter(connection_id=int(connection), archived=False, missing=False)
        return queryset, may_have_duplicates


@admin.register(BillAccount)
class BillAccountAdmin(BillReferenceAdmin):
    list_display = ("number", "name", "account_type", "archived", "missing", "bill_id", "connection")
    list_filter = ("archived", "missing", ("connection", admin.RelatedOnlyFieldListFilter), "account_type")
    search_fields = ("number", "name", "bill_id")


@admin.register(BillDepartment)
class BillDepartmentAdmin(BillReferenceAdmin):
    list_display = ("name", "short_name", "archived", "missing", "bill_id", "connection")
    list_filter = ("archived", "missing", ("connection", admin.RelatedOnlyFieldListFilter))
    search_fields = ("name", "short_name", "bill_id")


@admin.register(SapTaxCode)
class SapTaxCodeAdmin(ReadOnlyAdmin):
    list_display = ("code", "name", "rate", "tax_account", "missing", "connection")
    list_filter = (("connection", admin.RelatedOnlyFieldListFilter), "missing")
    search_fields = ("code", "name", "tax_account")


@admin.register(SapExpenseType)
class SapExpenseTypeAdmin(ReadOnlyAdmin):
    list_display = ("code", "name", "expense_account", "missing", "connection")
    list_filter = (("connection", admin.RelatedOnlyFieldListFilter), "missing")
    search_fields = ("code", "name", "expense_account")


# --- vendor links ------------------------------------------------------------------------------------------------
class CandidateTable(forms.Widget):
    """Radio buttons laid out as a table of the BILL candidates, plus 'create new' and 'decide later'."""

    columns = (("id", "BILL vendor id"), ("name", "name"), ("email", "e-mail"), ("taxId", "tax id"), ("address", "address"))

    def __init__(self, attrs=None):
        super().__init__(attrs)
        self.candidates = []

    def render(self, name, value, attrs=None, renderer=None):
        base_id = (attrs or {}).get("id") or f"id_{name}"

        def radio(index, choice):
            checked = " checked" if (value or "") == choice else ""
            return format_html('<input type="radio" name="{}" value="{}" id="{}_{}"{}>',
                               name, choice, base_id, index, checked)

        rows = [
            format_html("<tr><td>{}</td>{}<td><label for=\"{}_{}\">link to this vendor</label></td></tr>",
                        radio(i, f"link:{c['id']}"), format_html_join("", "<td>{}</td>", ((c.get(k) or "",) for k, _ in
                                                                                          self.columns)),
                        base_id, i)
            for i, c in enumerate(self.candidates)
        ]
        n = len(self.candidates)
        span = len(self.columns) + 1
        rows.append(format_html('<tr><td>{}</td><td colspan="{}"><label for="{}_{}">create a new BILL vendor '
                                "(none of these is this supplier)</label></td></tr>", radio(n, "create"), span, base_id, n))
        rows.append(format_html('<tr><td>{}</td><td colspan="{}"><label for="{}_{}">decide later</label></td></tr>',
                                radio(n + 1, ""), span, base_id, n + 1))
        head = format_html_join("", "<th>{}</th>", ((label,) for _, label in self.columns))
        return format_html('<table class="vendor-candidates"><thead><tr><th></th>{}<th></th></tr></thead>'
                           "<tbody>{}</tbody></table>", head, format_html_join("", "{}", ((r,) for r in rows)))


class VendorLinkForm(forms.ModelForm):
    resolution = forms.ChoiceField(
        label="Which BILL vendor is this supplier?", required=False, widget=CandidateTable,
        help_text="BILL has several vendors that could be this SAP supplier. Pick one, or have a new one created.",
    )

    class Meta:
        model = VendorLink
        fields = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields.get("resolution")
        if field is not None:
            candidates = self.instance.candidates or []
            field.choices = [("", "decide later"), *((f"link:{c['id']}", c.get("name") or c["id"]) for c in candidates),
                             ("create", "create a new BILL vendor")]
            field.widget.candidates = candidates

    def clean_resolution(self):
        value = self.cleaned_data.get("resolution") or ""
        if value.startswith("link:"):
            vendor_id = value.removeprefix("link:")
            other = (VendorLink.objects.filter(connection_id=self.instance.connection_id, bill_vendor_id=vendor_id)
                     .exclude(pk=self.instance.pk).first())
            if other is not None:
                raise ValidationError(f"BILL vendor {vendor_id} is already linked to SAP supplier {other.card_code}.")
        return value


@admin.register(VendorLink)
class VendorLinkAdmin(ReplayButtonMixin, TenantScopedAdmin):
    form = VendorLinkForm
    list_display = ("card_code", "card_name", "bill_vendor_id", "bill_vendor_name", "status", "last_error", "match_reason",
                    "connection")
    list_filter = ("status", ("connection", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("connection__tenant",)
    search_fields = ("card_code", "card_name", "bill_vendor_id", "bill_vendor_name")
    actions = ["align_vendors", replay_selected]
    record_fields = ("connection", "card_code", "card_name", "bill_vendor_id", "bill_vendor_name", "status", "last_error",
                     "match_reason", "create_new", "sap_data", "synced_at", "create_attempted_at", "updated_at")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # a deleted link would be matched again, or its supplier created a second time

    def needs_decision(self, obj):
        return obj is not None and obj.status == VendorLink.Status.REVIEW and bool(obj.candidates)

    def get_fields(self, request, obj=None):
        if self.needs_decision(obj) and self.has_change_permission(request, obj):
            return [*self.record_fields, "resolution"]
        if obj is not None and obj.candidates:
            return [*self.record_fields, "candidate_list"]
        return list(self.record_fields)

    def get_readonly_fields(self, request, obj=None):
        return [*self.record_fields, "candidate_list"]

    @admin.display(description="BILL candidates")
    def candidate_list(self, obj):
        columns = CandidateTable.columns
        head = format_html_join("", "<th>{}</th>", ((label,) for _, label in columns))
        body = format_html_join("", "<tr>{}</tr>", (
            (format_html_join("", "<td>{}</td>", ((c.get(key) or "",) for key, _ in columns)),) for c in obj.candidates))
        return format_html('<table class="vendor-candidates"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>', head, body)

    def save_model(self, request, obj, form, change):
        resolution = form.cleaned_data.get("resolution")
        if resolution:
            self.message_user(request, resolve_vendor_review(obj, resolution, request.user.get_username()))
        else:
            super().save_model(request, obj, form, change)

    @admin.action(description="Align vendors now (SAP suppliers → BILL vendors)", permissions=["change"])
    def align_vendors(self, request, queryset):
        for conn in connections_of(queryset):
            try:
                run = run_sync(conn, ["vendors"], trigger="person", actor=request.user.get_username())
            except AlreadyRunning as exc:
                self.message_user(request, str(exc), messages.WARNING)
                continue
            summary = ", ".join(f"{k} {v}" for k, v in (run.summary.get("vendors") or {}).items())
            level = messages.ERROR if run.status == SyncRun.Status.FAILED else messages.SUCCESS
            self.message_user(request, f"{conn}: vendors {run.get_status_display()} ({summary or run.error[-300:]})", level)



from . import admin_dimensions  # noqa: E402,F401  (locations, classes, jobs: same screens, registered there)
