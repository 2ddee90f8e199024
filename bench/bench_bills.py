"""Benchmark of the bills step (issue 4, point 7): SAP purchase invoices → BILL bills on the simulators.

    .venv/bin/python bench/bench_bills.py [--n 1000 10000] [--sims process|thread] [--latency 0.05] [--tracemalloc]

For each N a fresh child process (so peak RSS is per N) gets a fresh SQLite file under var/, both simulators
with 50 ms added latency per request and BILL's 3-in-flight limit enforced (simulator *and* our limiter),
N seeded approved invoices (1–5 lines each), reference data loaded, every account and cost centre mapped
(mappings.suggest), vendors aligned. Then only the bills step (`run_sync(conn, ["bills"])`) is timed.
Printed per N: invoices/s, BILL requests per created bill, SAP requests per invoice, peak memory, a check
that every invoice became exactly one bill with SAP's total to the cent, and PASS/FAIL against the targets.
A markdown table comes last. See bench/README.md for what each number means.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATE = 100.0  # invoices per second
TARGET_BILL_REQ = 0.05  # BILL requests per created bill
TARGET_MEM_RATIO = 1.5  # peak memory at the largest N vs the smallest
BENCH_KEY = "TkVXLWJlbmNoLWtleS1ub3QtYS1zZWNyZXQtMDAwMDA="  # throwaway Fernet key: the bench DB is deleted anyway


# --- simulators ------------------------------------------------------------------------------------------------
def serve_sims():
    """`--serve-sims`: run both simulators in this process, print their URLs, serve until stdin closes."""
    sys.path.insert(0, str(ROOT))
    from connector.sandbox.bill import BillSimulator
    from connector.sandbox.sap import SapSimulator
    from connector.sandbox.server import serve

    sap, bill = SapSimulator(), BillSimulator()
    sap_server, bill_server = serve(sap), serve(bill)
    print(json.dumps({"sap": sap_server.url, "bill": bill_server.url}), flush=True)
    sys.stdin.read()  # parent closes stdin (or dies) → stop
    sap_server.stop()
    bill_server.stop()


class Sims:
    """Both simulators, driven only through their /_sim control endpoints (not counted, no latency)."""

    def __init__(self, mode):
        import requests

        self.mode = mode
        self.http = requests.Session()
        self.proc = None
        if mode == "process":
            self.proc = subprocess.Popen([sys.executable, __file__, "--serve-sims"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, text=True, cwd=ROOT)
            urls = json.loads(self.proc.stdout.readline())
        else:
            from connector.sandbox.bill import BillSimulator
            from connector.sandbox.sap import SapSimulator
            from connector.sandbox.server import serve

            self._servers = [serve(SapSimulator()), serve(BillSimulator())]
            urls = {"sap": self._servers[0].url, "bill": self._servers[1].url}
        self.sap_url, self.bill_url = urls["sap"], urls["bill"]

    def sap(self, method, path, body=None):
        resp = self.http.request(method, f"{self.sap_url}/_sim/{path}", json=body, timeout=600)
        resp.raise_for_status()
        return resp.json()

    def bill(self, method, path, body=None):
        resp = self.http.request(method, f"{self.bill_url}/_sim/{path}", json=body, timeout=600)
        resp.raise_for_status()
        return resp.json()

    def stats(self):
        sap, bill = self.sap("GET", "stats"), self.bill("GET", "stats")
        return {"sap": sap["requests_by_path"], "sap_total": sap["request_count"],
                "bill": bill["requests_by_path"], "bill_total": bill["request_count"],
                "bill_max_in_flight": max(bill["max_in_flight_seen"].values() or [0]),
                "bill_rejected_concurrent": bill["rejected_concurrent"]}

    def stop(self):
        if self.proc:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        else:
            for server in self._servers:
                server.stop()


def diff(after, before):
    keys = set(after) | set(before)
    return {k: after.get(k, 0) - before.get(k, 0) for k in sorted(keys) if after.get(k, 0) - before.get(k, 0)}


# --- memory ----------------------------------------------------------------------------------------------------
def rss_mb():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class RssSampler(threading.Thread):
    """Peak resident memory of this process while the step runs (sampled every 20 ms)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.start_mb = rss_mb()
        self.peak_mb = self.start_mb
        self._halt = threading.Event()

    def run(self):
        while not self._halt.wait(0.02):
            self.peak_mb = max(self.peak_mb, rss_mb())

    def stop(self):
        self._halt.set()
        self.join()
        self.peak_mb = max(self.peak_mb, rss_mb())


