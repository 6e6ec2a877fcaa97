"""Who the customers are, what they are worth, and which tier that earns them."""

from __future__ import annotations

import datetime as dt
import math
import re
from decimal import Decimal
from typing import Any
from zoneinfo import available_timezones

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from accord.lib import countries


def money(**kwargs: Any) -> models.DecimalField[Any, Any]:
    """A money amount: 14 digits, 2 decimals."""
    return models.DecimalField(max_digits=14, decimal_places=2, **kwargs)


def validate_timezone(value: str) -> None:
    if value not in _zones():
        raise ValidationError(f"'{value}' is not an IANA time zone (e.g. Europe/London).")


_ZONES: frozenset[str] | None = None

#: a custom field's key: a letter, then letters, digits or underscores (usable as a CSV column `custom.<key>`, a
#: JSON path step and a segment condition's key on every database)
CUSTOM_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,59}")
CUSTOM_MAX_KEYS = 50
CUSTOM_MAX_TEXT = 500


def validate_country(value: str) -> None:
    """ISO 3166-1 alpha-2 in upper case (blank is allowed by the field: no country)."""
    if value and (why := countries.problem(value)):
        raise ValidationError(why[0].upper() + why[1:] + ".")


def custom_fields_problems(value: Any) -> list[str]:
    """What is wrong with a custom-fields object, each message naming its key; [] when it is fine."""
    if not isinstance(value, dict):
        return ["Custom fields must be a JSON object of keys to text, numbers or true/false, "
                'e.g. {"industry": "travel", "employees": 120}.']
    problems = []
    if len(value) > CUSTOM_MAX_KEYS:
        problems.append(f"At most {CUSTOM_MAX_KEYS} custom fields; {len(value)} given.")
    for key, item in value.items():
        if not isinstance(key, str) or not CUSTOM_KEY.fullmatch(key):
            problems.append(f"Custom field key {key!r}: a letter, then letters, digits or _ (at most 60).")
        elif isinstance(item, dict | list):
            problems.append(f"Custom field {key!r}: nested {'objects' if isinstance(item, dict) else 'lists'} "
                            "are not allowed; a value is text, a number or true/false.")
        elif item is None:
            problems.append(f"Custom field {key!r}: null is not a value; leave the key out instead.")
        elif isinstance(item, float) and not math.isfinite(item):
            problems.append(f"Custom field {key!r}: {item} is not a finite number.")
        elif isinstance(item, str) and len(item) > CUSTOM_MAX_TEXT:
            problems.append(f"Custom field {key!r}: text of {len(item)} characters; at most {CUSTOM_MAX_TEXT}.")
        elif not isinstance(item, str | int | float | bool):
            problems.append(f"Custom field {key!r}: {type(item).__name__} is not text, a number or true/false.")
    return problems


def validate_custom_fields(value: Any) -> None:
    if problems := custom_fields_problems(value):
        raise ValidationError(problems)


def _zones() -> frozenset[str]:
    global _ZONES
    if _ZONES is None:
        _ZONES = frozenset(available_timezones())
    return _ZONES


class Tier(models.Model):
    """A named service tier and the rule that earns it; rules are tried in rank order."""

    class Match(models.TextChoices):
        ANY = "any", "any threshold met"
        ALL = "all", "all thresholds met"

    name = models.SlugField(max_length=40, unique=True)
    rank = models.PositiveSmallIntegerField(unique=True, help_text="1 is the highest tier; rules are tried in rank order.")
    min_commitment = money(
        null=True, blank=True, help_text="Committed amount in the current period at least this."
    )
    min_revenue_12m = money(
        null=True, blank=True, help_text="Trailing 12-month revenue at least this."
    )
    match = models.CharField(max_length=3, choices=Match.choices, default=Match.ANY)
    description = models.CharField(max_length=200, blank=True)
    simulated = models.BooleanField(
        default=False, help_text="Created by a scenario (accord scenario rta), not by the business; "
                                 "`accord scenario clean` removes it.")

    class Meta:
        ordering = ["rank"]

    def __str__(self) -> str:
        return self.name

    def matches(self, committed: Decimal, revenue_12m: Decimal) -> bool:
        """Whether an account with these figures earns this tier; a rule with no threshold matches all."""
        tests = []
        if self.min_commitment is not None:
            tests.append(committed >= self.min_commitment)
        if self.min_revenue_12m is not None:
            tests.append(revenue_12m >= self.min_revenue_12m)
        if not tests:
            return True
        return all(tests) if self.match == self.Match.ALL else any(tests)


