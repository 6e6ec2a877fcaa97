"""Agreements as data: calendars, SLAs, their objectives and credit schedules."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from functools import cached_property
from typing import Any

import holidays as holidays_lib
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from accord.customers.models import Account, Tier, money, validate_timezone
from accord.lib import units

from .hours import WEEKDAYS, day_errors, normalise_hours, weekly_minutes


def empty_week() -> dict[str, list[str]]:
    return {day: [] for day in WEEKDAYS}


def holiday_errors(country: str, subdivision: str = "") -> list[tuple[str, str]]:
    """Problems with a holidays country/subdivision pair, as (field, message)."""
    supported = holidays_lib.list_supported_countries()
    if country not in supported:
        return [("holiday_country", f"'{country}' is not a country the holidays package knows (e.g. GB, US, DE)")]
    if subdivision and subdivision not in supported[country]:
        known = ", ".join(supported[country][:12]) + (", ..." if len(supported[country]) > 12 else "")
        return [("holiday_subdivision", f"'{subdivision}' is not a subdivision of {country} (known: {known})")]
    return []


class BusinessCalendar(models.Model):
    """Working windows per weekday in a time zone, minus holidays; a 24x7 calendar is one too."""

    name = models.SlugField(max_length=80, unique=True)
    timezone = models.CharField(max_length=64, validators=[validate_timezone])
    hours = models.JSONField(default=empty_week, help_text="{mon: ['09:00-12:30', '13:30-17:30'], ...}")
    holiday_country = models.CharField(max_length=3, blank=True, help_text="ISO 3166 code for the holidays package.")
    holiday_subdivision = models.CharField(max_length=10, blank=True)
    extra_holidays = models.JSONField(default=list, blank=True, help_text="Extra non-working dates (ISO).")
    removed_holidays = models.JSONField(default=list, blank=True, help_text="Public holidays that are worked.")
    simulated = models.BooleanField(
        default=False, help_text="Created by a scenario (accord scenario rta) for its simulated agreements; "
                                 "`accord scenario clean` removes it.")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        if not isinstance(self.hours, dict):
            raise ValidationError({"hours": "must map weekdays to lists of windows"})
        for day in self.hours:
            if day not in WEEKDAYS:
                errors.setdefault("hours", []).append(f"'{day}' is not a weekday (use {', '.join(WEEKDAYS)})")
        for day in WEEKDAYS:
            for index, message in day_errors(self.hours.get(day, [])):
                where = f"{day}[{index}]" if index is not None else day
                errors.setdefault("hours", []).append(f"{where}: {message}")
        if not errors and weekly_minutes(self.hours) == 0:
            errors.setdefault("hours", []).append("the calendar has no working time at all")
        if self.holiday_country:
            for field, message in holiday_errors(self.holiday_country, self.holiday_subdivision):
                errors.setdefault(field, []).append(message)
        elif self.holiday_subdivision:
            errors.setdefault("holiday_subdivision", []).append("a subdivision needs a holiday country")
        for field in ("extra_holidays", "removed_holidays"):
            for value in getattr(self, field) or []:
                try:
                    dt.date.fromisoformat(str(value))
                except ValueError:
                    errors.setdefault(field, []).append(f"'{value}' is not a date like 2026-12-24")
        if errors:
            raise ValidationError(errors)
        self.hours = normalise_hours(self.hours)

    @property
    def is_24x7(self) -> bool:
        return all(self.hours.get(day) == ["00:00-24:00"] for day in WEEKDAYS) and not self.holiday_country

    @cached_property
    def _extra(self) -> frozenset[dt.date]:
        return frozenset(dt.date.fromisoformat(d) for d in self.extra_holidays)

    @cached_property
    def _removed(self) -> frozenset[dt.date]:
        return frozenset(dt.date.fromisoformat(d) for d in self.removed_holidays)

    def holiday_table(self, years: range) -> Any:
        if not self.holiday_country:
            return {}
        return holidays_lib.country_holidays(self.holiday_country, subdiv=self.holiday_subdivision or None, years=years)

    def is_holiday(self, day: dt.date) -> bool:
        if day in self._removed:
            return False
        if day in self._extra:
            return True
        return day in self.holiday_table(range(day.year, day.year + 1))


class Agreement(models.Model):
    """A service-level agreement for a tier or for one account (the account's beats the tier's)."""

    name = models.SlugField(max_length=80, unique=True)
    title = models.CharField(max_length=200, blank=True)
    tier = models.ForeignKey(Tier, null=True, blank=True, on_delete=models.PROTECT, related_name="agreements")
    account = models.ForeignKey(Account, null=True, blank=True, on_delete=models.CASCADE, related_name="agreements")
    effective_from = models.DateField()
    effective_to = models.DateField(null=True, blank=True)
    monthly_fee = money(default=Decimal(0))
    currency = models.CharField(max_length=3, default="EUR")
    services = models.ManyToManyField("catalog.Service", blank=True, related_name="agreements")
    calendar = models.ForeignKey(BusinessCalendar, on_delete=models.PROTECT, related_name="agreements")
    simulated = models.BooleanField(
        default=False, help_text="An agreement of a simulated account (accord scenario rta), not a real promise; "
                                 "`accord scenario clean` removes it.")

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(tier__isnull=False) & Q(account__isnull=True)) | (Q(tier__isnull=True) & Q(account__isnull=False)),
                name="agreement_for_tier_xor_account",
            ),
            models.CheckConstraint(
                condition=Q(effective_to__isnull=True) | Q(effective_to__gte=models.F("effective_from")),
                name="agreement_effective_order",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if (self.tier_id is None) == (self.account_id is None):
            raise ValidationError("An agreement applies to exactly one of: a tier, an account.")
        if self.effective_to and self.effective_from and self.effective_to < self.effective_from:
            raise ValidationError({"effective_to": "The agreement ends before it starts."})

    @classmethod
    def for_account(cls, account: Account, on: dt.date) -> Agreement | None:
        """The agreement that applies to an account on a day: its own beats its tier's; newest start wins."""
        scope = Q(account=account) | Q(tier_id=account.tier_id) if account.tier_id else Q(account=account)
        live = (
            cls.objects.filter(scope, effective_from__lte=on)
            .filter(Q(effective_to__isnull=True) | Q(effective_to__gte=on))
            .select_related("calendar")
        )
        ranked = sorted(live, key=lambda a: (a.account_id is None, -a.effective_from.toordinal(), a.name))
        return ranked[0] if ranked else None


