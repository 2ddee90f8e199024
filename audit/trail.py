"""Writing the audit trail: which record the current work is about, and what happened to it.

The sync code wraps the work on one record in `about(record)`; every API exchange the clients report
while inside is stored on that record's timeline. Work that is not about one record (listing pages,
bulk requests) goes on the sync run's timeline via `about_run(run)`.
"""

import contextlib
import contextvars

from django.dispatch import receiver

from connector.clients.reporting import Exchange, api_exchange

from .models import AuditEvent

_scope = contextvars.ContextVar("audit_scope", default=None)
_trigger = contextvars.ContextVar("audit_trigger", default=("", ""))


def record_key(record):
    return record._meta.model_name, str(record.pk)


@contextlib.contextmanager
def triggered_by(trigger, actor=""):
    """Everything inside is attributed to this trigger (schedule, cli, person, webhook, replay)."""
    token = _trigger.set((trigger, actor))
    try:
        yield
    finally:
        _trigger.reset(token)


def current_trigger():
    return _trigger.get()


@contextlib.contextmanager
def about(record, connection_id=None):
    """API exchanges inside this block belong to `record`'s timeline."""
    record_type, record_id = record_key(record)
    conn_id = connection_id or getattr(record, "connection_id", None)
    token = _scope.set((conn_id, record_type, record_id))
    try:
        yield
    finally:
        _scope.reset(token)


@contextlib.contextmanager
def about_run(run):
    token = _scope.set((run.connection_id, "syncrun", str(run.pk)))
    try:
        yield
    finally:
        _scope.reset(token)


def log(record, kind, message="", *, before=None, after=None, connection_id=None):
    """Append one event to a record's timeline."""
    record_type, record_id = record_key(record)
    trigger, actor = _trigger.get()
    return AuditEvent.objects.create(
        connection_id=connection_id or record.connection_id, record_type=record_type, record_id=record_id,
        kind=kind, trigger=trigger, actor=actor, message=message[:5000], before=before, after=after,
    )


def log_change(record, message, before, after):
    """A state change with before/after values (only the fields that differ are kept)."""
    diff_before = {k: v for k, v in before.items() if after.get(k) != v}
    diff_after = {k: after[k] for k in diff_before if k in after}
    if not diff_before and not diff_after:
        return None
    return log(record, AuditEvent.Kind.CHANGE, message, before=diff_before, after=diff_after)


def timeline(record):
    """The record's events; only its own connection's (a record of another connection may have the same id)."""
    record_type, record_id = record_key(record)
    events = AuditEvent.objects.filter(record_type=record_type, record_id=record_id)
    if getattr(record, "connection_id", None) is not None:
        events = events.filter(connection_id=record.connection_id)
    return events.order_by("created_at", "id")


@receiver(api_exchange, sender=Exchange, dispatch_uid="audit-store-exchange")
def store_exchange(sender, exchange, **kwargs):
    scope = _scope.get()
    if scope is None:
        return
    connection_id, record_type, record_id = scope
    if connection_id is None:
        return
    trigger, actor = _trigger.get()
    AuditEvent.objects.create(
        connection_id=connection_id, record_type=record_type, record_id=record_id, kind=AuditEvent.Kind.EXCHANGE,
        trigger=trigger, actor=actor, system=exchange.system or "", method=exchange.method or "",
        path=(exchange.path or "")[:500], status_code=exchange.status, duration_ms=exchange.duration_ms,
        attempt=exchange.attempt, request_body=exchange.request_body, response_body=exchange.response_body,
        message=exchange.error or "",
    )
