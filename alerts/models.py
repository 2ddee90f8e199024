"""Who gets alerts (per tenant), when a connection counts as failing, and the state of every alert sent."""

from django.conf import settings
from django.db import models
from django.utils import timezone

from connector.models import Connection, Tenant


class AlertRecipient(models.Model):
    """An address of one tenant that receives that tenant's alerts (never another tenant's)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="alert_recipients")
    email = models.EmailField()
    name = models.CharField(max_length=200, blank=True)
    immediate = models.BooleanField("alert at once", default=True,
                                    help_text="An e-mail when a new problem opens (once per problem).")
    daily_digest = models.BooleanField(default=False, help_text="One e-mail a day with everything still open.")
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["tenant__slug", "email"]
        constraints = [models.UniqueConstraint(fields=["tenant", "email"], name="uniq_alert_recipient")]

    def __str__(self):
        return f"{self.email} ({self.tenant})"


class AlertPolicy(models.Model):
    """A tenant's thresholds; without a row the deployment defaults (settings) apply."""

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="alert_policy")
    warn_after = models.PositiveIntegerField(
        "warn after failures", default=settings.ALERT_WARN_AFTER_FAILURES,
        help_text="E-mail when a connection's login or sync failed this many times in a row.")
    pause_after = models.PositiveIntegerField(
        "pause after failures", default=settings.ALERT_PAUSE_AFTER_FAILURES,
        help_text="Pause the connection's schedule after this many failures in a row (0: never). A passing "
                  "'Test connection' resumes it.")
    problems = models.BooleanField("alert on new open problems", default=True)
    reconciliation = models.BooleanField("alert on new reconciliation differences", default=True)

    class Meta:
        verbose_name_plural = "alert policies"

    def __str__(self):
        return f"{self.tenant}: warn at {self.warn_after}, pause at {self.pause_after or 'never'}"

    @classmethod
    def for_tenant(cls, tenant):
        return cls.objects.filter(tenant=tenant).first() or cls(tenant=tenant)


class Alert(models.Model):
    """One problem a person was (or will be) told about. Open until its cause is gone; reopened if it returns."""

    class Category(models.TextChoices):
        PROBLEM = "problem", "open problem"
        FAILURES = "failures", "repeated failures"
        RECONCILIATION = "reconciliation", "reconciliation difference"

    class Status(models.TextChoices):
        OPEN = "open", "open"
        RESOLVED = "resolved", "resolved"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="alerts")
    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="alerts")
    category = models.CharField(max_length=20, choices=Category.choices)
    key = models.CharField(max_length=200, help_text="What makes two observations the same problem.")
    title = models.CharField(max_length=300)
    detail = models.TextField(blank=True)
    count = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN, db_index=True)
    opened_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    notified_at = models.DateTimeField(null=True, blank=True)
    times_opened = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["-last_seen_at"]
        constraints = [models.UniqueConstraint(fields=["connection", "category", "key"], name="uniq_alert")]

    def __str__(self):
        return self.title


class ConnectionHealth(models.Model):
    """Consecutive failed runs of a connection, and whether its schedule was paused because of them."""

    connection = models.OneToOneField(Connection, on_delete=models.CASCADE, related_name="health")
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    last_run_id = models.BigIntegerField(null=True, blank=True, editable=False)
    warned_at = models.DateTimeField(null=True, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    paused_reason = models.TextField(blank=True)
    resumed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "connection health"

    def __str__(self):
        return f"{self.connection}: {self.consecutive_failures} failures in a row{' (paused)' if self.paused_at else ''}"


class Notification(models.Model):
    """Every alert e-mail sent (or that could not be sent), for the record."""

    tenant = models.ForeignKey(Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="notifications")
    connection = models.ForeignKey(Connection, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    category = models.CharField(max_length=30)
    subject = models.CharField(max_length=300)
    recipients = models.TextField()
    body = models.TextField()
    sent_at = models.DateTimeField(default=timezone.now, db_index=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-sent_at"]

    def __str__(self):
        return self.subject
