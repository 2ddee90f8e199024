"""Send one alert e-mail through Django's mail settings and keep a Notification row of it."""

import logging

from django.conf import settings
from django.core.mail import EmailMessage

from .models import AlertRecipient, Notification

log = logging.getLogger(__name__)


def tenant_recipients(tenant, *, digest=False):
    rows = AlertRecipient.objects.filter(tenant=tenant, active=True)
    rows = rows.filter(daily_digest=True) if digest else rows.filter(immediate=True)
    return sorted(set(rows.values_list("email", flat=True)))


def operator_recipients():
    if settings.ALERT_OPERATOR_EMAILS:
        return sorted(set(settings.ALERT_OPERATOR_EMAILS))
    from django.contrib.auth.models import User

    return sorted(set(User.objects.filter(is_superuser=True, is_active=True).exclude(email="")
                      .values_list("email", flat=True)))


def link(path):
    return f"{settings.PUBLIC_BASE_URL}{path}"


def send(*, tenant, connection, category, subject, body, to):
    """Send to `to` (one message, each address in Bcc so tenants' staff do not see each other). Never raises."""
    subject = f"[ml-connector] {subject}"[:300]
    if not to:
        return None
    note = Notification(tenant=tenant, connection=connection, category=category, subject=subject,
                        recipients=", ".join(to), body=body)
    try:
        EmailMessage(subject, body, settings.ALERT_FROM_EMAIL, to=[], bcc=to).send()
    except Exception as exc:  # noqa: BLE001 - a mail server problem is recorded, never breaks a sync
        log.warning("alert mail %r could not be sent: %s", subject, exc)
        note.error = f"{exc.__class__.__name__}: {exc}"[:2000]
    note.save()
    return note
