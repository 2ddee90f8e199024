"""Small HTTP endpoints: the health check."""

from django.db import connection as db_connection
from django.http import JsonResponse
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
        report["queue_pending"] = broker.queue_size()
        if not broker.ping():
            raise RuntimeError("broker did not answer")
    except Exception as exc:  # noqa: BLE001
        report["queue"] = f"failed: {exc.__class__.__name__}"
        status = 503
    return JsonResponse(report, status=status)
