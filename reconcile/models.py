"""Reconciliation runs and the differences each found (history kept: every run keeps its own rows)."""

from django.db import models
from django.utils import timezone

from connector.models import Connection, InvoiceRecord, PaymentRecord


class ReconcileSetting(models.Model):
    """Per connection: whether the daily reconciliation runs (it does unless turned off here)."""

    connection = models.OneToOneField(Connection, on_delete=models.CASCADE, related_name="reconcile_setting")
    daily = models.BooleanField("reconcile daily", default=True)

    def __str__(self):
        return f"{self.connection}: daily {'on' if self.daily else 'off'}"


class ReconciliationRun(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running", "running"
        CLEAN = "clean", "SAP and BILL agree"
        DIFFERENCES = "differences", "differences found"
        FAILED = "failed", "could not read both sides"

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="reconciliations")
    trigger = models.CharField(max_length=20, default="cli", help_text="cli, schedule or person")
    actor = models.CharField(max_length=150, blank=True)
    since = models.DateField(help_text="SAP invoices updated and BILL bills/payments created since this day.")
    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RUNNING)
    invoices = models.PositiveIntegerField(default=0, help_text="SAP invoices compared")
    bills = models.PositiveIntegerField(default=0, help_text="BILL bills of ours compared")
    payments = models.PositiveIntegerField(default=0, help_text="BILL payments of our bills compared")
    difference_count = models.PositiveIntegerField(default=0)
    new_count = models.PositiveIntegerField(default=0, help_text="differences the previous run did not have")
    sap_open = models.DecimalField("open in SAP", max_digits=18, decimal_places=2, default=0)
    bill_open = models.DecimalField("open in BILL", max_digits=18, decimal_places=2, default=0)
    summary = models.JSONField(default=dict, blank=True, help_text="vendor totals, requests, held invoices")
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["connection", "-started_at"], name="recon_run_conn_started")]
        verbose_name = "reconciliation run"

    def __str__(self):
        return f"{self.connection} reconciliation {self.started_at:%Y-%m-%d %H:%M}"


class Difference(models.Model):
    """One thing on which SAP and BILL disagree, with both sides' ids and amounts and what to do."""

    class Kind(models.TextChoices):
        MISSING_BILL = "missing_bill", "SAP invoice without a BILL bill"
        ORPHAN_BILL = "orphan_bill", "BILL bill without a live SAP invoice"
        AMOUNT = "amount", "bill amount differs from the SAP invoice"
        DUE_DATE = "due_date", "bill due date differs from the SAP invoice"
        VENDOR = "vendor", "bill vendor differs from the SAP supplier's BILL vendor"
        ARCHIVED_BILL = "archived_bill", "bill archived in BILL while the SAP invoice is open"
        DUPLICATE_BILL = "duplicate_bill", "two or more bills for one SAP invoice"
        PAID_NOT_POSTED = "paid_not_posted", "paid in BILL, not posted in SAP"
        POSTED_NOT_PAID = "posted_not_paid", "posted in SAP, voided or failed in BILL"
        PAYMENT_AMOUNT = "payment_amount", "amount applied to an invoice differs"
        UNKNOWN_PAYMENT = "unknown_payment", "SAP payment with a BILL payment id nobody knows"
        OPEN_TOTAL = "open_total", "vendor's open amount differs"

    run = models.ForeignKey(ReconciliationRun, on_delete=models.CASCADE, related_name="differences")
    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="differences")
    kind = models.CharField(max_length=30, choices=Kind.choices, db_index=True)
    key = models.CharField(max_length=200, help_text="Stable identity: the same difference in the next run has it.")
    card_code = models.CharField("SAP supplier", max_length=50, blank=True)
    sap_ref = models.CharField("SAP id", max_length=100, blank=True, help_text="DocEntry/DocNum of the SAP document")
    bill_ref = models.CharField("BILL id", max_length=100, blank=True)
    sap_amount = models.DecimalField(max_digits=18, decimal_places=2, null=True, blank=True)
    bill_amount = models.DecimalField(max_digits=18, decimal_places=2, null=True, blank=True)
    detail = models.CharField(max_length=300, blank=True)
    action = models.TextField("what to do")
    invoice = models.ForeignKey(InvoiceRecord, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    payment = models.ForeignKey(PaymentRecord, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    expected_to_clear = models.BooleanField(
        default=False, help_text="The next sync is expected to fix it (e.g. the SAP invoice changed after the last "
                                 "sync): shown, but no alert.")
    is_new = models.BooleanField(default=True, help_text="The previous run of this connection did not have it.")

    class Meta:
        ordering = ["kind", "card_code", "sap_ref"]
        indexes = [models.Index(fields=["run", "kind"], name="recon_diff_run_kind")]

    def __str__(self):
        return f"{self.get_kind_display()}: {self.sap_ref or '-'} / {self.bill_ref or '-'}"

    @property
    def gap(self):
        if self.sap_amount is None and self.bill_amount is None:
            return None
        return (self.sap_amount or 0) - (self.bill_amount or 0)
