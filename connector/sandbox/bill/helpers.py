"""BILL simulator: organizations, seed data and Python-side helpers."""

from __future__ import annotations

import copy
import time

from connector.sandbox import catalog

from .common import DEAD_STATES, SCHEDULED_STATES, _bad, _money
from .listing import _DEFAULT_ORDER
from .routes import KNOBS
from .state import _Org


class HelpersMixin:
    """Organizations, seed data and Python-side helpers (pay/void/fail, injected faults, stats, knobs)."""

    # ---------------------------------------------------------------- setup / Python-side helpers

    def add_org(self, org_id, username, password, dev_key, seed=False):
        """Register an organization, a user allowed into it and a devKey; `seed` loads the catalog data."""
        with self._lock:
            user = self._users.setdefault(username, {"password": password, "orgs": set(),
                                                     "user_id": self._new_id("006")})
            user["password"] = password
            user["orgs"].add(org_id)
            self._dev_keys.add(dev_key)
            org = self._orgs.get(org_id) or _Org(org_id, user["user_id"])
            self._orgs[org_id] = org
            if seed:
                self._seed(org)
            return org_id

    def _seed(self, org):
        now = self._now_iso()
        for acc_id, number, name, acc_type, archived in catalog.BILL_ACCOUNTS:
            org.accounts[acc_id] = {"id": acc_id, "archived": archived, "name": name, "description": "",
                                    "account": {"type": acc_type, "number": number},
                                    "createdTime": now, "updatedTime": now}
        for dep_id, name, short, archived in catalog.BILL_DEPARTMENTS:
            org.departments[dep_id] = {"id": dep_id, "name": name, "shortName": short, "description": "",
                                       "archived": archived, "createdTime": now, "updatedTime": now}
        for rows, table in ((catalog.BILL_LOCATIONS, org.locations), (catalog.BILL_CLASSES, org.classes),
                            (catalog.BILL_JOBS, org.jobs)):
            for row_id, name, short, archived in rows:
                table[row_id] = {"id": row_id, "name": name, "shortName": short, "description": "",
                                 "archived": archived, "createdTime": now, "updatedTime": now}
        for v in catalog.BILL_VENDORS:
            line1, city, state, zip_code, country = v["address"]
            data = {"name": v["name"], "email": v.get("email"), "accountType": "BUSINESS",
                    "additionalInfo": dict(v.get("additionalInfo") or {}),
                    "address": {"line1": line1, "city": city, "stateOrProvince": state,
                                "zipOrPostalCode": zip_code, "country": country}}
            vendor = self._vendor_normalize(data, "")
            vendor.update(id=v["id"], createdTime=now, updatedTime=now)
            org.vendors[v["id"]] = self._vendor_order(vendor)

    def entities(self, kind, org_id=None) -> list[dict]:
        """Deep copies of one collection in default list order (subscriptions include their securityKey)."""
        with self._lock:
            org = self._org(org_id)
            items = [copy.deepcopy(x) for x in org.collection(kind).values()]
            if kind == "subscriptions":
                for item in items:
                    item["securityKey"] = org.sub_keys.get(item["id"])
        items.sort(key=_DEFAULT_ORDER)
        return items

    def pay_bills(self, payments, *, process_date=None, status="PAID", single_status="PROCESSED", org_id=None):
        """Pay bills of ONE vendor with one payment (as if done in the BILL UI); emits payment.updated."""
        out = []
        with self._lock:
            org = self._org(org_id)
            pairs = [(bill_id, _money(amount, "amount")) for bill_id, amount in payments]
            payment = self._create_payment(org, pairs, status=status, single_status=single_status,
                                           process_date=process_date, created_by=org.user_id, out=out)
            result = copy.deepcopy(payment)
        self._dispatch(out)
        return result

    def delete_bill(self, bill_id, org_id=None) -> dict:
        """Remove a bill as a person would in BILL's web app (the v3 API has no DELETE); returns what it was."""
        with self._lock:
            org = self._org(org_id)
            return org.bills.pop(bill_id)

    def settle_payment(self, payment_id, *, status="PAID", single_status="PROCESSED", org_id=None):
        """Move a payment to another status (e.g. SCHEDULED -> PAID/PROCESSED, or PROCESSED -> CLEARED)."""
        out = []
        with self._lock:
            org = self._org(org_id)
            payment = self._payment(org, payment_id)
            if payment["status"] in DEAD_STATES:
                raise _bad(f"Payment {payment_id} is {payment['status']} and cannot change status.")
            if payment["status"] in SCHEDULED_STATES and status not in SCHEDULED_STATES:
                self._shift_amounts(org, payment, "scheduledAmount", "paidAmount", out)
            self._set_payment_status(org, payment, status, single_status, out)
            result = copy.deepcopy(payment)
        self._dispatch(out)
        return result

    def void_payment(self, payment_id, org_id=None) -> dict:
        out = []
        with self._lock:
            org = self._org(org_id)
            payment = self._void(org, self._payment(org, payment_id), out)
            result = copy.deepcopy(payment)
        self._dispatch(out)
        return result

    def fail_payment(self, payment_id, org_id=None) -> dict:
        """Funding failed: status FAILED, amounts reversed, payment.failed (and payment.updated) emitted."""
        out = []
        with self._lock:
            org = self._org(org_id)
            payment = self._payment(org, payment_id)
            if payment["status"] in DEAD_STATES:
                raise _bad(f"Payment {payment_id} is already {payment['status']}.")
            self._reverse_payment(org, payment, out)
            payment["status"], payment["singleStatus"] = "FAILED", "FUNDING_FAILED_VOIDED"
            payment["updatedTime"] = self._now_iso()
            # [U] exact payment.failed fields: the payment.updated shape plus an `errors` list.
            entity = self._payment_event_entity(org, payment)
            entity["errors"] = [{"code": "FUNDING_FAILED", "message": "Payment funding failed: insufficient funds."}]
            self._emit(org, "payment.failed", "payment", entity, payment["id"], out)
            self._emit(org, "payment.updated", "payment", self._payment_event_entity(org, payment), payment["id"],
                       out)
            result = copy.deepcopy(payment)
        self._dispatch(out)
        return result

    def lose_next_response(self, method, path_contains, count=1):
        """Execute the next `count` matching requests but close the connection instead of answering."""
        with self._lock:
            self._lose_rules.append({"method": (method or "*").upper(), "path": path_contains, "count": count})

    def fail_next(self, method, path_contains, status, code, message, count=1, entries=None):
        """Answer the next `count` matching requests with this BILL error, without executing them. `entries`
        ([{code?, message, params?}]) gives a multi-entry answer as real BILL validation errors are."""
        with self._lock:
            self._fail_rules.append({"method": (method or "*").upper(), "path": path_contains, "count": count,
                                     "status": status, "code": code, "message": message, "entries": entries})

    def expire_all_sessions(self):
        with self._lock:
            self._sessions.clear()

    def wait_for_webhooks(self, timeout=10.0) -> bool:
        """Block until no webhook delivery is queued or under way (async mode); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._wh_cond:
            while self._wh_pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._wh_cond.wait(min(remaining, 0.05))
        return True

    def close(self):
        """Stop the background webhook workers (queued deliveries are dropped)."""
        with self._wh_cond:
            self._wh_closed = True
            self._wh_cond.notify_all()

    def stats(self) -> dict:
        with self._lock:
            return {
                "request_count": self.request_count, "login_count": self.login_count,
                "requests_by_path": dict(self.requests_by_path),
                "max_in_flight_seen": {f"{k[0]}|{k[1]}": v for k, v in self.max_in_flight_seen.items()},
                "rejected_concurrent": self.rejected_concurrent, "rejected_hourly": self.rejected_hourly,
                "in_flight": {f"{k[0]}|{k[1]}": v for k, v in self._in_flight.items() if v},
                "deliveries": len(self.deliveries), "webhooks_dropped": self.webhooks_dropped,
                "sessions": len(self._sessions),
            }

    def knobs(self) -> dict:
        return {name: getattr(self, name) for name in KNOBS}
