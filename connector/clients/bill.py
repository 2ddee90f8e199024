"""Client for the BILL v3 API (`/connect/v3`) and its webhook service (`/connect-events/v3`).

Knows BILL's quirks: `devKey` + `sessionId` headers, re-login once on HTTP 401 / BDC_1109, at most
3 requests in flight per organization across the whole deployment (a shared limiter), jittered backoff
on BDC_1322, a stop until the next hour on BDC_1144, `nextPage` paging, errors as a JSON array with one
entry per problem (all kept: `code` may be null or missing, `params` an object or an array), 403 BDC_1361
(untrusted session: never a re-login), 404 (BDC_1205 unknown id), 422 refusals treated like 400.
Returns plain dicts; raises errors.BillError. Reference: shared/reference/bill-api.md, api-facts-addendum.md §3.
"""

import hashlib
import json
import random
import time
from datetime import timedelta

from django.utils import timezone

from .errors import (
    BillError,
    BillHourlyLimit,
    BillLoginFailed,
    BillNotFound,
    BillRateLimited,
    BillSessionExpired,
    BillUntrustedSession,
)
from .http import DEFAULT_TIMEOUT, Transport

SESSION_INVALID = "BDC_1109"
TOO_MANY_IN_FLIGHT = "BDC_1322"
HOURLY_CAP = "BDC_1144"
UNTRUSTED_SESSION = "BDC_1361"
LOGIN_FAILED_CODES = {"BDC_1101", "BDC_1102"}
SESSION_IDLE_LIMIT = timedelta(minutes=30)  # BILL expires after 35 idle minutes; re-login a little early
MAX_PAGE = 100


def _param_values(params):
    """BILL's `params`, an object {name: value} or an array [{name, value, additional}], as {name: value}."""
    if isinstance(params, dict):
        return {str(k): v for k, v in params.items()}
    if isinstance(params, list):
        return {str(p.get("name")): p.get("value") for p in params if isinstance(p, dict) and p.get("name") is not None}
    return {}


def _fill_placeholders(message, params):
    """BILL sometimes leaves `${paramName0}` in a message: fill it from params when they say, else leave it."""
    values = _param_values(params)
    for name, value in values.items():
        message = message.replace("${" + name + "}", str(value))
    return message


def bill_error_entries(resp):
    """Every problem of a BILL error answer as [{code, message, category, params}] (`code` may be None).

    A bare array with one entry per problem (v3), a single object, the v2 `response_data` wrapper, or any other body.
    """
    try:
        body = resp.json()
    except ValueError:
        return [{"code": None, "message": (resp.text or "").strip()[:300] or f"HTTP {resp.status_code}",
                 "category": None, "params": {}}]
    items = body if isinstance(body, list) else [body]
    entries = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("response_data"), dict):  # v2-style wrapper
            data = item["response_data"]
            item = {"code": data.get("error_code"), "message": data.get("error_message")}
        if not isinstance(item, dict):
            entries.append({"code": None, "message": str(item)[:300], "category": None, "params": {}})
            continue
        code = item.get("code")
        message = str(item.get("message") or item.get("detail") or "")
        entries.append({
            "code": None if code in (None, "") else str(code), "message": _fill_placeholders(message, item.get("params")),
            "category": item.get("category"), "params": item.get("params") or {},
        })
    return entries


def bill_error_text(entries):
    """All messages, each with its code when it has one and there are several; (first code, text)."""
    codes = [e["code"] for e in entries if e["code"]]
    if len(entries) <= 1:
        return (codes[0] if codes else None), (entries[0]["message"] if entries else "")
    parts = [e["message"] + (f" ({e['code']})" if e["code"] else "") for e in entries]
    return (codes[0] if codes else None), f"{len(entries)} problems: " + "; ".join(parts)


def parse_bill_error(resp):
    """(code, message) from BILL's error array: the first code BILL gave, and every entry's message."""
    return bill_error_text(bill_error_entries(resp))


