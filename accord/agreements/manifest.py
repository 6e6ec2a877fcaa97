"""Agreements as code: validate, apply and export the YAML manifest of calendars, tiers, services,
partners and agreements (docs/agreements-as-code.md).

Validation runs in two phases and reports every problem with its path in the file:
1. structure and types (pydantic, unknown keys forbidden);
2. meaning: working windows, time zones, holidays, cross-references to the file and the database,
   objective and credit rules.
Nothing is written unless both phases pass; then everything is written in one transaction.
Each object is compared with its exported form first, so applying the same file twice changes nothing,
and apply(export()) is a no-op.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

import yaml
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import URLValidator
from django.db import transaction
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic import ValidationError as PydanticValidationError

from accord.catalog.models import (
    Endpoint,
    Operation,
    PartnerService,
    Pool,
    Service,
    validate_base_path,
    validate_path_pattern,
)
from accord.customers.models import Account, Tier, validate_timezone

from .hours import WEEKDAYS, day_errors, normalise_hours, weekly_minutes
from .models import (
    Agreement,
    BusinessCalendar,
    CreditBand,
    CreditSchedule,
    Objective,
    credit_errors,
    holiday_errors,
    objective_errors,
)

SECTIONS = ("calendars", "tiers", "services", "partners", "agreements")


class ManifestError(Exception):
    """The manifest cannot be applied; `errors` lists every problem as 'path: message'."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


# -- reading YAML ---------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """Safe YAML with exact decimals and duplicate keys reported instead of silently dropped."""


def _construct_decimal(loader: _Loader, node: yaml.ScalarNode) -> Decimal | float:
    text = str(loader.construct_scalar(node)).replace("_", "")
    try:
        return Decimal(text)
    except InvalidOperation:
        return float(loader.construct_yaml_float(node))  # .inf, .nan: refused later by range checks


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _value_node in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first on line {seen[key] + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return dict(loader.construct_pairs(node))


_Loader.add_constructor("tag:yaml.org,2002:float", _construct_decimal)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(text: str, source: str = "<string>") -> Any:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise ManifestError([f"{where}: {e.problem or e}"]) from None
    except yaml.YAMLError as e:
        raise ManifestError([f"{source}: {e}"]) from None


# -- structure (phase 1) ----------------------------------------------------------------------------------

Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=80)]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class HolidaysSpec(Spec):
    country: str | None = None
    subdivision: str | None = None
    extra: list[dt.date] = []
    removed: list[dt.date] = []


class CalendarSpec(Spec):
    name: Name
    timezone: str
    hours: dict[Weekday, list[Any]]
    holidays: HolidaysSpec | None = None


class TierSpec(Spec):
    name: Name
    rank: int = Field(ge=1, le=1000)
    min_commitment: Decimal | None = None
    min_revenue_12m: Decimal | None = None
    match: Literal["any", "all"] = "any"
    description: str = ""


class OperationSpec(Spec):
    name: Name
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "*"]
    path: str
    title: str = ""


class EndpointSpec(Spec):
    url: str
    weight: int = Field(default=1, ge=1, le=1000)
    enabled: bool = True


class PoolSpec(Spec):
    name: Name
    role: Literal["primary", "standby"] = "primary"
    capacity: int = Field(ge=1)
    endpoints: list[EndpointSpec] = []


class ServiceSpec(Spec):
    name: Name
    title: str = ""
    base_path: str
    owner: str = ""
    cost_per_instance_hour: Decimal = Field(default=Decimal(0), ge=0)
    allow_anonymous: bool = False
    operations: list[OperationSpec] = []
    pools: list[PoolSpec] = []


class PartnerSpec(Spec):
    name: Name
    provider: str = ""
    promised_availability: Decimal = Field(ge=0, le=100)
    services: list[Name] = []


class RollingWindow(Spec):
    rolling_days: int = Field(ge=1, le=366)


class ObjectiveSpec(Spec):
    name: Name
    kind: Literal["availability", "latency", "error_rate", "first_response", "next_response", "resolution"]
    target: Decimal
    percentile: Decimal | None = None
    window: Literal["calendar_month"] | RollingWindow = "calendar_month"
    service: Name | None = None
    operation: Name | None = None
    channel: Literal["email", "web", "phone", "social", "api"] | None = None
    priority: Literal["urgent", "high", "normal", "low"] | None = None


