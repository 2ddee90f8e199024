"""Reference data of both sides, the mappings between them, and vendor links.

The mapping lives on the SAP row: each SAP G/L account points at the BILL chart-of-accounts entry its
amounts are coded to, each SAP cost centre / distribution rule at a BILL department. Reference rows are
never deleted by a refresh (mappings hang off them); a row that disappeared is marked `missing`.
"""

from django.db import models
from django.utils import timezone

from connector.models import Connection


class ReferenceRow(models.Model):
    connection = models.ForeignKey(Connection, on_delete=models.CASCADE)
    name = models.CharField(max_length=200, blank=True)
    missing = models.BooleanField(default=False, help_text="No longer returned by the remote system.")
    refreshed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        abstract = True


class BillReferenceRow(ReferenceRow):
    """A BILL classification a mapping can point at; usable unless archived in BILL or gone."""

    bill_id = models.CharField("BILL id", max_length=40)
    archived = models.BooleanField(default=False)

    class Meta:
        abstract = True

    @property
    def usable(self):
        return not (self.archived or self.missing)

    @property
    def flag(self):
        return " (archived)" if self.archived else " (missing)" if self.missing else ""


class BillAccount(BillReferenceRow):
    """A BILL chart-of-accounts entry (v3 classifications/chart-of-accounts)."""

    number = models.CharField(max_length=40, blank=True)
    account_type = models.CharField(max_length=40, blank=True)

    class Meta:
        ordering = ["number", "name"]
        constraints = [models.UniqueConstraint(fields=["connection", "bill_id"], name="uniq_bill_account")]
        verbose_name = "BILL account"

    def __str__(self):
        return f"{self.number} {self.name}{self.flag}".strip()


class BillDepartment(BillReferenceRow):
    short_name = models.CharField(max_length=60, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["connection", "bill_id"], name="uniq_bill_department")]
        verbose_name = "BILL department"

    def __str__(self):
        return f"{self.name}{self.flag}"


class MappingStatus(models.TextChoices):
    UNMAPPED = "unmapped", "unmapped"
    OK = "ok", "mapped"
    BROKEN = "broken", "mapped to an archived or missing BILL object"


class MappedSapRow(ReferenceRow):
    """A SAP row that maps to a BILL object (`target_field`), with the mapping's status."""

    target_field = ""
    mapping_status = models.CharField(max_length=20, choices=MappingStatus.choices, default=MappingStatus.UNMAPPED)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True

    def refresh_status(self):
        self.mapping_status = mapping_status_for(getattr(self, self.target_field))
        return self.mapping_status


class SapAccount(MappedSapRow):
    """A postable SAP G/L account (ChartOfAccounts, ActiveAccount=tYES) and the BILL account it maps to."""

    code = models.CharField("SAP code", max_length=50, help_text="ChartOfAccounts Code (used on document lines).")
    format_code = models.CharField("account number", max_length=50, blank=True)
    account_type = models.CharField(max_length=30, blank=True)
    bill_account = models.ForeignKey(
        BillAccount, null=True, blank=True, on_delete=models.SET_NULL, related_name="sap_accounts",
        verbose_name="BILL account",
    )
    target_field = "bill_account"

    class Meta:
        ordering = ["format_code", "code"]
        constraints = [models.UniqueConstraint(fields=["connection", "code"], name="uniq_sap_account")]
        verbose_name = "SAP G/L account mapping"

    def __str__(self):
        return f"{self.format_code or self.code} {self.name}"

    @property
    def label(self):
        return f"SAP account {self.format_code or self.code}"


class SapCostCenter(MappedSapRow):
    """A SAP cost centre (ProfitCenters) or distribution rule (DistributionRules) and the BILL department it maps to.

    Document lines carry distribution-rule codes in CostingCode..CostingCode5; every cost centre has a direct
    rule with the same code, so one table holds both.
    """

    code = models.CharField("SAP code", max_length=50)
    dimension = models.PositiveSmallIntegerField(default=1)
    is_rule = models.BooleanField("indirect distribution rule", default=False)
    active = models.BooleanField(default=True)
    bill_department = models.ForeignKey(
        BillDepartment, null=True, blank=True, on_delete=models.SET_NULL, related_name="sap_cost_centers",
        verbose_name="BILL department",
    )
    target_field = "bill_department"

    class Meta:
        ordering = ["dimension", "code"]
        constraints = [models.UniqueConstraint(fields=["connection", "code"], name="uniq_sap_cost_center")]
        verbose_name = "SAP cost center mapping"

    def __str__(self):
        return f"{self.code} {self.name}"

    @property
    def label(self):
        return f"SAP cost center {self.code}"


def mapping_status_for(target):
    if target is None:
        return MappingStatus.UNMAPPED
    return MappingStatus.OK if target.usable else MappingStatus.BROKEN


class BillDimensionRow(BillReferenceRow):
    """A BILL location, accounting class or job (v3 classifications/<type>): what a configured SAP dimension,
    project or branch maps to (api-facts-addendum §4)."""

    short_name = models.CharField(max_length=60, blank=True)

    class Meta:
        abstract = True
        ordering = ["name"]

    def __str__(self):
        return f"{self.name}{self.flag}"


class BillLocation(BillDimensionRow):
    class Meta(BillDimensionRow.Meta):
        constraints = [models.UniqueConstraint(fields=["connection", "bill_id"], name="uniq_bill_location")]
        verbose_name = "BILL location"


class BillClass(BillDimensionRow):
    class Meta(BillDimensionRow.Meta):
        constraints = [models.UniqueConstraint(fields=["connection", "bill_id"], name="uniq_bill_class")]
        verbose_name = "BILL accounting class"
        verbose_name_plural = "BILL accounting classes"