def events_base_url(base):
    """BILL's webhook service: the API base with its last part `connect` replaced by `connect-events`
    (…/connect → …/connect-events). A base that does not end in /connect serves both itself."""
    base = base.rstrip("/")
    head, _, last = base.rpartition("/")
    return f"{head}/connect-events" if last == "connect" and "://" in head else base


def _spender(dev_key):
    from connector import budget

    return lambda kind: budget.take(dev_key, kind)


def next_hour(now):
    return now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)


class HourlyBlock:
    """Remembers BDC_1144 per developer key in the database, so every worker stops calling until the hour turns."""

    def __init__(self, dev_key):
        self.key = "bill-hour:" + hashlib.sha256(dev_key.encode()).hexdigest()[:24]

    def blocked_until(self):
        from connector.models import RateLimitBlock

        row = RateLimitBlock.objects.filter(key=self.key, until__gt=timezone.now()).first()
        return row.until if row else None

    def block(self, until, reason):
        from connector.models import RateLimitBlock

        RateLimitBlock.objects.update_or_create(key=self.key, defaults={"until": until, "reason": reason[:300]})


class BillClient:
    """One BILL organization. Create one per sync run (or longer); it re-uses the stored session."""

    backoff_initial = 0.25
    backoff_max = 8.0
    max_rate_limit_retries = 8

    def __init__(
        self, base_url, username, password, organization_id, dev_key, *, session_store, limiter, events_base_url=None,
        connection_id=None, timeout=DEFAULT_TIMEOUT, max_in_flight=3, hourly_block=None, allow_private_network=False,
        spend=None,
    ):
        self.base_url = base_url.rstrip("/")
        self.events_base_url = (events_base_url or self._events_url(self.base_url)).rstrip("/")
        self.username = username
        self._password = password
        self.organization_id = organization_id
        self._dev_key = dev_key
        self.store = session_store
        self.limiter = limiter
        self.max_in_flight = max_in_flight
        self.limiter_key = f"bill:{organization_id}"
        self.hourly = hourly_block
        # Counts each call against the developer key's hourly budget before it is sent; may raise (deferred / wait).
        self.spend = spend or (lambda kind: None)
        self.transport = Transport(system="bill", connection_id=connection_id, timeout=timeout,
                                   allow_private_network=allow_private_network)
        self._session_id = None
        self._generation = None

    @staticmethod
    def _events_url(base):
        return events_base_url(base)

    @classmethod
    def for_connection(cls, connection, **kw):
        from django.conf import settings

        from connector.limiter import get_limiter
        from connector.sessions import DatabaseSessionStore

        return cls(
            connection.bill_base_url, connection.bill_username, connection.bill_password,
            connection.bill_organization_id, connection.bill_dev_key,
            session_store=DatabaseSessionStore(connection, "bill"), limiter=get_limiter(),
            events_base_url=connection.bill_events_url, connection_id=connection.pk,
            max_in_flight=settings.BILL_MAX_IN_FLIGHT, hourly_block=HourlyBlock(connection.bill_dev_key),
            spend=_spender(connection.bill_dev_key),
            allow_private_network=connection.allow_private_network, **kw,
        )

    # --- session -----------------------------------------------------------------------------------------
    def login(self, stale_generation=None):
        with self.store.login_lock():
            token, generation, _ = self.store.load()
            if token and stale_generation is not None and generation != stale_generation:
                self._session_id, self._generation = token, generation
                return
            body = {
                "username": self.username, "password": self._password,
                "organizationId": self.organization_id, "devKey": self._dev_key,
            }
            busy_retries = 0
            while True:
                resp = self._send("POST", f"{self.base_url}/v3/login", "/v3/login", busy_retries + 1, json_body=body,
                                  auth=False)
                code, message = parse_bill_error(resp) if resp.status_code != 200 else (None, "")
                if not self._busy(resp, code) or not self._wait_when_busy(busy_retries):
                    break
                busy_retries += 1
            if resp.status_code != 200:
                if self._busy(resp, code):
                    raise BillRateLimited(f"BILL kept answering 'too many concurrent requests' to the login: {message}",
                                          status=resp.status_code, code=code, path="/v3/login")
                self._raise_for_limits(resp, code, message)
                if code in LOGIN_FAILED_CODES or resp.status_code in (400, 401, 403):
                    raise BillLoginFailed(self._login_failure_words(code, message), status=resp.status_code, code=code)
                raise BillError(f"BILL login failed: {message}", status=resp.status_code, code=code, path="/v3/login")
            session_id = resp.json().get("sessionId")
            if not session_id:
                raise BillError("BILL login answered without a sessionId", status=resp.status_code, path="/v3/login")
            self._generation = self.store.save(session_id)
            self._session_id = session_id

    def _login_failure_words(self, code, message):
        if code == "BDC_1101":
            return f"wrong BILL user name or password for {self.username} ({message})"
        if code == "BDC_1102":
            return f"BILL developer key is not valid for this environment ({message})"
        return f"BILL refused the login: {message}"

    def _ensure_session(self):
        if self._session_id is None:
            token, generation, last_used = self.store.load()
            if token and not (last_used and timezone.now() - last_used >= SESSION_IDLE_LIMIT):
                self._session_id, self._generation = token, generation
            else:
                self.login(stale_generation=generation)

    def logout(self):
        if self._session_id:
            self._send("POST", f"{self.base_url}/v3/logout", "/v3/logout", 1)
            self.store.clear()
            self._session_id = None

    # --- requests ----------------------------------------------------------------------------------------
    def _headers(self, auth=True, extra=None):
        headers = {"Accept": "application/json"}
        if auth:
            headers["devKey"] = self._dev_key
            headers["sessionId"] = self._session_id or ""
        if extra:
            headers.update(extra)
        return headers

    def _send(self, method, url, path, attempt, *, params=None, json_body=None, auth=True, headers=None):
        """One HTTP call inside one of the organization's request slots."""
        if self.hourly is not None:
            until = self.hourly.blocked_until()
            if until:
                raise BillHourlyLimit(
                    f"BILL hourly request limit reached for this developer key; calls resume at {until:%H:%M} UTC",
                    until=until, code=HOURLY_CAP, path=path,
                )
        self.spend("request")
        if path == "/v3/login":
            self.spend("login")
        with self.limiter.slot(self.limiter_key, self.max_in_flight):
            return self.transport.send(
                method, url, path=path, attempt=attempt, params=params, json=json_body,
                headers=self._headers(auth, headers),
            )

    def _raise_for_limits(self, resp, code, message):
        if code == HOURLY_CAP:
            until = next_hour(timezone.now())
            if self.hourly is not None:
                self.hourly.block(until, message)
            raise BillHourlyLimit(
                f"BILL hourly request limit reached ({message}); no more calls until {until:%H:%M} UTC",
                until=until, status=resp.status_code, code=code,
            )

    def request(self, method, path, *, params=None, json_body=None, events=False, headers=None):
        """Send one call and return parsed JSON. Handles re-login (once) and BDC_1322 backoff."""
        self._ensure_session()
        base = self.events_base_url if events else self.base_url
        url = f"{base}{path}"
        relogged = False
        busy_retries = 0
        attempt = 0
        while True:
            attempt += 1
            resp = self._send(method, url, path, attempt, params=params, json_body=json_body, headers=headers)
            if resp.status_code < 400:
                self.store.touch()
                return resp.json() if resp.content else None
            entries = bill_error_entries(resp)
            code, message = bill_error_text(entries)
            if any(e["code"] == UNTRUSTED_SESSION for e in entries):
                # MFA trust, not an expired session: a new login gets an equally untrusted one (BX looped on it).
                raise BillUntrustedSession(
                    f"BILL refused the call: {message} ({UNTRUSTED_SESSION}). The BILL user {self.username} has no "
                    "trusted session for this action: in BILL, sign in as that user, complete 2-step verification "
                    "and trust this device/API session (or ask BILL support to enable API access with MFA trust), "
                    "then replay.", status=resp.status_code, code=UNTRUSTED_SESSION, path=path, problems=entries,
                )
            if (resp.status_code == 401 or code == SESSION_INVALID) and not relogged:
                # An invalid session means nothing was executed: replaying even a POST is safe.
                relogged = True
                self.login(stale_generation=self._generation)
                continue
            if self._busy(resp, code):
                # Someone else (another integration on this org) is using the budget too: back off and retry.
                if self._wait_when_busy(busy_retries):
                    busy_retries += 1
                    continue
                raise BillRateLimited(
                    f"BILL kept answering 'too many concurrent requests' after {busy_retries} retries: {message}",
                    status=resp.status_code, code=code, path=path,
                )
            self._raise_for_limits(resp, code, message)
            error = self._error(resp.status_code, code, message, path, relogged)
            error.problems = entries
            raise error

    @staticmethod
    def _busy(resp, code):
        """BDC_1322, whatever its HTTP status; also a bare 429 without a BILL code."""
        return code == TOO_MANY_IN_FLIGHT or (resp.status_code == 429 and code in (None, ""))

    def _wait_when_busy(self, retries_so_far):
        """Sleep a jittered, growing delay; False when the retries are used up."""
        if retries_so_far >= self.max_rate_limit_retries:
            return False
        delay = min(self.backoff_max, self.backoff_initial * (2**retries_so_far))
        time.sleep(random.uniform(delay / 2, delay))
        return True

    @staticmethod
    def _error(status, code, message, path, relogged):
        if status == 404:
            return BillNotFound(message, status=status, code=code, path=path)
        if relogged and (status == 401 or code == SESSION_INVALID):
            return BillSessionExpired(f"BILL rejected a fresh session: {message}", status=status, code=code, path=path)
        err = BillError(message, status=status, code=code, path=path)
        err.permanent = status < 500
        return err

    def get(self, path, params=None, **kw):
        return self.request("GET", path, params=params, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, json_body=body, **kw)

    def patch(self, path, body, **kw):
        return self.request("PATCH", path, json_body=body, **kw)

    def iterate(self, path, *, filters=None, sort=None, page_size=MAX_PAGE, events=False):
        """Yield every result of a list endpoint, following `nextPage` until it is absent."""
        params = {"max": str(min(page_size, MAX_PAGE))}
        if filters:
            params["filters"] = ",".join(filters) if isinstance(filters, (list, tuple)) else filters
        if sort:
            params["sort"] = sort
        while True:
            data = self.request("GET", path, params=params, events=events)
            results = data.get("results", []) if isinstance(data, dict) else data
            yield from results
            next_page = data.get("nextPage") if isinstance(data, dict) else None
            if not next_page:
                return
            params = {**params, "page": next_page}

    def keep_warm(self):
        """One cheap read on the stored session, so BILL does not drop it after 35 idle minutes (a login costs more,
        and BILL allows only 200 an hour per developer key)."""
        try:
            self.request("GET", "/v3/login/session")
        except BillNotFound:  # a gateway without the session-check endpoint
            self.request("GET", "/v3/vendors", params={"max": "1"})

    def ping(self):
        """Log in afresh and check the session: proves URL, credentials, organization and developer key."""
        self.login()
        try:
            self.request("GET", "/v3/login/session")
        except BillNotFound:  # a gateway without the session-check endpoint: any read proves the session
            self.request("GET", "/v3/vendors", params={"max": "1"})
        return f"logged in to organization {self.organization_id} as {self.username}"


def filter_value(value):
    """Quote a value for BILL's `filters` parameter."""
    return json.dumps(str(value))
