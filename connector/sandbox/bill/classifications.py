"""BILL simulator: classifications."""

from __future__ import annotations

from .common import _bad, _compact, _deep_merge, _dict_field, _not_found, _str_field

CHECKED_KINDS = {"departmentId": "departments", "accountingClassId": "accounting-classes",
                 "locationId": "locations", "jobId": "jobs"}


class ClassificationsMixin:
    """Chart of accounts, departments and other classifications."""

    # ---------------------------------------------------------------- classifications

    def _h_class_create(self, ctx, kind):
        data = ctx.json()
        item = self._class_normalize(ctx.org, kind, data, {})
        prefix = {"chart-of-accounts": "0ca", "accounting-classes": "cls", "locations": "loc", "jobs": "job"}.get(kind, "0de")
        item = {"id": self._new_id(prefix), **item, "createdTime": ctx.now, "updatedTime": ctx.now}
        ctx.org.collection(kind)[item["id"]] = item
        return 201, item

    def _h_class_patch(self, ctx, kind, ident):
        coll = ctx.org.collection(kind)
        current = coll.get(ident)
        if current is None:
            raise _not_found(kind, ident)
        merged = _deep_merge(current, {k: v for k, v in ctx.json().items() if k not in ("id", "createdTime")})
        item = self._class_normalize(ctx.org, kind, merged, current)
        coll[ident] = {"id": ident, **item, "createdTime": current["createdTime"], "updatedTime": ctx.now}
        return 200, coll[ident]

    def _class_normalize(self, org, kind, data, current):
        name = _str_field(data, "name", "", required=True, max_len=100)
        parent = data.get("parentId")
        if parent is not None and (not isinstance(parent, str) or parent not in org.collection(kind)):
            raise _bad(f"Invalid field,value: parentId, {parent}.")
        out = {"archived": bool(current.get("archived", False)), "name": name,
               "description": _str_field(data, "description", "", max_len=4000) or "", "parentId": parent}
        if kind == "chart-of-accounts":
            account = _dict_field(data, "account", "")
            out["account"] = _compact({"type": account.get("type") or "EXPENSE", "number": account.get("number")})
        else:
            out["shortName"] = _str_field(data, "shortName", "", max_len=40)
        return _compact(out)

    def _check_classification(self, org, kind, ident, field):
        item = org.collection(kind).get(ident) if isinstance(ident, str) else None
        if item is None:
            raise _bad(f"Invalid field,value: {field}, {ident}. No such {kind.rstrip('s')} in this organization.")
        if item["archived"]:
            raise _bad(f"Invalid field,value: {field}, {ident}. The {kind.rstrip('s')} '{item['name']}' is archived.")

    def _classifications(self, org, data, path, keys):
        raw = _dict_field(data, "classifications", path)
        out = {}
        for key in keys:
            value = raw.get(key)
            if value is None:
                continue
            if key == "chartOfAccountId":
                self._check_classification(org, "chart-of-accounts", value, f"{path}classifications.{key}")
            elif key in CHECKED_KINDS:
                self._check_classification(org, CHECKED_KINDS[key], value, f"{path}classifications.{key}")
            # other dimensions (item, employee, customer) are not simulated and pass through unchecked
            out[key] = value
        return out
