"""Admin screens for coding lines to BILL locations, accounting classes and jobs (a connection's `coding`).

Like the cost-center screen: SAP values (a dimension's cost centers, projects or branches) with the BILL object
each maps to, an *unmapped* filter, autocomplete over the connection's usable BILL rows, CSV import/export of the
screen's own kind (`location`, `class`, `job`). Tenant-scoped through MappingAdmin / BillReferenceAdmin.
"""

from django.contrib import admin

from . import admin as base
from .models import BillClass, BillJob, BillLocation, SapClassMapping, SapJobMapping, SapLocationMapping

base.KIND_OF_MODEL.update({SapLocationMapping: "location", SapClassMapping: "class", SapJobMapping: "job"})
base.BILL_WORDS.update({"location": "BILL location", "class": "BILL accounting class", "job": "BILL job"})
base.BillReferenceAdmin.autocomplete_sources = base.BillReferenceAdmin.autocomplete_sources | {
    ("saplocationmapping", "bill_location"), ("sapclassmapping", "bill_class"), ("sapjobmapping", "bill_job")}


def _resource(model, kind, label):
    meta = type("Meta", (base.MappingResource.Meta,), {"model": model, "name": label})
    return type(f"{model.__name__}Resource", (base.MappingResource,), {"kind_name": kind, "Meta": meta})


def _form(target):
    return type(f"{target}Form", (base.MappingForm,), {"target": target})


class DimensionMappingAdmin(base.MappingAdmin):
    actions = ["refresh_reference_data"]
    list_display = ("code", "name", "source", "bill_name", "mapping_status", "problem", "connection")
    list_display_links = ("code", "name")
    list_filter = ("mapping_status", ("connection", admin.RelatedOnlyFieldListFilter), "source", "missing")

    @admin.display(description="BILL")
    def bill_name(self, obj):
        target = base.target_of(obj)
        return str(target) if target else "—"


for _model, _kind, _target, _label in (
        (SapLocationMapping, "location", "bill_location", "location mappings"),
        (SapClassMapping, "class", "bill_class", "accounting-class mappings"),
        (SapJobMapping, "job", "bill_job", "job mappings")):
    admin.site.register(_model, type(f"{_model.__name__}Admin", (DimensionMappingAdmin,), {
        "__module__": __name__,
        "target": _target, "form": _form(_target), "resource_classes": [_resource(_model, _kind, _label)],
        "list_select_related": ("connection__tenant", _target), "autocomplete_fields": [_target],
        "search_fields": ("code", "name", f"{_target}__name"),
        "fields": ("connection", "code", "name", "source", "active", "missing", _target, "mapping_status",
                   "refreshed_at", "updated_at"),
    }))


class BillDimensionAdmin(base.BillReferenceAdmin):
    list_display = ("name", "short_name", "archived", "missing", "bill_id", "connection")
    list_filter = ("archived", "missing", ("connection", admin.RelatedOnlyFieldListFilter))
    search_fields = ("name", "short_name", "bill_id")


for _model in (BillLocation, BillClass, BillJob):
    admin.site.register(_model, type(f"{_model.__name__}Admin", (BillDimensionAdmin,), {"__module__": __name__}))
