"""The `calendars` and `agreements` sections of the manifest: business calendars and agreements as code
(docs/agreements-as-code.md)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any, Literal

from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils import timezone
from pydantic import BeforeValidator, Field, StrictInt, StringConstraints

from accord.catalog.models import Operation, Service
from accord.customers.models import Account, Tier, validate_timezone
from accord.lib.manifest import Check, Kind
from accord.lib.manifest.fields import (
    ExternalId,
    IsoDate,
    Money,
    Name,
    Spec,
    Text,
    TierName,
    dates,
    drop_empty,
    num,
    show,
)

from .hours import WEEKDAYS, day_errors, normalise_hours, weekly_minutes
from .models import (
    Agreement,
    BusinessCalendar,
    CreditBand,
    CreditSchedule,
    MaintenanceWindow,
    Objective,
    credit_errors,
    holiday_errors,
    objective_errors,
)

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class HolidaysSpec(Spec):
    """Public holidays of a country (and subdivision), plus extra and minus removed dates."""

    country: str | None = None
    subdivision: str | None = None
    extra: list[IsoDate] = []
    removed: list[IsoDate] = []


class CalendarSpec(Spec):
    """A business calendar: weekly working windows in a time zone, minus holidays."""

    name: Name
    timezone: str
    hours: dict[Weekday, Any]
    holidays: HolidaysSpec | None = None

    def week(self) -> dict[str, Any]:
        """The hours with a day written as `sat:` (null) read as closed."""
        return {day: [] if windows is None else windows for day, windows in self.hours.items()}


def calendar_dict(
    name: str, timezone: str, hours: dict[str, list[str]], country: str, subdivision: str,
    extra: list[Any], removed: list[Any],
) -> dict[str, Any]:
    """A calendar in canonical form."""
    holidays = drop_empty({"country": country or None, "subdivision": subdivision or None, "extra": dates(extra),
                           "removed": dates(removed)})
    out: dict[str, Any] = {"name": name, "timezone": timezone, "hours": normalise_hours(hours)}
    if holidays:
        out["holidays"] = holidays
    return out


def calendar_dict_from_db(c: BusinessCalendar) -> dict[str, Any]:
    """A stored calendar in canonical form."""
    return calendar_dict(c.name, c.timezone, c.hours, c.holiday_country, c.holiday_subdivision, c.extra_holidays,
                         c.removed_holidays)


class CalendarKind(Kind, section="calendars", singular="calendar", spec=CalendarSpec, model=BusinessCalendar):
    """Business calendars: working windows per weekday in a time zone, public holidays, extra and removed dates."""

    def message(self, error: Any) -> str | None:
        if error["type"] == "literal_error" and "[key]" in error["loc"]:
            return f"{show(error.get('input'))} is not a weekday (use {', '.join(WEEKDAYS)})"
        return None

    def check(self, check: Check) -> None:
        for p, cal in check.each("calendars"):
            try:
                validate_timezone(cal.timezone)
            except DjangoValidationError as e:
                check.err(f"{p}.timezone", e.messages[0])
            week = cal.week()
            bad = False
            for day in WEEKDAYS:
                for index, problem in day_errors(week.get(day, [])):
                    bad = True
                    check.err(f"{p}.hours.{day}" + (f"[{index}]" if index is not None else ""), problem)
            if not bad and weekly_minutes(week) == 0:
                check.err(f"{p}.hours", "the calendar has no working time at all")
            h = cal.holidays
            if h is None:
                continue
            if h.country:
                for fld, problem in holiday_errors(h.country, h.subdivision or ""):
                    check.err(f"{p}.holidays.{'country' if fld == 'holiday_country' else 'subdivision'}", problem)
            elif h.subdivision:
                check.err(f"{p}.holidays.subdivision", "a subdivision needs a country")
            for j, date in enumerate(h.removed):
                if date in h.extra:
                    check.err(f"{p}.holidays.removed[{j}]", f"{date} is also an extra holiday")

    def canonical(self, item: CalendarSpec) -> dict[str, Any]:
        h = item.holidays or HolidaysSpec()
        return calendar_dict(item.name, item.timezone, item.week(), h.country or "", h.subdivision or "", h.extra,
                             h.removed)

    def stored(self, name: str) -> dict[str, Any] | None:
        cal = BusinessCalendar.objects.filter(name=name).first()
        return calendar_dict_from_db(cal) if cal else None

    def write(self, items: list[CalendarSpec]) -> None:
        for c in items:
            h = c.holidays or HolidaysSpec()
            BusinessCalendar.objects.update_or_create(
                name=c.name,
                defaults={
                    "timezone": c.timezone, "hours": normalise_hours(c.week()),
                    "holiday_country": h.country or "", "holiday_subdivision": h.subdivision or "",
                    "extra_holidays": [d.isoformat() for d in sorted(set(h.extra))],
                    "removed_holidays": [d.isoformat() for d in sorted(set(h.removed))],
                },
            )

    def export(self) -> tuple[list[dict[str, Any]], list[str]]:
        rows, notes = self.real(BusinessCalendar.objects.order_by("name"))
        return [calendar_dict_from_db(c) for c in rows], notes


class RollingWindow(Spec):
    """A measurement window of the last N days."""

    rolling_days: StrictInt = Field(ge=1, le=366)


def _window(value: object) -> object:
    """calendar_month (stored as None) or {rolling_days: N}."""
    if value is None or value == "calendar_month":
        return None
    if isinstance(value, dict):
        return value
    if value in ("rolling", "rolling_days"):
        raise ValueError("a rolling window needs its length: write {rolling_days: 28}")
    raise ValueError(f"{show(value)} is not a window: write calendar_month or {{rolling_days: 28}}")


class ObjectiveSpec(Spec):
    """One promise of an agreement."""

    name: Name
    kind: Literal["availability", "latency", "error_rate", "first_response", "next_response", "resolution"]
    target: Decimal = Field(max_digits=12, decimal_places=4, allow_inf_nan=False)
    percentile: Decimal | None = Field(default=None, max_digits=6, decimal_places=3, allow_inf_nan=False)
    window: Annotated[RollingWindow | None, BeforeValidator(_window)] = None
    service: Name | None = None
    operation: Name | None = None
    channel: Literal["email", "web", "phone", "social", "api"] | None = None
    priority: Literal["urgent", "high", "normal", "low"] | None = None


class CreditBandSpec(Spec):
    """Below `below` % achieved, `credit` % of the monthly fee."""

    below: Decimal = Field(max_digits=7, decimal_places=4, allow_inf_nan=False)
    credit: Decimal = Field(max_digits=6, decimal_places=3, allow_inf_nan=False)


class CreditsSpec(Spec):
    """An agreement's credit schedule."""

    cap: Decimal = Field(default=Decimal(100), max_digits=6, decimal_places=3, allow_inf_nan=False)
    bands: list[CreditBandSpec]
    # a credit smaller than this amount (in the agreement's currency) is not issued
    minimum: Decimal = Field(default=Decimal(0), ge=0, max_digits=12, decimal_places=2, allow_inf_nan=False)
    # days after the period's end in which the customer may claim; none: until the end of the next month
    claim_days: int | None = Field(default=None, ge=1, le=366)


