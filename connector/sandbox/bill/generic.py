"""BILL simulator: generic handlers."""

from __future__ import annotations

from .common import _not_found
from .listing import paginate


class GenericMixin:
    """Generic list/get handlers shared by every resource."""

    # ---------------------------------------------------------------- generic handlers

    def _h_list(self, ctx, kind):
        return 200, paginate(list(ctx.org.collection(kind).values()), ctx.req.args)

    def _h_get(self, ctx, kind, ident):
        item = ctx.org.collection(kind).get(ident)
        if item is None:
            raise _not_found(kind.rstrip("s"), ident)
        return 200, item

    def _h_archive(self, ctx, kind, archive, ident):
        item = ctx.org.collection(kind).get(ident)
        if item is None:
            raise _not_found(kind.rstrip("s"), ident)
        if kind == "bills" and archive:
            self._assert_bill_editable(item, "archived")
        if item["archived"] != archive:  # idempotent: a no-op changes nothing and emits nothing
            item["archived"] = archive
            item["updatedTime"] = ctx.now
            event = {"vendors": "vendor", "bills": "bill"}.get(kind)
            if event:
                verb = "archived" if archive else "restored"
                entity = {"id": item["id"], "archived": archive, "updatedTime": item["updatedTime"]}
                self._emit(ctx.org, f"{event}.{verb}", event, entity, item["id"], ctx.out)
        return 200, item
