"""BILL simulator: in-memory state records (sessions, orgs, deliveries, request context)."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal

from .common import ZERO, ApiError

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
        self.classes: dict[str, dict] = {}  # accounting classes, locations, jobs (addendum §4)
        self.locations: dict[str, dict] = {}
        self.jobs: dict[str, dict] = {}
        self.vendor_credits: dict[str, dict] = {}
        self.documents: dict[str, dict] = {}  # bill documents (00h…) and uploads in progress (0du…)
        self.subscriptions: dict[str, dict] = {}
        self.sub_keys: dict[str, str] = {}  # securityKey per subscription (never shown after creation)
        self.events: list[dict] = []  # sent notifications, for GET /v3/events/subscription/{id}
        self.events_by_id: dict[str, dict] = {}
        self.idempotency: dict[str, tuple] = {}  # X-Idempotent-Key -> (expires_at, status, body bytes)

    def collection(self, kind):
        return {
            "vendors": self.vendors, "bills": self.bills, "payments": self.payments,
            "chart-of-accounts": self.accounts, "accounts": self.accounts, "departments": self.departments,
            "subscriptions": self.subscriptions, "accounting-classes": self.classes, "locations": self.locations,
            "jobs": self.jobs, "vendor-credits": self.vendor_credits, "documents": self.documents,
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
