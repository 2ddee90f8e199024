"""Client for the SAP Business One Service Layer (OData v3 at /b1s/v1, v4 at /b1s/v2).

Knows SAP's quirks: B1SESSION/ROUTEID cookies sent by hand (the Path-less B1SESSION cookie is mis-scoped by
cookie jars), one login at a time, re-login once on an expired session (HTTP 401 / code 301 on both /b1s/v1 and
/b1s/v2, code a number or a string, message an object or a string), server-driven paging through
odata.nextLink / @odata.nextLink with `Prefer: odata.maxpagesize`, and both error shapes. `-5002` is SAP's
generic validation error: only one whose message speaks of the session counts as expiry; any other is a
validation error, never retried, reported in plain words (`explain_sap_error`). Returns plain dicts; raises
errors.SapError.
Reference: shared/reference/sap-b1-service-layer.md.
"""

import json
import re
from datetime import timedelta
from urllib.parse import urljoin, urlsplit

from django.utils import timezone

from .errors import SapError, SapLoginFailed, SapNotFound, SapSessionExpired
from .http import DEFAULT_TIMEOUT, Transport, origin, redact_url

SESSION_EXPIRED_CODES = {"301"}
VALIDATION_CODE = "-5002"  # SAP's generic DI validation error; a few systems also use it for expiry
SESSION_WORDS = re.compile(r"session|time ?out|log ?in|log ?on|sign ?in", re.IGNORECASE)
LOGIN_FAILED_CODES = {"-304", "-306", "100000027"}
DEFAULT_PAGE_SIZE = 100


def parse_sap_error(resp):
    """(code, message) from a v1 or v2 error body; (None, text) when the body is not SAP's JSON (e.g. a proxy page)."""
    try:
        err = resp.json()["error"]
    except (ValueError, KeyError, TypeError):
        text = (resp.text or "").strip()
        return None, (text[:300] or resp.reason or f"HTTP {resp.status_code}")
    code = err.get("code")
    message = err.get("message")
    if isinstance(message, dict):
        message = message.get("value")
    return (None if code in (None, "") else str(code)), (message or "")


def is_session_error(status, code, message):
    """HTTP 401 (any code) or code 301 is an expired session; -5002 only when its message speaks of the session."""
    code = None if code in (None, "") else str(code)
    if status == 401 or code in SESSION_EXPIRED_CODES:
        return True
    return code == VALIDATION_CODE and bool(SESSION_WORDS.search(message or ""))


# SAP names the refused field as [TABLE.Field]: what it is, and what a person should do about it.
FIELD_WORDS = {
    "OVPM.TrsfrAcct": "the payment account (sap.payment_account in the connection file) is not an account of this "
                      "SAP company: put a valid G/L account code there",
    "OVPM.CashAcct": "the cash account of the outgoing payment is not an account of this SAP company",
    "OVPM.BPLId": "the branch of the outgoing payment is missing or not an active branch: give the invoice a "
                  "branch in SAP (or activate it under Business Places)",
    "OVPM.CardCode": "the supplier of the outgoing payment is unknown in SAP",
    "OCRD.CardCode": "the supplier (business partner) code is unknown in SAP",
    "OPCH.BPLId": "the branch of the purchase invoice is missing or not an active branch",
}
TABLE_WORDS = {"OVPM": "outgoing payment", "VPM2": "outgoing payment line", "OPCH": "purchase invoice",
               "PCH1": "purchase invoice line", "OCRD": "business partner", "OACT": "G/L account"}
FIELD_RE = re.compile(r"\[\s*([A-Za-z0-9_]+)\.([A-Za-z0-9_]+)\s*\]")


def explain_sap_error(code, message):
    """SAP's message, whitespace tidied, followed by which field it refused and what to fix when SAP names one."""
    text = " ".join(str(message or "").split()) or "SAP gave no message"
    found = FIELD_RE.search(text)
    if not found:
        return text
    table, column = found.groups()
    words = FIELD_WORDS.get(f"{table}.{column}")
    if words is None:
        what = TABLE_WORDS.get(table, f"table {table}")
        words = f"SAP refused field {column} of the {what}: check that value in SAP"
    return f"{text} — {words}"


def odata_quote(value):
    """A string literal for $filter: single quotes, embedded quotes doubled."""
    return "'" + str(value).replace("'", "''") + "'"


