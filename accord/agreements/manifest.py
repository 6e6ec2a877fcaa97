"""Agreements as code: validate, apply and export the YAML manifest of calendars, tiers, services,
partners and agreements (docs/agreements-as-code.md).

Validation runs in three steps and reports every problem with its path in the file:
1. YAML (syntax, duplicate keys), with line and column;
2. structure and types (pydantic, unknown keys forbidden);
3. meaning: working windows, time zones, holidays, cross-references to the file and the database,
   objective and credit rules.
Nothing is written unless all pass; then everything is written in one transaction. Each object is compared
with its canonical (exported) form first, so applying the same file twice changes nothing and
apply(export()) is a no-op.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

import yaml
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import URLValidator
from django.db import DataError, IntegrityError, models, transaction
from django.db.models import ProtectedError, Q, RestrictedError
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt, StringConstraints
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

SECTIONS = ("calendars", "tiers", "services", "partners", "agreements", "policies")
SINGULAR = {"calendars": "calendar", "tiers": "tier", "services": "service", "partners": "partner",
            "agreements": "agreement", "policies": "policy"}


class ManifestError(Exception):
    """The manifest cannot be applied; `errors` lists every problem as 'path: message'."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


class ManifestSyntaxError(ManifestError):
    """The file is not valid YAML (a syntax error or a duplicate key); lines read 'file:line:column: problem'."""


def _show(value: object) -> str:
    return f"'{value}'" if isinstance(value, str) else str(value)


# -- reading YAML ---------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """Safe YAML with exact decimals, dates checked by the schema, and every duplicate key reported."""

    def __init__(self, stream: str, source: str) -> None:
        super().__init__(stream)
        self.source = source
        self.duplicates: list[tuple[int, int, str]] = []


def _construct_decimal(loader: _Loader, node: yaml.ScalarNode) -> Decimal | float:
    text = str(loader.construct_scalar(node)).replace("_", "")
    try:
        return Decimal(text)  # 99.95 stays 99.95, not 99.9500000000000028...
    except InvalidOperation:
        return float(loader.construct_yaml_float(node))  # .inf, .nan: refused later as not finite


