"""Creating, finding and checking customer connections (the logic behind `connection apply|list|ping`)."""

import re
from datetime import date

from django.core.exceptions import ValidationError
from django.db import transaction

from .clients.bill import BillClient
from .clients.errors import RemoteError
from .clients.sap import SapClient
from .models import Connection, Tenant

SLUG_RE = re.compile(r"[A-Za-z0-9_-]+")


class BadInput(Exception):
    """The operator's input is wrong; the message names the field or row to fix."""


class NotFound(Exception):
    pass


SAP_KEYS = {
    "base_url": True, "company_db": True, "username": True, "password": True,
    "verify_tls": False, "ca_bundle": False, "payment_account": False, "invoice_filter": False,
    "cancel_payment_on_void": False, "currency_codes": False,
}
BOOL_KEYS = {("sap", "verify_tls"), ("sap", "cancel_payment_on_void")}
BILL_KEYS = {
    "base_url": True, "username": True, "password": True, "organization_id": True, "dev_key": True,
    "webhook_security_key": False, "events_base_url": False,
}
TOP_KEYS = {"tenant": True, "name": True, "sap": True, "bill": True, "schedule": False, "sync_from": False,
            "enabled": False, "allow_private_network": False, "coding": False}

FIELD_MAP = {
    ("sap", "base_url"): "sap_base_url", ("sap", "company_db"): "sap_company_db",
    ("sap", "username"): "sap_username", ("sap", "password"): "sap_password",
    ("sap", "verify_tls"): "sap_verify_tls", ("sap", "ca_bundle"): "sap_ca_bundle",
    ("sap", "payment_account"): "sap_payment_account", ("sap", "invoice_filter"): "invoice_extra_filter",
    ("sap", "cancel_payment_on_void"): "cancel_sap_payment_on_void", ("sap", "currency_codes"): "sap_currency_codes",
    ("bill", "base_url"): "bill_base_url", ("bill", "username"): "bill_username",
    ("bill", "password"): "bill_password", ("bill", "organization_id"): "bill_organization_id",
    ("bill", "dev_key"): "bill_dev_key", ("bill", "webhook_security_key"): "bill_webhook_security_key",
    ("bill", "events_base_url"): "bill_events_base_url",
}
REVERSE_FIELD_MAP = {field: f"{section}.{key}" for (section, key), field in FIELD_MAP.items()}


def _check_keys(obj, spec, where):
    if not isinstance(obj, dict):
        raise BadInput(f"{where or 'the file'} must be a JSON object")
    unknown = sorted(set(obj) - set(spec))
    if unknown:
        raise BadInput(f"unknown key {where + '.' if where else ''}{unknown[0]} (allowed: {', '.join(sorted(spec))})")
    for key, required in spec.items():
        if required and (key not in obj or obj[key] in (None, "")):
            raise BadInput(f"missing required key {where + '.' if where else ''}{key}")


def _string(value, where):
    if not isinstance(value, str):
        raise BadInput(f"{where} must be a string")
    return value.strip() if "password" not in where and "key" not in where else value


# What an optional key means when the file leaves it out: applying a file is declarative, so a key removed
# from the file goes back to its default (the webhook security key is the exception: `webhooks register`
# stores it, and a file that never had it must not erase it).
DEFAULTS = {
    "sap_verify_tls": True, "sap_ca_bundle": "", "sap_payment_account": "", "invoice_extra_filter": "",
    "cancel_sap_payment_on_void": False, "bill_events_base_url": "", "enabled": True, "sap_currency_codes": {},
    "schedule_minutes": 15, "schedule_cron": "", "allow_private_network": False, "coding": {},
}


def _currency_codes(value, where):
    """{"<SAP B1 currency code>": "<ISO 4217 code>"}, e.g. {"$": "USD"}."""
    if not isinstance(value, dict):
        raise BadInput(f'{where} must be an object like {{"$": "USD"}} (SAP currency code to ISO code)')
    for code, iso in value.items():
        if not code.strip() or len(code) > 3:
            raise BadInput(f"{where}: {code!r} is not an SAP currency code (1 to 3 characters)")
        if not isinstance(iso, str) or not re.fullmatch(r"[A-Z]{3}", iso):
            raise BadInput(f"{where}.{code} must be an ISO 4217 code like USD, not {iso!r}")
    return dict(value)