# --- one N, in its own process -------------------------------------------------------------------------------
def child(n, sims_mode, latency, use_tracemalloc):
    db_file = ROOT / "var" / f"bench-bills-{n}.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_file}{suffix}").unlink(missing_ok=True)
    os.environ["DJANGO_SETTINGS_MODULE"] = "mlconnector.settings"
    os.environ["DATABASE_URL"] = f"sqlite:///{db_file}"
    # DEBUG off: with DEBUG Django keeps the last 9,000 SQL statements (bulk inserts of JSON documents) in memory,
    # which would be measured as our peak memory. A fixed throwaway key replaces DEBUG's generated key file.
    os.environ["DEBUG"] = "0"
    os.environ["FIELD_ENCRYPTION_KEY"] = BENCH_KEY
    os.environ.setdefault("SECRET_KEY", "bench-only-" + BENCH_KEY)  # production settings refuse to start without one
    os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost")
    os.environ.pop("REDIS_URL", None)  # the database limiter, like a deployment without Redis
    os.environ["BILL_MAX_IN_FLIGHT"] = "3"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command
    from django.db.models import Count

    call_command("migrate", verbosity=0)

    from connector.connections import apply_connection
    from connector.models import InvoiceRecord
    from connector.sandbox import catalog
    from connector.sandbox.onboarding import onboard
    from connector.sync.coding import marker_in
    from connector.sync.runner import run_sync
    from mappings.models import VendorLink

    setup_started = time.monotonic()
    sims = Sims(sims_mode)
    try:
        conn, _ = apply_connection({
            "tenant": "bench", "name": f"bench-{n}",
            "sap": {"base_url": f"{sims.sap_url}/b1s/v1", "company_db": catalog.SAP_COMPANY_DB,
                    "username": catalog.SAP_USER, "password": catalog.SAP_PASSWORD},
            "bill": {"base_url": f"{sims.bill_url}/connect", "username": catalog.BILL_USER,
                     "password": catalog.BILL_PASSWORD, "organization_id": catalog.BILL_ORG_ID,
                     "dev_key": catalog.BILL_DEV_KEY},
            "sync_from": "2000-01-01", "allow_private_network": True,  # simulators on loopback
        })
        sap, bill = onboard(conn)  # reference, confirmed mappings, vendors (connector/sandbox/onboarding.py)
        unlinked = list(VendorLink.objects.filter(connection=conn).exclude(status="linked")
                        .values_list("card_code", "status"))
        seeded = sims.sap("POST", "seed", {"count": n, "min_lines": 1, "max_lines": 5})
        assert seeded["created"] == n, seeded
        sims.sap("POST", "knobs", {"latency": latency})
        sims.bill("POST", "knobs", {"latency": latency, "concurrency_limit": 3})
        setup_seconds = time.monotonic() - setup_started
        before = sims.stats()

        if use_tracemalloc:
            import tracemalloc

            tracemalloc.start()
        sampler = RssSampler()
        sampler.start()
        started = time.monotonic()
        run = run_sync(conn, ["bills"], trigger="schedule")
        seconds = time.monotonic() - started
        sampler.stop()
        maxrss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the check loads everything
        traced_peak_mb = None
        if use_tracemalloc:
            traced_peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
        after = sims.stats()

        # --- check the outcome: every invoice is exactly one bill, with SAP's total to the cent ---------------
        sims.sap("POST", "knobs", {"latency": 0})
        sims.bill("POST", "knobs", {"latency": 0})
        invoices = {row["DocEntry"]: Decimal(str(row["DocTotal"])) for row in sims.sap("GET", "entities/PurchaseInvoices")}
        bills = [b for b in sims.bill("POST", "entities", {"kind": "bills"}) if not b.get("archived")]
        per_doc = {}
        for b in bills:
            found = marker_in(b["description"])
            if found:
                per_doc.setdefault(found[1], []).append(Decimal(str(b["amount"])))
        duplicates = sum(1 for amounts in per_doc.values() if len(amounts) > 1)
        wrong_total = sum(1 for entry, amounts in per_doc.items() if amounts[0] != invoices.get(entry))
        statuses = dict(InvoiceRecord.objects.filter(connection=conn).values("status").annotate(c=Count("pk"))
                        .values_list("status", "c"))
    finally:
        sims.stop()

    bill_requests = diff(after["bill"], before["bill"])
    sap_requests = diff(after["sap"], before["sap"])
    created = run.summary.get("bills", {}).get("created", 0)
    result = {
        "n": n, "sims": sims_mode, "latency_ms": round(latency * 1000), "seconds": round(seconds, 2),
        "setup_seconds": round(setup_seconds, 1), "run_status": run.status, "run_error": run.error[-500:],
        "summary": run.summary.get("bills", {}), "record_statuses": statuses, "unlinked_vendors": unlinked,
        "invoices_per_second": round(n / seconds, 1) if seconds else None,
        "bill_requests": bill_requests, "bill_requests_total": sum(bill_requests.values()),
        "bill_requests_per_bill": round(sum(bill_requests.values()) / created, 4) if created else None,
        "bill_max_in_flight": after["bill_max_in_flight"],
        "bill_rejected_concurrent": after["bill_rejected_concurrent"] - before["bill_rejected_concurrent"],
        "sap_requests": sap_requests, "sap_requests_total": sum(sap_requests.values()),
        "sap_requests_per_invoice": round(sum(sap_requests.values()) / n, 4),
        "bills_in_bill": len(bills), "invoices_with_bill": len(per_doc), "duplicates": duplicates,
        "wrong_totals": wrong_total,
        "rss_start_mb": round(sampler.start_mb, 1), "rss_peak_mb": round(sampler.peak_mb, 1),
        "rss_growth_mb": round(sampler.peak_mb - sampler.start_mb, 1),
        "ru_maxrss_mb": round(maxrss_mb, 1),
        "tracemalloc_peak_mb": round(traced_peak_mb, 1) if traced_peak_mb is not None else None,
    }
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_file}{suffix}").unlink(missing_ok=True)
    print("RESULT " + json.dumps(result), flush=True)


