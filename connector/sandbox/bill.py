"""Stateful simulator of the BILL (Bill.com) v3 API and its webhook ("connect-events") service.

Tests, the demo and the benchmarks talk to this WSGI app over real HTTP (see `server.serve`) instead of the
BILL sandbox, so it reproduces what a client has to cope with there: sessions that expire after 35 idle
minutes (401 + BDC_1109), the 3-concurrent-requests-per-org limit (BDC_1322), the hourly request cap
(BDC_1144), error bodies that are JSON *arrays*, opaque list paging with its odd empty last page, bulk
endpoints that are all-or-nothing, and signed webhooks that are retried and finally switch the subscription
off.  Faults can be injected (latency, random 500s, lost responses, canned errors, duplicate webhooks).

Paths: main API under `/connect/v3/...`, webhook service under `/connect-events/v3/...`, unauthenticated
control endpoints under `/_sim/...` (stats, knobs, pay/void helpers) for a demo running us in another process.

Facts come from `/work/shared/reference/bill-api.md`.  Where that sheet marks something unconfirmed the
choice made here is commented with "[U]" and, when cheap, is a knob (a plain attribute on BillSimulator).

Money is `Decimal` internally and is written as a JSON number with two decimals (`228.99`, `149.00`).
All state sits behind one RLock; the lock is never held while sleeping for latency or while talking to a
webhook receiver, so the concurrency limit is observable and slow receivers do not stall the API.
"""

from __future__ import annotations

import base64
import collections
import copy
import hashlib
import heapq
import hmac
import itertools
import json
import logging
import operator
import random
import re
import secrets
import socket
import string
import threading
import time
import uuid
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

import requests
from werkzeug.wrappers import Request, Response

from connector.sandbox import catalog

log = logging.getLogger(__name__)

MAIN_PREFIX = "/connect"
EVENTS_PREFIX = "/connect-events"

CENT = Decimal("0.01")
ZERO = Decimal("0.00")

# Webhook event types from the sheet §9.2 (Spend & Expense left out: different product). All version "1".
EVENT_TYPES = (
    "vendor.created", "vendor.updated", "vendor.archived", "vendor.restored",
    "autopay.failed",
    "bill.created", "bill.updated", "bill.archived", "bill.restored",
    "payment.updated", "payment.failed",
    "bank-account.created", "bank-account.updated",
    "card-account.created", "card-account.updated",
    "invoice.created", "invoice.updated", "invoice.archived", "invoice.restored",
    "risk-verification.updated", "mass-payment.updated",
)

# Payment states in which money has not moved yet: amounts count as the bill's scheduledAmount.
SCHEDULED_STATES = frozenset({"SCHEDULED", "APPROVING", "PENDING"})
# Payment states that no longer hold any amount against the bills.
DEAD_STATES = frozenset({"VOID", "CANCELLED", "FAILED"})
# A bill with money on it cannot be edited/archived (simulator choice, see `_assert_bill_editable`).
LOCKED_BILL_STATES = frozenset({"PAID", "PARTIAL", "SCHEDULED"})