SUPPORT_PRIORITIES = ("urgent", "high", "normal", "low")
SUPPORT_CHANNELS = ("email", "web", "phone", "social", "api", "chat")


def objective_errors(
    kind: str, target: Decimal, percentile: Decimal | None, *, has_service: bool, has_operation: bool,
    channel: str | None, priority: str | None,
) -> list[tuple[str, str]]:
    """The rules an objective must follow, as (field, message); shared by the manifest and the API."""
    errors: list[tuple[str, str]] = []
    support = kind in ("first_response", "next_response", "resolution")
    if not target.is_finite():
        return [("target", "must be a number")]
    if kind == "latency":
        if percentile is None:
            errors.append(("percentile", "a latency objective needs a percentile, e.g. 95"))
        elif not (0 < percentile < 100):
            errors.append(("percentile", "must be between 0 and 100 (exclusive)"))
        if target <= 0:
            errors.append(("target", "a latency target is milliseconds and must be positive"))
    elif percentile is not None:
        errors.append(("percentile", f"only latency objectives have a percentile, not {kind}"))
    if kind in ("availability", "error_rate") and not (0 <= target <= 100):
        errors.append(("target", f"an {kind} target is a percentage between 0 and 100"))
    if support:
        # whole seconds: targets keep 4 decimals, so 10 s is 0.1667 (10.002 s, read as 10)
        seconds = target * 60
        if target <= 0 or abs(seconds - seconds.to_integral_value()) > Decimal("0.005") or seconds < 1:
            errors.append(("target", "a support target is a positive number of business minutes, to the second "
                                     "(0.5 is 30 seconds)"))
        if has_service or has_operation:
            errors.append(("", "support objectives are scoped by channel and priority, not service or operation"))
    elif channel or priority:
        errors.append(("", "run-time objectives are scoped by service and operation, not channel or priority"))
    if has_operation and not has_service:
        errors.append(("operation", "an operation needs its service"))
    if channel and channel not in SUPPORT_CHANNELS:
        errors.append(("channel", f"must be one of {', '.join(SUPPORT_CHANNELS)}"))
    if priority and priority not in SUPPORT_PRIORITIES:
        errors.append(("priority", f"must be one of {', '.join(SUPPORT_PRIORITIES)}"))
    return errors


