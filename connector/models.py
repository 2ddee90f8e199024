"""Customers (tenants), their SAP/BILL connections, and the shared state the API clients need.

A `Connection` is one SAP Business One company plus one BILL organization of one tenant. Every secret is
stored encrypted (see fields.py) and is never shown back in the admin or printed.
"""

import re
import secrets
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from .fields import SecretCharField, SecretTextField

SAP_BASE_URL_RE = re.compile(r"^https?://[^/\s]+(:\d+)?(/[^\s]*)?/b1s/v[12]/?$")


def validate_no_userinfo(value):
    """A URL with `user:password@` would put a credential where every log and page shows URLs: refused."""
    from urllib.parse import urlsplit

    try:
        has_userinfo = "@" in (urlsplit(value or "").netloc or "")
    except ValueError:
        has_userinfo = False
    if has_userinfo:
        raise ValidationError("The URL must not contain a user name or password (user:password@): put the "
                              "credentials in their own fields.", code="url_userinfo")


def validate_sap_base_url(value):
    validate_no_userinfo(value)
    if not SAP_BASE_URL_RE.match(value or ""):
        raise ValidationError(
            "SAP Service Layer URL must look like https://host:50000/b1s/v1 (or /b1s/v2).", code="sap_base_url"
        )


def validate_bill_base_url(value):
    validate_no_userinfo(value)
    if not re.match(r"^https?://[^\s]+$", value or "") or "/v3" in value:
        raise ValidationError(
            "BILL base URL is the part before /v3, e.g. https://gateway.stage.bill.com/connect.", code="bill_base_url"
        )


def new_webhook_token():
    return secrets.token_urlsafe(24)


class Tenant(models.Model):
    """One customer of the hosting operator. Its staff see only its own data."""

    slug = models.SlugField(max_length=64, unique=True, help_text="Short name used on the command line, e.g. acme.")
    name = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self):
        return self.name or self.slug


