"""Leases that know when their holder died.

Two things in ml-connector must belong to one live worker at a time: the sync cycle of a connection (one
cycle or replay per connection) and a record being sent (an invoice being created in BILL, a payment being
posted to SAP). A killed worker must not block either for long, or a crash would stall a customer's sync for
minutes and leave a half-done record that nothing may touch.

A lease is a row (`connector.Lease`) naming its holder's host and process id. It is dead when
- its holder's heartbeat stopped renewing it for `TTL` seconds (a holder on another machine), or
- its holder runs on this host and that process no longer exists (a SIGKILLed `manage.py sync`): dead at
  once, so a sync started right after a crash runs immediately and recovers the record the dead one held.

One daemon thread per process renews every lease the process holds (one UPDATE every `BEAT` seconds).
Record claims store the token of the lease they were made under (`claimed_by`): a claim is live exactly as
long as that lease is (`alive()`), so a dead worker's claims are taken over within seconds, never minutes.
"""

import contextlib
import contextvars
import logging
import os
import socket
import threading
import time
import uuid
import weakref
from datetime import timedelta

from django.db import IntegrityError, connections, transaction
from django.utils import timezone

log = logging.getLogger(__name__)

TTL = 30.0  # seconds a lease outlives its last heartbeat (a stalled or remote holder)
BEAT = 5.0  # heartbeat interval
HOST = socket.gethostname()[:255]

_current = contextvars.ContextVar("ml_connector_lease", default=None)


class Busy(Exception):
    """The lease is held by a live holder."""


def _model():
    from .models import Lease

    return Lease


def pid_alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    except OSError:
        return True
    return True


def is_dead(lease, now=None):
    now = now or timezone.now()
    if lease.expires_at < now:
        return True
    return lease.host == HOST and not pid_alive(lease.pid)


class _Heartbeat:
    """Renews every lease this process holds. Started on first use; restarted in a forked child."""

    def __init__(self):
        self.lock = threading.Lock()
        self.tokens = {}  # token -> ttl
        self.thread = None
        self.pid = None

    def add(self, token, ttl):
        with self.lock:
            self.tokens[token] = ttl
            if self.thread is None or not self.thread.is_alive() or self.pid != os.getpid():
                self.pid = os.getpid()
                self.thread = threading.Thread(target=self._run, name="lease-heartbeat", daemon=True)
                self.thread.start()

    def discard(self, token):
        with self.lock:
            self.tokens.pop(token, None)

    def _run(self):
        last = time.monotonic()
        while True:
            time.sleep(min(BEAT, 0.5))
            if time.monotonic() - last < BEAT:
                continue
            last = time.monotonic()
            with self.lock:
                held = dict(self.tokens)
            if not held:
                continue
            try:
                now = timezone.now()
                for ttl in set(held.values()):
                    _model().objects.filter(token__in=[t for t, v in held.items() if v == ttl]).update(
                        expires_at=now + timedelta(seconds=ttl))
            except Exception:  # noqa: BLE001 - a busy database now and then: the next beat renews
                log.debug("lease heartbeat failed", exc_info=True)
            finally:
                connections.close_all()


_heartbeat = _Heartbeat()


class Lease:
    """One held lease. Use `hold(key)` (a context manager) rather than this directly."""

    def __init__(self, key, token, ttl):
        self.key, self.token, self.ttl = key, token, ttl
        self.released = False

    def release(self):
        if self.released:
            return
        self.released = True
        _heartbeat.discard(self.token)
        _model().objects.filter(key=self.key, token=self.token).delete()


def acquire(key, wait=0.0, ttl=None):
    """Take the lease `key`, waiting up to `wait` seconds; raise Busy if a live holder keeps it."""
    ttl = TTL if ttl is None else ttl
    model = _model()
    deadline = time.monotonic() + wait
    token = uuid.uuid4().hex
    delay = 0.05
    while True:
        now = timezone.now()
        fields = {"token": token, "host": HOST, "pid": os.getpid(), "expires_at": now + timedelta(seconds=ttl),
                  "acquired_at": now}
        try:
            with transaction.atomic():
                model.objects.create(key=key, **fields)
            break
        except IntegrityError:
            row = model.objects.filter(key=key).first()
            if row is not None and is_dead(row, now):
                # compare-and-set on the dead holder's token: two takers never both win
                if model.objects.filter(key=key, token=row.token).update(**fields):
                    log.info("lease %s taken over from a dead holder (%s:%s)", key, row.host, row.pid)
                    break
            elif row is None:
                continue  # released meanwhile: try again at once
        if time.monotonic() >= deadline:
            raise Busy(key)
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
    _heartbeat.add(token, ttl)
    return Lease(key, token, ttl)


@contextlib.contextmanager
def hold(key, wait=0.0, ttl=None):
    """Hold the lease `key` for the block; claims made inside it are made under it (see `current()`)."""
    lease = acquire(key, wait=wait, ttl=ttl)
    reset = _current.set(lease)
    try:
        yield lease
    finally:
        _current.reset(reset)
        lease.release()


def current():
    """The lease claims are made under in this context (a sync cycle's or a replay's), or None."""
    lease = _current.get()
    return lease if lease is not None and not lease.released else None


def own(owner):
    """A lease of its own for `owner` (a sync step used outside a cycle), released when `owner` is collected."""
    lease = acquire(f"holder:{uuid.uuid4().hex}")
    weakref.finalize(owner, _quiet_release, lease)
    return lease


def _quiet_release(lease):
    """Release a lease whose owner was collected. Collection happens in whatever thread dropped the last reference
    (a worker thread of the bills step, the heartbeat): there the release gets a short-lived thread of its own, so
    no database connection is left open in a thread that has closed its own."""
    if threading.current_thread() is not threading.main_thread():
        threading.Thread(target=_release_and_close, args=(lease,), name="lease-release", daemon=True).start()
        return
    try:
        lease.release()
    except Exception:  # noqa: BLE001 - at interpreter exit the database may be gone: the lease expires anyway
        log.debug("lease release failed", exc_info=True)


def _release_and_close(lease):
    try:
        lease.release()
    except Exception:  # noqa: BLE001 - the lease expires anyway
        log.debug("lease release failed", exc_info=True)
    finally:
        connections.close_all()


def alive(tokens):
    """The tokens among `tokens` whose lease is held by a live holder."""
    tokens = {t for t in tokens if t}
    if not tokens:
        return set()
    now = timezone.now()
    return {row.token for row in _model().objects.filter(token__in=tokens) if not is_dead(row, now)}


def prune(older_than=timedelta(hours=1)):
    """Delete dead leases (a killed holder leaves its row; a live one renews it). Returns how many."""
    cutoff = timezone.now() - older_than
    return _model().objects.filter(expires_at__lt=cutoff).delete()[0]