def credit_errors(cap: Decimal, bands: list[tuple[Decimal, Decimal]]) -> list[tuple[str, str]]:
    """The rules of a credit schedule, as (path below the schedule, message): bands go down, credits go up."""
    errors: list[tuple[str, str]] = []
    if not cap.is_finite() or not (0 < cap <= 100):
        errors.append(("cap", "must be above 0 and at most 100 (% of the monthly fee)"))
    if not bands:
        errors.append(("bands", "needs at least one band"))
    for j, (below, credit) in enumerate(bands):
        if not below.is_finite() or not (0 < below <= 100):
            errors.append((f"bands[{j}].below", "must be a percentage above 0 and at most 100"))
        if not credit.is_finite() or credit <= 0:
            errors.append((f"bands[{j}].credit", "must be a positive percentage"))
        elif cap.is_finite() and credit > cap:
            errors.append((f"bands[{j}].credit", f"{credit} exceeds the cap of {cap}"))
        if j > 0:
            prev_below, prev_credit = bands[j - 1]
            if below >= prev_below:
                errors.append((f"bands[{j}].below", f"must be lower than the band before ({prev_below}): bands go downwards"))
            if credit <= prev_credit:
                errors.append((f"bands[{j}].credit", f"must be more than the band before ({prev_credit})"))
    return errors


