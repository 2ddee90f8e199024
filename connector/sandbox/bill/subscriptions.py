"""BILL simulator: webhook service handlers."""

from __future__ import annotations

import re
import secrets
import uuid

from .common import EVENT_TYPES, _bad, _deep_merge, _dict_field, _missing, _not_found, _str_field
from .listing import paginate
from .state import _Delivery


class SubscriptionsMixin:
    """Webhook service handlers (connect-events: subscriptions, keys, event catalog)."""

    # ---------------------------------------------------------------- webhook service handlers

    def _h_event_catalog(self, ctx):
        return 200, [{"type": t, "versions": ["1"]} for t in EVENT_TYPES]

    def _sub(self, org, ident):
        sub = org.subscriptions.get(ident)
        if sub is None:
            raise _not_found("subscription", ident)
        return sub

    def _sub_normalize(self, data, base):
        name = _str_field(data, "name", "", required=True, max_len=255)
        url = _str_field(data, "notificationUrl", "", required=True, max_len=2048)
        local = re.match(r"^http://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?(/|$)", url)
        if not url.startswith("https://") and not (self.allow_http_localhost and local):
            raise _bad(f"Invalid field,value: notificationUrl, {url}. HTTPS is required.")
        events = data.get("events")
        if not isinstance(events, list) or not events:
            raise _missing("events")
        clean = []
        for i, ev in enumerate(events):
            if not isinstance(ev, dict) or ev.get("type") not in EVENT_TYPES or str(ev.get("version", "1")) != "1":
                raise _bad(f"Invalid field,value: events[{i}], {ev!r}. Unknown event type or version.")
            clean.append({"type": ev["type"], "version": "1"})
        status = _dict_field(data, "status", "")
        enabled = status.get("enabled", base.get("status", {}).get("enabled", True))
        if not isinstance(enabled, bool):
            raise _bad(f"Invalid field,value: status.enabled, {enabled!r}.", "BDC_1124")
        return {"name": name, "status": {"enabled": enabled}, "events": clean, "notificationUrl": url}

    def _h_sub_list(self, ctx):
        return 200, paginate(list(ctx.org.subscriptions.values()), ctx.req.args, forward_only=True)

    def _h_sub_create(self, ctx):
        fields = self._sub_normalize(ctx.json(), {})
        sub = {"id": str(uuid.uuid4()), **fields, "organizationId": ctx.org.id, "createdTime": ctx.now,
               "updatedTime": ctx.now}
        ctx.org.subscriptions[sub["id"]] = sub
        ctx.org.sub_keys[sub["id"]] = secrets.token_hex(32)
        return 200, {**sub, "securityKey": ctx.org.sub_keys[sub["id"]]}  # the key is shown only here

    def _h_sub_get(self, ctx, ident):
        return 200, self._sub(ctx.org, ident)

    def _h_sub_update(self, ctx, replace, ident):
        current = self._sub(ctx.org, ident)
        data = ctx.json()
        merged = data if replace else _deep_merge(current, data)
        current.update(self._sub_normalize(merged, current), updatedTime=ctx.now)
        return 200, current

    def _h_sub_delete(self, ctx, ident):
        self._sub(ctx.org, ident)
        del ctx.org.subscriptions[ident]
        ctx.org.sub_keys.pop(ident, None)
        return 200, None

    def _h_sub_rotate(self, ctx, ident):
        self._sub(ctx.org, ident)
        # [U] grace period for the old key: none here, deliveries are always signed with the current key
        ctx.org.sub_keys[ident] = secrets.token_hex(32)
        return 200, {"securityKey": ctx.org.sub_keys[ident]}

    def _h_sub_test(self, ctx, ident):
        sub = self._sub(ctx.org, ident)
        raw = ctx.req.get_data(cache=True)
        data = ctx.json() if raw.strip() else {}
        event_type = data.get("eventType") or sub["events"][0]["type"]
        if event_type not in EVENT_TYPES:
            raise _bad(f"Invalid field,value: eventType, {event_type}.")
        head, *rest = event_type.split(".")[0].split("-")
        key = head + "".join(part.title() for part in rest)  # bank-account -> bankAccount
        entity = data.get(key) if isinstance(data.get(key), dict) else {"id": "00n02TESTEVENT000000", "test": True}
        delivery = self._make_delivery(ctx.org, sub, event_type, key, entity, entity.get("id"), force=True)
        ctx.out.append(delivery)
        return 200, delivery.record

    def _h_event_list(self, ctx, ident):
        self._sub(ctx.org, ident)
        entity_id = ctx.req.args.get("entityId")
        records = [r for r in ctx.org.events
                   if r["subscriptionId"] == ident and (not entity_id or r["entityId"] == entity_id)]
        return 200, paginate(records, ctx.req.args, forward_only=True)

    def _h_event_resend(self, ctx, sub_id, event_id):
        sub = self._sub(ctx.org, sub_id)
        record = ctx.org.events_by_id.get(event_id)
        if record is None or record["subscriptionId"] != sub_id:
            raise _not_found("event", event_id)
        body = record["payload"].encode("utf-8")
        ctx.out.append(_Delivery(event_id, record["type"], ctx.org.id, sub["id"], body, record, force=True))
        return 200, record
