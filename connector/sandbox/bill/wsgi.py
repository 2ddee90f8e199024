"""BILL simulator: WSGI entry point and request pipeline."""

from __future__ import annotations

import socket
import string
import time
import uuid
from datetime import UTC, datetime

from werkzeug.wrappers import Request, Response

from connector.sandbox import catalog

from .common import ALNUM, EVENTS_PREFIX, IDEMPOTENCY_TTL, MAIN_PREFIX, ApiError, _bad, _iso, dumps, log
from .routes import _COMPILED
from .state import _Ctx, _Org, _Session


class WsgiMixin:
    """Small internals, the WSGI entry point and the request pipeline (sessions, limits, faults, idempotency)."""

    # ---------------------------------------------------------------- small internals

    def _now_ts(self) -> float:
        value = self._clock()
        return value.timestamp() if isinstance(value, datetime) else float(value)

    def _now_iso(self) -> str:
        return _iso(self._now_ts())

    def _today(self) -> str:
        return datetime.fromtimestamp(self._now_ts(), UTC).date().isoformat()

    def _new_id(self, prefix) -> str:
        """prefix + 17 alphanumerics; "02" + a base-36 counter keeps ids in creation order (ties on time)."""
        n = next(self._seq)
        counter = ""
        for _ in range(8):
            n, rem = divmod(n, 36)
            counter = (string.digits + string.ascii_uppercase)[rem] + counter
        return prefix + "02" + counter + "".join(self._id_rng.choice(ALNUM) for _ in range(7))

    def _org(self, org_id=None) -> _Org:
        org = self._orgs.get(org_id or catalog.BILL_ORG_ID)
        if org is None:
            raise KeyError(f"unknown organization {org_id}")
        return org

    def _error(self, err: ApiError):
        if getattr(err, "entries", None):
            body = [{"timestamp": self._now_iso(), **({"code": e["code"]} if "code" in e else {}), "severity": "ERROR",
                     "category": err.category, "message": e["message"], "params": e.get("params", {})}
                    for e in err.entries]
        else:
            body = [{"timestamp": self._now_iso(), "code": err.code, "severity": "ERROR", "category": err.category,
                     "message": err.message, "params": {}}]
        return err.status, dumps(body)

    # ---------------------------------------------------------------- WSGI

    def __call__(self, environ, start_response):
        req = Request(environ)
        lose = False
        try:
            if req.path.startswith("/_sim/"):
                status, body = self._serve_sim(req)
            else:
                status, body, lose = self._serve(req)
        except Exception:  # a simulator bug must look like a BILL 500, never kill the server thread
            log.exception("BILL simulator failed on %s %s", req.method, req.path)
            status, body = self._error(ApiError(500, "BDC_1001", "System error occurred.", "SERVER"))
        if lose:
            self._drop_connection(environ)
        response = Response(body, status=status, content_type="application/json" if body else None)
        return response(environ, start_response)

    @staticmethod
    def _drop_connection(environ):
        # Closing the socket under werkzeug makes its write fail with BrokenPipe, which it treats as a
        # client disconnect: the client sees a connection closed without a response, the server carries on.
        sock = environ.get("werkzeug.socket")
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _take_rule(self, rules, req):
        for rule in rules:
            if rule["method"] in ("*", req.method) and rule["path"] in req.path:
                rule["count"] -= 1
                if rule["count"] <= 0:
                    rules.remove(rule)
                return rule
        return None

    def _route(self, path, method):
        if path.startswith(EVENTS_PREFIX + "/"):
            service, sub = "events", path[len(EVENTS_PREFIX):]
        elif path.startswith(MAIN_PREFIX + "/"):
            service, sub = "main", path[len(MAIN_PREFIX):]
        else:
            raise ApiError(404, "BDC_1121", "API not supported.")
        method_mismatch = False
        for pattern, route in _COMPILED[service]:
            match = pattern.match(sub)
            if match:
                if route.method == method:
                    return route, match.groups()
                method_mismatch = True
        if method_mismatch:
            raise ApiError(405, "BDC_1121", f"API not supported. Method {method} is not allowed here.")
        raise ApiError(404, "BDC_1121", "API not supported.")

    def _serve(self, req):
        """Returns (status, body bytes, lose_connection)."""
        with self._lock:
            self.request_count += 1
            lose = self._take_rule(self._lose_rules, req) is not None
            injected = self._take_rule(self._fail_rules, req)
        try:
            try:
                route, params = self._route(req.path, req.method)
            except ApiError:
                with self._lock:
                    self.requests_by_path[f"{req.method} {req.path}"] += 1
                raise
            with self._lock:
                self.requests_by_path[f"{req.method} {route.template}"] += 1
            if injected:
                raise ApiError(injected["status"], injected["code"], injected["message"], "DOWNSTREAM",
                               entries=injected.get("entries"))
            if route.handler == "login":
                status, body = self._serve_login(req)
            else:
                status, body = self._serve_api(req, route, params)
        except ApiError as err:
            status, body = self._error(err)
        return status, body, lose

    # ---------------------------------------------------------------- request pipeline

    def _count_hourly(self, counters, dev_key, limit):
        hour = int(self._now_ts() // 3600)
        slot = counters.get(dev_key)
        if slot is None or slot[0] != hour:
            slot = counters[dev_key] = [hour, 0]
        slot[1] += 1
        if slot[1] > limit:
            self.rejected_hourly += 1
            raise ApiError(self.rate_limit_status, "BDC_1144",
                           f"Max number of allowed requests per hour reached: {limit}.", "DOWNSTREAM")

    def _authenticate(self, req) -> _Session:
        dev_key = req.headers.get("devKey")
        if not dev_key or dev_key not in self._dev_keys:
            # [U] status for a bad devKey on an authenticated call; the webhook service doc says 401.
            raise ApiError(401, "BDC_1102", "Developer key is invalid.", "DOWNSTREAM")
        self._count_hourly(self._hourly, dev_key, self.hourly_limit)
        sid = req.headers.get("sessionId")
        session = self._sessions.get(sid) if sid else None
        now = self._now_ts()
        if session is not None and now - session.last_used > self.session_idle_seconds:
            del self._sessions[sid]
            session = None
        if session is None or session.dev_key != dev_key:
            raise ApiError(401, "BDC_1109", "Session is invalid.  Please log in.", "DOWNSTREAM")
        session.last_used = now  # sliding expiry: every call resets the idle timer
        return session

    def _admit(self, slot):
        """Take a concurrency slot for (devKey, org) or refuse at once with BDC_1322."""
        if self._in_flight[slot] >= self.concurrency_limit:
            self.rejected_concurrent += 1
            raise ApiError(self.rate_limit_status, "BDC_1322",
                           "Max number of concurrent requests per organization reached.", "DOWNSTREAM")
        self._in_flight[slot] += 1
        if self._in_flight[slot] > self.max_in_flight_seen.get(slot, 0):
            self.max_in_flight_seen[slot] = self._in_flight[slot]

    def _idempotency_key(self, req):
        key = req.headers.get("X-Idempotent-Key")
        if not key:
            raise ApiError(400, "BDC_1108", "Missing parameter value for parameter: X-Idempotent-Key.")
        try:
            parsed = uuid.UUID(key)
        except ValueError:
            parsed = None
        if parsed is None or parsed.version != 4:
            raise _bad(f"Invalid field,value: X-Idempotent-Key, {key}. Must be a UUID4.")
        return str(parsed)

    def _serve_api(self, req, route, params):
        idem_key = self._idempotency_key(req) if route.idem else None
        with self._lock:
            session = self._authenticate(req)
            slot = (session.dev_key, session.org_id)
            self._admit(slot)
            idem_slot = (session.org_id, idem_key)
            if idem_key and idem_slot in self._idem_in_flight:
                self._in_flight[slot] -= 1
                raise ApiError(429, "BDC_1119", "A request with the same X-Idempotent-Key is in progress.")
            if idem_key:
                self._idem_in_flight.add(idem_slot)
        ctx = None
        try:
            if self.latency:
                time.sleep(self.latency)  # outside the lock: the request stays "in flight" meanwhile
            with self._lock:
                if self.error_rate and self._rng.random() < self.error_rate:
                    raise ApiError(500, "BDC_1001", "System error occurred.", "SERVER")
                ctx = _Ctx(req, self._orgs[session.org_id], session, self._now_iso())
                status, body = self._execute(ctx, route, params, idem_key)
        finally:
            with self._lock:
                self._in_flight[slot] -= 1
                self._idem_in_flight.discard(idem_slot)
        self._dispatch(ctx.out)  # after releasing the slot: webhooks are not part of the API call
        return status, body

    def _execute(self, ctx, route, params, idem_key):
        org = ctx.org
        if idem_key:
            cached = org.idempotency.get(idem_key)
            if cached and cached[0] > self._now_ts():
                return cached[1], cached[2]
        try:
            status, obj = getattr(self, "_h_" + route.handler)(ctx, *route.extra, *params)
            body = b"" if obj is None else dumps(obj)
        except ApiError as err:
            ctx.out.clear()  # nothing happened, nothing to announce
            status, body = self._error(err)
        if idem_key and status < 500:
            org.idempotency[idem_key] = (self._now_ts() + IDEMPOTENCY_TTL, status, body)
        return status, body