VENDOR_ACCOUNT_TYPES = frozenset({"BUSINESS", "PERSON", "NONE", "UNDEFINED"})
TAX_ID_TYPES = frozenset({"EIN", "SSN", "UNDEFINED"})
LINE_CLASSIFICATION_KEYS = (
    "chartOfAccountId", "accountingClassId", "departmentId", "employeeId", "jobId", "locationId", "itemId",
    "customerId",
)
BILL_CLASSIFICATION_KEYS = ("chartOfAccountId", "accountingClassId", "departmentId", "locationId", "itemId")
FILTER_OPS = frozenset({"eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "sw"})
COUNTRY_NAMES = {
    "US": "United States", "CA": "Canada", "MX": "Mexico", "GB": "United Kingdom", "DE": "Germany",
    "FR": "France", "NL": "Netherlands", "IE": "Ireland", "AU": "Australia", "IN": "India", "JP": "Japan",
}
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
ALNUM = string.ascii_letters + string.digits
IDEMPOTENCY_TTL = 24 * 3600


# --------------------------------------------------------------------------------------------------------------
# errors, JSON, time


class ApiError(ValueError):
    """An answer in BILL's error format. Also raised (it is a ValueError) by the Python-side helpers."""

    def __init__(self, status, code, message, category="REQUEST"):
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.category = category


def _bad(message, code="BDC_1119"):
    """A 400 validation error. BDC_1119 is BILL's "Invalid field,value" code (shared v2/v3 code list)."""
    return ApiError(400, code, message)


def _missing(field):
    return ApiError(400, "BDC_1108", f"Missing parameter value for parameter: {field}.")


def _not_found(what, ident):
    # [U] BILL's status for an unknown id is not in the sheet; 404 + BDC_1120 "No data found." is our pick.
    return ApiError(404, "BDC_1120", f"No data found. {what} {ident} does not exist in this organization.")


_DEC_MARK = "\ue000"  # private-use character marking a Decimal in the intermediate JSON text
_DEC_RE = re.compile('"' + _DEC_MARK + r'(-?\d+(?:\.\d+)?)"')


def _json_default(value):
    if isinstance(value, Decimal):
        # money has 2 places and is printed with 2; a finer quantity/price keeps its own precision
        text = format(value.quantize(CENT) if value.as_tuple().exponent >= -2 else value, "f")
        return _DEC_MARK + text
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def dumps(obj) -> bytes:
    """Minified JSON (BILL sends minified bodies) with Decimals as numbers carrying two decimals."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=_json_default)
    if _DEC_MARK in text:
        text = _DEC_RE.sub(r"\1", text)
    # a lone surrogate (legal in JSON input) cannot be UTF-8 encoded; inside a JSON string the
    # backslash escape is exactly the JSON escape, so the output stays valid JSON and valid UTF-8
    return text.encode("utf-8", "backslashreplace")


def sign(body: bytes, security_key: str) -> str:
    """`x-bill-sha-signature`: base64(HMAC-SHA256(key = securityKey as UTF-8, msg = the raw body bytes))."""
    return base64.b64encode(hmac.new(security_key.encode("utf-8"), body, hashlib.sha256).digest()).decode("ascii")


def _iso(ts: float) -> str:
    """BILL's timestamp format: millisecond precision with an explicit +00:00 offset (sorts as text)."""
    dt = datetime.fromtimestamp(ts, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}+00:00"


def _canonical_time(text: str) -> str:
    """Normalize a client-supplied time ("...Z", "+02:00", a bare date) to our sortable string form."""
    dt = datetime.fromisoformat(text.strip())
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return _iso(dt.timestamp())


def _money(value, field) -> Decimal:
    """Parse an amount. Numeric strings are accepted too: BILL's JSON layer coerces them [U]."""
    if value is None or isinstance(value, bool) or isinstance(value, (dict, list)):
        raise _bad(f"Invalid field datatype: {field} must be a number.", "BDC_1124")
    try:
        number = Decimal(value.strip()) if isinstance(value, str) else Decimal(str(value))
    except InvalidOperation:
        raise _bad(f"Invalid field datatype: {field} must be a number.", "BDC_1124") from None
    if not number.is_finite():
        raise _bad(f"Invalid field datatype: {field} must be a number.", "BDC_1124")
    return number.quantize(CENT, ROUND_HALF_UP)


def _number(value, field) -> Decimal | int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        number = Decimal(value.strip()) if isinstance(value, str) else Decimal(str(value))
    except (InvalidOperation, AttributeError, TypeError, ValueError):
        raise _bad(f"Invalid field datatype: {field} must be a number.", "BDC_1124") from None
    if isinstance(value, bool) or not number.is_finite():
        raise _bad(f"Invalid field datatype: {field} must be a number.", "BDC_1124")
    return number


def _str_field(data, key, path, *, required=False, max_len=None, min_len=0):
    value = data.get(key)
    if value is None:
        if required:
            raise _missing(path + key)
        return None
    if not isinstance(value, str):
        raise _bad(f"Invalid field,value: {path}{key}, {value!r}. Must be a string.", "BDC_1124")
    if required and not value.strip():
        raise _missing(path + key)
    if max_len is not None and len(value) > max_len or len(value) < min_len:
        raise _bad(f"Invalid field,value: {path}{key}, {value!r}. Length must be {min_len}..{max_len}.")
    return value


def _date_field(data, key, path, *, required=True):
    value = data.get(key)
    if value is None:
        if required:
            raise _missing(path + key)
        return None
    if not isinstance(value, str) or not DATE_RE.match(value):
        raise _bad(f"Invalid field,value: {path}{key}, {value!r}. Expected yyyy-MM-dd.")
    try:
        date.fromisoformat(value)
    except ValueError:
        raise _bad(f"Invalid field,value: {path}{key}, {value!r}. Not a calendar date.") from None
    return value


def _dict_field(data, key, path):
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad(f"Invalid field,value: {path}{key}. Must be an object.", "BDC_1124")
    return value


def _compact(d):
    """Drop None values: BILL omits unset optional fields rather than sending null [U]."""
    return {k: v for k, v in d.items() if v is not None}


def _deep_merge(base, patch):
    out = dict(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


# --------------------------------------------------------------------------------------------------------------
# list filtering / sorting / paging


def _resolve(item, path):
    """Leaf values at a dotted path; lists along the way fan out (any element may match)."""
    values = [item]
    for part in path:
        nxt = []
        for v in values:
            if isinstance(v, list):
                nxt.extend(x.get(part) for x in v if isinstance(x, dict))
            elif isinstance(v, dict):
                nxt.append(v.get(part))
        values = nxt
    flat = []
    for v in values:
        if isinstance(v, list):
            flat.extend(v)
        elif v is not None:
            flat.append(v)
    return flat


def _coerce(raw, sample, field):
    """Interpret a filter value with the type of the entity's field value."""
    try:
        if isinstance(sample, bool):
            return raw.strip().lower() == "true"
        if isinstance(sample, (int, Decimal)):
            return Decimal(raw.strip())
        if field.endswith("Time") and isinstance(sample, str):
            return _canonical_time(raw)
    except (InvalidOperation, ValueError):
        raise ApiError(400, "BDC_1129", f"Invalid parameter value for parameter,value: filters, {raw}.") from None
    return raw


def _compare(op, value, target):
    if op in ("eq", "in", "ne", "nin"):
        return value == target
    if op == "sw":
        return isinstance(value, str) and value.startswith(target)
    try:
        return {"gt": value > target, "gte": value >= target, "lt": value < target, "lte": value <= target}[op]
    except TypeError:
        return False


class _Filter:
    def __init__(self, field, op, raw):
        self.field = field
        self.path = field.split(".")
        self.op = op
        self.raws = [v.strip() for v in raw.split(",")] if op in ("in", "nin") else [raw]
        self._cache = {}

    def _targets(self, sample):
        kind = type(sample)
        if kind not in self._cache:
            self._cache[kind] = [_coerce(r, sample, self.field) for r in self.raws]
        return self._cache[kind]

    def __call__(self, item):
        values = _resolve(item, self.path)
        hit = any(_compare(self.op, v, t) for v in values for t in self._targets(v))
        return not hit if self.op in ("ne", "nin") else hit


def _filter_error(text):
    return ApiError(400, "BDC_1129", f"Invalid parameter value for parameter,value: filters, {text}.")


def _split_filter_value(text, i, op):
    """Read one value starting at text[i]; returns (value, index after the separating comma)."""
    n = len(text)
    if i < n and text[i] == '"':
        end = text.find('"', i + 1)
        if end < 0:
            raise _filter_error(text)
        if end + 1 < n and text[end + 1] != ",":
            raise _filter_error(text)
        return text[i + 1:end], end + 2
    end = text.find(",", i)
    end = n if end < 0 else end
    value = text[i:end]
    # tolerate an unquoted CSV for in/nin: following segments without ':' still belong to the value
    while op in ("in", "nin") and end < n:
        nxt = text.find(",", end + 1)
        nxt = n if nxt < 0 else nxt
        if ":" in text[end + 1:nxt]:
            break
        value, end = text[i:nxt], nxt
    return value, end + 1


def parse_filters(text):
    """`field:op:value[,field:op:value]` with optional double-quoted values (which may hold , and :)."""
    filters, i = [], 0
    while text and i < len(text):
        c1 = text.find(":", i)
        c2 = text.find(":", c1 + 1) if c1 >= 0 else -1
        if c2 < 0:
            raise _filter_error(text)
        field, op = text[i:c1].strip(), text[c1 + 1:c2].strip()
        if not field:
            raise ApiError(400, "BDC_1130", f"Invalid list filter field: {field}.")
        if op not in FILTER_OPS:
            raise ApiError(400, "BDC_1131", f"Invalid list filter operator: {op}.")
        value, i = _split_filter_value(text, c2 + 1, op)
        filters.append(_Filter(field, op, value))
    return filters


def parse_sort(text):
    specs = []
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        field, _, direction = part.partition(":")
        direction = (direction or "asc").lower()
        if not field or direction not in ("asc", "desc"):
            raise ApiError(400, "BDC_1129", f"Invalid parameter value for parameter,value: sort, {part}.")
        specs.append((field.split("."), direction == "desc"))
    return specs


def _sort_key(path):
    def key(item):
        values = _resolve(item, path)
        if not values:
            return (0, "")
        v = values[0]
        return (1, float(v)) if isinstance(v, (int, Decimal)) and not isinstance(v, bool) else (1, str(v))
    return key


_DEFAULT_ORDER = operator.itemgetter("createdTime", "id")


def _encode_page(offset, qhash):
    return base64.urlsafe_b64encode(f"{offset}:{qhash}".encode()).decode().rstrip("=")


def _decode_page(token, qhash):
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        offset_text, token_hash = raw.split(":", 1)
        offset = int(offset_text)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "BDC_1129", f"Invalid parameter value for parameter,value: page, {token}.") from None
    if token_hash != qhash or offset < 0:
        # the token belongs to another query (different filters/sort): BILL would not honour it either [U]
        raise ApiError(400, "BDC_1129", f"Invalid parameter value for parameter,value: page, {token}.")
    return offset


def paginate(items, args, *, forward_only=False):
    """Apply `filters`, `sort`, `max`, `page` and build BILL's `{nextPage, prevPage, results}` answer."""
    max_text = args.get("max", "20")
    try:
        page_size = int(max_text)
    except ValueError:
        page_size = 0
    if not 1 <= page_size <= 100:
        raise ApiError(400, "BDC_1129", f"Invalid parameter value for parameter,value: max, {max_text}.")
    filters_text, sort_text = args.get("filters", ""), args.get("sort", "")
    filters = parse_filters(filters_text)
    specs = parse_sort(sort_text)
    qhash = hashlib.sha1(f"{filters_text}|{sort_text}".encode()).hexdigest()[:10]
    offset = _decode_page(args["page"], qhash) if args.get("page") else 0
    rows = [it for it in items if all(f(it) for f in filters)] if filters else list(items)
    rows.sort(key=_DEFAULT_ORDER)  # stable default order; every listed entity has createdTime and id
    for path, desc in reversed(specs):
        rows.sort(key=_sort_key(path), reverse=desc)
    page = rows[offset:offset + page_size]
    answer = {}
    # A full page always carries nextPage, so an exact multiple ends with an empty page (as TP-MJ saw live).
    if len(page) == page_size:
        answer["nextPage"] = _encode_page(offset + page_size, qhash)
    if offset > 0 and not forward_only:
        answer["prevPage"] = _encode_page(max(0, offset - page_size), qhash)
    answer["results"] = page
    return answer


# --------------------------------------------------------------------------------------------------------------
# state


class _Session:
    __slots__ = ("sid", "org_id", "user_id", "dev_key", "last_used")

    def __init__(self, sid, org_id, user_id, dev_key, last_used):
        self.sid, self.org_id, self.user_id, self.dev_key, self.last_used = sid, org_id, user_id, dev_key, last_used


class _Org:
    """Everything one BILL organization owns. Entities are stored as their public JSON dicts."""

    def __init__(self, org_id, user_id):
        self.id = org_id
        self.user_id = user_id
        self.bank_account_id = "bac" + hashlib.sha1(org_id.encode()).hexdigest()[:17]
        self.vendors: dict[str, dict] = {}
        self.bills: dict[str, dict] = {}
        self.payments: dict[str, dict] = {}
        self.accounts: dict[str, dict] = {}
        self.departments: dict[str, dict] = {}
        self.subscriptions: dict[str, dict] = {}
        self.sub_keys: dict[str, str] = {}  # securityKey per subscription (never shown after creation)
        self.events: list[dict] = []  # sent notifications, for GET /v3/events/subscription/{id}
        self.events_by_id: dict[str, dict] = {}
        self.idempotency: dict[str, tuple] = {}  # X-Idempotent-Key -> (expires_at, status, body bytes)

    def collection(self, kind):
        return {
            "vendors": self.vendors, "bills": self.bills, "payments": self.payments,
            "chart-of-accounts": self.accounts, "accounts": self.accounts, "departments": self.departments,
            "subscriptions": self.subscriptions,
        }[kind]


class _Delivery:
    """One event on its way to one subscription; `attempt` counts failed tries so far."""

    __slots__ = ("event_id", "event_type", "org_id", "sub_id", "body", "attempt", "force", "record")

    def __init__(self, event_id, event_type, org_id, sub_id, body, record, force=False):
        self.event_id, self.event_type, self.org_id, self.sub_id = event_id, event_type, org_id, sub_id
        self.body, self.record, self.force, self.attempt = body, record, force, 0

    def clone(self):
        return _Delivery(self.event_id, self.event_type, self.org_id, self.sub_id, self.body, self.record,
                         self.force)


class _Ctx:
    """Per-request context handed to the handlers."""

    __slots__ = ("req", "org", "session", "out", "now", "_body")

    def __init__(self, req, org, session, now):
        self.req, self.org, self.session, self.now = req, org, session, now
        self.out: list[_Delivery] = []
        self._body = None

    def json(self, *, expect=dict):
        if self._body is None:
            raw = self.req.get_data(cache=True)
            if not raw.strip():
                raise ApiError(400, "BDC_1122", "Error Parsing Json Object. Please check your request.")
            try:
                self._body = json.loads(raw, parse_float=Decimal)
            except (ValueError, RecursionError):
                raise ApiError(400, "BDC_1122", "Error Parsing Json Object. Please check your request.") from None
        if not isinstance(self._body, expect):
            kind = "an array" if expect is list else "an object"
            raise ApiError(400, "BDC_1122", f"Error Parsing Json Object. The request body must be {kind}.")
        return self._body


# --------------------------------------------------------------------------------------------------------------
# routing

_T = collections.namedtuple("_T", "method template handler extra idem")


def _r(method, template, handler, *extra, idem=False):
    return _T(method, template, handler, extra, idem)


MAIN_ROUTES = [
    _r("POST", "/v3/login", "login"),
    _r("GET", "/v3/login/session", "session_info"),
    _r("POST", "/v3/logout", "logout"),
    _r("GET", "/v3/vendors", "list", "vendors"),
    _r("POST", "/v3/vendors", "vendor_create"),
    _r("POST", "/v3/vendors/bulk", "vendor_bulk"),
    _r("GET", "/v3/vendors/{id}", "get", "vendors"),
    _r("PATCH", "/v3/vendors/{id}", "vendor_patch"),
    _r("POST", "/v3/vendors/{id}/archive", "archive", "vendors", True),
    _r("POST", "/v3/vendors/{id}/restore", "archive", "vendors", False),
    _r("GET", "/v3/bills", "list", "bills"),
    _r("POST", "/v3/bills", "bill_create"),
    _r("POST", "/v3/bills/bulk", "bill_bulk"),
    _r("GET", "/v3/bills/{id}", "get", "bills"),
    _r("PATCH", "/v3/bills/{id}", "bill_update", False),
    _r("PUT", "/v3/bills/{id}", "bill_update", True),
    _r("POST", "/v3/bills/{id}/archive", "archive", "bills", True),
    _r("POST", "/v3/bills/{id}/restore", "archive", "bills", False),
    _r("GET", "/v3/classifications/chart-of-accounts", "list", "chart-of-accounts"),
    _r("POST", "/v3/classifications/chart-of-accounts", "class_create", "chart-of-accounts"),
    _r("GET", "/v3/classifications/chart-of-accounts/{id}", "get", "chart-of-accounts"),
    _r("PATCH", "/v3/classifications/chart-of-accounts/{id}", "class_patch", "chart-of-accounts"),
    _r("POST", "/v3/classifications/chart-of-accounts/{id}/archive", "archive", "chart-of-accounts", True),
    _r("POST", "/v3/classifications/chart-of-accounts/{id}/restore", "archive", "chart-of-accounts", False),
    _r("GET", "/v3/classifications/departments", "list", "departments"),
    _r("POST", "/v3/classifications/departments", "class_create", "departments"),
    _r("GET", "/v3/classifications/departments/{id}", "get", "departments"),
    _r("PATCH", "/v3/classifications/departments/{id}", "class_patch", "departments"),
    _r("POST", "/v3/classifications/departments/{id}/archive", "archive", "departments", True),
    _r("POST", "/v3/classifications/departments/{id}/restore", "archive", "departments", False),
    _r("GET", "/v3/payments", "list", "payments"),
    _r("POST", "/v3/payments", "payment_create"),
    _r("GET", "/v3/payments/{id}", "get", "payments"),
    _r("POST", "/v3/payments/{id}/void", "payment_void"),
    _r("POST", "/v3/payments/{id}/cancel", "payment_cancel"),
]

EVENT_ROUTES = [
    _r("GET", "/v3/events/catalog", "event_catalog"),
    _r("GET", "/v3/subscriptions", "sub_list"),
    _r("POST", "/v3/subscriptions", "sub_create", idem=True),
    _r("GET", "/v3/subscriptions/{id}", "sub_get"),
    _r("PATCH", "/v3/subscriptions/{id}", "sub_update", False),
    _r("PUT", "/v3/subscriptions/{id}", "sub_update", True),
    _r("DELETE", "/v3/subscriptions/{id}", "sub_delete"),
    _r("POST", "/v3/subscriptions/{id}/security_key", "sub_rotate", idem=True),
    _r("POST", "/v3/subscriptions/{id}/test", "sub_test"),
    _r("GET", "/v3/events/subscription/{id}", "event_list"),
    _r("POST", "/v3/events/subscription/{id}/event/{id}", "event_resend"),
]


def _compile(routes):
    compiled = []
    for route in routes:
        pattern = "^" + re.escape(route.template).replace(re.escape("{id}"), "([^/]+)") + "$"
        compiled.append((re.compile(pattern), route))
    return compiled


_COMPILED = {"main": _compile(MAIN_ROUTES), "events": _compile(EVENT_ROUTES)}

KNOBS = (
    "latency", "error_rate", "concurrency_limit", "rate_limit_status", "hourly_limit", "login_hourly_limit",
    "session_idle_seconds", "webhook_sync", "webhook_retry_delays", "webhook_duplicate_rate", "webhook_timeout",
    "webhook_bill_updated_partial", "emit_bill_updated_on_payment", "allow_http_localhost", "max_vendors_bulk",
    "max_bills_bulk",
)


# --------------------------------------------------------------------------------------------------------------
# the simulator


class BillSimulator:
    """WSGI app simulating BILL v3 + connect-events. Knobs are plain attributes and may change at any time."""

    def __init__(self, *, seed=True, clock=None):
        self._lock = threading.RLock()
        self._clock = clock or time.time
        # knobs
        self.latency = 0.0
        self.error_rate = 0.0
        self.concurrency_limit = 3
        # [U] HTTP status of BDC_1322/BDC_1144 on /connect/v3 is unconfirmed; the webhook service uses 429.
        self.rate_limit_status = 429
        self.hourly_limit = 20000
        self.login_hourly_limit = 200
        self.session_idle_seconds = 35 * 60
        self.webhook_sync = False
        self.webhook_retry_delays = (2, 4, 8, 16)
        self.webhook_duplicate_rate = 0.0
        self.webhook_timeout = 10.0
        self.webhook_bill_updated_partial = False  # [U] True: bill.updated carries only changed fields
        self.emit_bill_updated_on_payment = True  # [U] whether paying a bill emits bill.updated
        self.allow_http_localhost = True  # BILL requires https; loopback http is a simulator relaxation
        self.max_vendors_bulk = 20
        self.max_bills_bulk = 100
        # observations
        self.request_count = 0
        self.login_count = 0
        self.requests_by_path = collections.Counter()
        self.max_in_flight_seen: dict[tuple, int] = {}
        self.rejected_concurrent = 0
        self.rejected_hourly = 0
        self.deliveries: list[tuple] = []
        self.webhooks_dropped = 0
        # state
        self._rng = random.Random(0)  # error_rate / duplicate rolls: reproducible runs
        self._id_rng = random.Random(1)
        self._seq = itertools.count(1)
        self._orgs: dict[str, _Org] = {}
        self._users: dict[str, dict] = {}
        self._dev_keys: set[str] = set()
        self._sessions: dict[str, _Session] = {}
        self._in_flight: dict[tuple, int] = collections.defaultdict(int)
        self._hourly: dict[str, list] = {}  # devKey -> [hour, count]
        self._login_hourly: dict[str, list] = {}
        self._idem_in_flight: set[tuple] = set()
        self._fail_rules: list[dict] = []
        self._lose_rules: list[dict] = []
        self._txn = itertools.count(202600001)
        # webhook delivery machinery (own lock: never wait on the state lock while sleeping)
        self._wh_cond = threading.Condition()
        self._wh_heap: list = []
        self._wh_pending = 0
        self._wh_seq = itertools.count()
        self._wh_workers: list[threading.Thread] = []
        self._wh_closed = False
        self._http_local = threading.local()
        self.add_org(catalog.BILL_ORG_ID, catalog.BILL_USER, catalog.BILL_PASSWORD, catalog.BILL_DEV_KEY, seed=seed)

    # ---------------------------------------------------------------- setup / Python-side helpers

    def add_org(self, org_id, username, password, dev_key, seed=False):
        """Register an organization, a user allowed into it and a devKey; `seed` loads the catalog data."""
        with self._lock:
            user = self._users.setdefault(username, {"password": password, "orgs": set(),
                                                     "user_id": self._new_id("006")})
            user["password"] = password
            user["orgs"].add(org_id)
            self._dev_keys.add(dev_key)
            org = self._orgs.get(org_id) or _Org(org_id, user["user_id"])
            self._orgs[org_id] = org
            if seed:
                self._seed(org)
            return org_id

    def _seed(self, org):
        now = self._now_iso()
        for acc_id, number, name, acc_type, archived in catalog.BILL_ACCOUNTS:
            org.accounts[acc_id] = {"id": acc_id, "archived": archived, "name": name, "description": "",
                                    "account": {"type": acc_type, "number": number},
                                    "createdTime": now, "updatedTime": now}
        for dep_id, name, short, archived in catalog.BILL_DEPARTMENTS:
            org.departments[dep_id] = {"id": dep_id, "name": name, "shortName": short, "description": "",
                                       "archived": archived, "createdTime": now, "updatedTime": now}
        for v in catalog.BILL_VENDORS:
            line1, city, state, zip_code, country = v["address"]
            data = {"name": v["name"], "email": v.get("email"), "accountType": "BUSINESS",
                    "additionalInfo": dict(v.get("additionalInfo") or {}),
                    "address": {"line1": line1, "city": city, "stateOrProvince": state,
                                "zipOrPostalCode": zip_code, "country": country}}
            vendor = self._vendor_normalize(data, "")
            vendor.update(id=v["id"], createdTime=now, updatedTime=now)
            org.vendors[v["id"]] = self._vendor_order(vendor)

    def entities(self, kind, org_id=None) -> list[dict]:
        """Deep copies of one collection in default list order (subscriptions include their securityKey)."""
        with self._lock:
            org = self._org(org_id)
            items = [copy.deepcopy(x) for x in org.collection(kind).values()]
            if kind == "subscriptions":
                for item in items:
                    item["securityKey"] = org.sub_keys.get(item["id"])
        items.sort(key=_DEFAULT_ORDER)
        return items

    def pay_bills(self, payments, *, process_date=None, status="PAID", single_status="PROCESSED", org_id=None):
        """Pay bills of ONE vendor with one payment (as if done in the BILL UI); emits payment.updated."""
        out = []
        with self._lock:
            org = self._org(org_id)
            pairs = [(bill_id, _money(amount, "amount")) for bill_id, amount in payments]
            payment = self._create_payment(org, pairs, status=status, single_status=single_status,
                                           process_date=process_date, created_by=org.user_id, out=out)
            result = copy.deepcopy(payment)
        self._dispatch(out)
        return result

    def settle_payment(self, payment_id, *, status="PAID", single_status="PROCESSED", org_id=None):
        """Move a payment to another status (e.g. SCHEDULED -> PAID/PROCESSED, or PROCESSED -> CLEARED)."""
        out = []
        with self._lock:
            org = self._org(org_id)
            payment = self._payment(org, payment_id)
            if payment["status"] in DEAD_STATES:
                raise _bad(f"Payment {payment_id} is {payment['status']} and cannot change status.")
            if payment["status"] in SCHEDULED_STATES and status not in SCHEDULED_STATES:
                self._shift_amounts(org, payment, "scheduledAmount", "paidAmount", out)
            self._set_payment_status(org, payment, status, single_status, out)
            result = copy.deepcopy(payment)
        self._dispatch(out)
        return result

    def void_payment(self, payment_id, org_id=None) -> dict:
        out = []
        with self._lock:
            org = self._org(org_id)
            payment = self._void(org, self._payment(org, payment_id), out)
            result = copy.deepcopy(payment)
        self._dispatch(out)
        return result

    def fail_payment(self, payment_id, org_id=None) -> dict:
        """Funding failed: status FAILED, amounts reversed, payment.failed (and payment.updated) emitted."""
        out = []
        with self._lock:
            org = self._org(org_id)
            payment = self._payment(org, payment_id)
            if payment["status"] in DEAD_STATES:
                raise _bad(f"Payment {payment_id} is already {payment['status']}.")
            self._reverse_payment(org, payment, out)
            payment["status"], payment["singleStatus"] = "FAILED", "FUNDING_FAILED_VOIDED"
            payment["updatedTime"] = self._now_iso()
            # [U] exact payment.failed fields: the payment.updated shape plus an `errors` list.
            entity = self._payment_event_entity(org, payment)
            entity["errors"] = [{"code": "FUNDING_FAILED", "message": "Payment funding failed: insufficient funds."}]
            self._emit(org, "payment.failed", "payment", entity, payment["id"], out)
            self._emit(org, "payment.updated", "payment", self._payment_event_entity(org, payment), payment["id"],
                       out)
            result = copy.deepcopy(payment)
        self._dispatch(out)
        return result

    def lose_next_response(self, method, path_contains, count=1):
        """Execute the next `count` matching requests but close the connection instead of answering."""
        with self._lock:
            self._lose_rules.append({"method": (method or "*").upper(), "path": path_contains, "count": count})

    def fail_next(self, method, path_contains, status, code, message, count=1):
        """Answer the next `count` matching requests with this BILL error, without executing them."""
        with self._lock:
            self._fail_rules.append({"method": (method or "*").upper(), "path": path_contains, "count": count,
                                     "status": status, "code": code, "message": message})

    def expire_all_sessions(self):
        with self._lock:
            self._sessions.clear()

    def wait_for_webhooks(self, timeout=10.0) -> bool:
        """Block until no webhook delivery is queued or under way (async mode); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._wh_cond:
            while self._wh_pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._wh_cond.wait(min(remaining, 0.05))
        return True

    def close(self):
        """Stop the background webhook workers (queued deliveries are dropped)."""
        with self._wh_cond:
            self._wh_closed = True
            self._wh_cond.notify_all()

    def stats(self) -> dict:
        with self._lock:
            return {
                "request_count": self.request_count, "login_count": self.login_count,
                "requests_by_path": dict(self.requests_by_path),
                "max_in_flight_seen": {f"{k[0]}|{k[1]}": v for k, v in self.max_in_flight_seen.items()},
                "rejected_concurrent": self.rejected_concurrent, "rejected_hourly": self.rejected_hourly,
                "in_flight": {f"{k[0]}|{k[1]}": v for k, v in self._in_flight.items() if v},
                "deliveries": len(self.deliveries), "webhooks_dropped": self.webhooks_dropped,
                "sessions": len(self._sessions),
            }

    def knobs(self) -> dict:
        return {name: getattr(self, name) for name in KNOBS}

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
        body = [{"timestamp": self._now_iso(), "code": err.code, "severity": "ERROR", "category": err.category,
                 "message": err.message}]
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
                raise ApiError(injected["status"], injected["code"], injected["message"], "DOWNSTREAM")
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

    # ---------------------------------------------------------------- generic handlers

    def _h_list(self, ctx, kind):
        return 200, paginate(list(ctx.org.collection(kind).values()), ctx.req.args)

    def _h_get(self, ctx, kind, ident):
        item = ctx.org.collection(kind).get(ident)
        if item is None:
            raise _not_found(kind.rstrip("s"), ident)
        return 200, item

    def _h_archive(self, ctx, kind, archive, ident):
        item = ctx.org.collection(kind).get(ident)
        if item is None:
            raise _not_found(kind.rstrip("s"), ident)
        if kind == "bills" and archive:
            self._assert_bill_editable(item, "archived")
        if item["archived"] != archive:  # idempotent: a no-op changes nothing and emits nothing
            item["archived"] = archive
            item["updatedTime"] = ctx.now
            event = {"vendors": "vendor", "bills": "bill"}.get(kind)
            if event:
                verb = "archived" if archive else "restored"
                entity = {"id": item["id"], "archived": archive, "updatedTime": item["updatedTime"]}
                self._emit(ctx.org, f"{event}.{verb}", event, entity, item["id"], ctx.out)
        return 200, item

    # ---------------------------------------------------------------- vendors

    def _vendor_normalize(self, data, path, base=None):
        """Validate a full vendor representation (create, or base deep-merged with a PATCH)."""
        vendor = dict(base or {})
        vendor["name"] = _str_field(data, "name", path, required=True, min_len=1, max_len=100)
        vendor["shortName"] = _str_field(data, "shortName", path, max_len=40)
        vendor["accountNumber"] = _str_field(data, "accountNumber", path, max_len=100)
        account_type = data.get("accountType") or "UNDEFINED"  # [U] default when not sent
        if not isinstance(account_type, str) or account_type not in VENDOR_ACCOUNT_TYPES:
            raise _bad(f"Invalid field,value: {path}accountType, {account_type}.")
        vendor["accountType"] = account_type
        email = _str_field(data, "email", path, max_len=255)
        if email and not EMAIL_RE.match(email):
            raise _bad(f"Invalid field,value: {path}email, {email}.")
        vendor["email"] = email
        vendor["phone"] = _str_field(data, "phone", path, max_len=40)
        vendor["address"] = self._address(_dict_field(data, "address", path), path + "address.")
        vendor["paymentInformation"] = self._payment_info(data, path, vendor["name"])
        vendor["additionalInfo"] = self._additional_info(_dict_field(data, "additionalInfo", path),
                                                         path + "additionalInfo.")
        currency = data.get("billCurrency") or "USD"
        if not isinstance(currency, str) or not re.fullmatch(r"[A-Z]{3}", currency):
            raise _bad(f"Invalid field,value: {path}billCurrency, {currency}.")
        vendor["billCurrency"] = currency
        vendor.setdefault("archived", False)
        vendor.setdefault("networkStatus", "NOT_CONNECTED")
        return vendor

    @staticmethod
    def _address(addr, path):
        out = {}
        for key in ("line1", "line2", "city", "stateOrProvince", "zipOrPostalCode"):
            out[key] = _str_field(addr, key, path, max_len=100)
        country = addr.get("country")
        if country is not None:
            if not isinstance(country, str) or not re.fullmatch(r"[A-Z]{2}", country):
                raise _bad(f"Invalid field,value: {path}country, {country}. Use a 2-letter ISO code.")
            out["country"] = country
            out["countryName"] = COUNTRY_NAMES.get(country, country)
        return _compact(out)

    @staticmethod
    def _additional_info(info, path):
        out = dict(info)  # keep unknown keys (track1099, leadTimeInDays, ...) as sent
        tax_id = _str_field(info, "taxId", path, max_len=40)
        tax_type = info.get("taxIdType")
        if tax_type is not None and (not isinstance(tax_type, str) or tax_type not in TAX_ID_TYPES):
            raise _bad(f"Invalid field,value: {path}taxIdType, {tax_type}.")
        if tax_id and tax_type is None:
            out["taxIdType"] = "UNDEFINED"
        return _compact(out)

    @staticmethod
    def _payment_info(data, path, name):
        info = _dict_field(data, "paymentInformation", path)
        bank = info.get("bankAccount")
        out = {"payeeName": _str_field(info, "payeeName", path + "paymentInformation.", max_len=100) or name,
               "payByType": "CHECK"}
        if isinstance(bank, dict) and bank:
            routing = str(bank.get("routingNumber") or "")
            account = str(bank.get("accountNumber") or "")
            if not re.fullmatch(r"\d{9}", routing) or not re.fullmatch(r"\d{4,17}", account):
                raise _bad(f"Invalid field,value: {path}paymentInformation.bankAccount, routing/account number.")
            # stored masked, as BILL never echoes full bank details
            out["bankAccount"] = _compact({**bank, "accountNumber": "*" * (len(account) - 4) + account[-4:],
                                           "routingNumber": routing, "type": bank.get("type") or "CHECKING"})
            out["payByType"] = "ACH"
        return out

    @staticmethod
    def _vendor_order(v):
        keys = ("id", "archived", "name", "shortName", "accountNumber", "accountType", "email", "phone", "address",
                "paymentInformation", "additionalInfo", "billCurrency", "networkStatus", "createdTime",
                "updatedTime")
        return _compact({k: v.get(k) for k in keys})

    def _new_vendor(self, ctx, data, path):
        vendor = self._vendor_normalize(data, path)
        vendor.update(id=self._new_id("009"), archived=False, createdTime=ctx.now, updatedTime=ctx.now)
        return self._vendor_order(vendor)

    def _h_vendor_create(self, ctx):
        vendor = self._new_vendor(ctx, ctx.json(), "")
        ctx.org.vendors[vendor["id"]] = vendor
        self._emit(ctx.org, "vendor.created", "vendor", vendor, vendor["id"], ctx.out)
        return 201, vendor

    def _h_vendor_bulk(self, ctx):
        items = ctx.json(expect=list)
        if not 1 <= len(items) <= self.max_vendors_bulk:
            raise _bad(f"Bulk vendor create accepts 1 to {self.max_vendors_bulk} vendors, got {len(items)}.")
        vendors = []
        for i, data in enumerate(items):  # validate everything first: bulk is all-or-nothing
            if not isinstance(data, dict):
                raise _bad(f"Invalid field,value: [{i}]. Each vendor must be an object.", "BDC_1124")
            vendors.append(self._new_vendor(ctx, data, f"[{i}]."))
        for vendor in vendors:
            ctx.org.vendors[vendor["id"]] = vendor
            self._emit(ctx.org, "vendor.created", "vendor", vendor, vendor["id"], ctx.out)
        return 201, {"vendors": vendors}  # [U] status of bulk vendor create; 201 like single create

    def _h_vendor_patch(self, ctx, ident):
        current = ctx.org.vendors.get(ident)
        if current is None:
            raise _not_found("vendor", ident)
        data = ctx.json()
        if isinstance(data.get("paymentInformation"), dict) and data["paymentInformation"].get("bankAccount"):
            raise _bad("Bank account cannot be changed with PATCH /v3/vendors; use /v3/vendors/{id}/bank-account.")
        readonly = ("id", "archived", "createdTime", "updatedTime", "paymentInformation")
        editable = {k: v for k, v in data.items() if k not in readonly}
        merged = _deep_merge(self._vendor_input_view(current), editable)
        vendor = self._vendor_normalize(merged, "", base=current)
        # bank details are kept as they were (they change only via the bank-account endpoints)
        pay_info = dict(current.get("paymentInformation") or {})
        sent_info = data.get("paymentInformation")
        payee = sent_info.get("payeeName") if isinstance(sent_info, dict) else None
        if isinstance(payee, str) and payee.strip():
            pay_info["payeeName"] = payee
        vendor["paymentInformation"] = pay_info
        vendor["updatedTime"] = ctx.now
        vendor = self._vendor_order(vendor)
        ctx.org.vendors[ident] = vendor
        if vendor["name"] != current["name"]:
            for bill in ctx.org.bills.values():
                if bill["vendorId"] == ident:
                    bill["vendorName"] = vendor["name"]
        self._emit(ctx.org, "vendor.updated", "vendor", vendor, ident, ctx.out)
        return 200, vendor

    @staticmethod
    def _vendor_input_view(vendor):
        view = copy.deepcopy(vendor)
        view.get("address", {}).pop("countryName", None)
        view.pop("paymentInformation", None)
        return view

    # ---------------------------------------------------------------- classifications

    def _h_class_create(self, ctx, kind):
        data = ctx.json()
        item = self._class_normalize(ctx.org, kind, data, {})
        prefix = "0ca" if kind == "chart-of-accounts" else "0de"
        item = {"id": self._new_id(prefix), **item, "createdTime": ctx.now, "updatedTime": ctx.now}
        ctx.org.collection(kind)[item["id"]] = item
        return 201, item

    def _h_class_patch(self, ctx, kind, ident):
        coll = ctx.org.collection(kind)
        current = coll.get(ident)
        if current is None:
            raise _not_found(kind, ident)
        merged = _deep_merge(current, {k: v for k, v in ctx.json().items() if k not in ("id", "createdTime")})
        item = self._class_normalize(ctx.org, kind, merged, current)
        coll[ident] = {"id": ident, **item, "createdTime": current["createdTime"], "updatedTime": ctx.now}
        return 200, coll[ident]

    def _class_normalize(self, org, kind, data, current):
        name = _str_field(data, "name", "", required=True, max_len=100)
        parent = data.get("parentId")
        if parent is not None and (not isinstance(parent, str) or parent not in org.collection(kind)):
            raise _bad(f"Invalid field,value: parentId, {parent}.")
        out = {"archived": bool(current.get("archived", False)), "name": name,
               "description": _str_field(data, "description", "", max_len=4000) or "", "parentId": parent}
        if kind == "chart-of-accounts":
            account = _dict_field(data, "account", "")
            out["account"] = _compact({"type": account.get("type") or "EXPENSE", "number": account.get("number")})
        else:
            out["shortName"] = _str_field(data, "shortName", "", max_len=40)
        return _compact(out)

    def _check_classification(self, org, kind, ident, field):
        item = org.collection(kind).get(ident) if isinstance(ident, str) else None
        if item is None:
            raise _bad(f"Invalid field,value: {field}, {ident}. No such {kind.rstrip('s')} in this organization.")
        if item["archived"]:
            raise _bad(f"Invalid field,value: {field}, {ident}. The {kind.rstrip('s')} '{item['name']}' is archived.")

    def _classifications(self, org, data, path, keys):
        raw = _dict_field(data, "classifications", path)
        out = {}
        for key in keys:
            value = raw.get(key)
            if value is None:
                continue
            if key == "chartOfAccountId":
                self._check_classification(org, "chart-of-accounts", value, f"{path}classifications.{key}")
            elif key == "departmentId":
                self._check_classification(org, "departments", value, f"{path}classifications.{key}")
            # other dimensions (class, location, job, ...) are not simulated and pass through unchecked
            out[key] = value
        return out

    # ---------------------------------------------------------------- bills

    @staticmethod
    def _assert_bill_editable(bill, verb="edited"):
        # Simulator choice [U]: BILL blocks edits of bills with payments in the UI; we refuse them via API too.
        if bill["paymentStatus"] in LOCKED_BILL_STATES:
            raise _bad(f"Bill {bill['id']} cannot be {verb}: its payment status is {bill['paymentStatus']} "
                       f"(paidAmount {bill['paidAmount']}, scheduledAmount {bill['scheduledAmount']}).")

    def _line_item(self, org, li, path):
        if not isinstance(li, dict):
            raise _bad(f"Invalid field,value: {path}. Each line item must be an object.", "BDC_1124")
        quantity = _number(li["quantity"], path + "quantity") if li.get("quantity") is not None else None
        price = _number(li["price"], path + "price") if li.get("price") is not None else None
        if li.get("amount") is not None:
            amount = _money(li["amount"], path + "amount")  # amount wins over quantity * price
        elif quantity is not None and price is not None:
            amount = (Decimal(quantity) * Decimal(price)).quantize(CENT, ROUND_HALF_UP)
        else:
            raise _missing(path + "amount")
        return _compact({
            "id": li.get("id") or self._new_id("bli"),  # [U] line item id prefix
            "amount": amount, "quantity": quantity, "price": price,
            "description": _str_field(li, "description", path, max_len=4000),
            "classifications": self._classifications(org, li, path, LINE_CLASSIFICATION_KEYS),
        })

    def _bill_normalize(self, ctx, data, path, base=None):
        """Validate a full bill (create, PUT, or base merged with PATCH) and return the stored dict."""
        org = ctx.org
        vendor_id = _str_field(data, "vendorId", path, required=True)
        vendor = org.vendors.get(vendor_id)
        if vendor is None or vendor["archived"]:
            state = "does not exist" if vendor is None else "is archived"
            raise _bad(f"Invalid field,value: {path}vendorId, {vendor_id}. The vendor {state}.")
        due_date = _date_field(data, "dueDate", path)
        invoice = data.get("invoice")
        if not isinstance(invoice, dict):
            raise _missing(path + "invoice")
        invoice_number = _str_field(invoice, "invoiceNumber", path + "invoice.", required=True, max_len=255)
        invoice_date = _date_field(invoice, "invoiceDate", path + "invoice.")
        raw_items = data.get("billLineItems")
        if not isinstance(raw_items, list) or not raw_items:
            raise _missing(path + "billLineItems")
        items = [self._line_item(org, li, f"{path}billLineItems[{i}].") for i, li in enumerate(raw_items)]
        amount = sum((li["amount"] for li in items), ZERO)
        if amount <= 0:
            raise _bad(f"Invalid field,value: {path}amount, {amount}. The bill total must be greater than zero.")
        pay_from = data.get("payFromChartOfAccountId")
        if pay_from is not None:
            self._check_classification(org, "chart-of-accounts", pay_from, path + "payFromChartOfAccountId")
        base = base or {}
        bill = {
            "id": base.get("id") or self._new_id("00n"), "archived": base.get("archived", False),
            "vendorId": vendor_id, "vendorName": vendor["name"], "amount": amount,
            "paidAmount": base.get("paidAmount", ZERO), "dueAmount": amount,
            "scheduledAmount": base.get("scheduledAmount", ZERO), "creditAmount": base.get("creditAmount", ZERO),
            "fundingAmount": amount, "exchangeRate": 1,
            "description": _str_field(data, "description", path, max_len=4000),
            "dueDate": due_date, "invoice": {"invoiceNumber": invoice_number, "invoiceDate": invoice_date},
            "billLineItems": items, "payFromChartOfAccountId": pay_from,
            "classifications": self._classifications(org, data, path, BILL_CLASSIFICATION_KEYS),
            "paymentStatus": "UNPAID", "approvalStatus": base.get("approvalStatus", "UNASSIGNED"),
            "purchaseOrderNumber": _str_field(data, "purchaseOrderNumber", path, max_len=100),
            "createdTime": base.get("createdTime", ctx.now), "updatedTime": ctx.now,
        }
        _recompute_bill(bill)
        return _compact(bill)

    def _new_bill_input(self, data, path):
        if not isinstance(data, dict):
            raise _bad(f"Invalid field,value: {path or 'body'}. Each bill must be an object.", "BDC_1124")
        items = data.get("billLineItems")
        if isinstance(items, list):  # ids sent on create are ignored: BILL assigns them
            data = {**data, "billLineItems": [{k: v for k, v in li.items() if k != "id"} if isinstance(li, dict)
                                              else li for li in items]}
        return data

    def _h_bill_create(self, ctx):
        bill = self._bill_normalize(ctx, self._new_bill_input(ctx.json(), ""), "")
        ctx.org.bills[bill["id"]] = bill
        self._emit(ctx.org, "bill.created", "bill", bill, bill["id"], ctx.out)
        return 201, bill

    def _h_bill_bulk(self, ctx):
        items = ctx.json(expect=list)
        if not 1 <= len(items) <= self.max_bills_bulk:
            raise _bad(f"Bulk bill create accepts 1 to {self.max_bills_bulk} bills, got {len(items)}.")
        bills = [self._bill_normalize(ctx, self._new_bill_input(d, f"[{i}]."), f"[{i}].")
                 for i, d in enumerate(items)]  # all validated before any is stored: all-or-nothing
        for bill in bills:
            ctx.org.bills[bill["id"]] = bill
            self._emit(ctx.org, "bill.created", "bill", bill, bill["id"], ctx.out)
        return 201, bills

    def _h_bill_update(self, ctx, replace, ident):
        current = ctx.org.bills.get(ident)
        if current is None:
            raise _not_found("bill", ident)
        self._assert_bill_editable(current)
        if current["archived"]:
            raise _bad(f"Bill {ident} is archived; restore it before editing.")  # simulator choice [U]
        data = ctx.json()
        items = self._merge_line_items(current, data.get("billLineItems"), replace)
        if replace:
            merged = {**data, "billLineItems": items}
        else:
            editable = {k: v for k, v in data.items() if k not in ("id", "archived", "createdTime", "updatedTime")}
            merged = _deep_merge(current, editable)  # nested objects (invoice, classifications) merge too
            merged["billLineItems"] = items
        bill = self._bill_normalize(ctx, merged, "", base=current)
        ctx.org.bills[ident] = bill
        entity = bill
        if self.webhook_bill_updated_partial:
            entity = {k: v for k, v in bill.items() if current.get(k) != v}
            entity.update(id=ident, updatedTime=bill["updatedTime"])
        self._emit(ctx.org, "bill.updated", "bill", entity, ident, ctx.out)
        return 200, bill

    @staticmethod
    def _merge_line_items(current, sent, replace):
        """PATCH: items with an id are modified, items without are added, the rest kept.
        PUT: items with an id replace that item, items without are added, omitted ones are removed."""
        existing = {li["id"]: li for li in current["billLineItems"]}
        if sent is None:
            return None if replace else list(current["billLineItems"])
        if not isinstance(sent, list):
            raise _bad("Invalid field,value: billLineItems. Must be an array.", "BDC_1124")
        merged = {} if replace else dict(existing)
        for i, li in enumerate(sent):
            if not isinstance(li, dict):
                raise _bad(f"Invalid field,value: billLineItems[{i}]. Must be an object.", "BDC_1124")
            li_id = li.get("id")
            if li_id is None:
                merged[f"new-{i}"] = li
            elif not isinstance(li_id, str) or li_id not in existing:
                raise _bad(f"Invalid field,value: billLineItems[{i}].id, {li_id}. Not a line item of this bill.")
            else:
                merged[li_id] = li if replace else _deep_merge(existing[li_id], li)
        return list(merged.values())

    # ---------------------------------------------------------------- payments

    def _payment(self, org, payment_id):
        payment = org.payments.get(payment_id)
        if payment is None:
            raise _not_found("payment", payment_id)
        return payment

    def _h_payment_create(self, ctx):
        """Body (our pick, close to the payment object): {vendorId?, processDate?, description?,
        billPayments: [{billId, amount}]}; the single-bill form {billId, amount, ...} is accepted too."""
        data = ctx.json()
        lines = data.get("billPayments")
        if lines is None and "billId" in data:
            lines = [{"billId": data.get("billId"), "amount": data.get("amount")}]
        if not isinstance(lines, list) or not lines:
            raise _missing("billPayments")
        pairs = []
        for i, line in enumerate(lines):
            if not isinstance(line, dict) or not line.get("billId"):
                raise _missing(f"billPayments[{i}].billId")
            pairs.append((line["billId"], _money(line.get("amount"), f"billPayments[{i}].amount")))
        process_date = _date_field(data, "processDate", "", required=False)
        payment = self._create_payment(ctx.org, pairs, status="SCHEDULED", single_status="SCHEDULED",
                                       process_date=process_date, created_by=ctx.session.user_id, out=ctx.out,
                                       vendor_id=data.get("vendorId"), description=data.get("description"))
        return 201, payment

    def _create_payment(self, org, pairs, *, status, single_status, process_date, created_by, out,
                        vendor_id=None, description=None):
        if not pairs:
            raise _missing("billPayments")
        bills, seen = [], set()
        for i, (bill_id, amount) in enumerate(pairs):
            bill = org.bills.get(bill_id) if isinstance(bill_id, str) else None
            if bill is None or bill["archived"]:
                raise _bad(f"Invalid field,value: billPayments[{i}].billId, {bill_id}. No open bill with this id.")
            if bill_id in seen:
                raise _bad(f"Invalid field,value: billPayments[{i}].billId, {bill_id}. Bill listed twice.")
            seen.add(bill_id)
            vendor_id = vendor_id if isinstance(vendor_id, str) and vendor_id else bill["vendorId"]
            if bill["vendorId"] != vendor_id:
                raise _bad("All bills of one payment must belong to the same vendor "
                           f"({bill_id} belongs to {bill['vendorId']}, not {vendor_id}).")
            available = bill["dueAmount"] - bill["scheduledAmount"]
            if amount <= 0 or amount > available:
                raise _bad(f"Invalid field,value: billPayments[{i}].amount, {amount}. "
                           f"Must be > 0 and <= the open amount {available} of bill {bill_id}.")
            bills.append((bill, amount))
        vendor = org.vendors[vendor_id]
        now = self._now_iso()
        total = sum((a for _, a in bills), ZERO)
        txn = next(self._txn)
        bill_payments = [{"id": self._new_id("blp"), "billId": b["id"], "amount": a, "vendorCredits": []}
                         for b, a in bills]
        payment = {
            "id": self._new_id("stp"), "amount": total, "vendorId": vendor_id, "vendorName": vendor["name"],
            "billId": bills[0][0]["id"],  # [U] for multi-bill payments: the first bill
            "billPayments": bill_payments, "description": description or "",
            "processDate": process_date or self._today(),
            "fundingAccount": {"type": "BANK_ACCOUNT", "id": org.bank_account_id},
            "processingOptions": {"requestPayFaster": False, "createBill": False},
            "transactionNumber": str(txn), "confirmationNumber": f"P{txn:010d}",
            "status": status, "singleStatus": single_status, "exchangeRate": 1, "fundingAmount": total,
            "onlinePayment": True, "disbursementType": "ACH", "cancelRequestSubmitted": False,
            "createdBy": created_by, "createdTime": now, "updatedTime": now,
        }
        org.payments[payment["id"]] = payment
        field = "scheduledAmount" if status in SCHEDULED_STATES else "paidAmount"
        for bill, amount in bills:
            bill[field] += amount
        self._touch_bills(org, payment, out)
        self._emit(org, "payment.updated", "payment", self._payment_event_entity(org, payment), payment["id"], out)
        return payment

    def _touch_bills(self, org, payment, out):
        for bp in payment["billPayments"]:
            bill = org.bills[bp["billId"]]
            _recompute_bill(bill)
            bill["updatedTime"] = self._now_iso()
            if self.emit_bill_updated_on_payment:
                self._emit(org, "bill.updated", "bill", bill, bill["id"], out)

    def _shift_amounts(self, org, payment, source, target, out):
        for bp in payment["billPayments"]:
            bill = org.bills[bp["billId"]]
            bill[source] = max(ZERO, bill[source] - bp["amount"])
            if target:
                bill[target] += bp["amount"]
        self._touch_bills(org, payment, out)

    def _reverse_payment(self, org, payment, out):
        source = "scheduledAmount" if payment["status"] in SCHEDULED_STATES else "paidAmount"
        self._shift_amounts(org, payment, source, None, out)

    def _set_payment_status(self, org, payment, status, single_status, out):
        payment["status"], payment["singleStatus"] = status, single_status
        payment["updatedTime"] = self._now_iso()
        self._emit(org, "payment.updated", "payment", self._payment_event_entity(org, payment), payment["id"], out)

    def _void(self, org, payment, out):
        if payment["status"] in DEAD_STATES:
            raise _bad(f"Payment {payment['id']} is {payment['status']} and cannot be voided.")
        self._reverse_payment(org, payment, out)
        payment["voidInfo"] = [{"voidDate": self._today(), "voidReason": "Voided"}]
        self._set_payment_status(org, payment, "VOID", "VOIDED", out)
        return payment

    def _h_payment_void(self, ctx, ident):
        return 200, self._void(ctx.org, self._payment(ctx.org, ident), ctx.out)

    def _h_payment_cancel(self, ctx, ident):
        payment = self._payment(ctx.org, ident)
        if payment["status"] not in SCHEDULED_STATES:
            raise _bad(f"Payment {ident} is {payment['status']}; only scheduled payments can be canceled "
                       "(void a paid one).")
        self._reverse_payment(ctx.org, payment, ctx.out)
        self._set_payment_status(ctx.org, payment, "CANCELLED", "CANCELED", ctx.out)
        return 200, payment

    def _payment_event_entity(self, org, p):
        """payment.updated payload (sheet §9.3): no per-bill amounts, status is the single-status value."""
        moved = p["status"] not in SCHEDULED_STATES
        return {
            "id": p["id"], "billIds": [bp["billId"] for bp in p["billPayments"]],
            "transactionNumber": p["transactionNumber"], "status": p["singleStatus"], "createdBy": p["createdBy"],
            "createdTime": p["createdTime"], "updatedTime": p["updatedTime"], "processDate": p["processDate"],
            "funding": {"amount": p["amount"], "currency": "USD",
                        "fundingAccount": {"id": org.bank_account_id, "type": "BANK_ACCOUNT",
                                           "name": "Operating Account", "accountNumber": "************1111"}},
            "disbursement": {"amount": p["amount"], "currency": "USD", "arrivesByDate": p["processDate"],
                             "disbursementAccount": {"type": "ACH", "accountNumber": "******333"} if moved else {}},
            "vendor": {"id": p["vendorId"], "name": p["vendorName"]},
            "billingType": "BDC",
        }

    # ---------------------------------------------------------------- webhook service handlers

    def _h_event_catalog(self, ctx):
        return 200, [{"type": t, "versions": ["1"]} for t in EVENT_TYPES]

    def _sub(self, org, ident):
        sub = org.subscriptions.get(ident)
        if sub is None:
            raise _not_found("subscription", ident)
        return sub

    def _sub_normalize(self, data, base):
        name = _str_field(data, "name", "", required=True, max_len=255)
        url = _str_field(data, "notificationUrl", "", required=True, max_len=2048)
        local = re.match(r"^http://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?(/|$)", url)
        if not url.startswith("https://") and not (self.allow_http_localhost and local):
            raise _bad(f"Invalid field,value: notificationUrl, {url}. HTTPS is required.")
        events = data.get("events")
        if not isinstance(events, list) or not events:
            raise _missing("events")
        clean = []
        for i, ev in enumerate(events):
            if not isinstance(ev, dict) or ev.get("type") not in EVENT_TYPES or str(ev.get("version", "1")) != "1":
                raise _bad(f"Invalid field,value: events[{i}], {ev!r}. Unknown event type or version.")
            clean.append({"type": ev["type"], "version": "1"})
        status = _dict_field(data, "status", "")
        enabled = status.get("enabled", base.get("status", {}).get("enabled", True))
        if not isinstance(enabled, bool):
            raise _bad(f"Invalid field,value: status.enabled, {enabled!r}.", "BDC_1124")
        return {"name": name, "status": {"enabled": enabled}, "events": clean, "notificationUrl": url}

    def _h_sub_list(self, ctx):
        return 200, paginate(list(ctx.org.subscriptions.values()), ctx.req.args, forward_only=True)

    def _h_sub_create(self, ctx):
        fields = self._sub_normalize(ctx.json(), {})
        sub = {"id": str(uuid.uuid4()), **fields, "organizationId": ctx.org.id, "createdTime": ctx.now,
               "updatedTime": ctx.now}
        ctx.org.subscriptions[sub["id"]] = sub
        ctx.org.sub_keys[sub["id"]] = secrets.token_hex(32)
        return 200, {**sub, "securityKey": ctx.org.sub_keys[sub["id"]]}  # the key is shown only here

    def _h_sub_get(self, ctx, ident):
        return 200, self._sub(ctx.org, ident)

    def _h_sub_update(self, ctx, replace, ident):
        current = self._sub(ctx.org, ident)
        data = ctx.json()
        merged = data if replace else _deep_merge(current, data)
        current.update(self._sub_normalize(merged, current), updatedTime=ctx.now)
        return 200, current

    def _h_sub_delete(self, ctx, ident):
        self._sub(ctx.org, ident)
        del ctx.org.subscriptions[ident]
        ctx.org.sub_keys.pop(ident, None)
        return 200, None

    def _h_sub_rotate(self, ctx, ident):
        self._sub(ctx.org, ident)
        # [U] grace period for the old key: none here, deliveries are always signed with the current key
        ctx.org.sub_keys[ident] = secrets.token_hex(32)
        return 200, {"securityKey": ctx.org.sub_keys[ident]}

    def _h_sub_test(self, ctx, ident):
        sub = self._sub(ctx.org, ident)
        raw = ctx.req.get_data(cache=True)
        data = ctx.json() if raw.strip() else {}
        event_type = data.get("eventType") or sub["events"][0]["type"]
        if event_type not in EVENT_TYPES:
            raise _bad(f"Invalid field,value: eventType, {event_type}.")
        head, *rest = event_type.split(".")[0].split("-")
        key = head + "".join(part.title() for part in rest)  # bank-account -> bankAccount
        entity = data.get(key) if isinstance(data.get(key), dict) else {"id": "00n02TESTEVENT000000", "test": True}
        delivery = self._make_delivery(ctx.org, sub, event_type, key, entity, entity.get("id"), force=True)
        ctx.out.append(delivery)
        return 200, delivery.record

    def _h_event_list(self, ctx, ident):
        self._sub(ctx.org, ident)
        entity_id = ctx.req.args.get("entityId")
        records = [r for r in ctx.org.events
                   if r["subscriptionId"] == ident and (not entity_id or r["entityId"] == entity_id)]
        return 200, paginate(records, ctx.req.args, forward_only=True)

    def _h_event_resend(self, ctx, sub_id, event_id):
        sub = self._sub(ctx.org, sub_id)
        record = ctx.org.events_by_id.get(event_id)
        if record is None or record["subscriptionId"] != sub_id:
            raise _not_found("event", event_id)
        body = record["payload"].encode("utf-8")
        ctx.out.append(_Delivery(event_id, record["type"], ctx.org.id, sub["id"], body, record, force=True))
        return 200, record

    # ---------------------------------------------------------------- webhook emission & delivery

    def _emit(self, org, event_type, entity_key, entity, entity_id, out):
        """Queue `event_type` for every enabled subscription of `org` that asked for it (lock held)."""
        for sub in org.subscriptions.values():
            if not sub["status"]["enabled"] or not any(e["type"] == event_type for e in sub["events"]):
                continue
            delivery = self._make_delivery(org, sub, event_type, entity_key, entity, entity_id)
            out.append(delivery)
            if self.webhook_duplicate_rate and self._rng.random() < self.webhook_duplicate_rate:
                out.append(delivery.clone())  # at-least-once delivery: same eventId twice

    def _make_delivery(self, org, sub, event_type, entity_key, entity, entity_id, force=False):
        event_id = str(uuid.uuid4())
        payload = {"metadata": {"eventId": event_id, "subscriptionId": sub["id"], "organizationId": org.id,
                                "eventType": event_type, "version": "1"},
                   entity_key: entity}
        body = dumps(payload)  # snapshot now: later changes to the entity must not leak into this event
        record = {"id": event_id, "type": event_type, "version": "1", "subscriptionId": sub["id"],
                  "entityId": entity_id, "payload": body.decode("utf-8"), "createdTime": self._now_iso(),
                  "statusCode": None}
        org.events.append(record)
        org.events_by_id[event_id] = record
        return _Delivery(event_id, event_type, org.id, sub["id"], body, record, force)

    def _dispatch(self, deliveries):
        if not deliveries:
            return
        if self.webhook_sync:
            for delivery in deliveries:
                self._deliver_inline(delivery)
            return
        with self._wh_cond:
            self._ensure_workers()
            now = time.monotonic()
            for delivery in deliveries:
                heapq.heappush(self._wh_heap, (now, next(self._wh_seq), delivery))
                self._wh_pending += 1
            self._wh_cond.notify_all()

    def _deliver_inline(self, delivery):
        while True:
            delay = self._attempt(delivery)
            if delay is None:
                return
            time.sleep(delay)

    def _ensure_workers(self, count=4):
        if self._wh_workers:
            return
        for i in range(count):  # several workers: one slow receiver must not hold up every event
            worker = threading.Thread(target=self._worker_loop, name=f"bill-webhooks-{i}", daemon=True)
            worker.start()
            self._wh_workers.append(worker)

    def _worker_loop(self):
        while True:
            with self._wh_cond:
                while True:
                    if self._wh_closed:
                        return
                    now = time.monotonic()
                    if self._wh_heap and self._wh_heap[0][0] <= now:
                        _, _, delivery = heapq.heappop(self._wh_heap)
                        break
                    timeout = self._wh_heap[0][0] - now if self._wh_heap else None
                    self._wh_cond.wait(timeout)
            try:
                delay = self._attempt(delivery)
            except Exception:  # never lose the worker thread
                log.exception("webhook delivery crashed")
                delay = None
            with self._wh_cond:
                if delay is None:
                    self._wh_pending -= 1
                else:
                    heapq.heappush(self._wh_heap, (time.monotonic() + delay, next(self._wh_seq), delivery))
                self._wh_cond.notify_all()

    def _http(self):
        session = getattr(self._http_local, "session", None)
        if session is None:
            session = self._http_local.session = requests.Session()
        return session

    def _attempt(self, delivery):
        """Send once. Returns the delay before the next try, or None when finished (success/gave up/dropped)."""
        with self._lock:
            org = self._orgs.get(delivery.org_id)
            sub = org.subscriptions.get(delivery.sub_id) if org else None
            if sub is None or not (sub["status"]["enabled"] or delivery.force):
                self.webhooks_dropped += 1  # disabled or deleted meanwhile: BILL stops sending
                return None
            key, url = org.sub_keys[sub["id"]], sub["notificationUrl"]
            timeout = self.webhook_timeout
        headers = {"Content-Type": "application/json", "x-bill-sha-signature": sign(delivery.body, key)}
        try:
            result = self._http().post(url, data=delivery.body, headers=headers, timeout=timeout).status_code
        except requests.RequestException as exc:
            result = f"{type(exc).__name__}: {exc}"
        with self._lock:
            self.deliveries.append((delivery.event_id, delivery.event_type, url, result))
            delivery.record["statusCode"] = result if isinstance(result, int) else None
            if result == 200:  # only 200 counts as success
                return None
            delays = tuple(self.webhook_retry_delays)
            if delivery.attempt < len(delays):
                delivery.attempt += 1
                return delays[delivery.attempt - 1]
            if not delivery.force and sub["status"]["enabled"]:
                sub["status"]["enabled"] = False  # retries exhausted: BILL switches the subscription off
                sub["updatedTime"] = self._now_iso()
            return None

    # ---------------------------------------------------------------- /_sim control endpoints

    def _serve_sim(self, req):
        try:
            data = json.loads(req.get_data() or b"{}", parse_float=Decimal) if req.method == "POST" else {}
            action = req.path[len("/_sim/"):].strip("/")
            handler = getattr(self, f"_sim_{action.replace('-', '_')}", None)
            if handler is None:
                return 404, dumps({"error": f"unknown control endpoint {req.path}"})
            return 200, dumps(handler(data))
        except (ApiError, KeyError, ValueError, TypeError) as exc:
            return 400, dumps({"error": str(exc)})

    def _sim_stats(self, data):
        return self.stats()

    def _sim_knobs(self, data):
        with self._lock:
            for name, value in data.items():
                if name not in KNOBS:
                    raise ValueError(f"unknown knob {name}")
                if name == "webhook_retry_delays":
                    value = tuple(float(v) for v in value)
                elif isinstance(value, Decimal):
                    value = float(value)
                setattr(self, name, value)
        return self.knobs()

    def _sim_pay(self, data):
        return self.pay_bills([tuple(p) for p in data["payments"]], process_date=data.get("process_date"),
                              status=data.get("status", "PAID"), single_status=data.get("single_status", "PROCESSED"),
                              org_id=data.get("org_id"))

    def _sim_void(self, data):
        return self.void_payment(data["payment_id"], org_id=data.get("org_id"))

    def _sim_fail_payment(self, data):
        return self.fail_payment(data["payment_id"], org_id=data.get("org_id"))

    def _sim_settle(self, data):
        return self.settle_payment(data["payment_id"], status=data.get("status", "PAID"),
                                   single_status=data.get("single_status", "PROCESSED"), org_id=data.get("org_id"))

    def _sim_deliveries(self, data):
        with self._lock:
            return [{"eventId": e, "eventType": t, "url": u, "result": r} for e, t, u, r in self.deliveries]

    def _sim_expire_sessions(self, data):
        self.expire_all_sessions()
        return {"ok": True}

    def _sim_fail_next(self, data):
        self.fail_next(data.get("method"), data["path_contains"], int(data["status"]), data["code"],
                       data["message"], int(data.get("count", 1)))
        return {"ok": True}

    def _sim_lose_next(self, data):
        self.lose_next_response(data.get("method"), data["path_contains"], int(data.get("count", 1)))
        return {"ok": True}

    def _sim_entities(self, data):
        return self.entities(data["kind"], data.get("org_id"))


def _recompute_bill(bill):
    """dueAmount and paymentStatus from amount/paidAmount/scheduledAmount/creditAmount."""
    due = bill["amount"] - bill["paidAmount"] - bill["creditAmount"]
    bill["dueAmount"] = max(due, ZERO)
    if bill["paidAmount"] > 0:
        bill["paymentStatus"] = "PAID" if due <= 0 else "PARTIAL"  # [U] PARTIAL is third-party only
    elif bill["scheduledAmount"] > 0:
        bill["paymentStatus"] = "SCHEDULED"
    else:
        bill["paymentStatus"] = "UNPAID"


def make_app(**kw) -> BillSimulator:
    """A simulator; `seed` and `clock` go to the constructor, any other keyword sets the knob of that name."""
    sim = BillSimulator(seed=kw.pop("seed", True), clock=kw.pop("clock", None))
    for name, value in kw.items():
        if name not in KNOBS:
            raise TypeError(f"unknown BillSimulator knob {name!r}")
        setattr(sim, name, value)
    return sim
