"""The host operator's view of one deployment: BILL budgets per developer key, connections behind schedule,
paused or failing, webhook deliveries, the task queue. Plain functions; the admin page and `/healthz` show them.
"""

from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.db.models import Count
from django.db.models.functions import TruncMinute
from django.utils import timezone

from . import budget
from .connections import scrub
from .logfilter import redact_text
from .models import Connection, SyncRun, WebhookEvent

WARN_SHARE = 0.8  # operators are warned when a developer key has used this much of its hour


def queue_state():
    """{pending, oldest_age_seconds, workers, clusters}: what waits in the task queue and who works it."""
    from django_q.brokers import get_broker
    from django_q.signing import SignedPackage

    broker = get_broker()
    state = {"pending": broker.queue_size(), "oldest_age_seconds": None, "workers": 0, "clusters": 0}
    payload = None
    if hasattr(broker.connection, "lindex"):  # Redis: tasks are pushed on the right, taken from the left
        payload = broker.connection.lindex(broker.list_key, 0)
    else:
        from django_q.models import OrmQ

        row = OrmQ.objects.filter(key=broker.list_key, lock__lte=timezone.now()).order_by("id").first()
        payload = row.payload if row else None
    if payload:
        try:
            started = SignedPackage.loads(payload).get("started")
        except Exception:  # noqa: BLE001 - a package we cannot read has no age to report
            started = None
        if started:
            state["oldest_age_seconds"] = max(0, int((timezone.now() - started).total_seconds()))
    try:
        from django_q.status import Stat

        stats = Stat.get_all()
        state["clusters"] = len(stats)
        state["workers"] = sum(len(s.workers or []) for s in stats)
    except Exception:  # noqa: BLE001 - no cluster stats (no cache, no cluster): shown as 0
        pass
    return state


def budget_overview(hours=24):
    """Per developer key (hashed): this hour's requests/logins/deferred and the share used, plus hourly series."""
    limits = budget.limits()
    now_hour = budget.hour_of()
    keys = defaultdict(lambda: {"request": 0, "login": 0, "deferred": 0, "series": defaultdict(int)})
    for key, kind, hour, count, deferred in budget.usage(hours):
        entry = keys[key]
        if hour == now_hour:
            entry[kind] += count
            entry["deferred"] += deferred
        if kind == "request":
            entry["series"][hour] += count
    overview = []
    for key, entry in sorted(keys.items()):
        series = [(now_hour - timedelta(hours=h), entry["series"].get(now_hour - timedelta(hours=h), 0))
                  for h in range(hours - 1, -1, -1)]
        overview.append({
            "key": key, "requests": entry["request"], "logins": entry["login"], "deferred": entry["deferred"],
            "request_share": entry["request"] / limits["request"], "login_share": entry["login"] / limits["login"],
            "series": series, "limit": limits["request"], "login_limit": limits["login"],
        })
    return overview


def connections_overview(now=None):
    """Connections behind schedule (worst first), paused, and those whose last cycle failed: a few queries for
    the whole host, not a few per connection."""
    from django.db.models import OuterRef, Subquery

    from .scheduling import due_after

    now = now or timezone.now()
    latest = SyncRun.objects.filter(connection=OuterRef("pk"), dry_run=False).order_by("-started_at")
    conns = (Connection.objects.select_related("tenant").order_by("tenant__slug", "name")
             .annotate(last_started=Subquery(latest.values("started_at")[:1]),
                       last_status=Subquery(latest.values("status")[:1]), last_error=Subquery(latest.values("error")[:1])))
    behind, failing, paused = [], [], []
    for conn in conns:
        if conn.last_started is None:
            continue
        if conn.enabled:
            due = due_after(conn, conn.last_started)
            minutes = max(0, int((now - due).total_seconds() // 60))
            if minutes:
                behind.append({"connection": conn, "last_started": conn.last_started, "due_at": due,
                               "behind_minutes": minutes})
        if conn.last_status == SyncRun.Status.FAILED:
            lines = (conn.last_error or "").strip().splitlines()
            error = redact_text(scrub(lines[-1] if lines else "", conn))  # the exception's own line, no traceback
            failing.append({"connection": conn, "started_at": conn.last_started, "error": error[:300]})
        if _paused(conn):
            paused.append(conn)
    behind.sort(key=lambda row: -row["behind_minutes"])
    return {"behind": behind, "failing": failing, "paused": paused}


def _paused(conn):
    try:
        from alerts.health import is_paused
    except ImportError:
        return False
    return is_paused(conn)


def webhook_rate(minutes=60):
    """Webhook deliveries stored per minute over the last `minutes` minutes: [(minute, count)], oldest first."""
    since = (timezone.now() - timedelta(minutes=minutes)).replace(second=0, microsecond=0)
    counts = dict(WebhookEvent.objects.filter(received_at__gte=since).annotate(minute=TruncMinute("received_at"))
                  .values("minute").annotate(n=Count("pk")).values_list("minute", "n"))
    return [(since + timedelta(minutes=m), counts.get(since + timedelta(minutes=m), 0)) for m in range(minutes)]


def warn_operators_about_budgets():
    """Mail the host operators once per developer key and hour when the key passed 80 % of its request budget."""
    from django.contrib.auth import get_user_model
    from django.core.cache import cache
    from django.core.mail import send_mail

    sent = 0
    for entry in budget_overview(hours=1):
        if entry["request_share"] < WARN_SHARE:
            continue
        marker = f"ml-connector:budget-warned:{entry['key']}:{budget.hour_of():%Y%m%d%H}"
        if not cache.add(marker, 1, timeout=2 * 3600):
            continue  # already told this hour
        recipients = list(get_user_model().objects.filter(is_superuser=True, is_active=True)
                          .exclude(email="").values_list("email", flat=True))
        if not recipients:
            continue
        send_mail(
            f"[ml-connector] BILL developer key at {entry['request_share']:.0%} of its hourly budget",
            f"Developer key {entry['key']} (hashed) has used {entry['requests']} of its {entry['limit']} BILL requests "
            f"this hour ({entry['logins']} logins of {entry['login_limit']}). Low-priority work (reference data, "
            f"reconciliation) is deferred past {budget.SHARES['low']:.0%}; payments and bills go on until "
            f"{budget.SHARES['high']:.0%}. If this happens every hour, the key serves too many connections: spread "
            "them over more developer keys or lengthen their schedules (README, Capacity).",
            settings.DEFAULT_FROM_EMAIL, recipients,
        )
        sent += 1
    return sent


def page_context(chart_width=24 * 12):
    """What the host page shows (see templates/admin/connector/host.html)."""
    budgets = budget_overview()
    for entry in budgets:
        top = max([entry["limit"]] + [count for _, count in entry["series"]])
        entry["request_pct"] = round(100 * entry["request_share"], 1)
        entry["warn_y"] = round(80 - 80 * WARN_SHARE * entry["limit"] / top, 1)
        entry["bars"] = [{"x": i * 12, "h": round(80 * count / top, 1), "y": round(80 - 80 * count / top, 1),
                          "hour": hour, "count": count, "over": count >= WARN_SHARE * entry["limit"]}
                         for i, (hour, count) in enumerate(entry["series"])]
    rate = webhook_rate(60)
    return {"budgets": budgets, "connections": connections_overview(), "queue": queue_state(),
            "webhooks_last_minute": rate[-1][1] if rate else 0, "webhooks_last_hour": sum(n for _, n in rate),
            "chart_width": chart_width}
