"""BILL simulator: constants, API errors, JSON encoding, times and field validation helpers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import string
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

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

    def __init__(self, status, code, message, category="REQUEST", entries=None):
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.category = category
        # Several problems in one answer, as real BILL sends them: one array entry each (see `_field_errors`).
        self.entries = entries


def _field_errors(problems, status=400):
    """One answer listing every `field: rule` problem, the way real BILL validation errors look
    (api-facts-addendum §3): `code` null on some entries and absent on others, `params` an object or an array."""
    entries = []
    for i, message in enumerate(problems):
        entry = {"code": None, "message": message, "params": {}} if i % 2 == 0 else {"message": message, "params": []}
        entries.append(entry)
    return ApiError(status, None, "; ".join(problems), entries=entries)


def _bad(message, code="BDC_1119"):
    """A 400 validation error. BDC_1119 is BILL's "Invalid field,value" code (shared v2/v3 code list)."""
    return ApiError(400, code, message)


def _missing(field):
    return ApiError(400, "BDC_1108", f"Missing parameter value for parameter: {field}.")


def _not_found(what, ident):
    # 404 + BDC_1205 for an unknown id (addendum §3, MJ-SUP); the wording after the gloss is ours.
    return ApiError(404, "BDC_1205", f"No data found for object with given ID. {what} {ident} does not exist "
                                     "in this organization.")


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
