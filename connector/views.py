"""Small HTTP endpoints: the health check."""

from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.db import connection as db_connection
from django.http import JsonResponse
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET


@require_GET
def healthz(request):
    """200 when the database and the task queue answer; 503 with the failing part otherwise."""
    report = {"database": "ok", "queue": "ok"}
    status = 200
    try:
        with db_connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure means "not healthy"
        report["database"] = f"failed: {exc.__class__.__name__}"
        status = 503
    try:
        from django_q.brokers import get_broker

        broker = get_broker()
        if not broker.ping():
            raise RuntimeError("broker did not answer")
        from .host import queue_state

        queue = queue_state()
        report["queue_pending"] = queue["pending"]
        report["queue_backlog_age_seconds"] = queue["oldest_age_seconds"]  # the oldest waiting task; None: none
    except Exception as exc:  # noqa: BLE001
        report["queue"] = f"failed: {exc.__class__.__name__}"
        status = 503
    return JsonResponse(report, status=status)


@staff_member_required
def host_page(request):
    """The operators' page (superusers only): budgets, lagging and failing connections, queue, webhooks."""
    from django.contrib import admin

    from .host import page_context

    if not request.user.is_superuser:
        raise PermissionDenied("the host page is for host operators")
    context = {**admin.site.each_context(request), "title": "Host", **page_context()}
    return TemplateResponse(request, "admin/connector/host.html", context)