class Objective(models.Model):
    """One promise in an agreement: a kind, a target, a measurement window and a scope."""

    class Kind(models.TextChoices):
        AVAILABILITY = "availability"
        LATENCY = "latency"
        ERROR_RATE = "error_rate"
        FIRST_RESPONSE = "first_response"
        NEXT_RESPONSE = "next_response"
        RESOLUTION = "resolution"

    SUPPORT_KINDS = frozenset({Kind.FIRST_RESPONSE, Kind.NEXT_RESPONSE, Kind.RESOLUTION})

    class Window(models.TextChoices):
        CALENDAR_MONTH = "calendar_month"
        ROLLING = "rolling"

    agreement = models.ForeignKey(Agreement, on_delete=models.CASCADE, related_name="objectives")
    name = models.SlugField(max_length=80)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    target = models.DecimalField(
        max_digits=12,
        decimal_places=4,
        help_text="availability: % good; latency: ms; error_rate: max % errors; support kinds: business minutes.",
    )
    percentile = models.DecimalField(max_digits=6, decimal_places=3, null=True, blank=True)
    window = models.CharField(max_length=20, choices=Window.choices, default=Window.CALENDAR_MONTH)
    window_days = models.PositiveSmallIntegerField(null=True, blank=True)
    service = models.ForeignKey("catalog.Service", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    operation = models.ForeignKey("catalog.Operation", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    channel = models.CharField(max_length=20, blank=True)
    priority = models.CharField(max_length=20, blank=True)

    class Meta:
        ordering = ["agreement", "id"]
        constraints = [models.UniqueConstraint(fields=["agreement", "name"], name="objective_unique_name")]

    def __str__(self) -> str:
        return f"{self.agreement}/{self.name}"

    @property
    def is_support(self) -> bool:
        return self.kind in self.SUPPORT_KINDS

    def target_label(self) -> str:
        """The promise as people read it: "≥ 99.9 %", "≤ 0.5 % errors", "p95 ≤ 600 ms", or a support target's
        business time: "30 min", "4 h", "240 h" (in days, "10 d", only on a calendar that never closes: a
        business day is otherwise not 24 hours)."""
        if self.kind == self.Kind.AVAILABILITY:
            return f"≥ {units.percent(self.target)}"
        if self.kind == self.Kind.ERROR_RATE:
            return f"≤ {units.percent(self.target)} errors"
        if self.kind == self.Kind.LATENCY:
            return f"p{units.number(self.percentile or Decimal(95))} ≤ {units.latency_ms(self.target)}"
        calendar = self.agreement.calendar
        days = calendar.is_24x7 and not calendar.extra_holidays
        return units.minutes(self.target, largest="d" if days else "h")

    def window_label(self) -> str:
        """"calendar month" or "rolling 28 days"."""
        if self.window == self.Window.ROLLING:
            return f"rolling {self.window_days} day{'' if self.window_days == 1 else 's'}"
        return "calendar month"

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        if self.target is None:
            return
        for fld, message in objective_errors(
            self.kind, Decimal(self.target), None if self.percentile is None else Decimal(self.percentile),
            has_service=self.service_id is not None, has_operation=self.operation_id is not None,
            channel=self.channel or None, priority=self.priority or None,
        ):
            errors.setdefault(fld or "__all__", []).append(message)
        if self.window == self.Window.ROLLING and not self.window_days:
            errors.setdefault("window_days", []).append("a rolling window needs window_days (1-366)")
        if self.window == self.Window.CALENDAR_MONTH and self.window_days:
            errors.setdefault("window_days", []).append("a calendar-month window has no window_days")
        if self.window_days is not None and not (1 <= self.window_days <= 366):
            errors.setdefault("window_days", []).append("must be between 1 and 366")
        if self.operation is not None and self.service_id and self.operation.service_id != self.service_id:
            errors.setdefault("operation", []).append("the operation belongs to another service")
        if errors:
            raise ValidationError(errors)


class CreditSchedule(models.Model):
    """What an agreement pays back when availability falls below bands, up to a cap."""

    agreement = models.OneToOneField(Agreement, on_delete=models.CASCADE, related_name="credit_schedule")
    cap_percent = models.DecimalField(max_digits=6, decimal_places=3, default=Decimal(100))
    minimum_amount = models.DecimalField(
        max_digits=12, decimal_places=2, default=Decimal(0),
        help_text="A credit below this amount (in the agreement's currency) is not issued.")
    claim_days = models.PositiveSmallIntegerField(
        null=True, blank=True,
        help_text="Days after the period's end in which a credit may be claimed; blank: until the end of the next month.")

    def __str__(self) -> str:
        return f"credits for {self.agreement}"

    def credit_amount(self, percent: Decimal) -> Decimal:
        """`percent` of the agreement's monthly fee, to the cent, in the agreement's currency."""
        return (self.agreement.monthly_fee * percent / 100).quantize(Decimal("0.01"))

    def credit_percent(self, achieved_percent: Decimal) -> Decimal:
        """Credit owed for an achieved level: the largest band it falls below, capped."""
        owed = Decimal(0)
        for band in self.bands.all():
            if achieved_percent < band.below_percent:
                owed = max(owed, band.credit_percent)
        return min(owed, self.cap_percent)


class CreditBand(models.Model):
    """Below `below_percent` achieved, credit `credit_percent` of the monthly fee."""

    schedule = models.ForeignKey(CreditSchedule, on_delete=models.CASCADE, related_name="bands")
    below_percent = models.DecimalField(max_digits=7, decimal_places=4)
    credit_percent = models.DecimalField(max_digits=6, decimal_places=3)

    class Meta:
        ordering = ["-below_percent"]

    def __str__(self) -> str:
        return f"< {self.below_percent}% -> {self.credit_percent}%"


class MaintenanceWindow(models.Model):
    """A maintenance window declared in advance: its minutes are not measured against the agreement's run-time
    objectives (docs/reports.md, "What counts as downtime")."""

    agreement = models.ForeignKey(Agreement, on_delete=models.CASCADE, related_name="maintenance_windows")
    start = models.DateTimeField(help_text="First instant of the window, on a whole minute.")
    end = models.DateTimeField(help_text="First instant after the window, on a whole minute.")
    reason = models.CharField(max_length=200, blank=True)
    declared_at = models.DateTimeField(help_text="When the window was first applied; before its start, or it is "
                                                 "not a declared window.")

    class Meta:
        ordering = ["start", "end"]
        constraints = [
            models.CheckConstraint(condition=Q(end__gt=models.F("start")), name="maintenance_end_after_start"),
            models.CheckConstraint(condition=Q(declared_at__lte=models.F("start")),
                                   name="maintenance_declared_in_advance"),
            models.UniqueConstraint(fields=["agreement", "start", "end"], name="maintenance_unique_window"),
        ]

    def __str__(self) -> str:
        return f"{self.agreement}: maintenance {self.start.isoformat()} to {self.end.isoformat()}"