class CreditBandSpec(Spec):
    below: Decimal
    credit: Decimal


class CreditsSpec(Spec):
    cap: Decimal = Decimal(100)
    bands: list[CreditBandSpec]


class AgreementSpec(Spec):
    name: Name
    title: str = ""
    tier: Name | None = None
    account: str | None = None
    effective_from: dt.date
    effective_to: dt.date | None = None
    monthly_fee: Decimal = Field(default=Decimal(0), ge=0)
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = "EUR"
    calendar: Name
    services: list[Name] = []
    objectives: list[ObjectiveSpec] = []
    credits: CreditsSpec | None = None


class ManifestSpec(Spec):
    calendars: list[CalendarSpec] = []
    tiers: list[TierSpec] = []
    services: list[ServiceSpec] = []
    partners: list[PartnerSpec] = []
    agreements: list[AgreementSpec] = []


def _is_branch(part: Any) -> bool:
    """A union branch tag in an error location: a model class name or 'literal[...]'."""
    return isinstance(part, str) and (part[:1].isupper() or part.startswith(("literal[", "function-")))


def _one_branch(errors: list[Any]) -> list[Any]:
    """For a value that may be a string or a mapping, report the errors of the branch the input was meant for."""
    out = []
    by_base: dict[tuple[Any, ...], list[Any]] = {}
    for error in errors:
        loc = error["loc"]
        cut = next((i for i, part in enumerate(loc) if _is_branch(part)), None)
        if cut is None:
            out.append(error)
        else:
            by_base.setdefault(tuple(loc[:cut]), []).append((loc[cut], error))
    for branches in by_base.values():
        model = [err for tag, err in branches if tag[:1].isupper() and err["type"] != "model_type"]
        out.extend(model or [err for tag, err in branches if not tag[:1].isupper()])
    return out


