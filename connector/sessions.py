"""Where the SAP and BILL clients keep their login sessions.

The clients only need: load the current session, save a new one after logging in, and a lock so that
only one login happens at a time. `DatabaseSessionStore` shares sessions between every worker and process
(encrypted at rest); `MemorySessionStore` is for unit tests and one-off scripts.
"""

import contextlib
import threading

from django.utils import timezone

from .limiter import get_limiter
from .models import RemoteSession

# Re-using the session from the database costs a write per request if we touch it every time: only record
# use when it is older than this, which is far below both systems' idle timeouts.
TOUCH_EVERY_SECONDS = 60


class MemorySessionStore:
    def __init__(self):
        self.token = None
        self.generation = 0
        self.last_used_at = None
        self._lock = threading.Lock()

    def load(self):
        return self.token, self.generation, self.last_used_at

    def save(self, token):
        self.token = token
        self.generation += 1
        self.last_used_at = timezone.now()
        return self.generation

    def touch(self):
        self.last_used_at = timezone.now()

    def clear(self):
        self.token = None

    @contextlib.contextmanager
    def login_lock(self):
        with self._lock:
            yield


class DatabaseSessionStore:
    """Session of one connection on one system, stored in RemoteSession (token encrypted)."""

    def __init__(self, connection, system):
        self.connection = connection
        self.system = system
        self._local_lock = threading.Lock()
        self._row = None

    def _get_row(self):
        row, _ = RemoteSession.objects.get_or_create(connection=self.connection, system=self.system)
        return row

    def load(self):
        row = self._get_row()
        self._row = row
        return (row.token or None), row.generation, row.last_used_at

    def save(self, token):
        row = self._get_row()
        row.token = token
        row.generation += 1
        row.last_used_at = timezone.now()
        row.save(update_fields=["token", "generation", "last_used_at"])
        self._row = row
        return row.generation

    def touch(self):
        now = timezone.now()
        row = self._row
        if row is None or row.last_used_at is None or (now - row.last_used_at).total_seconds() > TOUCH_EVERY_SECONDS:
            RemoteSession.objects.filter(connection=self.connection, system=self.system).update(last_used_at=now)
            if row is not None:
                row.last_used_at = now

    def clear(self):
        RemoteSession.objects.filter(connection=self.connection, system=self.system).update(token="")

    @contextlib.contextmanager
    def login_lock(self):
        # Threads of this process queue on the local lock; other processes on a one-slot lease.
        with self._local_lock, get_limiter().slot(f"login:{self.system}:{self.connection.pk}", 1, ttl=90, wait=120):
            yield
