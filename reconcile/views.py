"""What the reconciliation page and the status panel show: the latest run, differences grouped by kind, a chart."""

from decimal import Decimal

from django.urls import reverse

from .models import Difference, ReconciliationRun

CHART_RUNS = 30


def record_link(d):
    """Admin path of the record a difference is about (invoice or payment), or ''."""
    if d.invoice_id:
        return reverse("admin:connector_invoicerecord_change", args=[d.invoice_id])
    if d.payment_id:
        return reverse("admin:connector_paymentrecord_change", args=[d.payment_id])
    return ""


def latest_run(conn):
    return ReconciliationRun.objects.filter(connection=conn, finished_at__isnull=False).order_by("-started_at").first()


def grouped(run):
    """[{kind, label, count, new, sap_total, bill_total, rows}] in the order of Difference.Kind."""
    if run is None:
        return []
    groups = {}
    for d in run.differences.select_related("invoice", "payment").order_by("card_code", "sap_ref", "bill_ref"):
        group = groups.setdefault(d.kind, {"kind": d.kind, "label": d.get_kind_display(), "count": 0, "new": 0,
                                           "sap_total": Decimal("0.00"), "bill_total": Decimal("0.00"), "rows": []})
        group["count"] += 1
        group["new"] += int(d.is_new)
        group["sap_total"] += d.sap_amount or 0
        group["bill_total"] += d.bill_amount or 0
        d.link = record_link(d)
        group["rows"].append(d)
    order = [k for k, _ in Difference.Kind.choices]
    return sorted(groups.values(), key=lambda g: order.index(g["kind"]) if g["kind"] in order else 99)


def chart(conn):
    """Bars for the last runs: differences (new ones on top, darker). SVG geometry is computed here."""
    runs = list(ReconciliationRun.objects.filter(connection=conn, finished_at__isnull=False)
                .exclude(status=ReconciliationRun.Status.FAILED).order_by("-started_at")[:CHART_RUNS])[::-1]
    peak = max([r.difference_count for r in runs] + [1])
    bars = []
    for n, run in enumerate(runs):
        old = run.difference_count - run.new_count
        h_old = round(old * 100 / peak, 1)
        h_new = round(run.new_count * 100 / peak, 1)
        bars.append({"run": run, "x": n * 20, "h_old": h_old, "y_old": round(120 - h_old, 1), "h_new": h_new,
                     "y_new": round(120 - h_old - h_new, 1), "label": n % 5 == 0})
    return {"bars": bars, "peak": peak}


def state(conn):
    """The status panel's data: last run, counts, open amounts per side, chart."""
    run = latest_run(conn)
    from datetime import timedelta

    from django.utils import timezone

    from .service import LEASE

    # A run whose process died never finishes: after its lease it no longer counts as running.
    running = ReconciliationRun.objects.filter(connection=conn, finished_at__isnull=True,
                                               started_at__gte=timezone.now() - timedelta(seconds=LEASE)).exists()
    return {"conn": conn, "run": run, "running": running, "chart": chart(conn),
            "by_kind": (run.summary or {}).get("by_kind", {}) if run else {},
            "kind_labels": dict(Difference.Kind.choices),
            "gap": (run.sap_open - run.bill_open) if run else None}
