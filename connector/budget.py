"""BILL's hourly budgets, shared by every connection that uses one developer key, across every process.

BILL limits each developer key to `BILL_REQUESTS_PER_HOUR` requests (20,000) and `BILL_LOGINS_PER_HOUR` logins
(200) per clock hour, across every organization the key serves. One host usually runs all its customers on one
key, so those are host-wide numbers. Every BILL call takes one unit of its key's hour before it is sent
(`take`); a login takes one of each.

Work has a priority (`priority(...)`, set per sync step by the runner):
- `high`: posting payments and creating bills — may use the whole hour (less a small reserve for other apps);
- `normal`: vendor alignment — up to 90 %;
- `low`: reference-data refresh, reconciliation, housekeeping — up to 75 %, and is *deferred* (not failed) past
  that: it raises `BudgetDeferred`, the runner records the step as deferred and the next cycle after the hour
  turns does it. High-priority work past the hour's budget waits for the hour like a `BDC_1144` (nothing lost).

Counts live in Redis when `REDIS_URL` is set (INCR per key and hour), else in the database (`BudgetUse`, a
conditional UPDATE per call). Either way the last 25 hours are kept for the host page.
"""

import contextlib
import contextvars
import hashlib
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from connector.clients.errors import BillError, BillHourlyLimit

SHARES = {"high": 0.98, "normal": 0.90, "low": 0.75}  # of the hour's budget; 2 % kept for others on the key
STEP_PRIORITY = {"payments": "high", "bills": "high", "credits": "high", "vendors": "normal", "documents": "normal",
                 "reference": "low",
                 "reconcile": "low"}

_priority = contextvars.ContextVar("ml_connector_bill_priority", default="normal")


class BudgetDeferred(BillError):
    """Low-priority BILL work put off until the hour turns (the hour's budget is kept for payments and bills)."""

    permanent = False

    def __init__(self, message, *, until, **kw):
        super().__init__(message, **kw)
        self.until = until


@contextlib.contextmanager
def priority(level):
    """BILL calls made inside the block count at this priority ('high', 'normal', 'low' or a step name)."""
    level = STEP_PRIORITY.get(level, level)
    if level not in SHARES:
        level = "normal"  # a step without a priority of its own
    reset = _priority.set(level)
    try:
        yield
    finally:
        _priority.reset(reset)


def current_priority():
    return _priority.get()


def key_of(dev_key):
    """What a developer key is counted under: a hash, never the key."""
    return "devkey:" + hashlib.sha256((dev_key or "").encode()).hexdigest()[:20]


def limits():
    return {"request": settings.BILL_REQUESTS_PER_HOUR, "login": settings.BILL_LOGINS_PER_HOUR}


def hour_of(now=None):
    return (now or timezone.now()).replace(minute=0, second=0, microsecond=0)


class _DatabaseCounter:
    def take(self, key, kind, hour, allowed):
        from connector.models import BudgetUse

        for _ in range(2):
            if BudgetUse.objects.filter(key=key, kind=kind, hour=hour, count__lt=allowed).update(count=F("count") + 1):
                return True
            if BudgetUse.objects.filter(key=key, kind=kind, hour=hour).exists():
                return False
            try:
                with transaction.atomic():
                    BudgetUse.objects.create(key=key, kind=kind, hour=hour, count=0)
            except IntegrityError:
                pass  # another process made the row first
        return False

    def defer(self, key, kind, hour):
        from connector.models import BudgetUse

        BudgetUse.objects.filter(key=key, kind=kind, hour=hour).update(deferred=F("deferred") + 1)

    def history(self, hours):
        from connector.models import BudgetUse

        since = hour_of() - timedelta(hours=hours - 1)
        return [(r.key, r.kind, r.hour, r.count, r.deferred) for r in BudgetUse.objects.filter(hour__gte=since)]

    def prune(self):
        from connector.models import BudgetUse

        return BudgetUse.objects.filter(hour__lt=hour_of() - timedelta(days=2)).delete()[0]


class _RedisCounter:
    def __init__(self, url):
        import redis

        self.redis = redis.Redis.from_url(url)
        self.prefix = getattr(settings, "LIMITER_PREFIX", "ml-connector") + ":budget"

    def _name(self, key, kind, hour, field="count"):
        return f"{self.prefix}:{key}:{kind}:{hour:%Y%m%d%H}:{field}"

    def take(self, key, kind, hour, allowed):
        name = self._name(key, kind, hour)
        pipe = self.redis.pipeline()
        pipe.incr(name)
        pipe.expire(name, 25 * 3600)
        value = pipe.execute()[0]
        if value > allowed:
            self.redis.decr(name)
            return False
        return True

    def defer(self, key, kind, hour):
        name = self._name(key, kind, hour, "deferred")
        self.redis.incr(name)
        self.redis.expire(name, 25 * 3600)

    def history(self, hours):
        rows = []
        for name in self.redis.scan_iter(f"{self.prefix}:*:count"):
            key, kind, stamp, _ = name.decode()[len(self.prefix) + 1:].rsplit(":", 3)
            hour = timezone.datetime.strptime(stamp, "%Y%m%d%H").replace(tzinfo=timezone.get_current_timezone())
            if hour < hour_of() - timedelta(hours=hours - 1):
                continue
            deferred = int(self.redis.get(name.decode().replace(":count", ":deferred")) or 0)
            rows.append((key, kind, hour, int(self.redis.get(name) or 0), deferred))
        return rows

    def prune(self):
        return 0  # keys expire by themselves

    def clear(self):
        for name in self.redis.scan_iter(f"{self.prefix}:*"):
            self.redis.delete(name)


_counter = None


def counter():
    global _counter
    if _counter is None:
        _counter = _RedisCounter(settings.REDIS_URL) if settings.REDIS_URL else _DatabaseCounter()
    return _counter


def take(dev_key, kind="request", level=None, now=None):
    """Count one BILL call of `dev_key` against its hour, or raise (BudgetDeferred / BillHourlyLimit)."""
    level = level or current_priority()
    now = now or timezone.now()
    hour = hour_of(now)
    key = key_of(dev_key)
    limit = limits()[kind]
    allowed = int(limit * SHARES[level])
    if counter().take(key, kind, hour, allowed):
        return
    until = hour + timedelta(hours=1)
    what = "logins" if kind == "login" else "requests"
    if level == "high":
        raise BillHourlyLimit(f"this host's BILL developer key has used its {limit} {what} for this hour; calls "
                              f"resume at {until:%H:%M} UTC (nothing is lost: the work waits)", until=until,
                              code="BUDGET", path="")
    counter().defer(key, kind, hour)
    raise BudgetDeferred(f"deferred to {until:%H:%M} UTC: this hour's BILL {what} ({allowed} of {limit} for "
                         f"{level}-priority work) are kept for payments and bills", until=until)


def usage(hours=24):
    """[(key, kind, hour, count, deferred)] of the last `hours` hours, for the host page."""
    return counter().history(hours)