class SapClient:
    """One SAP company. Create one per sync run (or longer); it re-uses the stored session."""

    def __init__(
        self, base_url, company_db, username, password, *, session_store, verify=True, ca_bundle="",
        connection_id=None, timeout=DEFAULT_TIMEOUT, page_size=DEFAULT_PAGE_SIZE, allow_private_network=False,
    ):
        self.base_url = base_url.rstrip("/") + "/"
        self.company_db = company_db
        self.username = username
        self._password = password
        self.store = session_store
        self.page_size = page_size
        self.transport = Transport(
            system="sap", connection_id=connection_id, verify=verify, ca_bundle=ca_bundle, timeout=timeout,
            allow_private_network=allow_private_network,
        )
        self._cookies = None  # {"B1SESSION": ..., "ROUTEID": ..., "timeout": minutes}
        self._generation = None
        self.version = "v2" if self.base_url.rstrip("/").endswith("v2") else "v1"

    @classmethod
    def for_connection(cls, connection, **kw):
        from django.conf import settings

        from connector.sessions import DatabaseSessionStore

        kw.setdefault("page_size", getattr(settings, "SAP_PAGE_SIZE", DEFAULT_PAGE_SIZE))
        return cls(
            connection.sap_base_url, connection.sap_company_db, connection.sap_username, connection.sap_password,
            session_store=DatabaseSessionStore(connection, "sap"), verify=connection.sap_verify_tls,
            ca_bundle=connection.sap_ca_bundle, connection_id=connection.pk,
            allow_private_network=connection.allow_private_network, **kw,
        )

    # --- session -----------------------------------------------------------------------------------------
    def login(self, stale_generation=None):
        """Log in (serialized); if another worker already replaced the stale session, adopt theirs instead."""
        with self.store.login_lock():
            token, generation, _ = self.store.load()
            if token and stale_generation is not None and generation != stale_generation:
                self._adopt(token, generation)
                return
            body = {"CompanyDB": self.company_db, "UserName": self.username, "Password": self._password}
            resp = self.transport.send("POST", self.base_url + "Login", path="Login", json=body)
            if resp.status_code != 200:
                code, message = parse_sap_error(resp)
                if code in LOGIN_FAILED_CODES or resp.status_code == 401:
                    raise SapLoginFailed(self._login_failure_words(code, message), status=resp.status_code, code=code)
                raise SapError(f"SAP login failed: {message}", status=resp.status_code, code=code, path="Login")
            cookies = self._cookies_from(resp)
            if not cookies.get("B1SESSION"):
                raise SapError("SAP login answered without a B1SESSION cookie", status=resp.status_code, path="Login")
            try:
                cookies["timeout"] = int(resp.json().get("SessionTimeout") or 30)
            except ValueError:
                cookies["timeout"] = 30
            generation = self.store.save(json.dumps(cookies))
            self._cookies, self._generation = cookies, generation

    def _login_failure_words(self, code, message):
        if code == "-304":
            return f"wrong SAP user name or password for user {self.username} ({message})"
        if code == "-306":
            return f"unknown SAP company database {self.company_db} ({message})"
        return f"SAP refused the login: {message}"

    def _adopt(self, token, generation):
        self._cookies, self._generation = json.loads(token), generation

    @staticmethod
    def _cookies_from(resp):
        cookies = {}
        for header in resp.raw.headers.getlist("Set-Cookie") if resp.raw is not None else []:
            name, _, rest = header.partition("=")
            if name.strip() in ("B1SESSION", "ROUTEID"):
                cookies[name.strip()] = rest.split(";", 1)[0].strip()
        if not cookies.get("B1SESSION"):
            try:
                cookies["B1SESSION"] = resp.json().get("SessionId")
            except ValueError:
                pass
        return cookies

    def _ensure_session(self):
        if self._cookies is None:
            token, generation, last_used = self.store.load()
            if token:
                self._adopt(token, generation)
                # SAP expires sessions after SessionTimeout minutes idle: don't bother sending a doomed request.
                idle_limit = timedelta(minutes=max(self._cookies.get("timeout", 30) - 1, 1))
                if last_used and timezone.now() - last_used >= idle_limit:
                    self.login(stale_generation=generation)
            else:
                self.login(stale_generation=generation)

    def logout(self):
        if self._cookies:
            self.transport.send("POST", self.base_url + "Logout", path="Logout", headers=self._headers())
            self.store.clear()
            self._cookies = None

    def _headers(self, extra=None):
        headers = {"Accept": "application/json"}
        if self._cookies:
            parts = [f"B1SESSION={self._cookies['B1SESSION']}"]
            if self._cookies.get("ROUTEID"):
                parts.append(f"ROUTEID={self._cookies['ROUTEID']}")
            headers["Cookie"] = "; ".join(parts)
        if extra:
            headers.update(extra)
        return headers

    # --- requests ----------------------------------------------------------------------------------------
    def _url(self, path):
        if path.startswith(("http://", "https://")):
            return path
        if path.startswith("/"):
            parts = urlsplit(self.base_url)
            return f"{parts.scheme}://{parts.netloc}{path}"
        return urljoin(self.base_url, path)

    def request(self, method, path, *, params=None, json_body=None, headers=None, expect_json=True):
        """Send one call; on an expired session log in again and retry once. Returns parsed JSON (or None)."""
        self._ensure_session()
        url = self._url(path)
        short = path if not path.startswith("http") else urlsplit(path).path
        for attempt in (1, 2):
            resp = self.transport.send(
                method, url, path=short, attempt=attempt, params=params, json=json_body, headers=self._headers(headers)
            )
            if resp.status_code < 400:
                self.store.touch()
                if resp.status_code == 204 or not resp.content or not expect_json:
                    return None if expect_json else resp.text
                return resp.json()
            code, message = parse_sap_error(resp)
            expired = is_session_error(resp.status_code, code, message)
            if expired and attempt == 1:
                # Nothing was executed when the session was refused, so replaying a POST is safe. A validation
                # -5002 is not expiry: re-logging in would only replay a write SAP has already refused.
                self.login(stale_generation=self._generation)
                continue
            raise self._error(resp.status_code, code, message, short, expired)
        raise AssertionError("unreachable")

    @staticmethod
    def _error(status, code, message, path, expired):
        if status == 404:
            return SapNotFound(message, status=status, code=code, path=path)
        if expired:
            return SapSessionExpired(f"SAP session rejected after a fresh login: {message}", status=status, code=code)
        err = SapError(explain_sap_error(code, message) if 400 <= status < 500 else message,
                       status=status, code=code, path=path)
        err.sap_message = message
        # 5xx (proxy errors, a broken node) may pass; business-rule and validation errors will not.
        err.permanent = status < 500
        return err

    def get(self, path, params=None):
        return self.request("GET", path, params=params)

    def post(self, path, body=None):
        return self.request("POST", path, json_body=body)

    def patch(self, path, body):
        return self.request("PATCH", path, json_body=body)

    def iterate(self, entity, *, filter=None, select=None, orderby=None, page_size=None):
        """Yield every row of a collection, following nextLinks to the end."""
        params = {}
        if filter:
            params["$filter"] = filter
        if select:
            params["$select"] = ",".join(select) if isinstance(select, (list, tuple)) else select
        if orderby:
            params["$orderby"] = orderby
        prefer = {"Prefer": f"odata.maxpagesize={page_size or self.page_size}"}
        path, query = entity, params
        first = True
        while True:
            try:
                data = self.request("GET", path, params=query, headers=prefer)
            except SapError as exc:
                # Some Service Layer versions refuse collections (DocumentLines, BPAddresses…) in $select; the
                # whole entity, collections included, is what they return without it.
                if not (first and exc.status == 400 and "$select" in params):
                    raise
                params = {k: v for k, v in params.items() if k != "$select"}
                path, query = entity, params
                first = False
                continue
            first = False
            yield from data.get("value", [])
            next_link = data.get("@odata.nextLink") or data.get("odata.nextLink")
            if not next_link:
                return
            # nextLink repeats our options; it is relative to the service root (live) or absolute (guide).
            if origin(self._url(next_link)) != origin(self.base_url):  # only ever the configured scheme/host/port
                raise SapError(f"SAP's next-page link points at another server ({redact_url(next_link)[:120]}): "
                               "refused", path=entity)
            path, query = next_link, None

    def page(self, entity, *, filter=None, select=None, orderby=None, page_size=None):
        """The first `page_size` rows of a collection (one request where SAP honours the page size): (rows, full),
        `full` when there may be more. For keyset paging, where the caller builds the next page's filter itself."""
        size = page_size or self.page_size
        rows = []
        for row in self.iterate(entity, filter=filter, select=select, orderby=orderby, page_size=size):
            rows.append(row)
            if len(rows) == size:
                break  # never asks for SAP's next page
        return rows, len(rows) == size

    def iterate_pages(self, entity, **kw):
        """Like iterate(), but yields one list per page (lets callers record progress page by page)."""
        page = []
        size = kw.get("page_size") or self.page_size
        for row in self.iterate(entity, **kw):
            page.append(row)
            if len(page) >= size:
                yield page
                page = []
        if page:
            yield page

    def count(self, entity, filter=None):
        params = {"$filter": filter} if filter else None
        text = self.request("GET", f"{entity}/$count", params=params, expect_json=False)
        return int(str(text).strip().lstrip("\ufeff") or 0)

    def ping(self):
        """Log in afresh and read one row: proves URL, TLS, credentials and company database."""
        self.login()
        self.request("GET", "ChartOfAccounts", params={"$select": "Code", "$top": "1"})
        return f"logged in to {self.company_db} as {self.username} (Service Layer {self.version})"