def _instant_text(value: object) -> object:
    """An instant as written: YAML reads an unquoted 2026-11-14T02:00:00+01:00 as a datetime already."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        raise ValueError(f"{value} is a day: write an instant with its offset, like {value}T02:00:00+00:00")
    return value


InstantText = Annotated[str, BeforeValidator(_instant_text)]


class MaintenanceSpec(Spec):
    """A maintenance window declared in advance: its minutes are not counted against the run-time objectives."""

    start: InstantText
    end: InstantText
    reason: Text = ""


def parse_instant(text: str) -> tuple[dt.datetime | None, str]:
    """(the aware instant, "") or (None, what is wrong): ISO 8601 with an offset (or Z), on a whole minute."""
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        return None, f"{show(text)} is not an instant like 2026-11-14T02:00:00+01:00"
    if value.tzinfo is None:
        return None, f"{show(text)} has no offset: write it like 2026-11-14T02:00:00+01:00 (or Z for UTC)"
    if value.second or value.microsecond:
        return None, f"{show(text)} is not on a whole minute (rollups count whole minutes)"
    return value.astimezone(dt.UTC), ""


def _utc_text(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%MZ")


def _maintenance_dicts(windows: list[tuple[dt.datetime, dt.datetime, str]]) -> list[dict[str, Any]]:
    return [drop_empty({"start": _utc_text(a), "end": _utc_text(b), "reason": reason}, keep=("start", "end"))
            for a, b, reason in sorted(windows, key=lambda w: (w[0], w[1]))]


def _maintenance_of(a: AgreementSpec) -> list[tuple[dt.datetime, dt.datetime, str]]:
    """The file's windows as instants (after the check passed: every instant parses)."""
    out = []
    for w in a.maintenance:
        start, _ = parse_instant(w.start)
        end, _ = parse_instant(w.end)
        assert start is not None and end is not None
        out.append((start, end, w.reason))
    return out


