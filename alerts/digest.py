"""Daily digests: each tenant's digest recipients get their own connections' open alerts and reconciliation
state; host operators get one cross-tenant digest. Scheduled daily (apps.py)."""

from django.urls import reverse

from connector.models import Connection, Tenant

from .mail import link, operator_recipients, send, tenant_recipients
from .models import Alert, ConnectionHealth


def _connection_lines(conn):
    from reconcile.views import latest_run

    lines = [f"{conn}:"]
    health = ConnectionHealth.objects.filter(connection=conn).first()
    if health and health.paused_at:
        lines.append(f"  PAUSED since {health.paused_at:%Y-%m-%d %H:%M}: {health.paused_reason}")
    elif health and health.consecutive_failures:
        lines.append(f"  {health.consecutive_failures} failed runs in a row: {health.last_error}")
    alerts = list(Alert.objects.filter(connection=conn, status=Alert.Status.OPEN).order_by("category", "-count"))
    for alert in alerts[:30]:
        lines.append(f"  - {alert.get_category_display()}: {alert.title}")
    if len(alerts) > 30:
        lines.append(f"  … and {len(alerts) - 30} more open alerts")
    run = latest_run(conn)
    if run:
        lines.append(f"  reconciliation {run.started_at:%Y-%m-%d %H:%M}: {run.difference_count} differences; open SAP "
                     f"{run.sap_open} / BILL {run.bill_open}")
    if len(lines) == 1:
        lines.append("  all clear")
    lines.append(f"  {link(reverse('admin:connector_connection_status', args=[conn.pk]))}")
    return lines, len(alerts)


def tenant_digest(tenant):
    to = tenant_recipients(tenant, digest=True)
    if not to:
        return None
    lines, total = [], 0
    for conn in Connection.objects.filter(tenant=tenant).order_by("name"):
        conn_lines, n = _connection_lines(conn)
        lines += conn_lines + [""]
        total += n
    return send(tenant=tenant, connection=None, category="digest",
                subject=f"{tenant.slug}: daily digest, {total} open alert{'s' if total != 1 else ''}",
                body="\n".join(lines) or "No connections.", to=to)


def operator_digest():
    to = operator_recipients()
    if not to:
        return None
    lines, total, paused = [], 0, 0
    for tenant in Tenant.objects.order_by("slug"):
        lines.append(f"== {tenant.slug}")
        for conn in Connection.objects.filter(tenant=tenant).order_by("name"):
            conn_lines, n = _connection_lines(conn)
            lines += conn_lines
            total += n
            paused += int(ConnectionHealth.objects.filter(connection=conn, paused_at__isnull=False).exists())
        lines.append("")
    return send(tenant=None, connection=None, category="operator-digest",
                subject=f"operator digest: {total} open alerts, {paused} paused connections", body="\n".join(lines),
                to=to)


def send_daily_digests():
    sent = [tenant_digest(t) for t in Tenant.objects.all()]
    operator = operator_digest()
    return f"tenant digests: {sum(1 for s in sent if s)}; operator digest: {'sent' if operator else 'no recipients'}"
