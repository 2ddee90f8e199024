"""SAP simulator: HTTP helpers (cookies, query strings, error bodies, responses, request context)."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from urllib.parse import unquote, unquote_plus

from werkzeug.wrappers import Request, Response

from .schema import INT, SapError, _EntitySet

# ---------------------------------------------------------------------------------------------------------------
# HTTP helpers
# ---------------------------------------------------------------------------------------------------------------

_RESOURCE_RE = re.compile(r"^(?P<set>[A-Za-z_][A-Za-z0-9_]*)(?:\((?P<key>'(?:[^']|'')*'|[^()]*)\))?"
                          r"(?:/(?P<sub>[^/]+))?$")
_VERSION_RE = re.compile(r"^/b1s/v([12])(?:/(.*))?$")

META = {1: "odata.metadata", 2: "@odata.context"}
NEXT_LINK = {1: "odata.nextLink", 2: "@odata.nextLink"}
COUNT = {1: "odata.count", 2: "@odata.count"}
ELEMENT = {1: "/@Element", 2: "/$entity"}
JSON_TYPE = {1: "application/json;odata=minimalmetadata;charset=utf-8",
             2: "application/json;odata.metadata=minimal;charset=utf-8"}
VERSION_HEADER = {1: ("DataServiceVersion", "3.0"), 2: ("OData-Version", "4.0")}


def _cookie(header: str, name: str) -> str | None:
    for part in re.split(r"[;,]", header or ""):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value.strip().strip('"')
    return None


def _parse_query(query_string: str) -> list[tuple[str, str]]:
    """Decode the query string keeping order (nextLinks repeat the client's options in its order)."""
    options = []
    for part in query_string.split("&"):
        if part:
            key, _, value = part.partition("=")
            options.append((unquote(key), unquote_plus(value)))
    return options


def _error_body(version: int, code, message: str, strings: bool = False) -> dict:
    if strings:
        return {"error": {"code": str(code), "message": message}}
    if version == 2:
        return {"error": {"code": str(code), "message": message, "details": [{"code": "", "message": ""}]}}
    try:
        code = int(code)
    except (TypeError, ValueError):
        pass
    return {"error": {"code": code, "message": {"lang": "en-us", "value": message}}}


def _json_response(version: int, status: int, body, headers=()) -> Response:
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    return Response(data, status=status, headers=[VERSION_HEADER[version], *headers],
                    content_type=JSON_TYPE[version])


def _error_response(version: int, error: SapError) -> Response:
    body = _error_body(version, error.code, error.message, getattr(error, "strings", False))
    return _json_response(version, error.status, body)


def _html_response(status: int, html: str) -> Response:
    return Response(html, status=status, content_type="text/html; charset=iso-8859-1")


def _key_literal(es: _EntitySet, key) -> str:
    return str(key) if es.key_kind == INT else "'" + str(key).replace("'", "''") + "'"


class _Ctx:
    """One API request: version, roots for metadata/Location, headers and options."""

    def __init__(self, environ: dict, version: int, session_id: str | None = None):
        self.environ = environ
        self.version = version
        self.request = Request(environ)
        self.host_root = f"{environ.get('wsgi.url_scheme', 'http')}://{environ.get('HTTP_HOST', 'localhost')}"
        self.root = f"{self.host_root}/b1s/v{version}"
        self.options = _parse_query(environ.get("QUERY_STRING", ""))
        self.session_id = session_id

    def header(self, name: str, default: str = "") -> str:
        return self.request.headers.get(name, default)

    def option(self, name: str) -> str | None:
        value = None
        for key, val in self.options:
            if key == name:
                value = val
        return value

    def prefer_tokens(self) -> list[str]:
        return [t.strip() for t in self.header("Prefer").split(",") if t.strip()]

    def json_body(self) -> dict:
        raw = self.request.get_data()
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw, parse_float=Decimal)
        except ValueError as exc:
            raise SapError(400, -1000, "Invalid JSON payload") from exc
        if not isinstance(body, dict):
            raise SapError(400, -1000, "Invalid JSON payload")
        return body

    def metadata(self, fragment: str) -> str:
        return f"{self.root}/$metadata#{fragment}"