def _construct_timestamp(loader: _Loader, node: yaml.ScalarNode) -> Any:
    """A plain date stays a date; anything else (2026-13-01, a date with a time) stays the text the user wrote."""
    text = str(loader.construct_scalar(node))
    try:
        value = loader.construct_yaml_timestamp(node)
    except ValueError:
        return text
    return text if isinstance(value, dt.datetime) else value


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    first_line: dict[Any, int] = {}
    for key_node, _value_node in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *anchor` may be overridden by the keys written next to it
        key = loader.construct_object(key_node, deep=True)
        mark = key_node.start_mark
        try:
            seen = key in first_line
        except TypeError:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, "found an unhashable key", mark
            ) from None
        if seen:
            loader.duplicates.append((
                mark.line, mark.column,
                f"{loader.source}:{mark.line + 1}:{mark.column + 1}: duplicate key {key!r} (first on line {first_line[key]})",
            ))
        else:
            first_line[key] = mark.line + 1
    loader.flatten_mapping(node)
    try:
        return dict(loader.construct_pairs(node, deep=True))
    except TypeError:
        raise yaml.constructor.ConstructorError(
            "while constructing a mapping", node.start_mark, "found an unhashable key", node.start_mark
        ) from None


_Loader.add_constructor("tag:yaml.org,2002:float", _construct_decimal)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(text: str, source: str = "<string>") -> Any:
    """Parse YAML text; raises ManifestSyntaxError with 'source:line:column: problem' lines."""
    loader: _Loader | None = None
    try:
        loader = _Loader(text, source)  # checks for unprintable characters already
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = e.problem or "not valid YAML"
        if e.context and problem.startswith("but "):  # "expected a single document ..., but found another"
            problem = f"{e.context}, {problem}"
        raise ManifestSyntaxError([f"{where}: {problem}"]) from None
    except yaml.reader.ReaderError as e:
        line = text.count("\n", 0, e.position) + 1
        column = e.position - (text.rfind("\n", 0, e.position) + 1) + 1
        raise ManifestSyntaxError(
            [f"{source}:{line}:{column}: character #x{e.character:04x} is not allowed in YAML"]
        ) from None
    except yaml.YAMLError as e:
        raise ManifestSyntaxError([f"{source}: {' '.join(str(e).split())}"]) from None
    except RecursionError:
        raise ManifestSyntaxError([f"{source}: nested too deeply"]) from None
    finally:
        if loader is not None:
            loader.dispose()
    if loader.duplicates:
        raise ManifestSyntaxError([line for _row, _col, line in sorted(loader.duplicates)])
    return data


# -- structure (step 2) -----------------------------------------------------------------------------------

_NAME = r"^[A-Za-z0-9_-]+$"
Name = Annotated[str, StringConstraints(pattern=_NAME, max_length=80)]
TierName = Annotated[str, StringConstraints(pattern=_NAME, max_length=40)]
Text = Annotated[str, StringConstraints(max_length=200)]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
Money = Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=2, allow_inf_nan=False)]
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _iso_date(value: object) -> object:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str) and _ISO_DATE.match(value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    if value is None:
        raise ValueError("must be a date like 2026-12-24")
    raise ValueError(f"{_show(value)} is not a date like 2026-12-24")


IsoDate = Annotated[dt.date, BeforeValidator(_iso_date)]


class Spec(BaseModel):
    """Base of the manifest's parts: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


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


class TierSpec(Spec):
    """A tier and the rule that earns it."""

    name: TierName
    rank: StrictInt = Field(ge=1, le=1000)
    min_commitment: Money | None = None
    min_revenue_12m: Money | None = None
    match: Literal["any", "all"] = "any"
    description: Text = ""


class OperationSpec(Spec):
    """A business process of a service: a method and a path pattern."""

    name: Name
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "*"]
    path: Annotated[str, StringConstraints(max_length=300)]
    title: Text = ""


class EndpointSpec(Spec):
    """One upstream address of a pool."""

    url: Annotated[str, StringConstraints(max_length=300)]
    weight: StrictInt = Field(default=1, ge=1, le=1000)
    enabled: StrictBool = True


class PoolSpec(Spec):
    """A group of endpoints of a service."""

    name: Name
    role: Literal["primary", "standby"] = "primary"
    capacity: StrictInt = Field(ge=1, le=2_147_483_647)
    endpoints: list[EndpointSpec] = []


class ServiceSpec(Spec):
    """A run-time service with its operations and pools."""

    name: Name
    title: Text = ""
    base_path: Annotated[str, StringConstraints(max_length=200)]
    owner: Text = ""
    cost_per_instance_hour: Decimal = Field(
        default=Decimal(0), ge=0, max_digits=10, decimal_places=4, allow_inf_nan=False
    )
    allow_anonymous: StrictBool = False
    operations: list[OperationSpec] = []
    pools: list[PoolSpec] = []


class PartnerSpec(Spec):
    """A third party's service ours depend on."""

    name: Name
    provider: Text = ""
    promised_availability: Decimal = Field(ge=0, le=100, max_digits=7, decimal_places=4, allow_inf_nan=False)
    services: list[Name] = []


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
    raise ValueError(f"{_show(value)} is not a window: write calendar_month or {{rolling_days: 28}}")


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


class AgreementSpec(Spec):
    """A service-level agreement for a tier or for one account."""

    name: Name
    title: Text = ""
    tier: TierName | None = None
    account: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    effective_from: IsoDate
    effective_to: IsoDate | None = None
    monthly_fee: Money = Decimal(0)
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = "EUR"
    calendar: Name
    services: list[Name] = []
    objectives: list[ObjectiveSpec] = []
    credits: CreditsSpec | None = None


_DURATION = re.compile(r"^(\d+)\s*([smhd]?)$")


def _seconds(value: object) -> object:
    """30, '30s', '5m', '1h' or '2d' as whole seconds."""
    if isinstance(value, bool):
        raise ValueError(f"{_show(value)} is not a duration like 30s, 5m or 1h")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and (m := _DURATION.match(value.strip())):
        return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    raise ValueError(f"{_show(value)} is not a duration like 30s, 5m or 1h")


Seconds = Annotated[int, BeforeValidator(_seconds), Field(ge=0, le=7 * 86400)]


class ScopeSpec(Spec):
    """What a policy's action applies to; an empty list means any."""

    tiers: list[TierName] = []
    accounts: list[Annotated[str, StringConstraints(min_length=1, max_length=100)]] = []
    services: list[Name] = []
    operations: list[Name] = []


class WebhookSpec(Spec):
    url: Annotated[str, StringConstraints(max_length=500)]
    secret: Annotated[str, StringConstraints(max_length=200)] = ""


class NotifySpec(Spec):
    emails: list[Annotated[str, StringConstraints(max_length=254)]] = []
    webhooks: list[WebhookSpec] = []


class PolicySpec(Spec):
    """A governance policy: when a condition holds, enforce an action on a scope (docs/governance.md)."""

    name: Name
    description: Annotated[str, StringConstraints(max_length=300)] = ""
    enabled: StrictBool = True
    mode: Literal["enforce", "dry_run"] = "enforce"
    priority: StrictInt = Field(default=100, ge=-1000, le=1000)
    when: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    hold: Seconds = 0
    clear_when: Annotated[str, StringConstraints(max_length=2000)] = ""
    clear_after: Seconds = 30
    min_active: Seconds = 60
    cooldown: Seconds = 60
    scope: ScopeSpec = ScopeSpec()
    action: Literal["route", "rate_limit", "shed", "admission", "notify"]
    params: dict[str, Any] = {}
    schedule: Name | None = None
    notify: NotifySpec = NotifySpec()

    def model_data(self) -> dict[str, Any]:
        """The fields of the Policy model."""
        return {
            "description": self.description, "enabled": self.enabled, "mode": self.mode, "priority": self.priority,
            "condition": self.when, "hold_seconds": self.hold, "clear_condition": self.clear_when,
            "clear_seconds": self.clear_after, "min_active_seconds": self.min_active,
            "cooldown_seconds": self.cooldown, "tiers": list(self.scope.tiers), "accounts": list(self.scope.accounts),
            "services": list(self.scope.services), "operations": list(self.scope.operations), "action": self.action,
            "params": dict(self.params), "schedule": self.schedule, "notify_emails": list(self.notify.emails),
            "notify_webhooks": [w.model_dump() for w in self.notify.webhooks],
        }


class ManifestSpec(Spec):
    """A whole manifest: every section is optional."""

    calendars: list[CalendarSpec] = []
    tiers: list[TierSpec] = []
    services: list[ServiceSpec] = []
    partners: list[PartnerSpec] = []
    agreements: list[AgreementSpec] = []
    policies: list[PolicySpec] = []


def _path(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]" or (isinstance(part, str) and part.startswith("function-")):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _message(error: Any) -> str:
    """pydantic's message for an error, said the way a person editing YAML needs to read it."""
    kind, value, loc = error["type"], error.get("input"), error["loc"]
    ctx = error.get("ctx") or {}
    last = loc[-1] if loc else None
    if kind == "extra_forbidden":
        if len(loc) == 1:
            return f"unknown section (the sections are {', '.join(SECTIONS)})"
        if last == "window_days":
            return "unknown key: a rolling window is written `window: {rolling_days: 28}`; a calendar month has no days"
        return "unknown key"
    if kind == "missing":
        return "is required"
    if kind == "literal_error":
        if "[key]" in loc:
            return f"{_show(value)} is not a weekday (use {', '.join(WEEKDAYS)})"
        return f"must be {ctx.get('expected', 'one of the allowed values')}"
    if kind == "string_pattern_mismatch":
        if last == "currency":
            return f"{_show(value)} is not a currency code like EUR"
        return f"{_show(value)} is not a name (letters, digits, '-' and '_', no spaces)"
    if kind == "string_type":
        if isinstance(value, bool):
            return "YAML read this as true/false (yes, no, on, off are booleans): put the text in quotes, e.g. 'NO'"
        if value is None:
            return "must not be empty"
        if isinstance(value, int | float | Decimal | dt.date):
            return f"must be text: put {value} in quotes"
        return "must be text"
    messages = {
        "string_too_long": f"is longer than {ctx.get('max_length')} characters",
        "string_too_short": "must not be empty",
        "int_type": "must be a whole number",
        "int_parsing": "must be a whole number",
        "int_from_float": "must be a whole number",
        "bool_type": "must be true or false",
        "bool_parsing": "must be true or false",
        "decimal_type": "must be a number",
        "decimal_parsing": "must be a number",
        "finite_number": "must be a finite number",
        "decimal_max_places": f"has more than {ctx.get('decimal_places')} decimal places",
        "decimal_max_digits": f"has more than {ctx.get('max_digits')} digits",
        "decimal_whole_digits": f"is too large (at most {ctx.get('whole_digits')} digits before the decimal point)",
        "greater_than_equal": f"must be at least {ctx.get('ge')}",
        "greater_than": f"must be more than {ctx.get('gt')}",
        "less_than_equal": f"must be at most {ctx.get('le')}",
        "less_than": f"must be less than {ctx.get('lt')}",
        "list_type": "must be a list (write [] for none)" if value is None else "must be a list",
        "model_type": "must not be empty" if value is None else "must be a mapping of keys to values",
        "dict_type": "must not be empty" if value is None else "must be a mapping of keys to values",
    }
    if kind in messages:
        return messages[kind]
    if kind == "value_error" and "error" in ctx:
        return str(ctx["error"])
    msg = str(error.get("msg") or kind).removeprefix("Value error, ")
    return msg[:1].lower() + msg[1:]


def _structure(data: Any, prefix: str = "") -> ManifestSpec:
    if data is None:
        return ManifestSpec()
    if not isinstance(data, dict):
        raise ManifestError([f"{prefix}(top level): must be a mapping with the sections {', '.join(SECTIONS)}"])
    try:
        return ManifestSpec.model_validate(data)
    except PydanticValidationError as e:
        lines: list[str] = []
        for error in e.errors():
            line = f"{prefix}{_path(error['loc'])}: {_message(error)}"
            if line not in lines:
                lines.append(line)
        raise ManifestError(lines) from None


# -- meaning (step 3) -------------------------------------------------------------------------------------


@dataclass
class Loaded:
    """A validated manifest (one or several files merged) and where each object came from."""

    spec: ManifestSpec
    where: dict[str, list[str]]  # per section, each object's path as the user reads it: 'tiers[2]'
    present: set[str]  # sections the files name (even empty): the ones --prune may empty


@dataclass
class _Checker:
    loaded: Loaded
    prune: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def spec(self) -> ManifestSpec:
        return self.loaded.spec

    def at(self, section: str, index: int) -> str:
        return self.loaded.where[section][index]

    def err(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")

    def pruned(self, section: str) -> bool:
        return self.prune and section in self.loaded.present

    def stored(self, section: str, model: type[models.Model]) -> set[str]:
        """Stored names an object in the file may refer to: none if the section is pruned."""
        if self.pruned(section):
            return set()
        return set(model._default_manager.values_list("name", flat=True))

    def missing(self, section: str, model: type[models.Model], name: str) -> str:
        message = f"no {SINGULAR[section]} named '{name}'"
        if self.pruned(section) and model._default_manager.filter(name=name).exists():
            message += " in the file (--prune removes the stored one)"
        return message

    def unique_top(self, section: str, key: Callable[[Any], Any], label: str = "name") -> None:
        first: dict[Any, int] = {}
        for i, item in enumerate(getattr(self.spec, section)):
            k = key(item)
            if k in first:
                self.err(f"{self.at(section, i)}.{label}",
                         f"{_show(k)} appears more than once (first at {self.at(section, first[k])})")
            else:
                first[k] = i

    def unique(self, path: str, items: Sequence[Any], key: Callable[[Any], Any], label: str = "name",
               show: Callable[[Any], str] = _show) -> None:
        first: dict[Any, int] = {}
        for i, item in enumerate(items):
            k = key(item)
            if k in first:
                self.err(f"{path}[{i}].{label}", f"{show(k)} appears more than once (first at {path}[{first[k]}])")
            else:
                first[k] = i

    def run(self) -> list[str]:
        for section in SECTIONS:
            self.unique_top(section, lambda x: x.name)
        self.calendars()
        self.tiers()
        self.services()
        self.partners()
        self.agreements()
        self.policies()
        return self.errors

    def calendars(self) -> None:
        for i, cal in enumerate(self.spec.calendars):
            p = self.at("calendars", i)
            try:
                validate_timezone(cal.timezone)
            except DjangoValidationError as e:
                self.err(f"{p}.timezone", e.messages[0])
            week = cal.week()
            bad = False
            for day in WEEKDAYS:
                for index, message in day_errors(week.get(day, [])):
                    bad = True
                    self.err(f"{p}.hours.{day}" + (f"[{index}]" if index is not None else ""), message)
            if not bad and weekly_minutes(week) == 0:
                self.err(f"{p}.hours", "the calendar has no working time at all")
            h = cal.holidays
            if h is None:
                continue
            if h.country:
                for fld, message in holiday_errors(h.country, h.subdivision or ""):
                    self.err(f"{p}.holidays.{'country' if fld == 'holiday_country' else 'subdivision'}", message)
            elif h.subdivision:
                self.err(f"{p}.holidays.subdivision", "a subdivision needs a country")
            for j, date in enumerate(h.removed):
                if date in h.extra:
                    self.err(f"{p}.holidays.removed[{j}]", f"{date} is also an extra holiday")

    def tiers(self) -> None:
        self.unique_top("tiers", lambda t: t.rank, "rank")
        if self.pruned("tiers"):
            return
        names = [t.name for t in self.spec.tiers]
        taken = dict(Tier.objects.exclude(name__in=names).values_list("rank", "name"))
        for i, t in enumerate(self.spec.tiers):
            if t.rank in taken:
                self.err(f"{self.at('tiers', i)}.rank",
                         f"rank {t.rank} is taken by tier '{taken[t.rank]}' (not in this file)")

    def services(self) -> None:
        self.unique_top("services", lambda s: s.base_path, "base_path")
        taken: dict[str, str] = {}
        if not self.pruned("services"):
            names = [s.name for s in self.spec.services]
            taken = dict(Service.objects.exclude(name__in=names).values_list("base_path", "name"))
        url = URLValidator(schemes=["http", "https"])
        for i, svc in enumerate(self.spec.services):
            p = self.at("services", i)
            try:
                validate_base_path(svc.base_path)
            except DjangoValidationError as e:
                self.err(f"{p}.base_path", e.messages[0])
            if svc.base_path in taken:
                self.err(f"{p}.base_path", f"'{svc.base_path}' is the base path of service '{taken[svc.base_path]}'")
            self.unique(f"{p}.operations", svc.operations, lambda o: o.name)
            self.unique(f"{p}.operations", svc.operations, lambda o: (o.method, o.path), "path",
                        show=lambda k: f"{k[0]} {k[1]}")
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
        return {s.name for s in self.spec.services} | self.stored("services", Service)

    def partners(self) -> None:
        known = self._services_known()
        for i, partner in enumerate(self.spec.partners):
            for j, name in enumerate(partner.services):
                if name not in known:
                    self.err(f"{self.at('partners', i)}.services[{j}]", self.missing("services", Service, name))

    def agreements(self) -> None:
        calendars = {c.name for c in self.spec.calendars} | self.stored("calendars", BusinessCalendar)
        tiers = {t.name for t in self.spec.tiers} | self.stored("tiers", Tier)
        services = self._services_known()
        file_services = {s.name for s in self.spec.services}
        operations = {(s.name, o.name) for s in self.spec.services for o in s.operations}
        operations |= {
            (svc, op)
            for svc, op in Operation.objects.filter(service__name__in=services).values_list("service__name", "name")
            if svc not in file_services  # the file's list of operations replaces the stored one
        }
        wanted = {a.account for a in self.spec.agreements if a.account}
        accounts = set(Account.objects.filter(external_id__in=wanted).values_list("external_id", flat=True))
        for i, ag in enumerate(self.spec.agreements):
            p = self.at("agreements", i)
            if (ag.tier is None) == (ag.account is None):
                self.err(p, "give exactly one of `tier` or `account`")
            if ag.tier and ag.tier not in tiers:
                self.err(f"{p}.tier", self.missing("tiers", Tier, ag.tier))
            if ag.account and ag.account not in accounts:
                self.err(f"{p}.account", f"no account with external id '{ag.account}'")
            if ag.calendar not in calendars:
                self.err(f"{p}.calendar", self.missing("calendars", BusinessCalendar, ag.calendar))
            if ag.effective_to and ag.effective_to < ag.effective_from:
                self.err(f"{p}.effective_to", f"{ag.effective_to} is before effective_from ({ag.effective_from})")
            for j, name in enumerate(ag.services):
                if name not in services:
                    self.err(f"{p}.services[{j}]", self.missing("services", Service, name))
            self.unique(f"{p}.objectives", ag.objectives, lambda o: o.name)
            for j, obj in enumerate(ag.objectives):
                self.objective(f"{p}.objectives[{j}]", obj, services, operations)
            if ag.credits is not None:
                for path, message in credit_errors(ag.credits.cap, [(b.below, b.credit) for b in ag.credits.bands]):
                    self.err(f"{p}.credits.{path}", message)

    def policies(self) -> None:
        from accord.governance.policies import policy_errors

        calendars = {c.name for c in self.spec.calendars} | self.stored("calendars", BusinessCalendar)
        tiers = {t.name for t in self.spec.tiers} | self.stored("tiers", Tier)
        services = self._services_known()
        names = {"condition": "when", "clear_condition": "clear_when", "hold_seconds": "hold",
                 "clear_seconds": "clear_after", "min_active_seconds": "min_active", "cooldown_seconds": "cooldown",
                 "tiers": "scope.tiers", "accounts": "scope.accounts", "services": "scope.services",
                 "operations": "scope.operations", "notify_emails": "notify.emails",
                 "notify_webhooks": "notify.webhooks"}
        for i, policy in enumerate(self.spec.policies):
            p = self.at("policies", i)
            data = policy.model_data()
            if len(policy.name) > 73:
                self.err(f"{p}.name", "at most 73 characters (its gateway action is named policy-<name>)")
            for fld, message in policy_errors(data):
                self.err(f"{p}.{names.get(fld, fld)}", message)
            if policy.schedule and policy.schedule not in calendars:
                self.err(f"{p}.schedule", self.missing("calendars", BusinessCalendar, policy.schedule))
            for j, tier in enumerate(policy.scope.tiers):
                if tier not in tiers:
                    self.err(f"{p}.scope.tiers[{j}]", self.missing("tiers", Tier, tier))
            for j, service in enumerate(policy.scope.services):
                if service not in services:
                    self.err(f"{p}.scope.services[{j}]", self.missing("services", Service, service))

    def objective(self, p: str, o: ObjectiveSpec, services: set[str], operations: set[tuple[str, str]]) -> None:
        for fld, message in objective_errors(
            o.kind, o.target, o.percentile, has_service=bool(o.service), has_operation=bool(o.operation),
            channel=o.channel, priority=o.priority,
        ):
            self.err(f"{p}.{fld}" if fld else p, message)
        if o.service and o.service not in services:
            self.err(f"{p}.service", self.missing("services", Service, o.service))
        if o.operation and o.service in services and (o.service, o.operation) not in operations:
            self.err(f"{p}.operation", f"service '{o.service}' has no operation '{o.operation}'")


def load_manifests(sources: Sequence[tuple[str, str]], *, prune: bool = False) -> Loaded:
    """Parse and validate (source name, text) pairs as one manifest; raises ManifestError listing every problem.

    With several files every path starts with its file's name; names must be unique across the files.
    """
    errors: list[str] = []
    syntax = False
    parts: list[tuple[str, ManifestSpec]] = []
    for source, text in sources:
        prefix = f"{source}: " if len(sources) > 1 else ""
        try:
            parts.append((prefix, _structure(read_yaml(text, source), prefix)))
        except ManifestSyntaxError as e:
            syntax = True
            errors.extend(e.errors)
        except ManifestError as e:
            errors.extend(e.errors)
    if errors:
        raise (ManifestSyntaxError if syntax else ManifestError)(errors)
    merged: dict[str, list[Any]] = {s: [] for s in SECTIONS}
    where: dict[str, list[str]] = {s: [] for s in SECTIONS}
    present: set[str] = set()
    for prefix, spec in parts:
        present |= spec.model_fields_set
        for section in SECTIONS:
            items = getattr(spec, section)
            merged[section].extend(items)
            where[section].extend(f"{prefix}{section}[{i}]" for i in range(len(items)))
    loaded = Loaded(ManifestSpec.model_construct(**merged), where, present)  # type: ignore[arg-type]
    errors = _Checker(loaded, prune).run()
    if errors:
        raise ManifestError(errors)
    return loaded


def load_manifest(text: str, source: str = "<string>") -> ManifestSpec:
    """Parse and validate a manifest; raises ManifestError (ManifestSyntaxError for bad YAML) listing every problem."""
    return load_manifests([(source, text)]).spec


# -- canonical form, shared by apply (desired) and export (stored) -------------------------------------------


def _num(value: Decimal | int | float | None) -> Decimal | None:
    """Decimals without trailing zeros, so 99.9500 stored equals 99.95 written."""
    if value is None:
        return None
    d = (value if isinstance(value, Decimal) else Decimal(value)).normalize()
    return d.quantize(Decimal(1)) if d == d.to_integral_value() else d


def _drop_empty(d: dict[str, Any], keep: Iterable[str] = ()) -> dict[str, Any]:
    keep = set(keep)
    return {k: v for k, v in d.items() if k in keep or v not in (None, "", [], {}, False)}


def _dates(values: Iterable[dt.date | str]) -> list[Any]:
    out: set[Any] = set()
    for v in values:
        try:
            out.add(v if isinstance(v, dt.date) else dt.date.fromisoformat(v))
        except ValueError:
            out.add(v)  # never stored by Accord's own checks; kept visible rather than dropped
    return sorted(out, key=str)


def calendar_dict(
    name: str, timezone: str, hours: dict[str, list[str]], country: str, subdivision: str,
    extra: Iterable[dt.date | str], removed: Iterable[dt.date | str],
) -> dict[str, Any]:
    holidays = _drop_empty(
        {"country": country or None, "subdivision": subdivision or None, "extra": _dates(extra),
         "removed": _dates(removed)}
    )
    out: dict[str, Any] = {"name": name, "timezone": timezone, "hours": normalise_hours(hours)}
    if holidays:
        out["holidays"] = holidays
    return out


def calendar_dict_from_spec(c: CalendarSpec) -> dict[str, Any]:
    h = c.holidays or HolidaysSpec()
    return calendar_dict(c.name, c.timezone, c.week(), h.country or "", h.subdivision or "", h.extra, h.removed)


def calendar_dict_from_db(c: BusinessCalendar) -> dict[str, Any]:
    return calendar_dict(
        c.name, c.timezone, c.hours, c.holiday_country, c.holiday_subdivision, c.extra_holidays, c.removed_holidays
    )


def tier_dict(t: TierSpec | Tier) -> dict[str, Any]:
    return _drop_empty(
        {
            "name": t.name,
            "rank": t.rank,
            "min_commitment": _num(t.min_commitment),
            "min_revenue_12m": _num(t.min_revenue_12m),
            "match": None if t.match == "any" else t.match,
            "description": t.description,
        },
        keep=("name", "rank"),
    )


def _endpoint_dict(url: str, weight: int, enabled: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"url": url}
    if weight != 1:
        out["weight"] = weight
    if not enabled:
        out["enabled"] = False
    return out


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
            "cost_per_instance_hour": _num(cost) or None,
            "allow_anonymous": anonymous,
            "operations": [_drop_empty(o, keep=("name", "method", "path")) for o in sorted(operations, key=lambda o: o["name"])],
            "pools": [
                {**p, "endpoints": sorted(p["endpoints"], key=lambda e: e["url"])}
                for p in sorted(pools, key=lambda p: p["name"])
            ],
        },
        keep=("name", "base_path"),
    )


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


def partner_dict(name: str, provider: str, availability: Decimal, services: Iterable[str]) -> dict[str, Any]:
    return _drop_empty(
        {"name": name, "provider": provider, "promised_availability": _num(availability), "services": sorted(services)},
        keep=("name", "promised_availability"),
    )


def partner_dict_from_db(p: PartnerService) -> dict[str, Any]:
    return partner_dict(p.name, p.provider, p.promised_availability, [s.name for s in p.services.all() if not s.simulated])


def _objective_dict(
    name: str, kind: str, target: Decimal, percentile: Decimal | None, rolling_days: int | None,
    service: str | None, operation: str | None, channel: str | None, priority: str | None,
) -> dict[str, Any]:
    return _drop_empty(
        {
            "name": name, "kind": kind, "target": _num(target), "percentile": _num(percentile),
            "window": {"rolling_days": rolling_days} if rolling_days else "calendar_month",
            "service": service, "operation": operation, "channel": channel, "priority": priority,
        },
        keep=("name", "kind", "target", "window"),
    )


def _credits_dict(cap: Decimal, bands: Iterable[tuple[Decimal, Decimal]]) -> dict[str, Any]:
    return {
        "cap": _num(cap),
        "bands": [{"below": _num(b), "credit": _num(c)} for b, c in sorted(bands, key=lambda x: -x[0])],
    }


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


def agreement_dict_from_spec(a: AgreementSpec) -> dict[str, Any]:
    return _agreement_dict(
        a.name, a.title, a.tier, a.account, a.effective_from, a.effective_to, a.monthly_fee, a.currency, a.calendar,
        a.services,
        [
            _objective_dict(
                o.name, o.kind, o.target, o.percentile, o.window.rolling_days if o.window else None,
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
                o.window_days if o.window == Objective.Window.ROLLING else None,
                o.service.name if o.service else None, o.operation.name if o.operation else None,
                o.channel or None, o.priority or None,
            )
            for o in a.objectives.select_related("service", "operation")
        ],
        _credits_dict(schedule.cap_percent, [(b.below_percent, b.credit_percent) for b in schedule.bands.all()])
        if schedule
        else None,
    )


# -- apply -------------------------------------------------------------------------------------------------


@dataclass
class ApplyResult:
    """Per object: (section, name, 'created' | 'updated' | 'unchanged' | 'deleted'), and what changed."""

    outcomes: list[tuple[str, str, str]] = field(default_factory=list)
    changes: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    dry_run: bool = False

    def count(self, outcome: str) -> int:
        return sum(1 for o in self.outcomes if o[2] == outcome)

    @property
    def changed(self) -> bool:
        return any(o[2] != "unchanged" for o in self.outcomes)

    def lines(self) -> list[str]:
        """One line per object: 'agreement gold-sla: updated (monthly_fee: 4000 -> 4500)'."""
        out = []
        for section, name, state in self.outcomes:
            shown = f"would be {state}" if self.dry_run and state != "unchanged" else state
            detail = self.changes.get((section, name))
            out.append(f"{section} {name}: {shown}" + (f" ({'; '.join(detail)})" if detail else ""))
        return out

    def summary(self) -> str:
        verb = "would be " if self.dry_run else ""
        parts = [
            f"{self.count('created')} {verb}created",
            f"{self.count('updated')} {verb}updated",
            f"{self.count('unchanged')} unchanged",
        ]
        if self.count("deleted"):
            parts.append(f"{self.count('deleted')} {verb}deleted")
        return ", ".join(parts)


class _DryRun(Exception):
    pass


def apply_manifests(
    sources: Sequence[tuple[str, str]], *, dry_run: bool = False, prune: bool = False
) -> ApplyResult:
    """Validate (source, text) pairs as one manifest, then create or update every object in one transaction.

    With `prune`, stored objects of the sections the files name but not in the files are deleted. With
    `dry_run`, everything is written and rolled back, so the result shows what would happen.
    """
    result = ApplyResult(dry_run=dry_run)
    try:
        with transaction.atomic():
            loaded = load_manifests(sources, prune=prune)
            if prune:
                _prune(loaded, result)
            _apply(loaded.spec, result)
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    except (IntegrityError, DataError) as e:  # validation should have caught it; say so, not with a traceback
        raise ManifestError([f"(database): the database refused the change, nothing was written: {e}"]) from e
    return result


def apply_manifest(text: str, *, dry_run: bool = False, source: str = "<string>", prune: bool = False) -> ApplyResult:
    """Validate one manifest, then create or update every object of it in one transaction."""
    return apply_manifests([(source, text)], dry_run=dry_run, prune=prune)


def _brief(value: Any) -> str:
    if value is None:
        return "(none)"
    text = yaml.dump(value, Dumper=_Dumper, default_flow_style=True, width=1_000_000, allow_unicode=True)
    text = text.strip().removesuffix("...").strip()
    return text if len(text) <= 60 else text[:57] + "..."


def _named_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(x, dict) and "name" in x for x in value)


def _changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What differs between two canonical forms, key by key; named children by name."""
    out = []
    for key in [*after, *(k for k in before if k not in after)]:
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if _named_list(old) or _named_list(new):
            olds = {x["name"]: x for x in old or []}
            news = {x["name"]: x for x in new or []}
            parts = [f"added {n}" for n in news if n not in olds]
            parts += [f"removed {n}" for n in olds if n not in news]
            parts += [f"changed {n}" for n in news if n in olds and olds[n] != news[n]]
            out.append(f"{key}: {', '.join(parts)}")
        else:
            out.append(f"{key}: {_brief(old)} -> {_brief(new)}")
    return out


def _outcome(result: ApplyResult, section: str, name: str, before: dict[str, Any] | None, after: dict[str, Any]) -> bool:
    """Record what happens to one object; True if it must be written."""
    state = "created" if before is None else "unchanged" if before == after else "updated"
    result.outcomes.append((section, name, state))
    if before is not None and state == "updated":
        result.changes[(section, name)] = _changes(before, after)
    return state != "unchanged"


def _blockers(e: ProtectedError | RestrictedError) -> str:
    objects = e.protected_objects if isinstance(e, ProtectedError) else e.restricted_objects
    counts: dict[str, int] = {}
    for obj in objects:
        meta = obj._meta
        counts[str(meta.verbose_name)] = counts.get(str(meta.verbose_name), 0) + 1
    return "still used by " + ", ".join(f"{n} {label}{'' if n == 1 else 's'}" for label, n in sorted(counts.items()))


def _prune(loaded: Loaded, result: ApplyResult) -> None:
    """Delete stored objects of the sections the files name that the files do not list (dependents first)."""
    errors: list[str] = []
    from accord.governance.models import Policy

    order: list[tuple[str, type[models.Model]]] = [
        ("policies", Policy), ("agreements", Agreement), ("partners", PartnerService), ("services", Service), ("tiers", Tier),
        ("calendars", BusinessCalendar),
    ]
    for section, model in order:
        if section not in loaded.present:
            continue
        keep = [x.name for x in getattr(loaded.spec, section)]
        for obj in model._default_manager.exclude(name__in=keep).order_by("name"):
            name = str(obj.name)  # type: ignore[attr-defined]
            try:
                obj.delete()
            except (ProtectedError, RestrictedError) as e:
                errors.append(f"{section}: cannot remove {SINGULAR[section]} '{name}': {_blockers(e)}")
                continue
            result.outcomes.append((SINGULAR[section], name, "deleted"))
    if errors:
        raise ManifestError(errors)


def _apply(spec: ManifestSpec, result: ApplyResult) -> None:
    for c in spec.calendars:
        cal = BusinessCalendar.objects.filter(name=c.name).first()
        desired = calendar_dict_from_spec(c)
        if _outcome(result, "calendar", c.name, calendar_dict_from_db(cal) if cal else None, desired):
            h = c.holidays or HolidaysSpec()
            BusinessCalendar.objects.update_or_create(
                name=c.name,
                defaults={
                    "timezone": c.timezone,
                    "hours": desired["hours"],
                    "holiday_country": h.country or "",
                    "holiday_subdivision": h.subdivision or "",
                    "extra_holidays": [d.isoformat() for d in sorted(set(h.extra))],
                    "removed_holidays": [d.isoformat() for d in sorted(set(h.removed))],
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

    changed_services = []
    for s in spec.services:
        svc = Service.objects.filter(name=s.name).prefetch_related("operations", "pools__endpoints").first()
        if _outcome(result, "service", s.name, service_dict_from_db(svc) if svc else None, service_dict_from_spec(s)):
            changed_services.append(s)
    # Base paths are unique too: park them so two services can swap theirs.
    for i, s in enumerate(changed_services):
        Service.objects.filter(name=s.name).update(base_path=f"/__accord_parked_{i}")
    for s in changed_services:
        _write_service(s)

    for p in spec.partners:
        partner = PartnerService.objects.filter(name=p.name).prefetch_related("services").first()
        before = partner_dict_from_db(partner) if partner else None
        if _outcome(result, "partner", p.name, before, partner_dict(p.name, p.provider, p.promised_availability, p.services)):
            partner, _ = PartnerService.objects.update_or_create(
                name=p.name, defaults={"provider": p.provider, "promised_availability": p.promised_availability}
            )
            partner.services.set(Service.objects.filter(name__in=p.services))

    for a in spec.agreements:
        ag = Agreement.objects.filter(name=a.name).select_related("tier", "account", "calendar").first()
        if _outcome(result, "agreement", a.name, agreement_dict_from_db(ag) if ag else None, agreement_dict_from_spec(a)):
            _write_agreement(a)

    from accord.governance.models import Policy
    from accord.governance.policies import save_policy

    for pol in spec.policies:
        stored = Policy.objects.filter(name=pol.name).select_related("schedule").first()
        if _outcome(result, "policy", pol.name, policy_dict_from_db(stored) if stored else None,
                    policy_dict_from_spec(pol)):
            save_policy(pol.name, pol.model_data())


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
                "window": Objective.Window.ROLLING if o.window else Objective.Window.CALENDAR_MONTH,
                "window_days": o.window.rolling_days if o.window else None,
                "service": service,
                "operation": Operation.objects.get(service=service, name=o.operation) if o.operation else None,
                "channel": o.channel or "",
                "priority": o.priority or "",
            },
        )
    if a.credits is None:
        CreditSchedule.objects.filter(agreement=ag).delete()
        return
    schedule, _ = CreditSchedule.objects.update_or_create(agreement=ag, defaults={"cap_percent": a.credits.cap})
    stored = {band.below_percent: band for band in schedule.bands.all()}  # Decimal('99.9000') == Decimal('99.9')
    for b in a.credits.bands:
        band = stored.pop(b.below, None)
        if band is None:
            CreditBand.objects.create(schedule=schedule, below_percent=b.below, credit_percent=b.credit)
        elif band.credit_percent != b.credit:
            band.credit_percent = b.credit
            band.save(update_fields=["credit_percent"])
    CreditBand.objects.filter(pk__in=[band.pk for band in stored.values()]).delete()


# -- policies (canonical form) ------------------------------------------------------------------------------


def _policy_dict(d: dict[str, Any], name: str) -> dict[str, Any]:
    scope = _drop_empty({k: list(d[k]) for k in ("tiers", "accounts", "services", "operations")})
    notify = _drop_empty({"emails": list(d["notify_emails"]), "webhooks": list(d["notify_webhooks"])})
    out = {
        "name": name, "description": d["description"], "enabled": d["enabled"], "mode": d["mode"],
        "priority": d["priority"], "when": d["condition"], "hold": d["hold_seconds"],
        "clear_when": d["clear_condition"], "clear_after": d["clear_seconds"], "min_active": d["min_active_seconds"],
        "cooldown": d["cooldown_seconds"], "scope": scope, "action": d["action"], "params": dict(d["params"]),
        "schedule": d["schedule"], "notify": notify,
    }
    return _drop_empty(out, keep=("enabled", "hold", "clear_after", "min_active", "cooldown", "priority"))


def policy_dict_from_spec(p: PolicySpec) -> dict[str, Any]:
    return _policy_dict(p.model_data(), p.name)


def policy_dict_from_db(p: Any) -> dict[str, Any]:
    data = {k: getattr(p, k) for k in ("description", "enabled", "mode", "priority", "condition", "hold_seconds",
                                       "clear_condition", "clear_seconds", "min_active_seconds", "cooldown_seconds",
                                       "tiers", "accounts", "services", "operations", "action", "params",
                                       "notify_emails", "notify_webhooks")}
    data["schedule"] = p.schedule.name if p.schedule_id else None
    return _policy_dict(data, p.name)


# -- export ------------------------------------------------------------------------------------------------


def export_data() -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """Everything the manifest covers, in canonical form, and notes on what could not be exported.

    Rows a scenario made up (`simulated`, e.g. by `accord scenario rta`) are no part of the business's
    configuration and are left out, with a note saying how many."""
    notes = []
    agreements = []
    rows = Agreement.objects.order_by("name").select_related("tier", "account", "calendar").prefetch_related("services")
    for a in rows.filter(simulated=False).exclude(account__simulated=True):
        if a.account is not None and not a.account.external_id:
            notes.append(f"agreement '{a.name}' is left out: its account '{a.account}' has no external id to name it by")
            continue
        agreements.append(agreement_dict_from_db(a))
    left_out = {
        "calendars": BusinessCalendar.objects.filter(simulated=True).count(),
        "tiers": Tier.objects.filter(simulated=True).count(),
        "services": Service.objects.filter(simulated=True).count(),
        "agreements": rows.filter(Q(simulated=True) | Q(account__simulated=True)).count(),
        "policies": _policies().filter(simulated=True).count(),
    }
    if any(left_out.values()):
        notes.append("left out as simulated (made up by `accord scenario rta`; `accord scenario clean` removes them): "
                     + ", ".join(f"{n} {kind}" for kind, n in left_out.items() if n))
    data = {
        "calendars": [calendar_dict_from_db(c) for c in BusinessCalendar.objects.filter(simulated=False).order_by("name")],
        "tiers": [tier_dict(t) for t in Tier.objects.filter(simulated=False).order_by("rank")],
        "services": [
            service_dict_from_db(s)
            for s in Service.objects.filter(simulated=False).order_by("name").prefetch_related(
                "operations", "pools__endpoints")
        ],
        "partners": [
            partner_dict_from_db(p) for p in PartnerService.objects.order_by("name").prefetch_related("services")
        ],
        "agreements": agreements,
        "policies": [policy_dict_from_db(p) for p in _policies().filter(simulated=False)],
    }
    return data, notes


def _policies() -> Any:
    from accord.governance.models import Policy

    return Policy.objects.order_by("priority", "name").select_related("schedule")


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
    """The stored calendars, tiers, services, partners and agreements as manifest YAML (stable order)."""
    data, notes = export_data()
    header = "# Accord manifest: apply with `accord apply -f FILE` (docs/agreements-as-code.md)\n"
    header += "".join(f"# {note}\n" for note in notes)
    data = {k: v for k, v in data.items() if v}
    if not data:
        return header
    return header + yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110)
