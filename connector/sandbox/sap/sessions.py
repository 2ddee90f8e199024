"""SAP simulator: sessions (Login/Logout, expiry)."""

from __future__ import annotations

import time
import uuid

from werkzeug.wrappers import Response

from .. import catalog
from .protocol import ELEMENT, META, _cookie, _Ctx, _json_response
from .schema import LOGIN_FAILED_MESSAGE, NOT_SUPPORTED_MESSAGE, SESSION_MESSAGE, SL_VERSION, SapError


class SessionsMixin:
    """Login/Logout, session cookies and idle expiry."""

    # ------------------------------------------------------------------------------------------- sessions
    def _login(self, ctx: _Ctx, method: str) -> Response:
        if method != "POST":
            raise SapError(400, -5006, NOT_SUPPORTED_MESSAGE)
        with self._lock:
            self.login_count += 1
            self._logins_in_progress += 1
            too_many = self._logins_in_progress > self.login_concurrency_limit
        try:
            if self.login_latency:
                time.sleep(self.login_latency)
            if too_many:
                # Live SL: parallel Login calls fail with HTTP 500 code 299.
                raise SapError(500, 299, "SAML Login Failed")
            session_id = self._open_session(ctx.json_body())
        finally:
            with self._lock:
                self._logins_in_progress -= 1
        body = {META[ctx.version]: ctx.metadata("B1Sessions" + ELEMENT[ctx.version]), "SessionId": session_id,
                "Version": SL_VERSION, "SessionTimeout": self.session_timeout}
        # Exactly the documented headers: B1SESSION without Path and with a trailing ';'.
        cookies = [("Set-Cookie", f"B1SESSION={session_id};HttpOnly;"), ("Set-Cookie", "ROUTEID=.node1; path=/b1s")]
        return _json_response(ctx.version, 200, body, cookies)

    def _open_session(self, body: dict) -> str:
        if body.get("CompanyDB") != self.company_db:
            raise SapError(401, -306, LOGIN_FAILED_MESSAGE)
        if body.get("UserName") != catalog.SAP_USER or body.get("Password") != catalog.SAP_PASSWORD:
            raise SapError(401, -304, LOGIN_FAILED_MESSAGE)
        session_id = str(uuid.uuid4())
        with self._lock:
            self._sessions[session_id] = time.monotonic()
        return session_id

    def _idle_limit(self) -> float:
        if self.session_idle_seconds is not None:
            return float(self.session_idle_seconds)
        return self.session_timeout * 60.0

    def _check_session(self, environ) -> str:
        session_id = _cookie(environ.get("HTTP_COOKIE", ""), "B1SESSION")
        now = time.monotonic()
        last = self._sessions.get(session_id) if session_id else None
        if last is None or now - last > self._idle_limit():
            if session_id:
                self._sessions.pop(session_id, None)
            raise SapError(401, 301, SESSION_MESSAGE, strings=self.expiry_response == "strings")
        # Idle timeout: every request extends the session.
        self._sessions[session_id] = now
        return session_id
