"""What insight keeps: order lines, exchange rates, lifetime-value fits, health scores, topics and weights."""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from accord.customers.models import Account
from accord.desk.models import Ticket


class OrderLine(models.Model):
    """One line of a customer's order; the lines of one `order_id` form the order.

    A refund is a line with a negative amount on the order it refunds; the order's value is the net of its
    lines. `ordered_on` is the day in the account's time zone: purchases on one day are one transaction.
    """

    order_id = models.CharField(max_length=100)
    sku = models.CharField(max_length=100, blank=True, default="")
    # Orders are facts about the account: they go with it (as its scores and values do).
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="order_lines")
    ordered_at = models.DateTimeField()
    ordered_on = models.DateField()
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=3)
    quantity = models.IntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-ordered_at", "order_id", "sku"]
        constraints = [models.UniqueConstraint(fields=["order_id", "sku"], name="order_line_unique")]
        indexes = [
            models.Index(fields=["account", "ordered_on"], name="order_line_account_day"),
            models.Index(fields=["ordered_on"], name="order_line_day"),
        ]

    def __str__(self) -> str:
        return f"{self.order_id} {self.sku}".strip()

    def clean(self) -> None:
        if self.amount is not None and self.amount < 0 and self.quantity > 0:
            raise ValidationError({"amount": "a negative amount is a refund: give it a negative quantity (or 0)"})


class ExchangeRate(models.Model):
    """What one unit of a currency is worth in the base currency (settings.ACCORD_CURRENCY)."""

    currency = models.CharField(max_length=3, unique=True)
    rate = models.DecimalField(max_digits=18, decimal_places=8, help_text="Base-currency units per unit.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["currency"]
        constraints = [models.CheckConstraint(condition=models.Q(rate__gt=0), name="exchange_rate_positive")]

    def __str__(self) -> str:
        return f"{self.currency} {self.rate}"


class ClvFit(models.Model):
    """One fit of BG/NBD and Gamma-Gamma on every account with orders, and what it predicts per account."""

    created_at = models.DateTimeField(default=timezone.now)
    calibration_end = models.DateField()
    unit = models.CharField(max_length=4, default="week")
    horizon = models.FloatField(help_text="In units.")
    discount_rate = models.FloatField(help_text="Per year.")
    currency = models.CharField(max_length=3)
    bgnbd = models.JSONField(help_text="r, alpha, a, b, log_likelihood")
    gamma_gamma = models.JSONField(help_text="p, q, gamma, log_likelihood")
    customers = models.PositiveIntegerField()
    repeat_customers = models.PositiveIntegerField()

    class Meta:
        ordering = ["-created_at", "-id"]
        get_latest_by = ["created_at", "id"]

    def __str__(self) -> str:
        return f"CLV fit {self.created_at:%Y-%m-%d %H:%M} UTC ({self.customers} customers)"


class AccountValue(models.Model):
    """An account's predictions in one CLV fit."""

    fit = models.ForeignKey(ClvFit, on_delete=models.CASCADE, related_name="values")
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    repeat_purchases = models.PositiveIntegerField()
    expected_purchases = models.FloatField()
    probability_alive = models.FloatField()
    expected_value = models.DecimalField(max_digits=14, decimal_places=2)
    clv = models.DecimalField(max_digits=16, decimal_places=2)
    clv_low = models.DecimalField(max_digits=16, decimal_places=2)
    clv_high = models.DecimalField(max_digits=16, decimal_places=2)
    prior_only = models.BooleanField(help_text="One purchase only: the value per purchase is the population's.")

    class Meta:
        ordering = ["-clv"]
        constraints = [models.UniqueConstraint(fields=["fit", "account"], name="account_value_once")]

    def __str__(self) -> str:
        return f"{self.account_id} {self.clv}"


class HealthWeights(models.Model):
    """The weights of the health score's factors, applied from the manifest's `health` section."""

    name = models.SlugField(max_length=80, unique=True)
    description = models.CharField(max_length=200, blank=True)
    window_days = models.PositiveIntegerField(default=90)
    weights = models.JSONField(default=dict, help_text="factor -> weight (a number >= 0)")

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "health weights"

    def __str__(self) -> str:
        return self.name


class HealthScore(models.Model):
    """An account's health, 0-100, as computed at one moment, with each factor's part in words."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="health_scores")
    computed_at = models.DateTimeField(default=timezone.now)
    score = models.PositiveSmallIntegerField()
    factors = models.JSONField(default=list, help_text="[{factor, weight, score, lost, text}] and skipped ones")

    class Meta:
        ordering = ["-computed_at", "-id"]
        indexes = [models.Index(fields=["account", "-computed_at"], name="health_account_recent")]
        constraints = [models.CheckConstraint(condition=models.Q(score__lte=100), name="health_score_range")]

    def __str__(self) -> str:
        return f"{self.account_id} {self.score}"


class Topic(models.Model):
    """A cluster of tickets about the same thing, named by its top terms (recomputed as a whole)."""

    name = models.CharField(max_length=200)
    terms = models.JSONField(default=list)
    size = models.PositiveIntegerField(default=0)
    computed_at = models.DateTimeField(default=timezone.now)
    tickets = models.ManyToManyField(Ticket, related_name="+", blank=True)

    class Meta:
        ordering = ["-size", "name"]

    def __str__(self) -> str:
        return self.name


ZERO = Decimal(0)
