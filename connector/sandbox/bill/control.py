"""BILL simulator: /_sim control endpoints."""

from __future__ import annotations

import json
from decimal import Decimal

from .common import ApiError, dumps
from .routes import KNOBS


class ControlMixin:
    """/_sim control endpoints for a simulator running in another process."""

    # ---------------------------------------------------------------- /_sim control endpoints

    def _serve_sim(self, req):
        try:
            data = json.loads(req.get_data() or b"{}", parse_float=Decimal) if req.method == "POST" else {}
            action = req.path[len("/_sim/"):].strip("/")
            handler = getattr(self, f"_sim_{action.replace('-', '_')}", None)
            if handler is None:
                return 404, dumps({"error": f"unknown control endpoint {req.path}"})
            return 200, dumps(handler(data))
        except (ApiError, KeyError, ValueError, TypeError) as exc:
            return 400, dumps({"error": str(exc)})

    def _sim_stats(self, data):
        return self.stats()

    def _sim_knobs(self, data):
        with self._lock:
            for name, value in data.items():
                if name not in KNOBS:
                    raise ValueError(f"unknown knob {name}")
                if name == "webhook_retry_delays":
                    value = tuple(float(v) for v in value)
                elif isinstance(value, Decimal):
                    value = float(value)
                setattr(self, name, value)
        return self.knobs()

    def _sim_pay(self, data):
        return self.pay_bills([tuple(p) for p in data["payments"]], process_date=data.get("process_date"),
                              status=data.get("status", "PAID"), single_status=data.get("single_status", "PROCESSED"),
                              org_id=data.get("org_id"))

    def _sim_void(self, data):
        return self.void_payment(data["payment_id"], org_id=data.get("org_id"))

    def _sim_fail_payment(self, data):
        return self.fail_payment(data["payment_id"], org_id=data.get("org_id"))

    def _sim_settle(self, data):
        return self.settle_payment(data["payment_id"], status=data.get("status", "PAID"),
                                   single_status=data.get("single_status", "PROCESSED"), org_id=data.get("org_id"))

    def _sim_deliveries(self, data):
        with self._lock:
            return [{"eventId": e, "eventType": t, "url": u, "result": r} for e, t, u, r in self.deliveries]

    def _sim_expire_sessions(self, data):
        self.expire_all_sessions()
        return {"ok": True}

    def _sim_fail_next(self, data):
        self.fail_next(data.get("method"), data["path_contains"], int(data["status"]), data["code"],
                       data["message"], int(data.get("count", 1)))
        return {"ok": True}

    def _sim_lose_next(self, data):
        self.lose_next_response(data.get("method"), data["path_contains"], int(data.get("count", 1)))
        return {"ok": True}

    def _sim_entities(self, data):
        return self.entities(data["kind"], data.get("org_id"))