def _path(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("[key]",):
            continue
        elif _is_branch(part):
            continue  # pydantic's union branch names are noise to a reader
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _message(error: Any) -> str:
    kind, msg = error["type"], error["msg"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "is required"
    if kind == "literal_error":
        return msg.replace("Input should be", "must be")
    if kind == "string_pattern_mismatch" and error["loc"] and error["loc"][-1] in ("name", "tier", "calendar"):
        return f"{error['input']!r} is not a name (lower-case letters, digits, '-' and '_')"
    if kind.startswith("value_error") and "ctx" in error:
        return str(error["ctx"].get("error", msg))
    return msg[0].lower() + msg[1:] if msg else kind


def _structure(data: Any) -> ManifestSpec:
    if data is None:
        return ManifestSpec()
    if not isinstance(data, dict):
        raise ManifestError([f"(top level): must be a mapping with sections {', '.join(SECTIONS)}"])
    try:
        return ManifestSpec.model_validate(data)
    except PydanticValidationError as e:
        lines = []
        seen = set()
        for error in _one_branch(e.errors()):
            line = f"{_path(error['loc'])}: {_message(error)}"
            if line not in seen:
                seen.add(line)
                lines.append(line)
        raise ManifestError(lines) from None


# -- meaning (phase 2) ------------------------------------------------------------------------------------


@dataclass
class _Checker:
    spec: ManifestSpec
    errors: list[str] = field(default_factory=list)

    def err(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")

    def unique(self, section: str, items: list[Any], key: Callable[[Any], Any], label: str = "name") -> None:
        first: dict[Any, int] = {}
        for i, item in enumerate(items):
            k = key(item)
            if k in first:
                self.err(f"{section}[{i}].{label}", f"{k!r} appears more than once (first at {section}[{first[k]}])")
            else:
                first[k] = i

    def run(self) -> list[str]:
        s = self.spec
        for name in SECTIONS:
            self.unique(name, getattr(s, name), lambda x: x.name)
        self.calendars()
        self.tiers()
        self.services()
        self.partners()
        self.agreements()
        return self.errors

    def calendars(self) -> None:
        for i, cal in enumerate(self.spec.calendars):
            p = f"calendars[{i}]"
            try:
                validate_timezone(cal.timezone)
            except DjangoValidationError as e:
                self.err(f"{p}.timezone", e.messages[0])
            bad = False
            for day in WEEKDAYS:
                for index, message in day_errors(cal.hours.get(day, [])):  # type: ignore[call-overload]
                    bad = True
                    self.err(f"{p}.hours.{day}" + (f"[{index}]" if index is not None else ""), message)
            if not bad and weekly_minutes(cal.hours) == 0:  # type: ignore[arg-type]
                self.err(f"{p}.hours", "the calendar has no working time at all")
            h = cal.holidays
            if h is not None:
                if h.country:
                    for fld, message in holiday_errors(h.country, h.subdivision or ""):
                        self.err(f"{p}.holidays.{'country' if fld == 'holiday_country' else 'subdivision'}", message)
                elif h.subdivision:
                    self.err(f"{p}.holidays.subdivision", "a subdivision needs a country")
                both = set(h.extra) & set(h.removed)
                if both:
                    self.err(f"{p}.holidays", f"{sorted(d.isoformat() for d in both)} both extra and removed")

    def tiers(self) -> None:
        self.unique("tiers", self.spec.tiers, lambda t: t.rank, "rank")
        names = {t.name for t in self.spec.tiers}
        taken = dict(Tier.objects.exclude(name__in=names).values_list("rank", "name"))
        for i, t in enumerate(self.spec.tiers):
            if t.rank in taken:
                self.err(f"tiers[{i}].rank", f"rank {t.rank} is taken by tier '{taken[t.rank]}' (not in this file)")
            for fld in ("min_commitment", "min_revenue_12m"):
                value = getattr(t, fld)
                if value is not None and (not value.is_finite() or value < 0):
                    self.err(f"tiers[{i}].{fld}", "must be a non-negative amount")

    def services(self) -> None:
        names = {s.name for s in self.spec.services}
        self.unique("services", self.spec.services, lambda s: s.base_path, "base_path")
        taken = dict(Service.objects.exclude(name__in=names).values_list("base_path", "name"))
        url = URLValidator(schemes=["http", "https"])
        for i, svc in enumerate(self.spec.services):
            p = f"services[{i}]"
            try:
                validate_base_path(svc.base_path)
            except DjangoValidationError as e:
                self.err(f"{p}.base_path", e.messages[0])
            if svc.base_path in taken:
                self.err(f"{p}.base_path", f"'{svc.base_path}' is the base path of service '{taken[svc.base_path]}'")
            self.unique(f"{p}.operations", svc.operations, lambda o: o.name)
            self.unique(f"{p}.operations", svc.operations, lambda o: (o.method, o.path), "path")
            for j, op in enumerate(svc.operations):
                try:
                    validate_path_pattern(op.path)
                except DjangoValidationError as e:
                    self.err(f"{p}.operations[{j}].path", e.messages[0])
            self.unique(f"{p}.pools", svc.pools, lambda o: o.name)
            for j, pool in enumerate(svc.pools):
                self.unique(f"{p}.pools[{j}].endpoints", pool.endpoints, lambda e: e.url, "url")
                for k, ep in enumerate(pool.endpoints):
                    try:
                        url(ep.url)
                    except DjangoValidationError:
                        self.err(f"{p}.pools[{j}].endpoints[{k}].url", f"'{ep.url}' is not an http(s) URL")

    def _services_known(self) -> set[str]:
        return {s.name for s in self.spec.services} | set(Service.objects.values_list("name", flat=True))

    def partners(self) -> None:
        known = self._services_known()
        for i, partner in enumerate(self.spec.partners):
            for j, name in enumerate(partner.services):
                if name not in known:
                    self.err(f"partners[{i}].services[{j}]", f"no service named '{name}'")

    def agreements(self) -> None:
        calendars = {c.name for c in self.spec.calendars} | set(BusinessCalendar.objects.values_list("name", flat=True))
        tiers = {t.name for t in self.spec.tiers} | set(Tier.objects.values_list("name", flat=True))
        services = self._services_known()
        operations = {(s.name, o.name) for s in self.spec.services for o in s.operations}
        file_services = {s.name for s in self.spec.services}
        operations |= {
            (svc, op)
            for svc, op in Operation.objects.values_list("service__name", "name")
            if svc not in file_services  # the file's own list replaces the stored one
        }
        accounts = {a.account for a in self.spec.agreements if a.account}
        known_accounts = set(Account.objects.filter(external_id__in=accounts).values_list("external_id", flat=True))
        for i, ag in enumerate(self.spec.agreements):
            p = f"agreements[{i}]"
            if (ag.tier is None) == (ag.account is None):
                self.err(p, "give exactly one of `tier` or `account`")
            if ag.tier and ag.tier not in tiers:
                self.err(f"{p}.tier", f"no tier named '{ag.tier}'")
            if ag.account and ag.account not in known_accounts:
                self.err(f"{p}.account", f"no account with external id '{ag.account}'")
            if ag.calendar not in calendars:
                self.err(f"{p}.calendar", f"no calendar named '{ag.calendar}'")
            if ag.effective_to and ag.effective_to < ag.effective_from:
                self.err(f"{p}.effective_to", "ends before effective_from")
            for j, name in enumerate(ag.services):
                if name not in services:
                    self.err(f"{p}.services[{j}]", f"no service named '{name}'")
            self.unique(f"{p}.objectives", ag.objectives, lambda o: o.name)
            for j, obj in enumerate(ag.objectives):
                self.objective(f"{p}.objectives[{j}]", obj, services, operations)
            if ag.credits is not None:
                self.credits(f"{p}.credits", ag.credits)

    def objective(self, p: str, o: ObjectiveSpec, services: set[str], operations: set[tuple[str, str]]) -> None:
        for fld, message in objective_errors(
            o.kind, o.target, o.percentile, has_service=bool(o.service), has_operation=bool(o.operation),
            channel=o.channel, priority=o.priority,
        ):
            self.err(f"{p}.{fld}" if fld else p, message)
        if o.service and o.service not in services:
            self.err(f"{p}.service", f"no service named '{o.service}'")
        if o.operation and o.service in services and (o.service, o.operation) not in operations:
            self.err(f"{p}.operation", f"service '{o.service}' has no operation '{o.operation}'")

    def credits(self, p: str, c: CreditsSpec) -> None:
        for path, message in credit_errors(c.cap, [(b.below, b.credit) for b in c.bands]):
            self.err(f"{p}.{path}", message)


def load_manifest(text: str, source: str = "<string>") -> ManifestSpec:
    """Parse and validate a manifest; raises ManifestError listing every problem."""
    spec = _structure(read_yaml(text, source))
    errors = _Checker(spec).run()
    if errors:
        raise ManifestError(errors)
    return spec


# -- canonical form, shared by apply (desired) and export (stored) -------------------------------------------


def _num(value: Decimal | int | float | None) -> Decimal | None:
    """Decimals without trailing zeros, so 99.9500 stored equals 99.95 written."""
    if value is None:
        return None
    d = Decimal(value).normalize() if not isinstance(value, Decimal) else value.normalize()
    return d.quantize(Decimal(1)) if d == d.to_integral_value() else d


def _drop_empty(d: dict[str, Any], keep: Iterable[str] = ()) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k in keep or v not in (None, "", [], {}, False)}


def calendar_dict(
    name: str, timezone: str, hours: dict[str, list[str]], country: str, subdivision: str,
    extra: Iterable[dt.date | str], removed: Iterable[dt.date | str],
) -> dict[str, Any]:
    holidays = _drop_empty(
        {
            "country": country or None,
            "subdivision": subdivision or None,
            "extra": sorted(str(d) for d in extra),
            "removed": sorted(str(d) for d in removed),
        }
    )
    out: dict[str, Any] = {"name": name, "timezone": timezone, "hours": normalise_hours(hours)}
    if holidays:
        out["holidays"] = holidays
    return out


def tier_dict(t: TierSpec | Tier) -> dict[str, Any]:
    return _drop_empty(
        {
            "name": t.name,
            "rank": t.rank,
            "min_commitment": _num(t.min_commitment),
            "min_revenue_12m": _num(t.min_revenue_12m),
            "match": t.match,
            "description": t.description,
        },
        keep=("name", "rank", "match"),
    )


def _endpoint_dict(url: str, weight: int, enabled: bool) -> dict[str, Any]:
    return {"url": url, "weight": weight, "enabled": enabled}


def service_dict_from_spec(s: ServiceSpec) -> dict[str, Any]:
    return _service_dict(
        s.name, s.title, s.base_path, s.owner, s.cost_per_instance_hour, s.allow_anonymous,
        [{"name": o.name, "method": o.method, "path": o.path, "title": o.title} for o in s.operations],
        [
            {"name": p.name, "role": p.role, "capacity": p.capacity,
             "endpoints": [_endpoint_dict(e.url, e.weight, e.enabled) for e in p.endpoints]}
            for p in s.pools
        ],
    )


def service_dict_from_db(s: Service) -> dict[str, Any]:
    return _service_dict(
        s.name, s.title, s.base_path, s.owner, s.cost_per_instance_hour, s.allow_anonymous,
        [{"name": o.name, "method": o.method, "path": o.path_pattern, "title": o.title} for o in s.operations.all()],
        [
            {"name": p.name, "role": p.role, "capacity": p.capacity,
             "endpoints": [_endpoint_dict(e.url, e.weight, e.enabled) for e in p.endpoints.all()]}
            for p in s.pools.all()
        ],
    )


def _service_dict(
    name: str, title: str, base_path: str, owner: str, cost: Decimal, anonymous: bool,
    operations: list[dict[str, Any]], pools: list[dict[str, Any]],
) -> dict[str, Any]:
    return _drop_empty(
        {
            "name": name,
            "title": title,
            "base_path": base_path,
            "owner": owner,
            "cost_per_instance_hour": _num(cost),
            "allow_anonymous": anonymous,
            "operations": [_drop_empty(o, keep=("name", "method", "path")) for o in sorted(operations, key=lambda o: o["name"])],
            "pools": [
                {**p, "endpoints": sorted(p["endpoints"], key=lambda e: e["url"])}
                for p in sorted(pools, key=lambda p: p["name"])
            ],
        },
        keep=("name", "base_path", "cost_per_instance_hour"),
    )


def partner_dict(name: str, provider: str, availability: Decimal, services: Iterable[str]) -> dict[str, Any]:
    return _drop_empty(
        {"name": name, "provider": provider, "promised_availability": _num(availability), "services": sorted(services)},
        keep=("name", "promised_availability"),
    )


def _objective_dict(
    name: str, kind: str, target: Decimal, percentile: Decimal | None, window: Any,
    service: str | None, operation: str | None, channel: str | None, priority: str | None,
) -> dict[str, Any]:
    return _drop_empty(
        {
            "name": name, "kind": kind, "target": _num(target), "percentile": _num(percentile), "window": window,
            "service": service, "operation": operation, "channel": channel, "priority": priority,
        },
        keep=("name", "kind", "target", "window"),
    )


def _credits_dict(cap: Decimal, bands: Iterable[tuple[Decimal, Decimal]]) -> dict[str, Any]:
    return {
        "cap": _num(cap),
        "bands": [{"below": _num(b), "credit": _num(c)} for b, c in sorted(bands, key=lambda x: -x[0])],
    }


def agreement_dict_from_spec(a: AgreementSpec) -> dict[str, Any]:
    return _agreement_dict(
        a.name, a.title, a.tier, a.account, a.effective_from, a.effective_to, a.monthly_fee, a.currency, a.calendar,
        a.services,
        [
            _objective_dict(
                o.name, o.kind, o.target, o.percentile,
                o.window if isinstance(o.window, str) else {"rolling_days": o.window.rolling_days},
                o.service, o.operation, o.channel, o.priority,
            )
            for o in a.objectives
        ],
        _credits_dict(a.credits.cap, [(b.below, b.credit) for b in a.credits.bands]) if a.credits else None,
    )


def agreement_dict_from_db(a: Agreement) -> dict[str, Any]:
    schedule = CreditSchedule.objects.filter(agreement=a).first()
    return _agreement_dict(
        a.name, a.title, a.tier.name if a.tier else None, a.account.external_id if a.account else None,
        a.effective_from, a.effective_to, a.monthly_fee, a.currency, a.calendar.name,
        [s.name for s in a.services.all()],
        [
            _objective_dict(
                o.name, o.kind, o.target, o.percentile,
                "calendar_month" if o.window == Objective.Window.CALENDAR_MONTH else {"rolling_days": o.window_days},
                o.service.name if o.service else None, o.operation.name if o.operation else None,
                o.channel or None, o.priority or None,
            )
            for o in a.objectives.select_related("service", "operation")
        ],
        _credits_dict(schedule.cap_percent, [(b.below_percent, b.credit_percent) for b in schedule.bands.all()])
        if schedule
        else None,
    )


def _agreement_dict(
    name: str, title: str, tier: str | None, account: str | None, effective_from: dt.date,
    effective_to: dt.date | None, fee: Decimal, currency: str, calendar: str, services: Iterable[str],
    objectives: list[dict[str, Any]], credits: dict[str, Any] | None,
) -> dict[str, Any]:
    return _drop_empty(
        {
            "name": name, "title": title, "tier": tier, "account": account,
            "effective_from": effective_from, "effective_to": effective_to,
            "monthly_fee": _num(fee), "currency": currency, "calendar": calendar,
            "services": sorted(services),
            "objectives": sorted(objectives, key=lambda o: o["name"]),
            "credits": credits,
        },
        keep=("name", "effective_from", "monthly_fee", "currency", "calendar"),
    )


# -- apply -------------------------------------------------------------------------------------------------


@dataclass
class ApplyResult:
    """Per object: (section, name, 'created' | 'updated' | 'unchanged')."""

    outcomes: list[tuple[str, str, str]] = field(default_factory=list)
    dry_run: bool = False

    def count(self, outcome: str) -> int:
        return sum(1 for o in self.outcomes if o[2] == outcome)

    @property
    def changed(self) -> bool:
        return any(o[2] != "unchanged" for o in self.outcomes)

    def summary(self) -> str:
        verb = "would be " if self.dry_run else ""
        return (
            f"{self.count('created')} {verb}created, {self.count('updated')} {verb}updated, "
            f"{self.count('unchanged')} unchanged"
        )


class _DryRun(Exception):
    pass


def apply_manifest(text: str, *, dry_run: bool = False, source: str = "<string>") -> ApplyResult:
    """Validate, then create or update every object of the manifest in one transaction."""
    spec = load_manifest(text, source)
    result = ApplyResult(dry_run=dry_run)
    try:
        with transaction.atomic():
            _apply(spec, result)
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    return result


def _outcome(result: ApplyResult, section: str, name: str, before: dict[str, Any] | None, after: dict[str, Any]) -> bool:
    """Record what happens to one object; True if it must be written."""
    state = "created" if before is None else "unchanged" if before == after else "updated"
    result.outcomes.append((section, name, state))
    return state != "unchanged"


def _apply(spec: ManifestSpec, result: ApplyResult) -> None:
    for c in spec.calendars:
        h = c.holidays or HolidaysSpec()
        desired = calendar_dict(c.name, c.timezone, c.hours, h.country or "", h.subdivision or "", h.extra, h.removed)  # type: ignore[arg-type]
        cal = BusinessCalendar.objects.filter(name=c.name).first()
        if _outcome(result, "calendar", c.name, export_calendar(cal) if cal else None, desired):
            BusinessCalendar.objects.update_or_create(
                name=c.name,
                defaults={
                    "timezone": c.timezone,
                    "hours": desired["hours"],
                    "holiday_country": h.country or "",
                    "holiday_subdivision": h.subdivision or "",
                    "extra_holidays": sorted(d.isoformat() for d in h.extra),
                    "removed_holidays": sorted(d.isoformat() for d in h.removed),
                },
            )

    changed_tiers = []
    for t in spec.tiers:
        existing = Tier.objects.filter(name=t.name).first()
        if _outcome(result, "tier", t.name, tier_dict(existing) if existing else None, tier_dict(t)):
            changed_tiers.append(t)
    # Ranks are unique: park the changed tiers out of the way first, so two tiers can swap ranks.
    for i, t in enumerate(changed_tiers):
        Tier.objects.filter(name=t.name).update(rank=30000 + i)
    for t in changed_tiers:
        Tier.objects.update_or_create(
            name=t.name,
            defaults={
                "rank": t.rank, "min_commitment": t.min_commitment, "min_revenue_12m": t.min_revenue_12m,
                "match": t.match, "description": t.description,
            },
        )

    for s in spec.services:
        svc = Service.objects.filter(name=s.name).first()
        if _outcome(result, "service", s.name, service_dict_from_db(svc) if svc else None, service_dict_from_spec(s)):
            _write_service(s)

    for p in spec.partners:
        partner = PartnerService.objects.filter(name=p.name).first()
        before = export_partner(partner) if partner else None
        if _outcome(result, "partner", p.name, before, partner_dict(p.name, p.provider, p.promised_availability, p.services)):
            partner, _ = PartnerService.objects.update_or_create(
                name=p.name, defaults={"provider": p.provider, "promised_availability": p.promised_availability}
            )
            partner.services.set(Service.objects.filter(name__in=p.services))

    for a in spec.agreements:
        ag = Agreement.objects.filter(name=a.name).select_related("tier", "account", "calendar").first()
        if _outcome(result, "agreement", a.name, agreement_dict_from_db(ag) if ag else None, agreement_dict_from_spec(a)):
            _write_agreement(a)


def _write_service(s: ServiceSpec) -> None:
    svc, _ = Service.objects.update_or_create(
        name=s.name,
        defaults={
            "title": s.title, "base_path": s.base_path, "owner": s.owner,
            "cost_per_instance_hour": s.cost_per_instance_hour, "allow_anonymous": s.allow_anonymous,
        },
    )
    svc.operations.exclude(name__in=[o.name for o in s.operations]).delete()
    for i, o in enumerate(s.operations):  # park routes first so two operations can swap them
        svc.operations.filter(name=o.name).update(path_pattern=f"/__accord_parked_{i}")
    for o in s.operations:
        Operation.objects.update_or_create(
            service=svc, name=o.name, defaults={"method": o.method, "path_pattern": o.path, "title": o.title}
        )
    svc.pools.exclude(name__in=[p.name for p in s.pools]).delete()
    for p in s.pools:
        pool, _ = Pool.objects.update_or_create(service=svc, name=p.name, defaults={"role": p.role, "capacity": p.capacity})
        pool.endpoints.exclude(url__in=[e.url for e in p.endpoints]).delete()
        for e in p.endpoints:
            Endpoint.objects.update_or_create(pool=pool, url=e.url, defaults={"weight": e.weight, "enabled": e.enabled})


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
                "window": Objective.Window.CALENDAR_MONTH if isinstance(o.window, str) else Objective.Window.ROLLING,
                "window_days": None if isinstance(o.window, str) else o.window.rolling_days,
                "service": service,
                "operation": Operation.objects.get(service=service, name=o.operation) if o.operation else None,
                "channel": o.channel or "",
                "priority": o.priority or "",
            },
        )
    if a.credits is None:
        CreditSchedule.objects.filter(agreement=ag).delete()
    else:
        schedule, _ = CreditSchedule.objects.update_or_create(agreement=ag, defaults={"cap_percent": a.credits.cap})
        schedule.bands.all().delete()
        CreditBand.objects.bulk_create(
            [CreditBand(schedule=schedule, below_percent=b.below, credit_percent=b.credit) for b in a.credits.bands]
        )