def parse_connection_file(data):
    """Validate a connection file (CONTRACT.md) and return (tenant_slug, name, model field values)."""
    _check_keys(data, TOP_KEYS, "")
    _check_keys(data["sap"], SAP_KEYS, "sap")
    _check_keys(data["bill"], BILL_KEYS, "bill")
    values = dict(DEFAULTS)
    for section in ("sap", "bill"):
        for key, value in data[section].items():
            where = f"{section}.{key}"
            if (section, key) in BOOL_KEYS:
                if not isinstance(value, bool):
                    raise BadInput(f"{where} must be true or false")
                values[FIELD_MAP[(section, key)]] = value
            elif (section, key) == ("sap", "currency_codes"):
                values[FIELD_MAP[(section, key)]] = _currency_codes(value, where)
            else:
                values[FIELD_MAP[(section, key)]] = _string(value if value is not None else "", where)
    schedule = data.get("schedule")
    if schedule is not None:
        if not isinstance(schedule, dict) or set(schedule) - {"minutes", "cron"} or not schedule:
            raise BadInput('schedule must be {"minutes": N} or {"cron": "…"}')
        if "minutes" in schedule:
            minutes = schedule["minutes"]
            if not isinstance(minutes, int) or isinstance(minutes, bool) or not 1 <= minutes <= 10080:
                raise BadInput("schedule.minutes must be a whole number of minutes between 1 and 10080")
            values["schedule_minutes"] = minutes
            values["schedule_cron"] = ""
        if "cron" in schedule:  # given instead of minutes; if both are given, cron wins
            values["schedule_cron"] = _check_cron(schedule["cron"])
            values["schedule_minutes"] = None
    if "sync_from" in data:
        try:
            values["sync_from"] = date.fromisoformat(str(data["sync_from"]))
        except ValueError:
            raise BadInput("sync_from must be a date like 2026-01-01") from None
    if "coding" in data:
        from connector.sync.dimensions import CodingError, parse_coding

        try:
            coding = parse_coding(data["coding"])
        except CodingError as exc:
            raise BadInput(str(exc)) from None
        values["coding"] = {} if coding == {"department": "first"} else coding
    for flag in ("enabled", "allow_private_network"):
        if flag in data:
            if not isinstance(data[flag], bool):
                raise BadInput(f"{flag} must be true or false")
            values[flag] = data[flag]
    tenant = _string(data["tenant"], "tenant")
    name = _string(data["name"], "name")
    for label, value in (("tenant", tenant), ("name", name)):
        if not SLUG_RE.fullmatch(value):
            raise BadInput(f"{label} {value!r} may contain only letters, digits, '-' and '_' (it is used as TENANT/NAME)")
    return tenant, name, values


def _check_cron(expr):
    from croniter import croniter

    if not isinstance(expr, str) or not croniter.is_valid(expr):
        raise BadInput(f"schedule.cron is not a valid cron expression: {expr!r}")
    return expr


@transaction.atomic
def apply_connection(data):
    """Create or update one connection (by tenant + name) from a parsed connection file. Returns (conn, created)."""
    tenant_slug, name, values = parse_connection_file(data)
    tenant, _ = Tenant.objects.get_or_create(slug=tenant_slug, defaults={"name": tenant_slug})
    conn = Connection.objects.filter(tenant=tenant, name=name).first()
    created = conn is None
    if created:
        conn = Connection(tenant=tenant, name=name)
    # (a replaced webhook security key stays accepted for a grace period: Connection.save)
    for field, value in values.items():
        setattr(conn, field, value)
    try:
        conn.full_clean()
    except ValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        label = REVERSE_FIELD_MAP.get(field, {"tenant": "tenant", "name": "name"}.get(field, field))
        raise BadInput(f"{label}: {' '.join(messages)}") from None
    conn.save()
    return conn, created


