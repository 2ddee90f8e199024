"""SAP simulator: WSGI entry point and fault injection."""

from __future__ import annotations

import json
import re
import socket
import time

from werkzeug.wrappers import Response

from .protocol import _RESOURCE_RE, _VERSION_RE, _Ctx, _error_response, _html_response
from .schema import APACHE_404, APACHE_503, SapError


class WsgiMixin:
    """WSGI entry point: request counting, injected faults (lost responses, canned errors, 5xx), ping."""

    # ------------------------------------------------------------------------------------------------ WSGI
    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/_sim" or path.startswith("/_sim/"):
            return self._sim_control(environ)(environ, start_response)
        method = environ.get("REQUEST_METHOD", "GET").upper()
        override = environ.get("HTTP_X_HTTP_METHOD_OVERRIDE")
        if method == "POST" and override:
            method = override.upper()
        with self._lock:
            self.request_count += 1
            self.requests_by_path[self._stats_key(method, path)] += 1
        if self.latency:
            time.sleep(self.latency)
        response = self._answer(environ, method, path)
        if self._take_rule(self._lost_rules, method, path):
            self._drop_connection(environ)
            # werkzeug treats ConnectionError from the app as a dropped client and sends nothing.
            raise ConnectionAbortedError("simulated lost response")
        return response(environ, start_response)

    @staticmethod
    def _stats_key(method: str, path: str) -> str:
        match = _VERSION_RE.match(path)
        if not match:
            return f"{method} ping" if path.startswith("/ping") else f"{method} {path}"
        resource = (match.group(2) or "").rstrip("/")
        parts = _RESOURCE_RE.match(resource)
        if not parts:
            return f"{method} {resource}"
        key = "(*)" if parts.group("key") is not None else ""
        sub = f"/{parts.group('sub')}" if parts.group("sub") else ""
        return f"{method} {parts.group('set')}{key}{sub}"

    def _take_rule(self, rules: list, method: str, path: str):
        if not rules:
            return None
        with self._lock:
            for rule in rules:
                if rule["method"] in ("*", method) and rule["path"] in path:
                    rule["remaining"] -= 1
                    if rule["remaining"] <= 0:
                        rules.remove(rule)
                    return rule
        return None

    @staticmethod
    def _drop_connection(environ):
        sock = environ.get("werkzeug.socket")
        if sock is None:
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _roll_error(self) -> bool:
        if not self.error_rate:
            return False
        with self._lock:
            return self._rng.random() < self.error_rate

    def _answer(self, environ, method: str, path: str) -> Response:
        if self._roll_error():
            return _html_response(503, APACHE_503)
        match = _VERSION_RE.match(path)
        version = int(match.group(1)) if match else 1
        rule = self._take_rule(self._fail_rules, method, path)
        if rule:
            return _error_response(version, rule["error"])
        if not match:
            return self._answer_ping(path)
        resource = (match.group(2) or "").rstrip("/")
        try:
            if resource == "Login":
                return self._login(_Ctx(environ, version), method)
            with self._lock:
                session_id = self._check_session(environ)
                return self._dispatch(_Ctx(environ, version, session_id), method, resource)
        except SapError as error:
            return _error_response(version, error)

    @staticmethod
    def _answer_ping(path: str) -> Response:
        if path in ("/ping", "/ping/"):
            body = {"message": "pong", "sender": "load balancer", "timestamp": time.time()}
            return Response(json.dumps(body), content_type="application/json")
        node = re.match(r"^/ping/node/(\d+)/?$", path)
        if node and node.group(1) == "1":
            body = {"message": "pong", "sender": "node 1", "timestamp": time.time()}
            return Response(json.dumps(body), content_type="application/json")
        if node:
            return _html_response(503, APACHE_503)
        return _html_response(404, APACHE_404)
