"""The one place every HTTP exchange with SAP or BILL is reported.

Clients call `report_exchange(...)` once per attempt; anything that wants to record exchanges (the audit
trail, benchmarks counting requests, tests) connects to the `api_exchange` signal. Bodies are redacted
here, before any receiver sees them, so no receiver can store a secret by mistake.
"""

import json
import re

from django.dispatch import Signal

# kwargs: exchange (an Exchange)
api_exchange = Signal()

SECRET_KEYS = {
    "password", "devkey", "sessionid", "securitykey", "b1session", "routeid", "cookie", "set-cookie",
    "apikey", "appkey", "token", "rememberme", "rememberme_id", "remembermeid", "x-bill-sha-signature",
}
REDACTED = "***"
MAX_BODY_CHARS = 20_000
# Catches secrets inside non-JSON text, e.g. "B1SESSION=abc;" or "sessionId: xyz".
_TEXT_SECRET_RE = re.compile(
    r"(?i)\b(B1SESSION|ROUTEID|sessionId|devKey|password|securityKey)(\"?\s*[:=]\s*\"?)([^\"\s;,&]+)"
)


class Exchange:
    """One HTTP attempt: what was asked, what came back, how long it took.

    Bodies are redacted on first access (most exchanges are never stored, so most are never parsed).
    """

    FIELDS = (
        "system", "connection_id", "method", "path", "status", "duration_ms", "attempt",
        "request_body", "response_body", "error",
    )

    def __init__(self, **kw):
        self._raw = {"request_body": kw.pop("request_body", None), "response_body": kw.pop("response_body", None)}
        self._clean = {}
        for name in self.FIELDS:
            if name not in self._raw:
                setattr(self, name, kw.get(name))

    def _body(self, name):
        if name not in self._clean:
            self._clean[name] = redact_body(self._raw[name])
        return self._clean[name]

    @property
    def request_body(self):
        return self._body("request_body")

    @property
    def response_body(self):
        return self._body("response_body")

    def as_dict(self):
        return {name: getattr(self, name) for name in self.FIELDS}


def redact(value):
    """Return a copy of a JSON-like value with every secret-looking field replaced by '***'."""
    if isinstance(value, dict):
        return {k: (REDACTED if str(k).lower().replace("_", "") in SECRET_KEYS else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return _TEXT_SECRET_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", value)
    return value


def redact_body(body):
    """Redact a request/response body given as dict/list, JSON text, bytes or None; cap its size."""
    if body is None or body == b"" or body == "":
        return None
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str) and len(body) > 2 * MAX_BODY_CHARS:
        # A big bulk body is cut anyway: redact its text and cut it, without parsing 100+ bills.
        return redact(body[:MAX_BODY_CHARS]) + "…(truncated)"
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            text = redact(body)
            return text[:MAX_BODY_CHARS]
    cleaned = redact(body)
    text = json.dumps(cleaned, default=str)
    if len(text) > MAX_BODY_CHARS:
        return text[:MAX_BODY_CHARS] + "…(truncated)"
    return cleaned


def report_exchange(**kw):
    """Build an Exchange (bodies redacted when read) and send it to every receiver."""
    exchange = Exchange(**kw)
    api_exchange.send(sender=Exchange, exchange=exchange)
    return exchange