def find_connection(ref, queryset=None):
    """`NAME` or `TENANT/NAME` → Connection. Raises NotFound with what exists when it is missing or ambiguous."""
    qs = queryset if queryset is not None else Connection.objects.select_related("tenant")
    if "/" in ref:
        tenant, _, name = ref.partition("/")
        matches = list(qs.filter(tenant__slug=tenant, name=name))
    else:
        matches = list(qs.filter(name=ref))
    if len(matches) == 1:
        return matches[0]
    if not matches:
        known = ", ".join(str(c) for c in qs.order_by("tenant__slug", "name")[:20]) or "none yet"
        raise NotFound(f"no connection named {ref!r} (known: {known})")
    raise NotFound(f"{len(matches)} tenants have a connection named {ref!r}: use TENANT/NAME, e.g. {matches[0]}")


def webhook_url(conn):
    from django.conf import settings

    return f"{settings.PUBLIC_BASE_URL}/webhooks/bill/{conn.webhook_token}/"


def scrub(text, conn):
    """`text` with every stored secret of `conn` replaced by ***: a server may echo what we sent it."""
    text = str(text)
    for name in (*conn.SECRET_FIELDS, "bill_webhook_previous_key"):
        try:
            value = getattr(conn, name)
        except Exception:  # noqa: BLE001 - an unreadable secret cannot be in the text either
            continue
        if value and len(value) >= 6:  # (shorter ones would scrub ordinary words)
            text = text.replace(value, "***")
    return text


def ping_connection(conn, **client_kw):
    """Log in to both sides. Returns {"sap": (ok, words), "bill": (ok, words)}; never raises for remote failures."""
    results = {}
    for side, factory in (("sap", SapClient.for_connection), ("bill", BillClient.for_connection)):
        try:
            results[side] = (True, scrub(factory(conn, **client_kw).ping(), conn))
        except RemoteError as exc:
            results[side] = (False, scrub(exc, conn))
        except Exception as exc:  # noqa: BLE001 - a ping reports any failure in words, never a traceback
            results[side] = (False, scrub(f"{exc.__class__.__name__}: {exc}", conn))
    return results


# --- "Test connection" in the admin: editors and operators, one at a time per connection, rate-limited -----------
TEST_TIMEOUT = (4, 15)  # (connect, read) seconds: a test answers within a minute even when a host is dead


class TestRefused(Exception):
    """A connection test was asked for too soon, or while one is running."""


def _test_keys(conn):
    # The webhook token makes the keys unique per connection across deployments sharing one Redis (and test runs).
    return f"ml-conn-test-running:{conn.pk}:{conn.webhook_token}", f"ml-conn-test-recent:{conn.pk}:{conn.webhook_token}"


def request_connection_test(conn, actor):
    """Queue a test of both logins. Raises TestRefused when one is running or one started in the last
    CONNECTION_TEST_INTERVAL seconds; the outcome is stored on the connection (`last_test`)."""
    from django.conf import settings
    from django.core.cache import cache
    from django_q.tasks import async_task

    running, recent = _test_keys(conn)
    interval = getattr(settings, "CONNECTION_TEST_INTERVAL", 30)
    if cache.get(running):
        raise TestRefused(f"{conn}: a connection test is already running; its result appears on the connection page.")
    if not cache.add(recent, actor or "-", timeout=interval):
        raise TestRefused(f"{conn}: tested less than {interval} seconds ago; try again in a moment.")
    cache.set(running, actor or "-", timeout=180)
    try:
        async_task("connector.connections.run_connection_test", conn.pk, actor, task_name=f"test-connection-{conn.pk}")
    except Exception:
        cache.delete(running)
        raise


def run_connection_test(connection_id, actor=""):
    """The queued test: both logins with short timeouts; the words (secrets scrubbed) go on `conn.last_test`."""
    from django.core.cache import cache
    from django.utils import timezone

    conn = Connection.objects.filter(pk=connection_id).select_related("tenant").first()
    if conn is None:
        return "connection missing"
    try:
        outcome = ping_connection(conn, timeout=TEST_TIMEOUT)
        conn.last_test = {"at": timezone.now().isoformat(), "by": actor,
                          "sides": {side: {"ok": ok, "words": words[:500]} for side, (ok, words) in outcome.items()}}
        conn.save(update_fields=["last_test"])
    finally:
        cache.delete(_test_keys(conn)[0])
    return "; ".join(f"{side}: {'ok' if ok else 'failed'}" for side, (ok, _) in outcome.items())