class Connection(models.Model):
    """One SAP B1 company linked to one BILL organization, for one tenant."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="connections")
    name = models.SlugField(max_length=100, help_text="Connection name used by the CLI (unique per tenant).")
    enabled = models.BooleanField(default=True, help_text="Disabled connections are not polled.")

    # SAP Business One Service Layer
    sap_base_url = models.CharField(
        "SAP Service Layer URL", max_length=300, validators=[validate_sap_base_url],
        help_text="Full Service Layer root, ending in /b1s/v1 or /b1s/v2.",
    )
    sap_company_db = models.CharField("SAP company database", max_length=100)
    sap_username = models.CharField("SAP user", max_length=100)
    sap_password = SecretCharField("SAP password", max_length=200)
    sap_verify_tls = models.BooleanField("verify SAP TLS certificate", default=True)
    sap_ca_bundle = models.TextField(
        "SAP CA bundle (PEM)", blank=True,
        help_text="Certificate(s) that sign the on-premise Service Layer certificate, if not publicly trusted.",
    )
    sap_payment_account = models.CharField(
        "SAP payment account", max_length=50, blank=True,
        help_text="G/L account Code outgoing payments for BILL-paid bills are drawn on (TransferAccount).",
    )

    # BILL
    bill_base_url = models.CharField(
        "BILL API URL", max_length=300, validators=[validate_bill_base_url],
        help_text="e.g. https://gateway.stage.bill.com/connect (sandbox) or https://gateway.prod.bill.com/connect.",
    )
    bill_events_base_url = models.CharField(
        "BILL webhook service URL", max_length=300, blank=True, validators=[validate_no_userinfo],
        help_text="Empty: the API URL with its last part 'connect' replaced by 'connect-events'.",
    )
    bill_username = models.CharField("BILL user", max_length=200)
    bill_password = SecretCharField("BILL password", max_length=200)
    bill_organization_id = models.CharField("BILL organization id", max_length=40)
    bill_dev_key = SecretCharField("BILL developer key", max_length=200)
    bill_webhook_security_key = SecretCharField("BILL webhook security key", max_length=200, blank=True, default="")
    bill_webhook_previous_key = SecretCharField(
        "previous webhook security key", max_length=200, blank=True, default="",
        help_text="Still accepted for a grace period after a key rotation.",
    )
    bill_webhook_previous_key_until = models.DateTimeField(
        "previous webhook key accepted until", null=True, blank=True, editable=False,
    )
    # Issue 10: operator-only (connection file or a superuser); loopback/private addresses are refused without it.
    allow_private_network = models.BooleanField(
        "allow private network", default=False,
        help_text="Let this connection's SAP and BILL URLs resolve to loopback or private addresses (on-premise SAP "
                  "over a VPN, the sandbox). Set by the host operator only. Cloud metadata addresses stay refused.",
    )
    secrets_changed = models.JSONField(
        default=dict, blank=True, editable=False, help_text="When each stored secret was last set (never the value).",
    )
    last_test = models.JSONField(
        default=dict, blank=True, editable=False, help_text="Outcome of the last 'Test connection' (words only).",
    )
    bill_webhook_subscription_id = models.CharField(max_length=100, blank=True)
    webhook_idempotency_key = models.CharField(
        max_length=40, blank=True, editable=False,
        help_text="X-Idempotent-Key of a subscription request in progress: re-sent on retry so BILL never makes two.",
    )
    cancel_sap_payment_on_void = models.BooleanField(
        default=False, help_text="When BILL voids a payment already posted to SAP, cancel the SAP payment too "
                                 "(otherwise the payment is flagged for a person).",
    )
    webhook_token = models.CharField(max_length=64, unique=True, default=new_webhook_token, editable=False)

    # Polling
    schedule_minutes = models.PositiveIntegerField(null=True, blank=True, default=15)
    schedule_cron = models.CharField(max_length=100, blank=True, help_text="Cron expression; overrides minutes.")
    sync_from = models.DateField(
        default=timezone.localdate, help_text="Earliest SAP update date read on the first poll."
    )
    invoice_extra_filter = models.CharField(
        max_length=500, blank=True,
        help_text="Extra OData $filter ANDed to the invoice query, e.g. U_Approved eq 'Y'.",
    )
    sap_currency_codes = models.JSONField(
        "SAP currency codes", default=dict, blank=True,
        help_text='SAP (B1) currency code → ISO 4217 code, e.g. {"$": "USD", "Can": "CAD"}. Codes of three capital '
                  'letters are taken as ISO already; "$" is USD unless mapped otherwise.',
    )
    coding = models.JSONField(
        "coding to BILL classifications", default=dict, blank=True,
        help_text='Which SAP source feeds which BILL classification, e.g. {"department": "dimension1", '
                  '"location": "dimension2", "class": "project", "job": "branch"}. Empty: the first cost-center '
                  'code of a line to the department (see README, "Coding to classes, locations and jobs").',
    )
    sap_company = models.JSONField(
        "SAP company settings", default=dict, blank=True, editable=False,
        help_text="Read from SAP (AdminInfo, BusinessPlaces) with the reference data: local currency, branches.",
    )

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant__slug", "name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="uniq_connection_name_per_tenant")]

    def __str__(self):
        return f"{self.tenant.slug}/{self.name}"

    LOGIN_FIELDS = {
        "sap": ("sap_base_url", "sap_company_db", "sap_username", "sap_password", "sap_verify_tls", "sap_ca_bundle"),
        "bill": ("bill_base_url", "bill_username", "bill_password", "bill_organization_id", "bill_dev_key"),
    }

    SECRET_FIELDS = ("sap_password", "bill_password", "bill_dev_key", "bill_webhook_security_key")

    def __repr__(self):
        return f"<Connection {self.pk}: {self}>"  # never the field values

    def save(self, *args, **kwargs):
        """Saving new login details drops that side's stored session: the next call logs in with them.

        Also notes when each secret changed (shown as "set, last changed …"), and keeps a replaced webhook
        security key valid for a grace period (WEBHOOK_PREVIOUS_KEY_GRACE_HOURS) while BILL switches keys.
        """
        from django.conf import settings

        stale, old = [], None
        fields = {f for names in self.LOGIN_FIELDS.values() for f in names} | set(self.SECRET_FIELDS)
        if self.pk is not None:
            old = type(self).objects.filter(pk=self.pk).values(*sorted(fields)).first()
            if old is not None:
                stale = [side for side, names in self.LOGIN_FIELDS.items()
                         if any(old[name] != getattr(self, name) for name in names)]
        now = timezone.now()
        touched = []
        changed = dict(self.secrets_changed or {})
        for name in self.SECRET_FIELDS:
            before = old[name] if old is not None else ""
            if getattr(self, name) != before:
                if getattr(self, name):
                    changed[name] = now.isoformat()
                else:
                    changed.pop(name, None)
                touched.append("secrets_changed")
                if name == "bill_webhook_security_key" and before:
                    self.bill_webhook_previous_key = before
                    self.bill_webhook_previous_key_until = now + timedelta(
                        hours=getattr(settings, "WEBHOOK_PREVIOUS_KEY_GRACE_HOURS", 24))
                    touched += ["bill_webhook_previous_key", "bill_webhook_previous_key_until"]
        self.secrets_changed = changed
        if kwargs.get("update_fields") is not None and touched:
            kwargs["update_fields"] = sorted(set(kwargs["update_fields"]) | set(touched))
        super().save(*args, **kwargs)
        if stale:
            RemoteSession.objects.filter(connection=self, system__in=stale).delete()

    def previous_webhook_key(self, now=None):
        """The replaced webhook key while its grace period lasts, else ''."""
        until = self.bill_webhook_previous_key_until
        if not self.bill_webhook_previous_key or until is None or until <= (now or timezone.now()):
            return ""
        return self.bill_webhook_previous_key

    def secret_state(self, name):
        """'set, last changed 2026-12-02 01:05 UTC' / 'not set': all anyone is ever shown of a secret."""
        if not getattr(self, name):
            return "not set"
        when = (self.secrets_changed or {}).get(name)
        if not when:
            return "set"
        from datetime import datetime

        return f"set, last changed {datetime.fromisoformat(when):%Y-%m-%d %H:%M} UTC"

    @property
    def bill_events_url(self):
        from .clients.bill import events_base_url

        if self.bill_events_base_url:
            return self.bill_events_base_url.rstrip("/")
        return events_base_url(self.bill_base_url)

    @property
    def sap_api_version(self):
        return "v2" if self.sap_base_url.rstrip("/").endswith("v2") else "v1"

    @property
    def limiter_key(self):
        """Requests to one BILL organization share one 3-in-flight budget, whichever connection sends them."""
        return f"bill:{self.bill_organization_id}"


class RemoteSession(models.Model):
    """A login session to SAP or BILL, shared by every worker of the deployment.

    Re-using one session per connection keeps us under BILL's 200 logins/hour and SAP's "login is heavy".
    `generation` lets a worker that saw an expired session re-login only if nobody else already did.
    """

    SAP = "sap"
    BILL = "bill"
    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="remote_sessions")
    system = models.CharField(max_length=10, choices=[(SAP, "SAP B1"), (BILL, "BILL")])
    token = SecretTextField(blank=True, default="")
    generation = models.PositiveIntegerField(default=0)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["connection", "system"], name="uniq_session_per_system")]

    def __str__(self):
        return f"{self.connection} {self.system} session #{self.generation}"


class ConcurrencySlot(models.Model):
    """One of N leases for a key (e.g. 'bill:<org>'), claimed with a compare-and-set UPDATE.

    Works on SQLite and PostgreSQL without holding a transaction across the HTTP call; a crashed holder's
    lease simply expires.
    """

    key = models.CharField(max_length=120)
    slot_no = models.PositiveSmallIntegerField()
    holder = models.CharField(max_length=64, null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["key", "slot_no"], name="uniq_slot")]
        indexes = [models.Index(fields=["key", "lease_until"])]

    def __str__(self):
        return f"{self.key}#{self.slot_no}"


class RateLimitBlock(models.Model):
    """BILL said BDC_1144 (hourly request cap) for this developer key: no calls until `until`."""

    key = models.CharField(max_length=120, unique=True)
    until = models.DateTimeField()
    reason = models.CharField(max_length=300)

    def __str__(self):
        return f"{self.key} until {self.until:%H:%M}"


class SyncRun(models.Model):
    """One sync cycle (or one step of it) of one connection: when, why, and what came of it."""

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "schedule"
        CLI = "cli", "command line"
        PERSON = "person", "person (admin)"
        WEBHOOK = "webhook", "webhook"
        REPLAY = "replay", "replay"

    class Status(models.TextChoices):
        RUNNING = "running", "running"
        OK = "ok", "completed"
        PARTIAL = "partial", "completed with failed records"
        FAILED = "failed", "failed"

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="sync_runs")
    trigger = models.CharField(max_length=20, choices=Trigger.choices, default=Trigger.SCHEDULE)
    steps = models.CharField(max_length=100, help_text="Steps run, comma-separated.")
    dry_run = models.BooleanField(default=False)
    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RUNNING)
    summary = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self):
        return f"{self.connection} {self.steps} {self.started_at:%Y-%m-%d %H:%M}"

    @property
    def summary_text(self):
        """'bills: read 20, created 13, held 6 · payments: …' (zero counts left out)."""
        parts = []
        for step, counts in (self.summary or {}).items():
            if isinstance(counts, dict):
                shown = ", ".join(f"{k} {v}" for k, v in counts.items() if v)
                parts.append(f"{step}: {shown or 'nothing to do'}")
        return " · ".join(parts)


class SyncCursor(models.Model):
    """How far a connection has read a stream (e.g. SAP invoices by UpdateDate/UpdateTime), in SAP's own terms."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="cursors")
    stream = models.CharField(max_length=40)
    value = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["connection", "stream"], name="uniq_cursor")]

    def __str__(self):
        return f"{self.connection} {self.stream} {self.value}"


