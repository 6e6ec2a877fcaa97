"""Meters (what is counted), plans (what it costs), invoices and credit notes (what is owed), docs/billing.md."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import models
from django.db.models import Q

from accord.customers.models import Account, Tier, money
from accord.governance.models import Notification


class Meter(models.Model):
    """A billable metric: what is counted (a source, optionally narrowed) and how (an aggregation)."""

    class Source(models.TextChoices):
        REQUESTS = "gateway.requests", "requests through the gateway"
        BYTES = "gateway.bytes", "bytes through the gateway"
        TICKETS = "desk.tickets", "tickets opened"
        MESSAGES = "desk.messages", "messages on tickets"
        CHAT_MINUTES = "chat.minutes", "chat minutes"
        ACTIVE_AGENTS = "desk.active_agents", "agents who replied"
        CHATS_OPEN = "chat.open", "chats open at once"

    class Aggregation(models.TextChoices):
        COUNT = "count"
        SUM = "sum"
        MAX = "max"
        UNIQUE = "unique"
        TIME_WEIGHTED = "time_weighted", "time-weighted average"

    name = models.SlugField(max_length=80, unique=True)
    title = models.CharField(max_length=200, blank=True)
    source = models.CharField(max_length=24, help_text="One of Meter.Source, or a source an app above billing "
                                                       "registered (billing.sources: outreach.messages).")
    aggregation = models.CharField(max_length=16, choices=Aggregation.choices)
    service = models.CharField(max_length=80, blank=True, help_text="gateway.*: only this service ('' for all).")
    operation = models.CharField(max_length=80, blank=True, help_text="gateway.*: only this operation of the service.")
    direction = models.CharField(max_length=8, blank=True,
                                 help_text="gateway.bytes: in, out or '' for both; desk.messages: inbound, outbound "
                                           "or '' for both.")
    unit = models.CharField(max_length=40, blank=True, help_text="How a quantity reads on an invoice: requests, GB.")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Plan(models.Model):
    """A price plan for the accounts of some tiers or some accounts, in force between two days (local to each
    account); an account's own plan wins over its tier's."""

    name = models.SlugField(max_length=80, unique=True)
    title = models.CharField(max_length=200, blank=True)
    currency = models.CharField(max_length=3)
    flat_fee = money(default=Decimal(0), help_text="Per month, prorated by the days in force.")
    minimum_commitment = money(default=Decimal(0), help_text="Usage charges per month are topped up to this.")
    tiers = models.ManyToManyField(Tier, blank=True, related_name="plans")
    accounts = models.ManyToManyField(Account, blank=True, related_name="plans")
    valid_from = models.DateField(null=True, blank=True)
    valid_until = models.DateField(null=True, blank=True, help_text="The last day in force (included).")
    prices = models.JSONField(default=list, help_text="Per meter: {meter, model, unit_price, included, tiers}.")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class InvoiceSequence(models.Model):
    """The last number given in a series (INV or CN) and year; taken under a row lock, so numbers have no gaps."""

    series = models.CharField(max_length=4)
    year = models.PositiveSmallIntegerField()
    last = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["series", "year"], name="billing_sequence_once")]

    def __str__(self) -> str:
        return f"{self.series}-{self.year}: {self.last}"


class FinalisedError(Exception):
    """A finalised (or paid, or void) invoice or credit note was about to change."""


class Invoice(models.Model):
    """An invoice or a credit note of one account for one period: draft, then finalised (numbered, immutable),
    then paid or void."""

    class Kind(models.TextChoices):
        INVOICE = "invoice"
        CREDIT_NOTE = "credit_note", "credit note"

    class Status(models.TextChoices):
        DRAFT = "draft"
        FINALISED = "finalised"
        PAID = "paid"
        VOID = "void"

    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.INVOICE)
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="invoices")
    period = models.CharField(max_length=7, help_text="YYYY-MM, the account's own calendar month.")
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    number = models.CharField(max_length=20, null=True, blank=True, unique=True,
                              help_text="Given at finalise: INV-2026-000001, CN-2026-000001.")
    invoice = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="credit_notes",
                                help_text="A credit note's invoice.")
    total = money(default=Decimal(0))
    plan_names = models.CharField(max_length=300, blank=True, help_text="The plans in force, or '' for none.")
    created_at = models.DateTimeField(auto_now_add=True)
    finalised_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-period", "account__name", "kind", "id"]
        indexes = [models.Index(fields=["period", "status"])]
        constraints = [models.UniqueConstraint(fields=["account", "period", "kind"], condition=~Q(status="void"),
                                               name="billing_one_live_document_per_period")]

    def __str__(self) -> str:
        return self.number or f"draft {self.kind} {self.pk} {self.period}"

    # What may still change once finalised: the status moving on, and when it did.
    _MOVES = {"status", "paid_at", "voided_at"}

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            stored: dict[str, Any] | None = Invoice.objects.filter(pk=self.pk).values().first()  # type: ignore[assignment]
            if stored and stored["status"] != self.Status.DRAFT:
                changed = {f.attname for f in self._meta.concrete_fields
                           if stored[f.attname] != getattr(self, f.attname)} - self._MOVES
                if changed:
                    raise FinalisedError(f"{self} is {stored['status']}: it cannot be edited "
                                         f"({', '.join(sorted(changed))}); correct it with a credit note or on the "
                                         f"next invoice")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        if self.pk is not None and Invoice.objects.filter(pk=self.pk).exclude(status=self.Status.DRAFT).exists():
            raise FinalisedError(f"{self} is not a draft: it cannot be deleted (void it instead)")
        return super().delete(*args, **kwargs)

    @property
    def editable(self) -> bool:
        return self.status == self.Status.DRAFT

    def net_total(self) -> Decimal:
        """What the customer owes: the invoice less its credit notes (void ones left out)."""
        notes = self.credit_notes.exclude(status=self.Status.VOID).aggregate(s=models.Sum("total"))["s"]
        return self.total - (notes or Decimal(0))


class InvoiceLine(models.Model):
    """One line: a fee, a meter's charge, a top-up, a correction or a service credit; `key` names what it charges
    so later corrections can compare what was billed with what is owed."""

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveSmallIntegerField(default=0)
    key = models.CharField(max_length=200, help_text="fee:PLAN:DAY, usage:METER:PLAN:DAY, minimum:PLAN:DAY, credit:ID")
    for_period = models.CharField(max_length=7, help_text="The period the line charges: the invoice's, or an "
                                                          "earlier one for a correction.")
    meter = models.ForeignKey(Meter, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    description = models.CharField(max_length=300)
    quantity = models.DecimalField(max_digits=20, decimal_places=4, default=Decimal(0))
    unit_price = models.DecimalField(max_digits=16, decimal_places=6, null=True, blank=True,
                                     help_text="None when the amount is not quantity x one price (tiers).")
    amount = money()

    class Meta:
        ordering = ["invoice", "position", "id"]

    def __str__(self) -> str:
        return f"{self.description}: {self.amount}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self._guard()
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        self._guard()
        return super().delete(*args, **kwargs)

    def _guard(self) -> None:
        if Invoice.objects.filter(pk=self.invoice_id).exclude(status=Invoice.Status.DRAFT).exists():
            raise FinalisedError(f"invoice {self.invoice_id} is not a draft: its lines cannot change")


class StoredForecast(models.Model):
    """The latest forecast of one series, written by `accord forecast` (run it daily) and read by the account and
    service pages, which draw it without fitting anything while the page waits."""

    subject = models.CharField(max_length=200, help_text="'account KEY' or 'service NAME'.")
    meter = models.CharField(max_length=80, help_text="The meter's name; 'requests' for a service.")
    made_at = models.DateTimeField()
    data = models.JSONField(help_text="The series, its forecast, levels and alerts (billing.forecasting.Outlook).")

    class Meta:
        ordering = ["subject", "meter"]
        constraints = [models.UniqueConstraint(fields=["subject", "meter"], name="one_stored_forecast_per_series")]

    def __str__(self) -> str:
        return f"{self.subject} {self.meter} ({self.made_at:%Y-%m-%d})"


class ForecastAlert(models.Model):
    """An alert `accord forecast` raised for one series (subject and meter) and kind, open until a run no longer
    raises it; it is sent (e-mail, webhook) once when it opens, through governance's notification outbox."""

    subject = models.CharField(max_length=200, help_text="'account KEY' or 'service NAME'.")
    meter = models.CharField(max_length=80)
    kind = models.CharField(max_length=12, help_text="included | tier | commitment | shortfall | capacity | change")
    account = models.ForeignKey(Account, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    message = models.CharField(max_length=500)
    on = models.DateField(null=True, blank=True, help_text="The day the forecast crosses the level, or the changed day.")
    opened_at = models.DateTimeField()
    seen_at = models.DateTimeField(help_text="The last run that raised it.")
    cleared_at = models.DateTimeField(null=True, blank=True, help_text="The first run that no longer raised it.")
    notifications = models.ManyToManyField(Notification, blank=True, related_name="+")

    class Meta:
        ordering = ["-opened_at", "id"]
        constraints = [models.UniqueConstraint(fields=["subject", "meter", "kind"], condition=Q(cleared_at__isnull=True),
                                               name="one_open_forecast_alert")]

    def __str__(self) -> str:
        return f"{self.subject} {self.meter} {self.kind} ({'cleared' if self.cleared_at else 'open'})"
