"""SAP simulator: /_sim control endpoints."""

from __future__ import annotations

import json
import re
from datetime import timedelta

from werkzeug.wrappers import Request, Response

from .schema import ENTITY_SETS, SapError
from .values import RENDERERS, _render


class ControlMixin:
    """/_sim control endpoints for a simulator running in another process."""

    # ------------------------------------------------------------------------------------------- /_sim control
    def _sim_control(self, environ) -> Response:
        request = Request(environ)
        path = environ.get("PATH_INFO", "").rstrip("/")
        try:
            body = json.loads(request.get_data() or b"{}")
            result = self._sim_route(request.method, path, body if isinstance(body, dict) else {})
        except SapError as error:
            result = (400, {"error": {"code": error.code, "message": error.message, "status": error.status}})
        except (ValueError, TypeError, KeyError) as error:
            result = (400, {"error": {"code": "bad_request", "message": str(error)}})
        status, payload = result
        return Response(json.dumps(payload, default=str), status=status, content_type="application/json")

    def _sim_route(self, method: str, path: str, body: dict):
        routes = {
            ("GET", "/_sim/stats"): lambda: self.stats(),
            ("POST", "/_sim/reset_stats"): lambda: self.reset_stats() or self.stats(),
            ("POST", "/_sim/knobs"): lambda: self._set_knobs(body),
            ("POST", "/_sim/invoices"): lambda: self._render_v1("PurchaseInvoices", self.add_invoice(**body)),
            ("POST", "/_sim/seed"): lambda: self._sim_seed(body),
            ("POST", "/_sim/seed_demo"): lambda: {"doc_entries": self.seed_demo_invoices()},
            ("POST", "/_sim/seed_ap_documents_demo"): lambda: self.seed_ap_documents_demo(),  # credit_notes.py
            ("POST", "/_sim/expire_sessions"): lambda: self.expire_all_sessions() or {"ok": True},
            ("POST", "/_sim/clock"): lambda: self._sim_clock(body),
            ("POST", "/_sim/lose_next"): lambda: self.lose_next_response(**body) or {"ok": True},
            ("POST", "/_sim/fail_next"): lambda: self.fail_next(**body) or {"ok": True},
        }
        handler = routes.get((method, path))
        if handler:
            return 200, handler()
        match = re.fullmatch(r"/_sim/invoices/(\d+)(?:/(cancel|close|reopen))?", path)
        if match and method == "POST":
            return 200, self._sim_invoice_action(int(match.group(1)), match.group(2), body)
        match = re.fullmatch(r"/_sim/entities/(\w+)", path)
        if match and method == "GET" and match.group(1) in ENTITY_SETS:
            name = match.group(1)
            return 200, [self._render_v1(name, row) for row in self.entities(name)]
        return 404, {"error": {"code": "not_found", "message": f"{method} {path}"}}

    @staticmethod
    def _render_v1(name: str, row: dict) -> dict:
        return _render(row, RENDERERS[name, 1])

    _KNOBS = ("latency", "error_rate", "session_timeout", "session_idle_seconds", "expiry_response",
              "login_concurrency_limit", "login_latency", "default_page_size", "next_link_style")

    def _set_knobs(self, body: dict) -> dict:
        unknown = set(body) - set(self._KNOBS)
        if unknown:
            raise ValueError(f"unknown knobs: {sorted(unknown)}")
        if body.get("expiry_response", "standard") not in ("standard", "strings"):
            raise ValueError("expiry_response is 'standard' or 'strings': SAP expires sessions with 401 / 301 only")
        for name, value in body.items():
            setattr(self, name, value)
        return {name: getattr(self, name) for name in self._KNOBS}

    def _sim_seed(self, body: dict) -> dict:
        entries = self.seed_invoices(**body)
        return {"created": len(entries), "first_doc_entry": entries[0] if entries else None,
                "last_doc_entry": entries[-1] if entries else None}

    def _sim_clock(self, body: dict) -> dict:
        if "offset_seconds" in body:
            self.clock_offset = timedelta(seconds=body["offset_seconds"])
        if "advance_seconds" in body:
            self.clock_offset += timedelta(seconds=body["advance_seconds"])
        return {"now": self.now().isoformat(), "offset_seconds": self.clock_offset.total_seconds()}

    def _sim_invoice_action(self, doc_entry: int, action: str | None, body: dict) -> dict:
        if action == "cancel":
            row = self.cancel_invoice(doc_entry)
        elif action == "close":
            row = self.close_invoice(doc_entry)
        elif action == "reopen":
            row = self.reopen_invoice(doc_entry)
        else:
            row = self.update_invoice(doc_entry, **body)
        return self._render_v1("PurchaseInvoices", row)