class AgreementSpec(Spec):
    """A service-level agreement for a tier or for one account."""

    name: Name
    title: Text = ""
    tier: TierName | None = None
    account: ExternalId | None = None
    effective_from: IsoDate
    effective_to: IsoDate | None = None
    monthly_fee: Money = Decimal(0)
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = "EUR"
    calendar: Name
    services: list[Name] = []
    objectives: list[ObjectiveSpec] = []
    credits: CreditsSpec | None = None
    maintenance: list[MaintenanceSpec] = []


def _objective_dict(
    name: str, kind: str, target: Decimal, percentile: Decimal | None, rolling_days: int | None,
    service: str | None, operation: str | None, channel: str | None, priority: str | None,
) -> dict[str, Any]:
    return drop_empty(
        {
            "name": name, "kind": kind, "target": num(target), "percentile": num(percentile),
            "window": {"rolling_days": rolling_days} if rolling_days else "calendar_month",
            "service": service, "operation": operation, "channel": channel, "priority": priority,
        },
        keep=("name", "kind", "target", "window"),
    )


def _credits_dict(cap: Decimal, bands: list[tuple[Decimal, Decimal]], minimum: Decimal = Decimal(0),
                  claim_days: int | None = None) -> dict[str, Any]:
    return drop_empty({"cap": num(cap),
                       "bands": [{"below": num(b), "credit": num(c)} for b, c in sorted(bands, key=lambda x: -x[0])],
                       "minimum": num(minimum) if minimum else None, "claim_days": claim_days},
                      keep=("cap", "bands"))


