"""BILL simulator: auth handlers."""

from __future__ import annotations

import hmac
import secrets
import time

from .common import ApiError, dumps
from .state import _Ctx, _Session


class SessionsMixin:
    """Login, session info and logout handlers."""

    # ---------------------------------------------------------------- auth handlers

    def _serve_login(self, req):
        ctx = _Ctx(req, None, None, None)
        with self._lock:
            self.login_count += 1
            data = ctx.json()
            dev_key = data.get("devKey")
            if not isinstance(dev_key, str) or dev_key not in self._dev_keys:
                raise ApiError(400, "BDC_1102", "Developer key is invalid.", "DOWNSTREAM")
            # login counts against both the 200/h login cap and the general hourly cap of the devKey
            self._count_hourly(self._login_hourly, dev_key, self.login_hourly_limit)
            self._count_hourly(self._hourly, dev_key, self.hourly_limit)
        if self.latency:
            time.sleep(self.latency)  # [U] login is not counted against the concurrency limit here
        with self._lock:
            username, password = data.get("username"), data.get("password")
            user = self._users.get(username) if isinstance(username, str) else None
            if user is None or not isinstance(password, str) or not hmac.compare_digest(
                    password.encode("utf-8"), user["password"].encode("utf-8")):
                raise ApiError(400, "BDC_1101", "User name and/or password do not match our records.",
                               "DOWNSTREAM")
            org_id = data.get("organizationId")
            if not isinstance(org_id, str) or org_id not in self._orgs or org_id not in user["orgs"]:
                # [U] code for an unknown/unauthorized org; BDC_1123 is "Invalid organization id." in the list
                raise ApiError(400, "BDC_1123", "Invalid organization id.", "DOWNSTREAM")
            sid = "!" + secrets.token_urlsafe(24)
            self._sessions[sid] = _Session(sid, org_id, user["user_id"], dev_key, self._now_ts())
            body = {"organizationId": org_id, "sessionId": sid, "trusted": False, "userId": user["user_id"]}
        return 200, dumps(body)

    def _h_session_info(self, ctx):
        # [U] mfaStatus wording; sessions created here are never MFA-trusted
        return 200, {"organizationId": ctx.org.id, "userId": ctx.session.user_id, "mfaStatus": "NOT_TRUSTED",
                     "mfaBypass": False}

    def _h_logout(self, ctx):
        self._sessions.pop(ctx.session.sid, None)
        return 200, None  # BILL answers logout with an empty 200 body
