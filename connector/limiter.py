"""At most N requests in flight per key (a BILL organization) across every process of the deployment.

Two backends behind one interface:
- database leases (default; SQLite and PostgreSQL): N rows per key, claimed with one compare-and-set
  UPDATE, released by token; a crashed holder's lease expires after `ttl`.
- Redis (when REDIS_URL is set): N keys per key claimed with SET NX PX, released with a compare-and-delete.
Neither holds a transaction or lock open across the HTTP call itself.
"""

import contextlib
import random
import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from .models import ConcurrencySlot

DEFAULT_TTL = 120.0  # seconds; longer than any request's connect+read timeout
DEFAULT_WAIT = 300.0  # how long a caller waits for a free slot before giving up


class SlotTimeout(Exception):
    """No slot became free within the wait time."""


class _Limiter:
    def acquire(self, key, limit, ttl=DEFAULT_TTL, wait=DEFAULT_WAIT):
        deadline = time.monotonic() + wait
        token = uuid.uuid4().hex
        delay = 0.005
        while True:
            if self._try_acquire(key, limit, token, ttl):
                return token
            if time.monotonic() >= deadline:
                raise SlotTimeout(f"no free request slot for {key} after {wait:.0f}s")
            # jittered, growing wait so N waiters do not stampede the slot rows
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 1.5, 0.2)

    @contextlib.contextmanager
    def slot(self, key, limit, ttl=DEFAULT_TTL, wait=DEFAULT_WAIT):
        token = self.acquire(key, limit, ttl, wait)
        try:
            yield token
        finally:
            self.release(key, token)


class DatabaseLimiter(_Limiter):
    def __init__(self):
        self._ensured = set()

    def _ensure_slots(self, key, limit):
        if (key, limit) in self._ensured:
            return
        ConcurrencySlot.objects.bulk_create(
            [ConcurrencySlot(key=key, slot_no=n) for n in range(limit)], ignore_conflicts=True
        )
        self._ensured.add((key, limit))

    def _try_acquire(self, key, limit, token, ttl):
        # Inside an atomic block the lease would only become visible at commit, and on SQLite it would hold
        # the write lock for the whole HTTP call: refuse rather than silently breaking the limit.
        if not transaction.get_autocommit() and getattr(settings, "LIMITER_REFUSE_IN_TRANSACTION", True):
            raise RuntimeError("request slots must not be taken inside a database transaction")
        self._ensure_slots(key, limit)
        if self._claim(key, limit, token, ttl):
            return True
        # Slot rows can vanish (a rolled-back test, a manual cleanup): recreate them if fewer than `limit` exist.
        if ConcurrencySlot.objects.filter(key=key).count() < limit:
            self._ensured.discard((key, limit))
            self._ensure_slots(key, limit)
            return self._claim(key, limit, token, ttl)
        return False

    def _claim(self, key, limit, token, ttl):
        now = timezone.now()
        free = Q(holder__isnull=True) | Q(lease_until__lt=now)
        for slot_no in random.sample(range(limit), limit):
            claimed = ConcurrencySlot.objects.filter(free, key=key, slot_no=slot_no).update(
                holder=token, lease_until=now + timedelta(seconds=ttl)
            )
            if claimed == 1:
                return True
        return False

    def release(self, key, token):
        ConcurrencySlot.objects.filter(key=key, holder=token).update(holder=None, lease_until=None)

    def renew(self, key, token, ttl):
        """Extend a lease still held by `token`. False when it was lost (expired and taken by someone else)."""
        return bool(ConcurrencySlot.objects.filter(key=key, holder=token).update(
            lease_until=timezone.now() + timedelta(seconds=ttl)))

    def in_flight(self, key):
        return ConcurrencySlot.objects.filter(key=key, holder__isnull=False, lease_until__gte=timezone.now()).count()


class RedisLimiter(_Limiter):
    _RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"

    def __init__(self, url):
        import redis

        self.redis = redis.Redis.from_url(url)
        # One Redis may serve several deployments (or test processes): keep their slots apart.
        self.prefix = getattr(settings, "LIMITER_PREFIX", "ml-connector")
        self._release = self.redis.register_script(self._RELEASE)
        self._held = {}

    def _slot_key(self, key, n):
        return f"{self.prefix}:slot:{key}:{n}"

    def _try_acquire(self, key, limit, token, ttl):
        for n in random.sample(range(limit), limit):
            if self.redis.set(self._slot_key(key, n), token, nx=True, px=int(ttl * 1000)):
                self._held[token] = n
                return True
        return False

    def release(self, key, token):
        n = self._held.pop(token, None)
        if n is not None:
            self._release(keys=[self._slot_key(key, n)], args=[token])

    _RENEW = ("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) "
              "else return 0 end")

    def renew(self, key, token, ttl):
        n = self._held.get(token)
        if n is None:
            return False
        return bool(self.redis.eval(self._RENEW, 1, self._slot_key(key, n), token, int(ttl * 1000)))

    def clear(self):
        """Drop every slot of this prefix (tests start clean)."""
        for key in self.redis.scan_iter(f"{self.prefix}:slot:*"):
            self.redis.delete(key)

    def in_flight(self, key):
        return sum(1 for n in range(settings.BILL_MAX_IN_FLIGHT) if self.redis.exists(self._slot_key(key, n)))


_limiter = None


def get_limiter():
    """The deployment's limiter: Redis when REDIS_URL is configured, the database otherwise."""
    global _limiter
    if _limiter is None:
        _limiter = RedisLimiter(settings.REDIS_URL) if settings.REDIS_URL else DatabaseLimiter()
    return _limiter