def _agreement_dict(
    name: str, title: str, tier: str | None, account: str | None, effective_from: Any, effective_to: Any,
    fee: Decimal, currency: str, calendar: str, services: list[str], objectives: list[dict[str, Any]],
    credits: dict[str, Any] | None, maintenance: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return drop_empty(
        {
            "name": name, "title": title, "tier": tier, "account": account,
            "effective_from": effective_from, "effective_to": effective_to,
            "monthly_fee": num(fee), "currency": currency, "calendar": calendar,
            "services": sorted(services), "objectives": sorted(objectives, key=lambda o: o["name"]),
            "credits": credits, "maintenance": maintenance or None,
        },
        keep=("name", "effective_from", "monthly_fee", "currency", "calendar"),
    )


def agreement_dict_from_spec(a: AgreementSpec) -> dict[str, Any]:
    """An agreement of the file in canonical form."""
    return _agreement_dict(
        a.name, a.title, a.tier, a.account, a.effective_from, a.effective_to, a.monthly_fee, a.currency, a.calendar,
        a.services,
        [_objective_dict(o.name, o.kind, o.target, o.percentile, o.window.rolling_days if o.window else None,
                         o.service, o.operation, o.channel, o.priority) for o in a.objectives],
        _credits_dict(a.credits.cap, [(b.below, b.credit) for b in a.credits.bands], a.credits.minimum,
                      a.credits.claim_days) if a.credits else None,
        _maintenance_dicts(_maintenance_of(a)),
    )


def agreement_dict_from_db(a: Agreement) -> dict[str, Any]:
    """A stored agreement in canonical form, with its objectives and credit schedule."""
    schedule = CreditSchedule.objects.filter(agreement=a).first()
    return _agreement_dict(
        a.name, a.title, a.tier.name if a.tier else None, a.account.external_id if a.account else None,
        a.effective_from, a.effective_to, a.monthly_fee, a.currency, a.calendar.name,
        [s.name for s in a.services.all()],
        [_objective_dict(o.name, o.kind, o.target, o.percentile,
                         o.window_days if o.window == Objective.Window.ROLLING else None,
                         o.service.name if o.service else None, o.operation.name if o.operation else None,
                         o.channel or None, o.priority or None)
         for o in a.objectives.select_related("service", "operation")],
        _credits_dict(schedule.cap_percent, [(b.below_percent, b.credit_percent) for b in schedule.bands.all()],
                      schedule.minimum_amount, schedule.claim_days) if schedule else None,
        _maintenance_dicts([(w.start, w.end, w.reason) for w in a.maintenance_windows.all()]),
    )


class AgreementKind(Kind, section="agreements", singular="agreement", spec=AgreementSpec, model=Agreement,
                    depends=("calendars", "tiers", "services")):
    """Agreements for a tier or an account: objectives on services and on support, and a credit schedule."""

    def message(self, error: Any) -> str | None:
        last = error["loc"][-1] if error["loc"] else None
        if error["type"] == "extra_forbidden" and last == "window_days":
            return "unknown key: a rolling window is written `window: {rolling_days: 28}`; a calendar month has no days"
        if error["type"] == "string_pattern_mismatch" and last == "currency":
            return f"{show(error.get('input'))} is not a currency code like EUR"
        return None

    def check(self, check: Check) -> None:
        services = check.known("services")
        file_services = {s.name for s in check.items("services")}
        operations = {(s.name, o.name) for s in check.items("services") for o in s.operations}
        operations |= {
            (svc, op)
            for svc, op in Operation.objects.filter(service__name__in=services).values_list("service__name", "name")
            if svc not in file_services  # the file's list of operations replaces the stored one
        }
        wanted = {a.account for a in check.items("agreements") if a.account}
        accounts = set(Account.objects.filter(external_id__in=wanted).values_list("external_id", flat=True))
        for p, ag in check.each("agreements"):
            if (ag.tier is None) == (ag.account is None):
                check.err(p, "give exactly one of `tier` or `account`")
            if ag.tier:
                check.refers(f"{p}.tier", "tiers", ag.tier)
            if ag.account and ag.account not in accounts:
                check.err(f"{p}.account", f"no account with external id '{ag.account}'")
            check.refers(f"{p}.calendar", "calendars", ag.calendar)
            if ag.effective_to and ag.effective_to < ag.effective_from:
                check.err(f"{p}.effective_to", f"{ag.effective_to} is before effective_from ({ag.effective_from})")
            for j, name in enumerate(ag.services):
                check.refers(f"{p}.services[{j}]", "services", name)
            check.unique(f"{p}.objectives", ag.objectives, lambda o: o.name)
            for j, obj in enumerate(ag.objectives):
                self._objective(check, f"{p}.objectives[{j}]", obj, services, operations)
            if ag.credits is not None:
                for where, problem in credit_errors(ag.credits.cap, [(b.below, b.credit) for b in ag.credits.bands]):
                    check.err(f"{p}.credits.{where}", problem)
            self._maintenance(check, p, ag)

    def _maintenance(self, check: Check, p: str, ag: AgreementSpec) -> None:
        """Each window parses, ends after it starts, overlaps no other, and is declared in advance: a window not
        stored yet must start after now (a window cannot be declared once it has begun, nor stretched)."""
        stored = set(MaintenanceWindow.objects.filter(agreement__name=ag.name).values_list("start", "end"))
        now = timezone.now()
        seen: list[tuple[int, dt.datetime, dt.datetime]] = []
        for j, w in enumerate(ag.maintenance):
            where = f"{p}.maintenance[{j}]"
            start, problem = parse_instant(w.start)
            if start is None:
                check.err(f"{where}.start", problem)
            end, problem = parse_instant(w.end)
            if end is None:
                check.err(f"{where}.end", problem)
            if start is None or end is None:
                continue
            if end <= start:
                check.err(f"{where}.end", f"{w.end} is not after start ({w.start})")
                continue
            for k, other_start, other_end in seen:
                if start < other_end and other_start < end:
                    check.err(where, f"overlaps maintenance[{k}]")
            seen.append((j, start, end))
            if (start, end) not in stored and start <= now:
                check.err(f"{where}.start", f"{w.start} has begun (it is {_utc_text(now)}): a maintenance window "
                                            "is declared in advance, before it starts")

    def _objective(self, check: Check, p: str, o: ObjectiveSpec, services: set[str],
                   operations: set[tuple[str, str]]) -> None:
        for fld, problem in objective_errors(
            o.kind, o.target, o.percentile, has_service=bool(o.service), has_operation=bool(o.operation),
            channel=o.channel, priority=o.priority,
        ):
            check.err(f"{p}.{fld}" if fld else p, problem)
        if o.service and o.service not in services:
            check.err(f"{p}.service", check.missing("services", o.service))
        if o.operation and o.service in services and (o.service, o.operation) not in operations:
            check.err(f"{p}.operation", f"service '{o.service}' has no operation '{o.operation}'")

    def canonical(self, item: AgreementSpec) -> dict[str, Any]:
        return agreement_dict_from_spec(item)

    def stored(self, name: str) -> dict[str, Any] | None:
        ag = Agreement.objects.filter(name=name).select_related("tier", "account", "calendar").first()
        return agreement_dict_from_db(ag) if ag else None

    def write(self, items: list[AgreementSpec]) -> None:
        for a in items:
            _write_agreement(a)

    def export(self) -> tuple[list[dict[str, Any]], list[str]]:
        rows, notes = self.real(Agreement.objects.order_by("name"), account__simulated=True)
        out = []
        for a in rows.select_related("tier", "account", "calendar").prefetch_related("services"):
            if a.account is not None and not a.account.external_id:
                notes.append(f"agreement '{a.name}' is left out: its account '{a.account}' has no external id to "
                             "name it by")
                continue
            out.append(agreement_dict_from_db(a))
        return out, notes


def _write_agreement(a: AgreementSpec) -> None:
    ag, _ = Agreement.objects.update_or_create(
        name=a.name,
        defaults={
            "title": a.title,
            "tier": Tier.objects.get(name=a.tier) if a.tier else None,
            "account": Account.objects.get(external_id=a.account) if a.account else None,
            "effective_from": a.effective_from,
            "effective_to": a.effective_to,
            "monthly_fee": a.monthly_fee,
            "currency": a.currency,
            "calendar": BusinessCalendar.objects.get(name=a.calendar),
        },
    )
    ag.services.set(Service.objects.filter(name__in=a.services))
    ag.objectives.exclude(name__in=[o.name for o in a.objectives]).delete()
    for o in a.objectives:
        service = Service.objects.get(name=o.service) if o.service else None
        Objective.objects.update_or_create(
            agreement=ag,
            name=o.name,
            defaults={
                "kind": o.kind,
                "target": o.target,
                "percentile": o.percentile,
                "window": Objective.Window.ROLLING if o.window else Objective.Window.CALENDAR_MONTH,
                "window_days": o.window.rolling_days if o.window else None,
                "service": service,
                "operation": Operation.objects.get(service=service, name=o.operation) if o.operation else None,
                "channel": o.channel or "",
                "priority": o.priority or "",
            },
        )
    _write_maintenance(ag, a)
    if a.credits is None:
        CreditSchedule.objects.filter(agreement=ag).delete()
        return
    schedule, _ = CreditSchedule.objects.update_or_create(agreement=ag, defaults={
        "cap_percent": a.credits.cap, "minimum_amount": a.credits.minimum, "claim_days": a.credits.claim_days})
    stored = {band.below_percent: band for band in schedule.bands.all()}  # Decimal('99.9000') == Decimal('99.9')
    for b in a.credits.bands:
        band = stored.pop(b.below, None)
        if band is None:
            CreditBand.objects.create(schedule=schedule, below_percent=b.below, credit_percent=b.credit)
        elif band.credit_percent != b.credit:
            band.credit_percent = b.credit
            band.save(update_fields=["credit_percent"])
    CreditBand.objects.filter(pk__in=[band.pk for band in stored.values()]).delete()


def _write_maintenance(ag: Agreement, a: AgreementSpec) -> None:
    """Windows by (start, end): a stored one keeps the instant it was declared; a new one is declared now."""
    stored = {(w.start, w.end): w for w in ag.maintenance_windows.all()}
    now = timezone.now()
    for start, end, reason in _maintenance_of(a):
        window = stored.pop((start, end), None)
        if window is None:
            MaintenanceWindow.objects.create(agreement=ag, start=start, end=end, reason=reason, declared_at=now)
        elif window.reason != reason:
            window.reason = reason
            window.save(update_fields=["reason"])
    MaintenanceWindow.objects.filter(pk__in=[w.pk for w in stored.values()]).delete()
