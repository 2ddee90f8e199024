"""SAP simulator: generic writes."""

from __future__ import annotations

import re
from datetime import time as dt_time

from werkzeug.wrappers import Response

from .protocol import ELEMENT, META, _Ctx, _json_response, _key_literal
from .schema import DATE, INT, NUM, STR, TIME, SapError, _EntitySet, _Type
from .values import RENDERERS, _as_date, _as_decimal, _parse_time_text, _render


class WritesMixin:
    """POST/PATCH/PUT/actions and the property checks shared by every write."""

    # ------------------------------------------------------------------------------------------- writes (HTTP)
    def _create(self, ctx: _Ctx, es: _EntitySet) -> Response:
        body = ctx.json_body()
        if es.name == "PurchaseInvoices":
            row = self._insert_invoice(self._build_invoice(body))
        elif es.name == "VendorPayments":
            row = self._post_payment(body)
        else:
            row = self._create_business_partner(body)
        location = f"{ctx.root}/{es.name}({_key_literal(es, row[es.key])})"
        prefer = ctx.prefer_tokens()
        for token in ("return-no-content", "return=minimal"):
            if token in prefer:
                return Response(status=204, headers=[("Location", location), ("Preference-Applied", token)])
        body = {META[ctx.version]: ctx.metadata(es.name + ELEMENT[ctx.version])}
        body.update(_render(row, RENDERERS[es.name, ctx.version]))
        return _json_response(ctx.version, 201, body, [("Location", location)])

    def _update(self, es: _EntitySet, row: dict, body: dict, replace: bool):
        if es.name == "PurchaseInvoices":
            self._patch_invoice(row, body, replace)
        elif es.name == "VendorPayments":
            self._patch_payment(row, body)
        else:
            self._patch_business_partner(row, body, replace)

    def _run_action(self, es: _EntitySet, key, action: str):
        if es.name == "PurchaseInvoices":
            {"Cancel": self.cancel_invoice, "Close": self.close_invoice, "Reopen": self.reopen_invoice}[action](key)
        elif es.name == "PurchaseCreditNotes":
            self.cancel_credit_note(key)
        else:
            self.cancel_payment(key, by_current_date=action == "CancelbyCurrentSystemDate")

    # ------------------------------------------------------------------------------------------- state helpers
    def _changed(self, set_name: str):
        self._versions[set_name] += 1

    def _touch(self, row: dict):
        current = self.now()
        row["UpdateDate"] = current.date()
        row["UpdateTime"] = current.time()

    @staticmethod
    def _check_properties(data: dict, etype: _Type):
        if not isinstance(data, dict):
            raise SapError(400, -1000, f"Invalid value for '{etype.name}'")
        for prop in data:
            if not etype.knows(prop):
                raise SapError(400, -1000, f"Property '{prop}' of '{etype.name}' is invalid")

    @staticmethod
    def _coerce_in(kind, value, prop: str, type_name: str):
        """Convert a JSON/Python input value to the stored Python value of a property."""
        if value is None:
            return None
        if kind == STR:
            text = value if isinstance(value, str) else str(value)
            return text or None  # SAP answers null for empty strings
        if kind == INT:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
                return int(value)
            converted = None
        elif kind == NUM:
            converted = _as_decimal(value)
        elif kind == DATE:
            converted = _as_date(value)
        elif kind == TIME:
            converted = value if isinstance(value, dt_time) else _parse_time_text(str(value))
        else:
            converted = kind.canonical(value)
        if converted is None:
            raise SapError(400, -1000, f"Value '{value}' is invalid for property '{prop}' of '{type_name}'")
        return converted
