"""The credit ledger and the frozen (closed) reports."""

from __future__ import annotations

from django.db import models

from accord.agreements.models import Agreement
from accord.customers.models import Account, money


class Credit(models.Model):
    """A service credit owed for one objective of one agreement over one period (or the part of it the agreement
    was in force): computed, then approved by finance, then applied to an invoice or rejected with a reason."""

    class Status(models.TextChoices):
        COMPUTED = "computed"
        APPROVED = "approved"
        APPLIED = "applied"
        REJECTED = "rejected"

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="credits")
    agreement = models.ForeignKey(Agreement, on_delete=models.PROTECT, related_name="credits")
    objective = models.CharField(max_length=80)
    period = models.CharField(max_length=7, help_text="YYYY-MM")
    start = models.DateTimeField(help_text="Start of the part of the period judged by this agreement.")
    end = models.DateTimeField()
    target = models.DecimalField(max_digits=12, decimal_places=4)
    valid_events = models.BigIntegerField()
    bad_events = models.BigIntegerField()
    percent = models.DecimalField(max_digits=6, decimal_places=3, help_text="The band's credit, % of the fee.")
    amount = money()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.COMPUTED)
    reason = models.TextField(blank=True, help_text="Why it was rejected.")
    claim_until = models.DateTimeField(help_text="The customer's claim window ends here.")
    computed_at = models.DateTimeField()

    class Meta:
        ordering = ["period", "account__external_id", "agreement__name", "objective", "start"]
        constraints = [models.UniqueConstraint(fields=["account", "agreement", "objective", "start"],
                                               name="credit_once_per_part")]
        permissions = [("approve_credit", "Can approve, reject and apply service credits")]

    def __str__(self) -> str:
        return f"credit {self.pk} {self.period} {self.agreement_id}/{self.objective} {self.status}"


class CreditStep(models.Model):
    """The audit trail of a credit: every status it went through, who moved it and when."""

    credit = models.ForeignKey(Credit, on_delete=models.CASCADE, related_name="steps")
    status = models.CharField(max_length=10, choices=Credit.Status.choices)
    actor = models.CharField(max_length=150)
    at = models.DateTimeField()
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"credit {self.credit_id} {self.status} by {self.actor}"


class FrozenReport(models.Model):
    """A closed period's report of one account in one format, stored as built and never recomputed; a
    restatement is a new version that says what changed and why."""

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="frozen_reports")
    period = models.CharField(max_length=7)
    version = models.PositiveIntegerField()
    fmt = models.CharField(max_length=4)
    content = models.BinaryField()
    sha256 = models.CharField(max_length=64, db_index=True)
    reason = models.TextField(blank=True, help_text="Why this version restates the one before.")
    changes = models.TextField(blank=True, help_text="What changed from the version before.")
    closed_at = models.DateTimeField()
    closed_by = models.CharField(max_length=150)

    class Meta:
        ordering = ["period", "account_id", "version", "fmt"]
        constraints = [models.UniqueConstraint(fields=["account", "period", "version", "fmt"],
                                               name="frozen_report_once")]

    def __str__(self) -> str:
        return f"report {self.account_id} {self.period} v{self.version} {self.fmt}"
