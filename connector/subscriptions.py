"""The BILL webhook subscription of a connection (`webhooks register NAME`).

Creates the subscription pointing at this deployment (or re-enables and re-points an existing one),
stores the security key encrypted, and can rotate the key keeping the previous one valid. Requests that
create something carry an X-Idempotent-Key saved *before* sending, so a retry after a lost answer returns
BILL's cached answer instead of making a second subscription.
"""

import uuid

from .clients.errors import BillNotFound, ResponseLost
from .connections import webhook_url

EVENTS = ["payment.updated", "payment.failed", "bill.updated", "bill.archived"]


def _idempotency_key(conn):
    if not conn.webhook_idempotency_key:
        conn.webhook_idempotency_key = str(uuid.uuid4())
        conn.save(update_fields=["webhook_idempotency_key"])
    return conn.webhook_idempotency_key


def _done(conn):
    conn.webhook_idempotency_key = ""


def register(conn, bill):
    """Create or repair the subscription. Returns (action, subscription) with action created/enabled/updated/unchanged."""
    url = webhook_url(conn)
    wanted_events = [{"type": e, "version": "1"} for e in EVENTS]
    if conn.bill_webhook_subscription_id:
        try:
            current = bill.get(f"/v3/subscriptions/{conn.bill_webhook_subscription_id}", events=True)
        except BillNotFound:
            current = None
        if current is not None:
            changes = {}
            if not (current.get("status") or {}).get("enabled", False):
                changes["status"] = {"enabled": True}
            if current.get("notificationUrl") != url:
                changes["notificationUrl"] = url
            have = {e.get("type") for e in current.get("events") or []}
            if not set(EVENTS) <= have:
                changes["events"] = wanted_events
            if not changes:
                return "unchanged", current
            updated = bill.patch(f"/v3/subscriptions/{conn.bill_webhook_subscription_id}", changes, events=True)
            return ("enabled" if "status" in changes else "updated"), updated or current
    body = {"name": f"ml-connector {conn}", "status": {"enabled": True}, "events": wanted_events, "notificationUrl": url}
    key = _idempotency_key(conn)
    try:
        created = bill.post("/v3/subscriptions", body, events=True, headers={"X-Idempotent-Key": key})
    except ResponseLost:
        # Same key again: BILL answers with the cached result of the request that got through.
        created = bill.post("/v3/subscriptions", body, events=True, headers={"X-Idempotent-Key": key})
    conn.bill_webhook_subscription_id = created["id"]
    if created.get("securityKey"):
        conn.bill_webhook_previous_key = conn.bill_webhook_security_key
        conn.bill_webhook_security_key = created["securityKey"]
    _done(conn)
    conn.save(update_fields=["bill_webhook_subscription_id", "bill_webhook_security_key", "bill_webhook_previous_key",
                             "webhook_idempotency_key"])
    return "created", created


def rotate_key(conn, bill):
    """Ask BILL for a new security key; the old one stays accepted until the next rotation."""
    if not conn.bill_webhook_subscription_id:
        raise ValueError("this connection has no webhook subscription yet: run `webhooks register` first")
    key = _idempotency_key(conn)
    path = f"/v3/subscriptions/{conn.bill_webhook_subscription_id}/security_key"
    try:
        answer = bill.post(path, None, events=True, headers={"X-Idempotent-Key": key})
    except ResponseLost:
        answer = bill.post(path, None, events=True, headers={"X-Idempotent-Key": key})
    conn.bill_webhook_previous_key = conn.bill_webhook_security_key
    conn.bill_webhook_security_key = answer["securityKey"]
    _done(conn)
    conn.save(update_fields=["bill_webhook_security_key", "bill_webhook_previous_key", "webhook_idempotency_key"])
