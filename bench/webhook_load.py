"""Load generator for bench_webhooks.py (runs as its own process): signed BILL events from N concurrent clients.

Usage: webhook_load.py URL SECURITY_KEY REQUESTS CONCURRENCY [RATE]  → prints a JSON result on stdout.
Every 10th request repeats an earlier eventId (a duplicate delivery); every 20th carries a wrong signature.

Without RATE: closed loop, CONCURRENCY clients each send their next request when the previous one is answered.
With RATE (requests/s): open loop. Request i is due at start + i/RATE whatever the server does; CONCURRENCY
sender threads (a pool large enough that one is always free) each wait for their request's due time, send it on a
kept-alive connection, and its latency is counted from the due time, so time spent queued behind a slow answer
counts too (no coordinated omission). `late_sends` counts requests that left more than 5 ms after their due time
(the generator itself fell behind: then the pool is too small or the machine too busy, and the figures say so).
"""

import base64
import hashlib
import hmac
import http.client
import json
import statistics
import sys
import threading
import time
import urllib.parse
import uuid
from collections import Counter

import requests


def body_for(event_id, n):
    event = {"metadata": {"eventId": event_id, "subscriptionId": "sub-bench", "organizationId": "008BENCH",
                          "eventType": "payment.updated", "version": "1"},
             "payment": {"id": f"stpBENCH{n:012d}", "billIds": [f"00nBENCH{n:010d}"], "status": "PROCESSED",
                         "processDate": "2026-11-24", "funding": {"amount": 100.0 + n % 50, "currency": "USD"}}}
    return json.dumps(event, separators=(",", ":")).encode()


def open_loop(url, key, plan, rate, concurrency):
    """Send plan[i] at start + i/rate; latency from that due time. Returns (latencies ms, statuses, late, wall)."""
    target = urllib.parse.urlsplit(url)
    prepared = []
    for event_id, valid, n in plan:  # bodies and signatures ready before the clock starts
        body = body_for(event_id, n)
        signature = base64.b64encode(hmac.new(key if valid else b"wrong-key", body, hashlib.sha256).digest()).decode()
        prepared.append((body, signature))
    latencies, statuses, lock = [], Counter(), threading.Lock()
    late = [0]
    counter = iter(range(len(prepared)))
    start = time.perf_counter() + 0.5

    def worker():
        connection = None
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            due = start + i / rate
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            elif pause < -0.005:
                with lock:
                    late[0] += 1
            body, signature = prepared[i]
            for _attempt in (1, 2):
                try:
                    if connection is None:
                        connection = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                    connection.request("POST", target.path, body=body, headers={
                        "Content-Type": "application/json", "x-bill-sha-signature": signature})
                    answer = connection.getresponse()
                    answer.read()
                    status = str(answer.status)
                    break
                except (http.client.HTTPException, OSError):
                    connection.close()
                    connection = None  # the server closed a kept-alive connection: reconnect once
                    status = "error"
            elapsed = (time.perf_counter() - due) * 1000
            with lock:
                latencies.append(elapsed)
                statuses[status] += 1
        if connection is not None:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, statuses, late[0], time.perf_counter() - start


def main():
    url, key, total, concurrency = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3]), int(sys.argv[4])
    rate = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
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
    if rate:
        latencies, statuses, late, wall = open_loop(url, key, plan, rate, concurrency)
        latencies.sort()
        pick = lambda q: round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 1)  # noqa: E731
        print(json.dumps({
            "mode": "open", "rate": rate, "median_ms": round(statistics.median(latencies), 1), "p95_ms": pick(0.95),
            "p99_ms": pick(0.99), "max_ms": round(latencies[-1], 1), "requests_per_s": round(total / wall, 1),
            "statuses": dict(statuses), "unique_valid": unique_valid, "late_sends": late,
        }))
        return
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
