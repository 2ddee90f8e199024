"""`{% alerts_panel conn %}`: failure streak, pause and open alerts on the connection status page."""

from django import template

from alerts.models import Alert, ConnectionHealth

register = template.Library()


@register.inclusion_tag("admin/alerts/_panel.html")
def alerts_panel(conn):
    return {"conn": conn, "health": ConnectionHealth.objects.filter(connection=conn).first(),
            "alerts": Alert.objects.filter(connection=conn, status=Alert.Status.OPEN).order_by("category", "-count")[:20]}