class InvoiceRecord(models.Model):
    """Our ledger of one SAP purchase invoice and the BILL bill made from it (never more than one)."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        HELD = "held", "held: needs a mapping or fix"
        CREATING = "creating", "creating in BILL"
        SYNCED = "synced", "synced"
        FAILED = "failed", "failed"
        FLAGGED = "flagged", "needs a person"
        ARCHIVED = "archived", "cancelled in SAP, archived in BILL"
        SKIPPED = "skipped", "skipped"

    # what has to happen next in BILL for this record
    class Step(models.TextChoices):
        NONE = "", "nothing"
        CREATE = "create", "create bill"
        UPDATE = "update", "update bill"
        ARCHIVE = "archive", "archive bill"
        CLOSE = "close", "check the bill of an invoice closed in SAP"

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="invoices")
    doc_entry = models.PositiveIntegerField("SAP DocEntry")
    doc_num = models.CharField("SAP DocNum", max_length=30, blank=True)
    card_code = models.CharField("SAP supplier", max_length=50)
    card_name = models.CharField(max_length=200, blank=True)
    invoice_number = models.CharField(max_length=100, blank=True)
    doc_date = models.DateField(null=True, blank=True)
    due_date = models.DateField(null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    doc_total = models.DecimalField(max_digits=18, decimal_places=2, default=0)
    branch_id = models.IntegerField("SAP branch (BPLID)", null=True, blank=True)
    branch_name = models.CharField("SAP branch", max_length=100, blank=True)
    sap_updated = models.CharField("SAP update stamp", max_length=30, blank=True)
    sap_state = models.CharField(max_length=20, blank=True, help_text="open / closed / cancelled in SAP")
    document = models.JSONField(default=dict, blank=True, help_text="The SAP invoice as last read.")
    coded = models.JSONField(null=True, blank=True, help_text="The BILL bill as last sent (or planned).")
    coded_hash = models.CharField(max_length=64, blank=True)
    synced_hash = models.CharField(max_length=64, blank=True)
    bill_id = models.CharField("BILL bill id", max_length=40, blank=True, db_index=True)
    bill_payment_status = models.CharField(max_length=20, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True)
    next_step = models.CharField(max_length=20, choices=Step.choices, default=Step.CREATE, blank=True)
    last_error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    create_attempted_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=64, blank=True, default="",
                                  help_text="Lease token of the run creating the bill (status creating).")
    synced_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["-updated_at"]
        constraints = [models.UniqueConstraint(fields=["connection", "doc_entry"], name="uniq_invoice_record")]
        indexes = [models.Index(fields=["connection", "status"], name="invoice_conn_status")]
        verbose_name = "invoice"

    def __str__(self):
        return f"A/P invoice {self.doc_num or self.doc_entry} ({self.card_code})"


class WebhookEvent(models.Model):
    """A BILL webhook notification whose signature verified: stored first, processed later (exactly once)."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        PROCESSED = "processed", "processed"
        IGNORED = "ignored", "ignored (not relevant)"
        FAILED = "failed", "failed"

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="webhook_events")
    event_id = models.CharField(max_length=100)
    event_type = models.CharField(max_length=60)
    entity_id = models.CharField(max_length=60, blank=True, db_index=True)
    payload = models.JSONField(default=dict)
    signed_with = models.CharField(max_length=10, blank=True, help_text="current or previous security key")
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-received_at"]
        constraints = [models.UniqueConstraint(fields=["connection", "event_id"], name="uniq_webhook_event")]

    def __str__(self):
        return f"{self.event_type} {self.event_id}"