class Account(models.Model):
    """A customer: an organisation or a person."""

    class Kind(models.TextChoices):
        ORGANISATION = "organisation"
        PERSON = "person"

    external_id = models.CharField(max_length=100, unique=True, null=True, blank=True)
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.ORGANISATION)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="accounts"
    )
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    revenue_12m = money(default=Decimal(0), help_text="Revenue over the trailing 12 months.")
    cost_to_serve_12m = money(
        default=Decimal(0), help_text="Cost to serve over the trailing 12 months."
    )
    tier = models.ForeignKey(Tier, null=True, blank=True, on_delete=models.PROTECT, related_name="accounts")
    country = models.CharField(max_length=2, blank=True, default="", validators=[validate_country],
                               help_text="ISO 3166-1 alpha-2 code in upper case (DE, FR, GB); blank: not known.")
    custom_fields = models.JSONField(
        default=dict, blank=True, validators=[validate_custom_fields],
        help_text='Your own fields: keys (a letter, then letters, digits or _) to text, numbers or true/false, '
                  'e.g. {"industry": "travel", "employees": 120}; no nested objects or lists.')
    simulated = models.BooleanField(
        default=False, help_text="A customer a scenario (accord scenario rta) made up to send traffic, not a real "
                                 "one; `accord scenario clean` removes it.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        indexes = [models.Index(fields=["name"]), models.Index(fields=["tier", "name"])]

    def __str__(self) -> str:
        return self.name

    @property
    def country_name(self) -> str:
        """'United Kingdom' for GB (pycountry's name of the code), '' when no country is known."""
        return countries.name(self.country) if self.country else ""

    def committed_amount(self, on: dt.date | None = None) -> Decimal:
        """Sum of commitments whose period contains the given day (today by default)."""
        on = on or timezone.localdate()
        total = self.commitments.filter(period_start__lte=on, period_end__gte=on).aggregate(s=models.Sum("amount"))["s"]
        return total or Decimal(0)

    def active_override(self, now: dt.datetime | None = None) -> TierOverride | None:
        now = now or timezone.now()
        return self.tier_overrides.filter(revoked_at__isnull=True, expires_at__gt=now).order_by("-created_at").first()


class Contact(models.Model):
    """A person at an account; reachable at several addresses and numbers."""

    account = models.ForeignKey(Account, null=True, blank=True, on_delete=models.SET_NULL, related_name="contacts")
    external_id = models.CharField(max_length=100, unique=True, null=True, blank=True)
    name = models.CharField(max_length=200)
    title = models.CharField(max_length=200, blank=True)
    custom_fields = models.JSONField(
        default=dict, blank=True, validators=[validate_custom_fields],
        help_text='Your own fields: keys (a letter, then letters, digits or _) to text, numbers or true/false, '
                  'e.g. {"language": "de", "vip": true}; no nested objects or lists.')
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name

    @property
    def emails(self) -> list[str]:
        return [p.value for p in self.points.all() if p.kind == ContactPoint.Kind.EMAIL]

    @property
    def phones(self) -> list[str]:
        return [p.value for p in self.points.all() if p.kind == ContactPoint.Kind.PHONE]


class ContactPoint(models.Model):
    """One e-mail address or phone number of a contact, normalised so senders can be matched."""

    class Kind(models.TextChoices):
        EMAIL = "email"
        PHONE = "phone"

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="points")
    kind = models.CharField(max_length=5, choices=Kind.choices)
    value = models.CharField(max_length=254)
    primary = models.BooleanField(default=False)

    class Meta:
        ordering = ["-primary", "id"]
        constraints = [models.UniqueConstraint(fields=["kind", "value"], name="contact_point_unique_value")]

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


class Commitment(models.Model):
    """Volume or amount an account commits to for a period (e.g. bookings committed in advance)."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="commitments")
    period_start = models.DateField()
    period_end = models.DateField()
    amount = money(default=Decimal(0))
    volume = models.PositiveIntegerField(null=True, blank=True)
    unit = models.CharField(max_length=40, blank=True, help_text="What the volume counts, e.g. bookings.")
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-period_start", "id"]
        indexes = [models.Index(fields=["period_start", "period_end"])]
        constraints = [
            models.CheckConstraint(condition=Q(period_end__gte=models.F("period_start")), name="commitment_period_order")
        ]

    def __str__(self) -> str:
        return f"{self.account} {self.period_start}..{self.period_end}: {self.amount}"

    def clean(self) -> None:
        if self.period_start and self.period_end and self.period_end < self.period_start:
            raise ValidationError({"period_end": "The period ends before it starts."})


class TierOverride(models.Model):
    """A tier set by hand, with a reason, until it expires or is revoked."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="tier_overrides")
    tier = models.ForeignKey(Tier, on_delete=models.PROTECT, related_name="+")
    reason = models.CharField(max_length=300)
    expires_at = models.DateTimeField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.account} -> {self.tier} until {self.expires_at:%Y-%m-%d}"


class TierChange(models.Model):
    """One entry in an account's tier history, with its cause."""

    class Cause(models.TextChoices):
        RULES = "rules", "tier rules"
        OVERRIDE = "override", "manual override"
        OVERRIDE_ENDED = "override_ended", "override expired or revoked"
        INITIAL = "initial", "first evaluation"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="tier_changes")
    from_tier = models.ForeignKey(Tier, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    to_tier = models.ForeignKey(Tier, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    cause = models.CharField(max_length=20, choices=Cause.choices)
    detail = models.CharField(max_length=300, blank=True)
    changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.account}: {self.from_tier} -> {self.to_tier} ({self.cause})"
