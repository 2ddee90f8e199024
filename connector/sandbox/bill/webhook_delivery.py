"""BILL simulator: webhook emission and delivery."""

from __future__ import annotations

import heapq
import threading
import time
import uuid

import requests

from .common import dumps, log, sign
from .state import _Delivery


class WebhookDeliveryMixin:
    """Webhook emission, signing and delivery with retries."""

    # ---------------------------------------------------------------- webhook emission & delivery

    def _emit(self, org, event_type, entity_key, entity, entity_id, out):
        """Queue `event_type` for every enabled subscription of `org` that asked for it (lock held)."""
        for sub in org.subscriptions.values():
            if not sub["status"]["enabled"] or not any(e["type"] == event_type for e in sub["events"]):
                continue
            delivery = self._make_delivery(org, sub, event_type, entity_key, entity, entity_id)
            out.append(delivery)
            if self.webhook_duplicate_rate and self._rng.random() < self.webhook_duplicate_rate:
                out.append(delivery.clone())  # at-least-once delivery: same eventId twice

    def _make_delivery(self, org, sub, event_type, entity_key, entity, entity_id, force=False):
        event_id = str(uuid.uuid4())
        payload = {"metadata": {"eventId": event_id, "subscriptionId": sub["id"], "organizationId": org.id,
                                "eventType": event_type, "version": "1"},
                   entity_key: entity}
        body = dumps(payload)  # snapshot now: later changes to the entity must not leak into this event
        record = {"id": event_id, "type": event_type, "version": "1", "subscriptionId": sub["id"],
                  "entityId": entity_id, "payload": body.decode("utf-8"), "createdTime": self._now_iso(),
                  "statusCode": None}
        org.events.append(record)
        org.events_by_id[event_id] = record
        return _Delivery(event_id, event_type, org.id, sub["id"], body, record, force)

    def _dispatch(self, deliveries):
        if not deliveries:
            return
        if self.webhook_sync:
            for delivery in deliveries:
                self._deliver_inline(delivery)
            return
        with self._wh_cond:
            self._ensure_workers()
            now = time.monotonic()
            for delivery in deliveries:
                heapq.heappush(self._wh_heap, (now, next(self._wh_seq), delivery))
                self._wh_pending += 1
            self._wh_cond.notify_all()

    def _deliver_inline(self, delivery):
        while True:
            delay = self._attempt(delivery)
            if delay is None:
                return
            time.sleep(delay)

    def _ensure_workers(self, count=4):
        if self._wh_workers:
            return
        for i in range(count):  # several workers: one slow receiver must not hold up every event
            worker = threading.Thread(target=self._worker_loop, name=f"bill-webhooks-{i}", daemon=True)
            worker.start()
            self._wh_workers.append(worker)

    def _worker_loop(self):
        while True:
            with self._wh_cond:
                while True:
                    if self._wh_closed:
                        return
                    now = time.monotonic()
                    if self._wh_heap and self._wh_heap[0][0] <= now:
                        _, _, delivery = heapq.heappop(self._wh_heap)
                        break
                    timeout = self._wh_heap[0][0] - now if self._wh_heap else None
                    self._wh_cond.wait(timeout)
            try:
                delay = self._attempt(delivery)
            except Exception:  # never lose the worker thread
                log.exception("webhook delivery crashed")
                delay = None
            with self._wh_cond:
                if delay is None:
                    self._wh_pending -= 1
                else:
                    heapq.heappush(self._wh_heap, (time.monotonic() + delay, next(self._wh_seq), delivery))
                self._wh_cond.notify_all()

    def _http(self):
        session = getattr(self._http_local, "session", None)
        if session is None:
            session = self._http_local.session = requests.Session()
        return session

    def _attempt(self, delivery):
        """Send once. Returns the delay before the next try, or None when finished (success/gave up/dropped)."""
        with self._lock:
            org = self._orgs.get(delivery.org_id)
            sub = org.subscriptions.get(delivery.sub_id) if org else None
            if sub is None or not (sub["status"]["enabled"] or delivery.force):
                self.webhooks_dropped += 1  # disabled or deleted meanwhile: BILL stops sending
                return None
            key, url = org.sub_keys[sub["id"]], sub["notificationUrl"]
            timeout = self.webhook_timeout
        headers = {"Content-Type": "application/json", "x-bill-sha-signature": sign(delivery.body, key)}
        try:
            result = self._http().post(url, data=delivery.body, headers=headers, timeout=timeout).status_code
        except requests.RequestException as exc:
            result = f"{type(exc).__name__}: {exc}"
        with self._lock:
            self.deliveries.append((delivery.event_id, delivery.event_type, url, result))
            delivery.record["statusCode"] = result if isinstance(result, int) else None
            if result == 200:  # only 200 counts as success
                return None
            delays = tuple(self.webhook_retry_delays)
            if delivery.attempt < len(delays):
                delivery.attempt += 1
                return delays[delivery.attempt - 1]
            if not delivery.force and sub["status"]["enabled"]:
                sub["status"]["enabled"] = False  # retries exhausted: BILL switches the subscription off
                sub["updatedTime"] = self._now_iso()
            return None
