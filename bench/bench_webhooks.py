"""Benchmark of the BILL webhook endpoint under concurrent load from a second process.

Starts the app under gunicorn (2 workers × 4 threads) on a fresh SQLite database (or $DATABASE_URL), then a
separate load-generator process sends signed `payment.updated` events (plus some duplicates and some with a
wrong signature) from N concurrent clients. Prints median / p95 / p99 latency, requests per second, the
status codes, and checks that every valid event was stored exactly once and no rejected one was.

    .venv/bin/python bench/bench_webhooks.py [--requests 3000] [--concurrency 16]
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
PORT = int(os.environ.get("BENCH_PORT", "8130"))
KEY = "bench-security-key"


def setup_env():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlconnector.settings")
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{ROOT}/var/bench-webhooks.sqlite3")
    os.environ["ALLOWED_HOSTS"] = "127.0.0.1,localhost"


def prepare():
    if os.environ["DATABASE_URL"].startswith("sqlite"):
        path = os.environ["DATABASE_URL"].removeprefix("sqlite:///")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from connector.connections import apply_connection
    from connector.models import WebhookEvent

    WebhookEvent.objects.all().delete()
    conn, _ = apply_connection({
        "tenant": "bench", "name": "bench-webhooks",
        "sap": {"base_url": "http://127.0.0.1:9/b1s/v1", "company_db": "X", "username": "u", "password": "p"},
        "bill": {"base_url": "http://127.0.0.1:9/connect", "username": "u", "password": "p", "organization_id": "008",
                 "dev_key": "k", "webhook_security_key": KEY},
    })
    return conn.webhook_token


def wait_until_up(url, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.2)
    raise SystemExit(f"server at {url} did not start")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    setup_env()
    token = prepare()
    env = {**os.environ}
    server = subprocess.Popen(
        [os.path.join(ROOT, ".venv", "bin", "gunicorn"), "mlconnector.wsgi", "-b", f"127.0.0.1:{PORT}", "--workers", "2",
         "--threads", "4", "--worker-class", "gthread", "--log-level", "warning"],
        cwd=ROOT, env=env, start_new_session=True,
    )
    try:
        wait_until_up(f"http://127.0.0.1:{PORT}/healthz")
        load = subprocess.run(
            [sys.executable, os.path.join(ROOT, "bench", "webhook_load.py"), f"http://127.0.0.1:{PORT}/webhooks/bill/{token}/",
             KEY, str(args.requests), str(args.concurrency)],
            cwd=ROOT, capture_output=True, text=True, check=True,
        )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    result = json.loads(load.stdout)
    from connector.models import WebhookEvent

    stored = WebhookEvent.objects.count()
    print(f"webhook endpoint: {args.requests} requests, {args.concurrency} concurrent clients (separate process), "
          f"gunicorn 2 workers x 4 threads, {os.environ['DATABASE_URL'].split(':')[0]}")
    print("| metric | value |\n|---|---|")
    for key in ("median_ms", "p95_ms", "p99_ms", "max_ms", "requests_per_s"):
        print(f"| {key} | {result[key]} |")
    print(f"| status codes | {result['statuses']} |")
    print(f"| events stored | {stored} (expected {result['unique_valid']}) |")
    ok = stored == result["unique_valid"] and set(result["statuses"]) <= {"200", "401"}
    print("exactly-once storage:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