class PaymentRecord(models.Model):
    """Our ledger of one BILL payment and the SAP outgoing payment (VendorPayments) posted for it."""

    class Status(models.TextChoices):
        WAITING = "waiting", "waiting for BILL to pay"
        PENDING = "pending", "pending"
        POSTING = "posting", "posting to SAP"
        POSTED = "posted", "posted to SAP"
        NOT_PAID = "not_paid", "cancelled/voided/failed in BILL: nothing posted"
        REVERSED = "reversed", "voided in BILL, SAP payment cancelled"
        FAILED = "failed", "failed"
        FLAGGED = "flagged", "needs a person"

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="payments")
    bill_payment_id = models.CharField("BILL payment id", max_length=40)
    vendor_id = models.CharField(max_length=40, blank=True)
    card_code = models.CharField("SAP supplier", max_length=50, blank=True)
    amount = models.DecimalField(max_digits=18, decimal_places=2, default=0)
    process_date = models.DateField(null=True, blank=True)
    bill_status = models.CharField("BILL status", max_length=40, blank=True)
    allocations = models.JSONField(default=list, blank=True, help_text="[{bill_id, doc_entry, amount}]")
    sap_doc_entry = models.PositiveIntegerField("SAP payment DocEntry", null=True, blank=True)
    sap_doc_num = models.CharField("SAP payment DocNum", max_length=30, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True)
    last_error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    post_attempted_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=64, blank=True, default="",
                                  help_text="Lease token of the worker handling this payment right now.")
    recheck_at = models.DateTimeField(null=True, blank=True,
                                      help_text="Another handler saw news while this one was busy: handle again.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["-updated_at"]
        constraints = [models.UniqueConstraint(fields=["connection", "bill_payment_id"], name="uniq_payment_record")]
        verbose_name = "payment"

    def __str__(self):
        return f"BILL payment {self.bill_payment_id}"


class Membership(models.Model):
    """A staff user's tenant and role. Users without one see no tenant data; superusers (host operators) see all."""

    class Role(models.TextChoices):
        VIEWER = "viewer", "viewer (read only)"
        EDITOR = "editor", "accounting editor"

    user = models.OneToOneField("auth.User", on_delete=models.CASCADE, related_name="membership")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.VIEWER)

    def __str__(self):
        return f"{self.user} @ {self.tenant} ({self.role})"


