"""Benchmark of invoice attachments → BILL bill documents (issue 13): memory stays flat, BILL's limits hold.

    .venv/bin/python bench/bench_documents.py [--n 1000] [--share 0.2] [--size-mb 1] [--latency 0.05]

A child process gets a fresh SQLite file, both simulators run in a third process (so their memory is not ours),
with `--latency` added per request and BILL's 3-in-flight limit enforced. The SAP simulator holds N approved
invoices, `--share` of them with one `--size-mb` PDF attached (Attachments2; the bytes are generated as they are
streamed, never stored). Measured: the cycle `bills` + `documents` (bills created, each PDF downloaded from SAP
into a temporary file and uploaded to its bill), then one more `documents` run (BILL finishes uploads
asynchronously: upload-status is polled). Printed: seconds, BILL requests (per hour budget of 20,000, max in
flight, refused), upload bytes, peak RSS and RSS growth of our process during the documents work, and a check
that every PDF is on its bill exactly once with SAP's bytes (sha256).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from bench_bills import BENCH_KEY, RssSampler, diff  # noqa: E402

BILL_HOURLY = 20000
MAX_DOC = 6 * 1024 * 1024


def serve_sims(n, share, size):
    """Both simulators with N invoices, a share of them with one PDF each; print URLs; serve until stdin closes."""
    sys.path.insert(0, str(ROOT))
    from connector.sandbox.bill import BillSimulator
    from connector.sandbox.sap import SapSimulator
    from connector.sandbox.sap.attachments import file_digest
    from connector.sandbox.server import serve

    sap, bill = SapSimulator(), BillSimulator()
    entries = sap.seed_invoices(n, min_lines=1, max_lines=3)
    every = max(1, round(1 / share)) if share else 0
    digests = {}
    for i, entry in enumerate(entries):
        if every and i % every == 0:
            attached = sap.attach_files(entry, [{"name": f"INV-{entry}", "ext": "pdf", "size": size}])
            seed, length, _ = sap.attachment_file(attached["AbsoluteEntry"], f"INV-{entry}.pdf")
            digests[f"INV-{entry}.pdf"] = file_digest(seed, length)
    sap_server, bill_server = serve(sap), serve(bill)
    print(json.dumps({"sap": sap_server.url, "bill": bill_server.url, "digests": digests}), flush=True)
    sys.stdin.read()
    sap_server.stop()
    bill_server.stop()


def child(args):
    db_file = ROOT / "var" / f"bench-documents-{args.n}.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_file}{suffix}").unlink(missing_ok=True)
    os.environ.update({"DJANGO_SETTINGS_MODULE": "mlconnector.settings", "DATABASE_URL": f"sqlite:///{db_file}",
                       "DEBUG": "0", "FIELD_ENCRYPTION_KEY": BENCH_KEY, "BILL_MAX_IN_FLIGHT": "3"})
    os.environ.setdefault("SECRET_KEY", "bench-only-" + BENCH_KEY)
    os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.pop("REDIS_URL", None)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    import requests
    from django.core.management import call_command
    from django.db.models import Count

    call_command("migrate", verbosity=0)
    from connector.connections import apply_connection
    from connector.models import AttachmentRecord, InvoiceRecord
    from connector.sandbox import catalog
    from connector.sandbox.onboarding import onboard
    from connector.sync.runner import run_sync

    proc = subprocess.Popen([sys.executable, __file__, "--serve-sims", "--n", str(args.n), "--share", str(args.share),
                             "--size-mb", str(args.size_mb)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            cwd=ROOT)
    info = json.loads(proc.stdout.readline())
    http = requests.Session()

    def sim(url, method, path, body=None):
        resp = http.request(method, f"{url}/_sim/{path}", json=body, timeout=600)
        resp.raise_for_status()
        return resp.json()

    def stats():
        bill = sim(info["bill"], "GET", "stats")
        sap = sim(info["sap"], "GET", "stats")
        return bill, sap

    try:
        conn, _ = apply_connection({
            "tenant": "bench", "name": "bench-documents",
            "sap": {"base_url": f"{info['sap']}/b1s/v1", "company_db": catalog.SAP_COMPANY_DB,
                    "username": catalog.SAP_USER, "password": catalog.SAP_PASSWORD},
            "bill": {"base_url": f"{info['bill']}/connect", "username": catalog.BILL_USER,
                     "password": catalog.BILL_PASSWORD, "organization_id": catalog.BILL_ORG_ID,
                     "dev_key": catalog.BILL_DEV_KEY},
            "sync_from": "2000-01-01", "allow_private_network": True,
        })
        sap, bill = onboard(conn)  # reference, confirmed mappings, vendors (connector/sandbox/onboarding.py)
        sim(info["sap"], "POST", "knobs", {"latency": args.latency})
        sim(info["bill"], "POST", "knobs", {"latency": args.latency, "concurrency_limit": 3})
        bill_before, sap_before = stats()

        started = time.monotonic()
        first = run_sync(conn, ["bills"], trigger="schedule")
        bills_seconds = time.monotonic() - started
        sampler = RssSampler()
        sampler.start()
        started = time.monotonic()
        docs1 = run_sync(conn, ["documents"], trigger="schedule")
        docs_seconds = time.monotonic() - started
        started = time.monotonic()
        docs2 = run_sync(conn, ["documents"], trigger="schedule")  # BILL's asynchronous uploads finish
        poll_seconds = time.monotonic() - started
        sampler.stop()
        bill_after, sap_after = stats()

        sim(info["sap"], "POST", "knobs", {"latency": 0})
        sim(info["bill"], "POST", "knobs", {"latency": 0})
        stored = sim(info["bill"], "POST", "entities", {"kind": "documents"})
        finished = [d for d in stored if d.get("documentId")]
        by_name = {}
        for d in finished:
            by_name.setdefault(d["name"], []).append(d)
        expected = info["digests"]
        duplicates = sum(1 for docs in by_name.values() if len(docs) > 1)
        wrong = sum(1 for name, docs in by_name.items() if docs[0]["sha256"] != expected.get(name))
        missing = len(set(expected) - set(by_name))
        statuses = dict(AttachmentRecord.objects.filter(connection=conn).values("status").annotate(c=Count("pk"))
                        .values_list("status", "c"))
        billed = InvoiceRecord.objects.filter(connection=conn, status="synced").count()
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    bill_requests = diff(bill_after["requests_by_path"], bill_before["requests_by_path"])
    sap_requests = diff(sap_after["requests_by_path"], sap_before["requests_by_path"])
    result = {
        "n": args.n, "files": len(expected), "file_mb": args.size_mb, "bills_seconds": round(bills_seconds, 1),
        "documents_seconds": round(docs_seconds, 1), "poll_seconds": round(poll_seconds, 1),
        "summary_bills": first.summary.get("bills"), "summary_documents": [docs1.summary.get("documents"),
                                                                             docs2.summary.get("documents")],
        "billed": billed, "bill_requests": bill_requests, "bill_requests_total": sum(bill_requests.values()),
        "uploads": bill_requests.get("POST /connect/v3/documents/bills/{id}", bill_requests.get(
            "POST /v3/documents/bills/{id}", 0)),
        "bill_max_in_flight": max(bill_after["max_in_flight_seen"].values() or [0]),
        "bill_rejected_concurrent": bill_after["rejected_concurrent"] - bill_before["rejected_concurrent"],
        "bill_rejected_hourly": bill_after.get("rejected_hourly", 0) - bill_before.get("rejected_hourly", 0),
        "sap_requests": sap_requests, "sap_requests_total": sum(sap_requests.values()),
        "largest_file": max((d["size"] for d in finished), default=0),
        "uploaded_mb": round(sum(d["size"] for d in finished) / 2**20, 1),
        "documents": len(finished), "duplicates": duplicates, "wrong_bytes": wrong, "missing": missing,
        "attachment_statuses": statuses,
        "rss_start_mb": round(sampler.start_mb, 1), "rss_peak_mb": round(sampler.peak_mb, 1),
        "rss_growth_mb": round(sampler.peak_mb - sampler.start_mb, 1),
    }
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_file}{suffix}").unlink(missing_ok=True)
    print("RESULT " + json.dumps(result), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--share", type=float, default=0.2)
    parser.add_argument("--size-mb", type=float, default=1.0)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-sims", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_sims:
        return serve_sims(args.n, args.share, int(args.size_mb * 1024 * 1024))
    if args.child:
        return child(args)
    print(f"N={args.n}, {args.share:.0%} with a {args.size_mb} MB PDF, latency {args.latency * 1000:.0f} ms: running...",
          flush=True)
    cmd = [sys.executable, __file__, "--child", "--n", str(args.n), "--share", str(args.share),
           "--size-mb", str(args.size_mb), "--latency", str(args.latency)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        print(proc.stdout[-3000:], proc.stderr[-5000:], sep="\n")
        return 1
    r = json.loads(line[len("RESULT "):])
    ok = (r["documents"] == r["files"] and not r["duplicates"] and not r["wrong_bytes"] and not r["missing"]
          and r["bill_max_in_flight"] <= 3 and not r["bill_rejected_concurrent"] and not r["bill_rejected_hourly"]
          and r["largest_file"] <= MAX_DOC and r["bill_requests_total"] < BILL_HOURLY)
    print(f"  bills step {r['bills_seconds']} s ({r['billed']} bills); documents {r['documents_seconds']} s, "
          f"status poll run {r['poll_seconds']} s; {r['summary_documents']}")
    print(f"  BILL requests {r['bill_requests_total']} ({r['bill_requests_total'] / BILL_HOURLY:.1%} of the hourly "
          f"20,000): {r['bill_requests']}; max in flight {r['bill_max_in_flight']}, refused {r['bill_rejected_concurrent']}")
    print(f"  SAP requests {r['sap_requests_total']}: {r['sap_requests']}")
    print(f"  uploaded {r['documents']} documents, {r['uploaded_mb']} MB, largest {r['largest_file']} bytes (≤ 6 MB); "
          f"duplicates {r['duplicates']}, wrong bytes {r['wrong_bytes']}, missing {r['missing']}; "
          f"records {r['attachment_statuses']}")
    print(f"  our process during the documents work: RSS {r['rss_start_mb']} → peak {r['rss_peak_mb']} MB "
          f"(growth {r['rss_growth_mb']} MB for {r['uploaded_mb']} MB of files)")
    print()
    print("| invoices | PDFs (size) | documents s | BILL requests (of 20,000/h) | max in flight | RSS growth | "
          "every PDF once, bytes equal |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {r['n']:,} | {r['files']} ({r['file_mb']} MB) | {r['documents_seconds'] + r['poll_seconds']:.1f} | "
          f"{r['bill_requests_total']:,} | {r['bill_max_in_flight']} | {r['rss_growth_mb']} MB | "
          f"{'yes' if ok else 'NO'} ({r['documents']} of {r['files']}) |")
    print()
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
