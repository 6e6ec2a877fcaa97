"""Segments: a saved filter over contacts and their accounts, kept as a small JSON object and counted live.

A spec is an object whose keys all have to hold (an empty object is every contact):

- `"tier": ["gold", "platinum"]`: the account's tier is one of these;
- `"clv": {"min": 1000, "max": 50000}`: the account's lifetime value in the latest CLV fit (`accord insight`),
  in the fit's currency, within these bounds (either may be left out); accounts absent from that fit do not match;
- `"health": {"min": 0, "max": 60}`: the account's latest health score (0-100) within these bounds;
- `"last_order": {"within_days": 90}` (ordered in the last 90 days), `{"not_within_days": 365}` (no order in the
  last 365 days, never-ordered accounts included), or `{"after": "2026-01-01", "before": "2026-07-01"}` (the last
  order's day in that range);
- `"consent": {"purpose": "newsletter", "status": ["confirmed"]}`: the contact's consent to that purpose has one
  of these statuses (`none` for no consent at all);
- `"country": ["DE", "AT"]`: the account's country (ISO 3166-1 alpha-2) is one of these;
- `"custom": [{"on": "account", "key": "industry", "equals": "travel"}, ...]`: every condition holds on the
  account's or the contact's custom fields: `equals` a value, `in` a list of values, `exists` true/false, or a
  number `gt` and/or `lt` a bound (only numbers match those; `equals` matches the value's type too: 1 is not "1").
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import models
from django.db.models import Exists, F, Func, Max, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from accord.customers.models import CUSTOM_KEY, Account, Contact, Tier
from accord.insight.models import AccountValue, ClvFit, HealthScore, OrderLine
from accord.lib import countries

from .models import Consent, Purpose

KEYS = ("tier", "clv", "health", "last_order", "consent", "country", "custom")
CUSTOM_KEYS = ("on", "key", "equals", "in", "exists", "gt", "lt")
CUSTOM_TESTS = ("equals", "in", "exists", "gt", "lt")
CONSENT_STATUSES = (*Consent.Status.values, "none")


class SpecError(ValueError):
    """A segment filter that cannot be used; the message says which key and why."""


def _object(spec: Any, where: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise SpecError(f"{where} must be an object, e.g. {{\"{allowed[0]}\": ...}}")
    unknown = sorted(set(spec) - set(allowed))
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(allowed)}")
    return spec


def _number(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise SpecError(f"{where} must be a number, not {value!r}")
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise SpecError(f"{where} must be a number, not {value!r}") from None


def _bounds(spec: Any, where: str) -> tuple[Decimal | None, Decimal | None]:
    spec = _object(spec, where, ("min", "max"))
    low = _number(spec["min"], f"{where}.min") if spec.get("min") is not None else None
    high = _number(spec["max"], f"{where}.max") if spec.get("max") is not None else None
    if low is not None and high is not None and low > high:
        raise SpecError(f"{where}: min {low} is above max {high}")
    return low, high


def _names(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise SpecError(f"{where} must be a name or a non-empty list of names")
    return value


def _day(value: Any, where: str) -> dt.date:
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise SpecError(f"{where} must be a day as YYYY-MM-DD, not {value!r}") from None


def _days(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SpecError(f"{where} must be a whole number of days (0 or more), not {value!r}")
    return value


def check(spec: Any) -> dict[str, Any]:
    """The spec if it can be used, else SpecError naming the key and the problem."""
    if spec in (None, ""):
        return {}
    if not isinstance(spec, dict):
        raise SpecError("a segment filter must be a JSON object, e.g. {\"tier\": [\"gold\"]}")
    _object(spec, "the filter", KEYS)
    if "tier" in spec:
        names = _names(spec["tier"], "tier")
        missing = sorted(set(names) - set(Tier.objects.filter(name__in=names).values_list("name", flat=True)))
        if missing:
            raise SpecError(f"tier: no tier named {', '.join(missing)}")
    if "clv" in spec:
        _bounds(spec["clv"], "clv")
    if "health" in spec:
        low, high = _bounds(spec["health"], "health")
        if any(b is not None and not 0 <= b <= 100 for b in (low, high)):
            raise SpecError("health: scores run from 0 to 100")
    if "last_order" in spec:
        order = _object(spec["last_order"], "last_order", ("within_days", "not_within_days", "after", "before"))
        if not order:
            raise SpecError("last_order: give within_days, not_within_days, or after/before")
        for key in ("within_days", "not_within_days"):
            if key in order:
                _days(order[key], f"last_order.{key}")
        after = _day(order["after"], "last_order.after") if "after" in order else None
        before = _day(order["before"], "last_order.before") if "before" in order else None
        if after and before and after > before:
            raise SpecError(f"last_order: after {after} is later than before {before}")
    if "consent" in spec:
        consent = _object(spec["consent"], "consent", ("purpose", "status"))
        if "purpose" not in consent:
            raise SpecError("consent: name the purpose, e.g. {\"purpose\": \"newsletter\"}")
        if not Purpose.objects.filter(name=consent["purpose"]).exists():
            raise SpecError(f"consent: no purpose named {consent['purpose']!r}")
        statuses = _names(consent.get("status", "confirmed"), "consent.status")
        wrong = [s for s in statuses if s not in CONSENT_STATUSES]
        if wrong:
            raise SpecError(f"consent.status: {', '.join(wrong)} is not one of {', '.join(CONSENT_STATUSES)}")
    if "country" in spec:
        codes = spec["country"]
        if isinstance(codes, str):
            codes = [codes]
        if not isinstance(codes, list) or not codes:
            raise SpecError("country must be a country code or a non-empty list of them, e.g. [\"DE\", \"AT\"]")
        for i, code in enumerate(codes):
            if not isinstance(code, str):
                raise SpecError(f"country[{i}] must be a country code like \"DE\", not {code!r}")
            if why := countries.problem(code):
                raise SpecError(f"country[{i}]: {why}")
    if "custom" in spec:
        conditions = spec["custom"]
        if not isinstance(conditions, list) or not conditions:
            raise SpecError("custom must be a non-empty list of conditions, e.g. "
                            "[{\"on\": \"account\", \"key\": \"industry\", \"equals\": \"travel\"}]")
        for i, condition in enumerate(conditions):
            _custom_condition(condition, f"custom[{i}]")
    return spec


def _scalar(value: Any, where: str) -> str | int | float | bool:
    if isinstance(value, bool | str) or (isinstance(value, int | float) and value == value
                                          and value not in (float("inf"), float("-inf"))):
        return value
    raise SpecError(f"{where} must be text, a number or true/false (custom fields hold nothing else), not {value!r}")


def _custom_condition(condition: Any, where: str) -> dict[str, Any]:
    condition = _object(condition, where, CUSTOM_KEYS)
    if condition.get("on") not in ("account", "contact"):
        raise SpecError(f"{where}.on must be \"account\" or \"contact\" (whose custom fields), "
                        f"not {condition.get('on')!r}")
    key = condition.get("key")
    if not isinstance(key, str) or not CUSTOM_KEY.fullmatch(key):
        raise SpecError(f"{where}.key must be a custom field key (a letter, then letters, digits or _), not {key!r}")
    tests = [t for t in CUSTOM_TESTS if t in condition]
    if not tests:
        raise SpecError(f"{where}: give one of {', '.join(CUSTOM_TESTS)} (gt and lt may go together)")
    if len(tests) > 1 and set(tests) != {"gt", "lt"}:
        raise SpecError(f"{where}: {' and '.join(tests)} cannot go together; only gt and lt may")
    if "equals" in condition:
        _scalar(condition["equals"], f"{where}.equals")
    if "in" in condition:
        values = condition["in"]
        if not isinstance(values, list) or not values:
            raise SpecError(f"{where}.in must be a non-empty list of values")
        for j, value in enumerate(values):
            _scalar(value, f"{where}.in[{j}]")
    if "exists" in condition and not isinstance(condition["exists"], bool):
        raise SpecError(f"{where}.exists must be true or false, not {condition['exists']!r}")
    low = _number(condition["gt"], f"{where}.gt") if "gt" in condition else None
    high = _number(condition["lt"], f"{where}.lt") if "lt" in condition else None
    if low is not None and high is not None and low >= high:
        raise SpecError(f"{where}: gt {low} and lt {high} leave no number between them")
    return condition


# JSON value types as each database names them: SQLite's JSON_TYPE, PostgreSQL's JSONB_TYPEOF
_TYPES = {bool: ("true", "false", "boolean"), int: ("integer", "real", "number"), str: ("text", "string")}


class JsonKeyType(Func):
    """The JSON type of one key of a JSON column ('text', 'integer', ... / 'string', 'number', ...; NULL if absent).

    Comparing a key's value across types goes wrong on both databases (jsonb orders true above every number; SQLite
    orders text above every number), so each comparison also requires the value's type.
    """

    output_field = models.CharField()

    def __init__(self, column: str, key: str) -> None:
        self.key = key
        super().__init__(F(column))

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        sql, params = compiler.compile(self.source_expressions[0])
        return f"JSON_TYPE({sql}, %s)", [*params, f'$."{self.key}"']

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        sql, params = compiler.compile(self.source_expressions[0])
        return f"JSONB_TYPEOF({sql} -> %s)", [*params, self.key]

    def as_sql(self, compiler: Any, connection: Any, *args: Any, **extra: Any) -> Any:
        raise NotImplementedError(f"custom field conditions need SQLite or PostgreSQL, not {connection.vendor}")


def _type_of(value: Any) -> tuple[str, ...]:
    return _TYPES[bool] if isinstance(value, bool) else _TYPES[str] if isinstance(value, str) else _TYPES[int]


def _custom_q(qs: QuerySet[Any], condition: dict[str, Any], n: int) -> QuerySet[Any]:
    """`qs` (accounts or contacts) narrowed by one checked custom condition."""
    key, column = condition["key"], "custom_fields"
    kind = f"_custom_type_{n}"
    qs = qs.alias(**{kind: JsonKeyType(column, key)})
    if "exists" in condition:
        present = Q(**{f"{kind}__isnull": False})
        return qs.filter(present if condition["exists"] else ~present)
    if "gt" in condition or "lt" in condition:
        qs = qs.filter(**{f"{kind}__in": _TYPES[int]})
        if "gt" in condition:
            qs = qs.filter(**{f"{column}__{key}__gt": float(condition["gt"])})
        if "lt" in condition:
            qs = qs.filter(**{f"{column}__{key}__lt": float(condition["lt"])})
        return qs
    values = condition["in"] if "in" in condition else [condition["equals"]]
    wanted = Q()
    for value in values:
        wanted |= Q(**{f"{kind}__in": _type_of(value), f"{column}__{key}": value})
    return qs.filter(wanted)


def contacts(spec: Any, today: dt.date | None = None) -> QuerySet[Contact]:
    """The contacts a (checked) spec matches, as a queryset (counted and iterated live)."""
    spec = check(spec)
    today = today or timezone.localdate()
    accounts = Account.objects.all()
    on_account = False
    if "tier" in spec:
        accounts, on_account = accounts.filter(tier__name__in=_names(spec["tier"], "tier")), True
    if "clv" in spec:
        low, high = _bounds(spec["clv"], "clv")
        fit = ClvFit.objects.order_by("-created_at", "-id").first()
        values = AccountValue.objects.filter(fit=fit) if fit else AccountValue.objects.none()
        if low is not None:
            values = values.filter(clv__gte=low)
        if high is not None:
            values = values.filter(clv__lte=high)
        accounts, on_account = accounts.filter(pk__in=values.values("account_id")), True
    if "health" in spec:
        low, high = _bounds(spec["health"], "health")
        latest = HealthScore.objects.filter(account=OuterRef("pk")).order_by("-computed_at", "-id").values("score")[:1]
        accounts = accounts.annotate(health=Subquery(latest)).filter(health__isnull=False)
        if low is not None:
            accounts = accounts.filter(health__gte=int(low))
        if high is not None:
            accounts = accounts.filter(health__lte=int(high))
        on_account = True
    if "last_order" in spec:
        order = spec["last_order"]
        if "within_days" in order:
            since = today - dt.timedelta(days=order["within_days"])
            accounts = accounts.filter(Exists(OrderLine.objects.filter(account=OuterRef("pk"), ordered_on__gte=since)))
        if "not_within_days" in order:
            since = today - dt.timedelta(days=order["not_within_days"])
            accounts = accounts.exclude(Exists(OrderLine.objects.filter(account=OuterRef("pk"), ordered_on__gte=since)))
        if "after" in order or "before" in order:
            last = OrderLine.objects.filter(account=OuterRef("pk")).values("account").annotate(
                last=Max("ordered_on")).values("last")
            accounts = accounts.annotate(last_order=Subquery(last)).filter(last_order__isnull=False)
            if "after" in order:
                accounts = accounts.filter(last_order__gte=_day(order["after"], ""))
            if "before" in order:
                accounts = accounts.filter(last_order__lte=_day(order["before"], ""))
        on_account = True
    if "country" in spec:
        codes = [spec["country"]] if isinstance(spec["country"], str) else spec["country"]
        accounts, on_account = accounts.filter(country__in=codes), True
    found = Contact.objects.all()
    for n, condition in enumerate(spec.get("custom", [])):
        if condition["on"] == "account":
            accounts, on_account = _custom_q(accounts, condition, n), True
        else:
            found = _custom_q(found, condition, n)
    if on_account:
        found = found.filter(account__in=accounts.values("pk"))
    if "consent" in spec:
        consent = spec["consent"]
        statuses = _names(consent.get("status", "confirmed"), "consent.status")
        wanted = Q(Exists(Consent.objects.filter(contact=OuterRef("pk"), purpose__name=consent["purpose"],
                                                 status__in=[s for s in statuses if s != "none"])))
        if "none" in statuses:
            wanted |= ~Q(Exists(Consent.objects.filter(contact=OuterRef("pk"), purpose__name=consent["purpose"])))
        found = found.filter(wanted)
    return found.order_by("pk")


def count(spec: Any) -> int:
    return contacts(spec).count()
