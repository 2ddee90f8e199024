"""`{% reconciliation_panel conn %}`: the reconciliation state on the connection status page."""

from django import template

from reconcile.views import state

register = template.Library()


@register.inclusion_tag("admin/reconcile/_panel.html")
def reconciliation_panel(conn):
    return state(conn)
