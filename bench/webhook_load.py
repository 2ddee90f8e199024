"""Load generator for bench_webhooks.py (runs as its own process): signed BILL events from N concurrent clients.

Usage: webhook_load.py URL SECURITY_KEY REQUESTS CONCURRENCY  → prints a JSON result on stdout.
Every 10th request repeats an earlier eventId (a duplicate delivery); every 20th carries a wrong signature.
"""

import base64
import hashlib
import hmac
import json
import statistics
import sys
import threading
import time
import uuid
from collections import Counter

import requests


def body_for(event_id, n):
    event = {"metadata": {"eventId": event_id, "subscriptionId": "sub-bench", "organizationId": "008BENCH",
                          "eventType": "payment.updated", "version": "1"},
             "payment": {"id": f"stpBENCH{n:012d}", "billIds": [f"00nBENCH{n:010d}"], "status": "PROCESSED",
                         "processDate": "2026-11-24", "funding": {"amount": 100.0 + n % 50, "currency": "USD"}}}
    return json.dumps(event, separators=(",", ":")).encode()


def main():
    url, key, total, concurrency = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3]), int(sys.argv[4])
    plan = []
    ids = []
    for n in range(total):
        if n % 10 == 9 and ids:
            event_id, valid = ids[n // 2 % len(ids)], True  # duplicate delivery
        else:
            event_id = str(uuid.uuid4())
            valid = n % 20 != 13
            if valid:
                ids.append(event_id)
        plan.append((event_id, valid, n))
    unique_valid = len(set(ids))
    latencies, statuses, lock = [], Counter(), threading.Lock()
    cursor = iter(plan)

    def worker():
        session = requests.Session()
        while True:
            with lock:
                item = next(cursor, None)
            if item is None:
                return
            event_id, valid, n = item
            body = body_for(event_id, n)
            signature = base64.b64encode(hmac.new(key if valid else b"wrong-key", body, hashlib.sha256).digest())
            started = time.perf_counter()
            answer = session.post(url, data=body, timeout=30, headers={
                "Content-Type": "application/json", "x-bill-sha-signature": signature.decode()})
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                latencies.append(elapsed)
                statuses[str(answer.status_code)] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    latencies.sort()
    pick = lambda q: round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 1)  # noqa: E731
    print(json.dumps({
        "median_ms": round(statistics.median(latencies), 1), "p95_ms": pick(0.95), "p99_ms": pick(0.99),
        "max_ms": round(latencies[-1], 1), "requests_per_s": round(total / wall, 1), "statuses": dict(statuses),
        "unique_valid": unique_valid,
    }))


if __name__ == "__main__":
    main()