class Lease(models.Model):
    """A named lease held by one process: the one-cycle-per-connection lock, or a holder of record claims.

    It knows when its holder died: it expires `expires_at` unless the holder's heartbeat renews it, and on
    the holder's own host a lease whose process is gone is dead at once (see connector/leases.py).
    """

    key = models.CharField(max_length=160, unique=True)
    token = models.CharField(max_length=64, db_index=True)
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    expires_at = models.DateTimeField()
    acquired_at = models.DateTimeField(default=timezone.now)

    def __str__(self):
        return f"{self.key} held by {self.host}:{self.pid} until {self.expires_at:%H:%M:%S}"


class BudgetUse(models.Model):
    """Requests (or logins) one BILL developer key spent in one clock hour, across every process of the host.

    BILL's limits are per developer key (20,000 requests and 200 logins an hour), shared by every organization
    the key serves. `key` is a hash of the developer key, never the key itself (connector/budget.py).
    """

    key = models.CharField(max_length=80)
    kind = models.CharField(max_length=10, choices=[("request", "request"), ("login", "login")])
    hour = models.DateTimeField(help_text="The clock hour (UTC) the count belongs to.")
    count = models.PositiveIntegerField(default=0)
    deferred = models.PositiveIntegerField(default=0, help_text="Low-priority calls put off to the next hour.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["key", "kind", "hour"], name="uniq_budget_hour")]
        indexes = [models.Index(fields=["hour"])]

    def __str__(self):
        return f"{self.key} {self.kind} {self.hour:%Y-%m-%d %H}:00 {self.count}"


class CreditMemoRecord(models.Model):
    """Our ledger of one SAP A/P credit memo (PurchaseCreditNotes) and the BILL vendor credit made from it."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        HELD = "held", "held: needs a mapping or fix"
        CREATING = "creating", "creating in BILL"
        SYNCED = "synced", "synced"
        FAILED = "failed", "failed"
        FLAGGED = "flagged", "needs a person"
        ARCHIVED = "archived", "cancelled in SAP, archived in BILL"
        SKIPPED = "skipped", "skipped"

    class Step(models.TextChoices):
        NONE = "", "nothing"
        CREATE = "create", "create vendor credit"
        APPLY = "apply", "apply the credit to its invoice's bill"
        ARCHIVE = "archive", "archive vendor credit"

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="credit_memos")
    doc_entry = models.PositiveIntegerField("SAP DocEntry")
    doc_num = models.CharField("SAP DocNum", max_length=30, blank=True)
    card_code = models.CharField("SAP supplier", max_length=50)
    card_name = models.CharField(max_length=200, blank=True)
    reference_number = models.CharField(max_length=100, blank=True)
    credit_date = models.DateField(null=True, blank=True)
    doc_total = models.DecimalField(max_digits=18, decimal_places=2, default=0)
    base_entry = models.PositiveIntegerField("based on SAP invoice (DocEntry)", null=True, blank=True)
    sap_updated = models.CharField("SAP update stamp", max_length=30, blank=True)
    sap_state = models.CharField(max_length=20, blank=True, help_text="open / closed / cancelled in SAP")
    document = models.JSONField(default=dict, blank=True, help_text="The SAP credit memo as last read.")
    coded = models.JSONField(null=True, blank=True, help_text="The BILL vendor credit as last sent (or planned).")
    credit_id = models.CharField("BILL vendor credit id", max_length=40, blank=True, db_index=True)
    applied_bill_id = models.CharField("applied to BILL bill", max_length=40, blank=True)
    applied_amount = models.DecimalField(max_digits=18, decimal_places=2, default=0)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True)
    next_step = models.CharField(max_length=20, choices=Step.choices, default=Step.CREATE, blank=True)
    last_error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    create_attempted_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=64, blank=True, default="",
                                  help_text="Lease token of the run creating the vendor credit (status creating).")
    synced_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["-updated_at"]
        constraints = [models.UniqueConstraint(fields=["connection", "doc_entry"], name="uniq_credit_memo_record")]
        verbose_name = "credit memo"

    def __str__(self):
        return f"A/P credit memo {self.doc_num or self.doc_entry} ({self.card_code})"


class AttachmentRecord(models.Model):
    """One file of an SAP invoice's attachment entry (Attachments2 line) and the BILL bill document made from it."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        UPLOADING = "uploading", "uploading to BILL"
        PROCESSING = "processing", "BILL is processing the upload"
        UPLOADED = "uploaded", "uploaded"
        FAILED = "failed", "failed: retried"
        REFUSED = "refused", "not uploaded: needs a person"

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="attachments")
    invoice = models.ForeignKey(InvoiceRecord, on_delete=models.CASCADE, related_name="attachments")
    attachment_entry = models.PositiveIntegerField("SAP AttachmentEntry")
    line_num = models.PositiveIntegerField(default=0)
    file_name = models.CharField(max_length=260, help_text="FileName.FileExtension as SAP lists it.")
    size = models.BigIntegerField(null=True, blank=True)
    bill_id = models.CharField("BILL bill id", max_length=40, blank=True)
    upload_id = models.CharField("BILL upload id (0du…)", max_length=40, blank=True)
    document_id = models.CharField("BILL document id (00h…)", max_length=40, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True)
    last_error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    upload_attempted_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["invoice", "attachment_entry", "line_num"]
        constraints = [models.UniqueConstraint(fields=["invoice", "attachment_entry", "line_num"],
                                               name="uniq_attachment_record")]
        verbose_name = "invoice attachment"

    def __str__(self):
        return f"{self.file_name} of {self.invoice}"
