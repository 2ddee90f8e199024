"""Benchmark of `reconcile` (issue 12): requests per invoice at 10,000 invoices, within BILL's limits.

    .venv/bin/python bench/bench_reconcile.py [--n 1000 10000] [--latency 0.05] [--paid 0.1]

For each N a fresh child process gets a fresh SQLite file under var/, both simulators in their own process
(driven through /_sim, as bench_bills.py does), N seeded approved invoices (1–5 lines), reference data,
mappings and vendors, the bills step, a share of the bills (--paid, default 10 %) paid in BILL and posted to
SAP by the payments step, and three of those payments voided in BILL afterwards (three differences to find).
Then only `reconcile(conn)` is timed, with 50 ms added latency per request on both sides and BILL's 3-in-flight
limit enforced. Printed per N: seconds, requests per side (and per invoice), max BILL requests in flight,
differences found (must be exactly the three voids), open totals. A markdown table comes last.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_bills import BENCH_KEY, RssSampler, Sims, diff  # noqa: E402

TARGET_BILL_PER_INVOICE = 0.05
BILL_HOURLY = 20_000


def child(n, latency, paid_share):
    db_file = ROOT / "var" / f"bench-reconcile-{n}.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_file}{suffix}").unlink(missing_ok=True)
    os.environ.update({"DJANGO_SETTINGS_MODULE": "mlconnector.settings", "DATABASE_URL": f"sqlite:///{db_file}",
                       "DEBUG": "0", "FIELD_ENCRYPTION_KEY": BENCH_KEY, "BILL_MAX_IN_FLIGHT": "3",
                       "SECRET_KEY": "bench-only-" + "x" * 40, "ALLOWED_HOSTS": "127.0.0.1"})
    os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from connector.connections import apply_connection
    from connector.models import InvoiceRecord, PaymentRecord
    from connector.sandbox import catalog
    from connector.sandbox.onboarding import onboard
    from connector.sync.runner import run_sync
    from reconcile.service import reconcile

    setup_started = time.monotonic()
    sims = Sims("process")
    try:
        conn, _ = apply_connection({
            "tenant": "bench", "name": f"bench-{n}",
            "sap": {"base_url": f"{sims.sap_url}/b1s/v1", "company_db": catalog.SAP_COMPANY_DB,
                    "username": catalog.SAP_USER, "password": catalog.SAP_PASSWORD,
                    "payment_account": catalog.SAP_PAYMENT_ACCOUNT},
            "bill": {"base_url": f"{sims.bill_url}/connect", "username": catalog.BILL_USER,
                     "password": catalog.BILL_PASSWORD, "organization_id": catalog.BILL_ORG_ID,
                     "dev_key": catalog.BILL_DEV_KEY},
            "sync_from": "2000-01-01", "allow_private_network": True,
        })
        sap, bill = onboard(conn)  # reference, confirmed mappings, vendors (connector/sandbox/onboarding.py)
        seeded = sims.sap("POST", "seed", {"count": n, "min_lines": 1, "max_lines": 5})
        assert seeded["created"] == n, seeded
        run_sync(conn, ["bills"])
        billed = list(InvoiceRecord.objects.filter(connection=conn, status="synced").order_by("doc_entry")
                      .values_list("bill_id", "doc_total"))
        step = max(1, round(1 / paid_share)) if paid_share else 0
        to_pay = billed[::step] if step else []
        for bill_id, total in to_pay:
            sims.bill("POST", "pay", {"payments": [[bill_id, str(total)]]})
        run_sync(conn, ["payments"])
        posted = list(PaymentRecord.objects.filter(connection=conn, status="posted").values_list(
            "bill_payment_id", flat=True)[:3])
        for payment_id in posted:  # voided in BILL after they were posted: three differences to find
            sims.bill("POST", "void", {"payment_id": payment_id})
        sims.sap("POST", "knobs", {"latency": latency})
        sims.bill("POST", "knobs", {"latency": latency, "concurrency_limit": 3})
        setup_seconds = time.monotonic() - setup_started
        before = sims.stats()
        sampler = RssSampler()
        sampler.start()
        started = time.monotonic()
        run = reconcile(conn, trigger="schedule")
        seconds = time.monotonic() - started
        sampler.stop()
        after = sims.stats()
    finally:
        sims.stop()
    kinds = {}
    for d in run.differences.all():
        kinds[d.kind] = kinds.get(d.kind, 0) + 1
    bill_req, sap_req = diff(after["bill"], before["bill"]), diff(after["sap"], before["sap"])
    result = {
        "n": n, "seconds": round(seconds, 2), "setup_seconds": round(setup_seconds, 1), "status": run.status,
        "error": run.error[-500:], "invoices": run.invoices, "bills": run.bills, "payments": run.payments,
        "paid": len(to_pay), "voided": len(posted), "differences": kinds,
        "sap_open": str(run.sap_open), "bill_open": str(run.bill_open),
        "bill_requests": bill_req, "bill_total": sum(bill_req.values()),
        "sap_requests": sap_req, "sap_total": sum(sap_req.values()),
        "bill_per_invoice": round(sum(bill_req.values()) / n, 4), "sap_per_invoice": round(sum(sap_req.values()) / n, 4),
        "bill_max_in_flight": after["bill_max_in_flight"],
        "bill_rejected_concurrent": after["bill_rejected_concurrent"] - before["bill_rejected_concurrent"],
        "counted_by_run": run.summary.get("requests"), "phases": run.summary.get("seconds"),
        "rss_growth_mb": round(sampler.peak_mb - sampler.start_mb, 1),
        "rss_peak_mb": round(sampler.peak_mb, 1),
    }
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_file}{suffix}").unlink(missing_ok=True)
    print("RESULT " + json.dumps(result), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--paid", type=float, default=0.1, help="share of bills paid in BILL and posted (0.1)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.latency, args.paid)
    results, all_pass = [], True
    for n in args.n:
        print(f"N={n}: setting up and reconciling (latency {args.latency * 1000:.0f} ms)...", flush=True)
        proc = subprocess.run([sys.executable, __file__, "--child", str(n), "--latency", str(args.latency),
                               "--paid", str(args.paid)], cwd=ROOT, capture_output=True, text=True)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if proc.returncode or line is None:
            print(proc.stdout[-3000:], proc.stderr[-5000:], sep="\n")
            return 1
        r = json.loads(line[len("RESULT "):])
        results.append(r)
        print(f"  {r['seconds']} s (setup {r['setup_seconds']} s), run {r['status']}: {r['invoices']} invoices, "
              f"{r['bills']} bills, {r['payments']} payments; differences {r['differences']}")
        print(f"  BILL requests {r['bill_total']} {r['bill_requests']} → {r['bill_per_invoice']} per invoice; max in "
              f"flight {r['bill_max_in_flight']}, refused {r['bill_rejected_concurrent']}")
        print(f"  SAP requests {r['sap_total']} {r['sap_requests']} → {r['sap_per_invoice']} per invoice")
        print(f"  open SAP {r['sap_open']} / BILL {r['bill_open']}; RSS peak {r['rss_peak_mb']} MB "
              f"(growth {r['rss_growth_mb']} MB); the run counted {r['counted_by_run']}")
        print(f"  seconds per phase: {r['phases']}")
    print()
    print("| N invoices | paid in BILL | seconds | BILL requests (per invoice, ≤0.05) | SAP requests (per invoice) | "
          "BILL max in flight | differences found (expected: 3 voided after posting) |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        ok = (r["differences"] == {"posted_not_paid": 3} and r["bill_per_invoice"] <= TARGET_BILL_PER_INVOICE
              and r["bill_max_in_flight"] <= 3 and r["bill_rejected_concurrent"] == 0 and r["bill_total"] < BILL_HOURLY)
        all_pass &= ok
        print(f"| {r['n']:,} | {r['paid']:,} | {r['seconds']:.1f} | {r['bill_total']} ({r['bill_per_invoice']:.4f}) | "
              f"{r['sap_total']} ({r['sap_per_invoice']:.4f}) | {r['bill_max_in_flight']} | "
              f"{', '.join(f'{k} {v}' for k, v in r['differences'].items()) or 'none'} {'PASS' if ok else 'FAIL'} |")
    print()
    print("ALL PASS" if all_pass else "SOME TARGETS FAILED")
    return 0 if all_pass else 1


if __name__ == "__main__":
    sys.exit(main())
