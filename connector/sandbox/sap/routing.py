"""SAP simulator: routing."""

from __future__ import annotations

import re

from werkzeug.wrappers import Response

from .protocol import _RESOURCE_RE, ELEMENT, META, _Ctx, _json_response
from .schema import ENTITY_SETS, INT, NOT_FOUND_MESSAGE, NOT_SUPPORTED_MESSAGE, SapError, _EntitySet
from .values import RENDERERS, _render


class RoutingMixin:
    """Resource paths to entity sets, entities and actions."""

    # ------------------------------------------------------------------------------------------- routing
    def _dispatch(self, ctx: _Ctx, method: str, resource: str) -> Response:
        if resource == "Logout":
            if method != "POST":
                raise SapError(400, -5006, NOT_SUPPORTED_MESSAGE)
            self._sessions.pop(ctx.session_id, None)
            return Response(status=204)
        if resource == "":
            return self._service_document(ctx)
        if resource == "CompanyService_GetAdminInfo":
            if method != "POST":
                raise SapError(400, -5006, NOT_SUPPORTED_MESSAGE)
            return _json_response(ctx.version, 200, {META[ctx.version]: ctx.metadata("AdminInfo"), **self.admin_info()})
        match = _RESOURCE_RE.match(resource)
        if match and match.group("set") == "Attachments2" and match.group("sub") == "$value":
            return self._attachment_value(ctx, method, match.group("key") or "")  # attachments.py
        es = ENTITY_SETS.get(match.group("set")) if match else None
        if es is None:
            segment = match.group("set") if match else resource.split("/")[0]
            raise SapError(404, -1000, f"Resource not found for the segment '{segment}'.")
        key_text, sub = match.group("key"), match.group("sub")
        if key_text is None:
            return self._dispatch_collection(ctx, method, es, sub)
        key = self._parse_key(es, key_text)
        if sub is None:
            return self._dispatch_entity(ctx, method, es, key, key_text)
        if method == "POST" and sub in es.actions:
            self._require_row(es, key, key_text, for_update=True)
            self._run_action(es, key, sub)
            return Response(status=204)
        raise SapError(404, -1000, f"Resource not found for the segment '{sub}'.")

    def _dispatch_collection(self, ctx, method, es, sub) -> Response:
        if sub == "$count" and method == "GET":
            rows = self._query_rows(ctx, es)
            return Response(str(len(rows)), content_type="text/plain;charset=utf-8")
        if sub is not None:
            raise SapError(404, -1000, f"Resource not found for the segment '{sub}'.")
        if method == "GET":
            return self._get_collection(ctx, es)
        if method == "POST" and es.writable:
            return self._create(ctx, es)
        raise SapError(400, -5006, NOT_SUPPORTED_MESSAGE)

    def _dispatch_entity(self, ctx, method, es, key, key_text) -> Response:
        if method == "GET":
            row = self._require_row(es, key, key_text)
            select = self._select(ctx, es)
            body = {META[ctx.version]: ctx.metadata(es.name + ELEMENT[ctx.version])}
            body.update(_render(row, RENDERERS[es.name, ctx.version], select))
            return _json_response(ctx.version, 200, body)
        if method in ("PATCH", "PUT", "MERGE") and es.writable:
            row = self._require_row(es, key, key_text, for_update=True)
            # PUT replaces collections; PATCH merges them unless B1S-ReplaceCollectionsOnPatch is set.
            replace = method == "PUT" or ctx.header("B1S-ReplaceCollectionsOnPatch").lower() == "true"
            self._update(es, row, ctx.json_body(), replace)
            return Response(status=204)
        raise SapError(400, -5006, NOT_SUPPORTED_MESSAGE)

    def _service_document(self, ctx: _Ctx) -> Response:
        sets = [{"name": name, "url": name} for name in ENTITY_SETS]
        return _json_response(ctx.version, 200, {META[ctx.version]: f"{ctx.root}/$metadata", "value": sets})

    @staticmethod
    def _parse_key(es: _EntitySet, text: str):
        text = text.strip()
        if "=" in text and not text.startswith("'"):
            text = text.split("=", 1)[1].strip()
        if es.key_kind == INT:
            if re.fullmatch(r"-?\d+", text):
                return int(text)
        elif len(text) >= 2 and text[0] == text[-1] == "'":
            return text[1:-1].replace("''", "'")
        raise SapError(400, -1000, f"Invalid key value '{text}' for '{es.name}'")

    def _require_row(self, es, key, key_text=None, for_update=False) -> dict:
        row = self._tables[es.name].get(key)
        if row is None:
            if for_update:
                raise SapError(404, -2028, f"Entity with value({key_text or key}) does not exist")
            raise SapError(404, -2028, NOT_FOUND_MESSAGE)
        return row