class BillJob(BillDimensionRow):
    class Meta(BillDimensionRow.Meta):
        constraints = [models.UniqueConstraint(fields=["connection", "bill_id"], name="uniq_bill_job")]
        verbose_name = "BILL job"


class SapDimensionValue(MappedSapRow):
    """A value of the SAP source a connection codes to a BILL location / class / job: a cost center of one
    dimension (1-5), an SAP project (`ProjectCode`) or an SAP branch (BPLID), per the connection's `coding`."""

    code = models.CharField("SAP code", max_length=50)
    source = models.CharField(max_length=20, help_text="dimension1..dimension5, project or branch")
    active = models.BooleanField(default=True)

    class Meta:
        abstract = True
        ordering = ["source", "code"]

    def __str__(self):
        return f"{self.code} {self.name}".strip()

    @property
    def label(self):
        return f"SAP {source_words(self.source)} {self.code}"


def source_words(source):
    if source.startswith("dimension"):
        return f"cost center (dimension {source[-1]})"
    return {"project": "project", "branch": "branch"}.get(source, source)


class SapLocationMapping(SapDimensionValue):
    bill_location = models.ForeignKey(BillLocation, null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="sap_rows", verbose_name="BILL location")
    target_field = "bill_location"

    class Meta(SapDimensionValue.Meta):
        constraints = [models.UniqueConstraint(fields=["connection", "code"], name="uniq_sap_location_mapping")]
        verbose_name = "SAP → BILL location mapping"


class SapClassMapping(SapDimensionValue):
    bill_class = models.ForeignKey(BillClass, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="sap_rows", verbose_name="BILL accounting class")
    target_field = "bill_class"

    class Meta(SapDimensionValue.Meta):
        constraints = [models.UniqueConstraint(fields=["connection", "code"], name="uniq_sap_class_mapping")]
        verbose_name = "SAP → BILL accounting class mapping"


class SapJobMapping(SapDimensionValue):
    bill_job = models.ForeignKey(BillJob, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="sap_rows", verbose_name="BILL job")
    target_field = "bill_job"

    class Meta(SapDimensionValue.Meta):
        constraints = [models.UniqueConstraint(fields=["connection", "code"], name="uniq_sap_job_mapping")]
        verbose_name = "SAP → BILL job mapping"


# kind (CSV, connection `coding` key) -> (SAP mapping model, BILL model, BILL line classification key)
DIMENSION_KINDS = {
    "location": (SapLocationMapping, BillLocation, "locationId"),
    "class": (SapClassMapping, BillClass, "accountingClassId"),
    "job": (SapJobMapping, BillJob, "jobId"),
}
BILL_CLASSIFICATION_PATHS = {"location": "locations", "class": "accounting-classes", "job": "jobs"}


class SapTaxCode(ReferenceRow):
    """A SAP tax code (VatGroups): the account SAP posts its tax to, which the bill's tax line is coded through."""

    code = models.CharField(max_length=20)
    rate = models.DecimalField(max_digits=9, decimal_places=4, default=0)
    tax_account = models.CharField(max_length=50, blank=True)

    class Meta:
        ordering = ["code"]
        constraints = [models.UniqueConstraint(fields=["connection", "code"], name="uniq_sap_tax_code")]
        verbose_name = "SAP tax code"

    def __str__(self):
        return f"{self.code} {self.name}"


class SapExpenseType(ReferenceRow):
    """A SAP additional expense (freight etc.) and the expense account SAP posts it to."""

    code = models.CharField(max_length=20)
    expense_account = models.CharField(max_length=50, blank=True)

    class Meta:
        ordering = ["code"]
        constraints = [models.UniqueConstraint(fields=["connection", "code"], name="uniq_sap_expense_type")]
        verbose_name = "SAP freight / additional expense"

    def __str__(self):
        return f"{self.code} {self.name}"


class ReferenceRefresh(models.Model):
    """When reference data of a connection was last fetched (and whether it worked)."""

    connection = models.OneToOneField(Connection, on_delete=models.CASCADE, related_name="reference_refresh")
    refreshed_at = models.DateTimeField(null=True, blank=True)
    counts = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)

    def __str__(self):
        return f"{self.connection} reference data {self.refreshed_at or 'never'}"


class VendorLink(models.Model):
    """One SAP supplier and the BILL vendor it is aligned with."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        CREATING = "creating", "creating in BILL"
        LINKED = "linked", "linked"
        REVIEW = "review", "needs a person: ambiguous match"
        INVALID = "invalid", "invalid in SAP"
        FAILED = "failed", "failed"

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="vendor_links")
    card_code = models.CharField("SAP supplier", max_length=50)
    card_name = models.CharField("SAP name", max_length=200, blank=True)
    bill_vendor_id = models.CharField("BILL vendor id", max_length=40, blank=True)
    bill_vendor_name = models.CharField("BILL name", max_length=200, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True)
    last_error = models.TextField(blank=True)
    match_reason = models.CharField(max_length=200, blank=True)
    candidates = models.JSONField(default=list, blank=True, help_text="BILL vendors that could be this supplier.")
    create_new = models.BooleanField(
        "create a new BILL vendor", default=False,
        help_text="A person decided none of the BILL candidates is this supplier: create a new vendor.",
    )
    sap_data = models.JSONField(default=dict, blank=True, help_text="The SAP fields last sent to BILL.")
    sap_fingerprint = models.CharField(max_length=64, blank=True)
    synced_fingerprint = models.CharField(max_length=64, blank=True)
    create_attempted_at = models.DateTimeField(null=True, blank=True)
    synced_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["card_code"]
        constraints = [models.UniqueConstraint(fields=["connection", "card_code"], name="uniq_vendor_link")]

    def __str__(self):
        return f"{self.card_code} {self.card_name}"