# --- parent: one child per N, then the table ---------------------------------------------------------------------
def memory_of(result):
    """The memory figure compared across N: tracemalloc peak when measured, else RSS growth during the step."""
    if result.get("tracemalloc_peak_mb") is not None:
        return result["tracemalloc_peak_mb"], "tracemalloc peak"
    return result["rss_growth_mb"], "RSS growth"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 10000], help="invoice counts (default 1000 10000)")
    parser.add_argument("--sims", choices=["process", "thread"], default="process",
                        help="simulators in their own process (default) or in threads of the measured process")
    parser.add_argument("--latency", type=float, default=0.05, help="added latency per request, seconds (0.05)")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="also trace Python allocations (slows the step; its rate is then not representative)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-sims", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_sims:
        return serve_sims()
    if args.child:
        return child(args.child, args.sims, args.latency, args.tracemalloc)

    results = []
    for n in args.n:
        print(f"N={n}: running (simulators: {args.sims}, latency {args.latency * 1000:.0f} ms)...", flush=True)
        cmd = [sys.executable, __file__, "--child", str(n), "--sims", args.sims, "--latency", str(args.latency)]
        if args.tracemalloc:
            cmd.append("--tracemalloc")
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if proc.returncode or line is None:
            print(proc.stdout[-3000:], proc.stderr[-5000:], sep="\n")
            print(f"N={n}: child failed (exit {proc.returncode})")
            return 1
        result = json.loads(line[len("RESULT "):])
        results.append(result)
        mem, what = memory_of(result)
        print(f"  {result['seconds']} s for the bills step (setup {result['setup_seconds']} s), run {result['run_status']}")
        print(f"  invoices/s {result['invoices_per_second']}")
        print(f"  BILL requests {result['bill_requests_total']} {result['bill_requests']} → "
              f"{result['bill_requests_per_bill']} per created bill; max in flight {result['bill_max_in_flight']}, "
              f"refused as too many in flight {result['bill_rejected_concurrent']}")
        print(f"  SAP requests {result['sap_requests_total']} {result['sap_requests']} → "
              f"{result['sap_requests_per_invoice']} per invoice")
        print(f"  memory: RSS {result['rss_start_mb']} → peak {result['rss_peak_mb']} MB (growth "
              f"{result['rss_growth_mb']} MB), ru_maxrss {result['ru_maxrss_mb']} MB"
              + (f", tracemalloc peak {result['tracemalloc_peak_mb']} MB" if result["tracemalloc_peak_mb"] is not None
                 else ""))
        print(f"  check: {result['bills_in_bill']} bills for {result['invoices_with_bill']} invoices, duplicates "
              f"{result['duplicates']}, totals off {result['wrong_totals']}; records {result['record_statuses']}")

    smallest = min(results, key=lambda r: r["n"])
    base_mem, what = memory_of(smallest)
    rows = []
    all_pass = True
    for r in results:
        mem, _ = memory_of(r)
        ratio = mem / base_mem if base_mem else None
        correct = (r["duplicates"] == 0 and r["wrong_totals"] == 0 and r["invoices_with_bill"] == r["n"]
                   and r["bill_rejected_concurrent"] == 0 and r["bill_max_in_flight"] <= 3)
        checks = {
            "rate": r["invoices_per_second"] >= TARGET_RATE,
            "bill": r["bill_requests_per_bill"] is not None and r["bill_requests_per_bill"] <= TARGET_BILL_REQ,
            "mem": ratio is None or r is smallest or ratio <= TARGET_MEM_RATIO,
            "ok": correct,
        }
        all_pass &= all(checks.values())
        mark = {k: "PASS" if v else "FAIL" for k, v in checks.items()}
        rows.append(
            f"| {r['n']:,} | {r['seconds']:.1f} | {r['invoices_per_second']:.0f} {mark['rate']} | "
            f"{r['bill_requests_per_bill']:.4f} {mark['bill']} | {r['sap_requests_per_invoice']:.3f} | "
            f"{mem:.1f} MB" + ("" if r is smallest else f" (×{ratio:.2f}) {mark['mem']}") + f" | {r['rss_peak_mb']:.0f} MB | "
            f"{r['invoices_with_bill']:,}/{r['n']:,}, dup {r['duplicates']}, off {r['wrong_totals']} {mark['ok']} |"
        )
    print()
    print(f"Simulators: {args.sims}; {args.latency * 1000:.0f} ms latency per request on both; BILL 3 in flight. "
          f"Memory compared: {what} during the bills step.")
    print()
    print("| N | step s | invoices/s (≥100) | BILL req / created bill (≤0.05) | SAP req / invoice | "
          f"peak memory: {what} (≤1.5× N={smallest['n']:,}) | peak RSS | bills / invoices, duplicates, totals off |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print()
    print("ALL PASS" if all_pass else "SOME TARGETS FAILED")
    return 0 if all_pass else 1


if __name__ == "__main__":
    sys.exit(main())