# -- export ------------------------------------------------------------------------------------------------


def export_calendar(c: BusinessCalendar) -> dict[str, Any]:
    return calendar_dict(
        c.name, c.timezone, c.hours, c.holiday_country, c.holiday_subdivision, c.extra_holidays, c.removed_holidays
    )


def export_partner(p: PartnerService) -> dict[str, Any]:
    return partner_dict(p.name, p.provider, p.promised_availability, [s.name for s in p.services.all()])


def export_data() -> dict[str, list[dict[str, Any]]]:
    """Everything the manifest covers, in canonical form."""
    return {
        "calendars": [export_calendar(c) for c in BusinessCalendar.objects.order_by("name")],
        "tiers": [tier_dict(t) for t in Tier.objects.order_by("rank")],
        "services": [
            service_dict_from_db(s)
            for s in Service.objects.order_by("name").prefetch_related("operations", "pools__endpoints")
        ],
        "partners": [export_partner(p) for p in PartnerService.objects.order_by("name").prefetch_related("services")],
        "agreements": [
            agreement_dict_from_db(a)
            for a in Agreement.objects.order_by("name")
            .select_related("tier", "account", "calendar")
            .prefetch_related("services")
        ],
    }


class _Dumper(yaml.SafeDumper):
    """Block style, decimals as plain numbers, short lists of scalars inline."""


def _represent_decimal(dumper: _Dumper, value: Decimal) -> yaml.ScalarNode:
    text = format(value, "f")
    tag = "tag:yaml.org,2002:int" if "." not in text else "tag:yaml.org,2002:float"
    return dumper.represent_scalar(tag, text)


def _represent_list(dumper: _Dumper, value: list[Any]) -> yaml.SequenceNode:
    flow = all(not isinstance(v, dict | list) for v in value)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flow)


_Dumper.add_representer(Decimal, _represent_decimal)
_Dumper.add_representer(list, _represent_list)


def export_manifest() -> str:
    """The stored calendars, tiers, services, partners and agreements as manifest YAML."""
    data = {k: v for k, v in export_data().items() if v}
    header = "# Accord manifest: apply with `accord apply -f FILE`\n"
    if not data:
        return header
    return header + yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110)
