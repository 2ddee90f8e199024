"""Benchmark of the BILL webhook endpoint under concurrent load from a second process.

Starts the app under gunicorn (2 workers × 4 threads) on a fresh SQLite database (or $DATABASE_URL), then a
separate load-generator process sends signed `payment.updated` events (plus some duplicates and some with a
wrong signature) from N concurrent clients. Prints median / p95 / p99 latency, requests per second, the
status codes, and checks that every valid event was stored exactly once and no rejected one was.

    .venv/bin/python bench/bench_webhooks.py [--requests 3000] [--concurrency 16]

Open loop (issue 14, point 7): `--open-loop RATE [--seconds 30]` schedules RATE requests per second on a clock,
whatever the answers, and counts each latency from its scheduled send time (see webhook_load.py). The production
setup is PostgreSQL + Redis with DEBUG off:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/benchhost REDIS_URL=redis://127.0.0.1:6379/5 \
        .venv/bin/python bench/bench_webhooks.py --open-loop 200 --seconds 30

Exit status 0 when every valid event was stored exactly once (and, open loop, p99 < 50 ms), 1 otherwise.
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
BENCH_FERNET = "TkVXLWJlbmNoLWtleS1ub3QtYS1zZWNyZXQtMDAwMDA="  # throwaway: the bench database holds nothing of value


def setup_env():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlconnector.settings")
    # Production settings (DEBUG off: no SQL log kept per request, no debug toolbar-like overheads), throwaway keys.
    os.environ.setdefault("DEBUG", "0")
    os.environ.setdefault("SECRET_KEY", "bench-only-" + BENCH_FERNET)
    os.environ.setdefault("FIELD_ENCRYPTION_KEY", BENCH_FERNET)
    os.environ.setdefault("HTTPS", "0")  # plain HTTP on loopback: no redirect to https
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{ROOT}/var/bench-webhooks.sqlite3")
    os.environ["ALLOWED_HOSTS"] = "127.0.0.1,localhost"


def ensure_postgres_database(url):
    """CREATE DATABASE for a postgres:// URL whose database does not exist yet (the bench's own database)."""
    from urllib.parse import urlsplit

    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl().replace("postgres://", "postgresql://", 1)
    with psycopg.connect(admin, autocommit=True) as pg:
        if not pg.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            pg.execute(f'CREATE DATABASE "{name}"')


def prepare():
    if os.environ["DATABASE_URL"].startswith("sqlite"):
        path = os.environ["DATABASE_URL"].removeprefix("sqlite:///")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
    elif os.environ["DATABASE_URL"].startswith("postgres"):
        ensure_postgres_database(os.environ["DATABASE_URL"])
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
        "bill": {"base_url": "http://127.0.0.1:9/connect", "username": "u", "password": "p", "organization_id": "008BENCH",
                 "dev_key": "k", "webhook_security_key": KEY},
    })
    return conn.webhook_token


def cpu_seconds(parent_pid):
    """CPU time (user + system) of parent_pid and its child processes so far, from /proc (Linux)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == parent_pid or int(fields[1]) == parent_pid:  # fields[1] is the parent's pid
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


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
    parser.add_argument("--concurrency", type=int, default=None,
                        help="closed loop: clients (16); open loop: sender threads (64)")
    parser.add_argument("--open-loop", type=float, default=0.0, metavar="RATE",
                        help="requests per second on a fixed clock (open loop) instead of closed-loop clients")
    parser.add_argument("--seconds", type=float, default=30.0, help="open loop: how long to send")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker")
    args = parser.parse_args()
    if args.concurrency is None:
        args.concurrency = 64 if args.open_loop else 16
    if args.open_loop:
        args.requests = int(args.open_loop * args.seconds)
    setup_env()
    token = prepare()
    env = {**os.environ}
    server = subprocess.Popen(
        [os.path.join(ROOT, ".venv", "bin", "gunicorn"), "mlconnector.wsgi", "-b", f"127.0.0.1:{PORT}",
         "--workers", str(args.workers), "--threads", str(args.threads), "--worker-class", "gthread",
         "--log-level", "warning"],
        cwd=ROOT, env=env, start_new_session=True,
    )
    try:
        wait_until_up(f"http://127.0.0.1:{PORT}/healthz")
        url = f"http://127.0.0.1:{PORT}/webhooks/bill/{token}/"
        # warm-up (not measured): every worker imports its views and opens its database connection
        subprocess.run([sys.executable, os.path.join(ROOT, "bench", "webhook_load.py"), url, "warm-up-wrong-key",
                        str(20 * args.workers * args.threads), str(args.workers * args.threads)],
                       cwd=ROOT, capture_output=True, check=True)
        cpu_before, load_before = cpu_seconds(server.pid), os.getloadavg()[0]
        load = subprocess.run(
            [sys.executable, os.path.join(ROOT, "bench", "webhook_load.py"), url,
             KEY, str(args.requests), str(args.concurrency)] + ([str(args.open_loop)] if args.open_loop else []),
            cwd=ROOT, capture_output=True, text=True, check=True,
        )
        server_cpu = cpu_seconds(server.pid) - cpu_before
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    result = json.loads(load.stdout)
    from connector.models import WebhookEvent

    stored = WebhookEvent.objects.count()
    if os.environ.get("REDIS_URL"):
        from django_q.brokers import get_broker

        get_broker().purge_queue()  # the doorbells rung for the bench's events: no cluster is meant to run them
    mode = (f"open loop at {args.open_loop:g} requests/s for {args.seconds:g} s ({args.concurrency} sender threads)"
            if args.open_loop else f"{args.concurrency} concurrent clients")
    print(f"webhook endpoint: {args.requests} requests, {mode} (separate process), gunicorn {args.workers} workers "
          f"x {args.threads} threads, {os.environ['DATABASE_URL'].split(':')[0]}"
          f"{' + redis' if os.environ.get('REDIS_URL') else ''}; load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after")
    print("| metric | value |\n|---|---|")
    for key in ("median_ms", "p95_ms", "p99_ms", "max_ms", "requests_per_s", "late_sends"):
        if key in result:
            print(f"| {key} | {result[key]} |")
    print(f"| gunicorn CPU per request | {server_cpu / args.requests * 1000:.2f} ms |")
    print(f"| status codes | {result['statuses']} |")
    print(f"| events stored | {stored} (expected {result['unique_valid']}) |")
    ok = stored == result["unique_valid"] and set(result["statuses"]) <= {"200", "401"}
    print("exactly-once storage:", "PASS" if ok else "FAIL")
    if args.open_loop:
        fast = result["p99_ms"] < 50
        print(f"p99 < 50 ms at {args.open_loop:g} requests/s:", "PASS" if fast else "FAIL")
        ok = ok and fast
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
