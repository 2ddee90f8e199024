"""The audit trail: an append-only timeline of what happened to each synced record, and why.

One `AuditEvent` per attempt, API exchange, state change and outcome. Records are referred to by
(record_type, record_id) so any model (vendor link, invoice, payment, webhook event) can have a timeline.
Secrets never get here: exchanges arrive already redacted (connector.clients.reporting).
"""

from django.db import models
from django.utils import timezone


class AuditEvent(models.Model):
    class Kind(models.TextChoices):
        ATTEMPT = "attempt", "attempt"
        EXCHANGE = "exchange", "API exchange"
        CHANGE = "change", "state change"
        OUTCOME = "outcome", "outcome"
        NOTE = "note", "note"

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "schedule"
        CLI = "cli", "command line"
        PERSON = "person", "person"
        WEBHOOK = "webhook", "webhook"
        REPLAY = "replay", "replay"

    connection = models.ForeignKey("connector.Connection", on_delete=models.CASCADE, related_name="audit_events")
    record_type = models.CharField(max_length=40, db_index=True)
    record_id = models.CharField(max_length=64, db_index=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    trigger = models.CharField(max_length=20, choices=Trigger.choices, blank=True)
    actor = models.CharField(max_length=150, blank=True, help_text="User name for person/replay triggers.")
    message = models.TextField(blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    # API exchange details (kind=exchange)
    system = models.CharField(max_length=10, blank=True)
    method = models.CharField(max_length=10, blank=True)
    path = models.CharField(max_length=500, blank=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    attempt = models.PositiveSmallIntegerField(null=True, blank=True)
    request_body = models.JSONField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["record_type", "record_id", "created_at"])]

    def __str__(self):
        return f"{self.record_type}:{self.record_id} {self.kind} {self.message[:60]}"


class ReplayJob(models.Model):
    """A replay of the failed step of some records of one connection, run by the task queue.

    `done` moves as the records are handled, so a person sees the progress in the admin; each record's own
    outcome goes on its timeline (AuditEvent), the counts and the records still failing stay here.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        DONE = "done", "done"
        FAILED = "failed", "failed"

    connection = models.ForeignKey("connector.Connection", on_delete=models.CASCADE, related_name="replay_jobs")
    record_type = models.CharField(
        max_length=40, help_text="Model of the records: invoicerecord, paymentrecord, vendorlink or webhookevent."
    )
    record_ids = models.JSONField(default=list, blank=True)
    requested_by = models.CharField(max_length=150, blank=True, help_text="User name of whoever asked for it.")
    trigger = models.CharField(max_length=20, choices=AuditEvent.Trigger.choices, default=AuditEvent.Trigger.REPLAY)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    succeeded = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0, help_text="Replayed but still failing.")
    nothing_to_do = models.PositiveIntegerField(default=0, help_text="Nothing to replay (e.g. already synced).")
    message = models.TextField(blank=True)
    results = models.JSONField(
        default=list, blank=True, help_text="Records replayed without success, and why (the first 500)."
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"replay #{self.pk} of {self.total} {self.record_type} ({self.get_status_display()})"

    @property
    def progress(self):
        return f"{self.done}/{self.total}"
