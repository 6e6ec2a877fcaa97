"""The `meters` and `plans` sections of the manifest: what is billed, and at what price (docs/billing.md)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import Field

from accord.catalog.models import Operation
from accord.customers.models import Account, Tier
from accord.lib.manifest import Check, Kind
from accord.lib.manifest.fields import (
    ExternalId,
    IsoDate,
    Money,
    Name,
    Spec,
    Text,
    TierName,
    drop_empty,
    num,
)

from .models import Meter, Plan
from .sources import SOURCES, registered

# What each source can be aggregated by, and which narrowing keys it takes.
AGGREGATIONS: dict[str, tuple[str, ...]] = {
    "gateway.requests": ("count", "max"),
    "gateway.bytes": ("sum", "max"),
    "desk.tickets": ("count",),
    "desk.messages": ("count",),
    "chat.minutes": ("sum", "max"),
    "chat.open": ("time_weighted", "max"),
    "desk.active_agents": ("unique",),
}
DIRECTIONS: dict[str, tuple[str, ...]] = {"gateway.bytes": ("in", "out"), "desk.messages": ("inbound", "outbound")}

Quantity = Annotated[Decimal, Field(ge=0, max_digits=20, decimal_places=4, allow_inf_nan=False)]
UnitPrice = Annotated[Decimal, Field(ge=0, max_digits=16, decimal_places=6, allow_inf_nan=False)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


class MeterSpec(Spec):
    """A billable metric."""

    name: Name
    title: Text = ""
    source: Annotated[str, Field(min_length=1, max_length=24)]  # built in (AGGREGATIONS) or registered (sources)
    aggregation: Literal["count", "sum", "max", "unique", "time_weighted"] | None = None
    service: Name | None = None
    operation: Name | None = None
    direction: Literal["in", "out", "inbound", "outbound"] | None = None
    unit: Annotated[str, Field(max_length=40)] = ""


def meter_dict(name: str, title: str, source: str, aggregation: str, service: str, operation: str, direction: str,
               unit: str) -> dict[str, Any]:
    return drop_empty({"name": name, "title": title, "source": source, "aggregation": aggregation,
                       "service": service, "operation": operation, "direction": direction, "unit": unit},
                      keep=("name", "source", "aggregation"))


def aggregations(source: str) -> tuple[str, ...]:
    """The aggregations of a built-in or registered source; () for an unknown one."""
    if source in AGGREGATIONS:
        return AGGREGATIONS[source]
    extra = registered(source)
    return extra.aggregations if extra else ()


def _meter_from_spec(m: MeterSpec) -> dict[str, Any]:
    return meter_dict(m.name, m.title, m.source, m.aggregation or (aggregations(m.source) or ("count",))[0],
                      m.service or "",
                      m.operation or "", m.direction or "", m.unit)


def _meter_from_db(m: Meter) -> dict[str, Any]:
    return meter_dict(m.name, m.title, m.source, m.aggregation, m.service, m.operation, m.direction, m.unit)


class MeterKind(Kind, section="meters", singular="meter", spec=MeterSpec, model=Meter, depends=("services",)):
    """Meters by name; a meter over the gateway may name a service (and an operation of it) that must exist."""

    def check(self, check: Check) -> None:
        services = {s.name: s for s in check.items("services")}
        for p, m in check.each("meters"):
            allowed = aggregations(m.source)
            if not allowed:
                known = sorted([*AGGREGATIONS, *SOURCES])
                check.err(f"{p}.source", f"no meter source '{m.source}' (known: {', '.join(known)})")
                continue
            if m.aggregation is not None and m.aggregation not in allowed:
                check.err(f"{p}.aggregation", f"{m.source} is aggregated by {' or '.join(allowed)}")
            gateway = m.source.startswith("gateway.")
            if not gateway and (m.service or m.operation):
                check.err(f"{p}.service" if m.service else f"{p}.operation",
                          f"only gateway meters are narrowed to a service or operation, not {m.source}")
            if m.direction is not None and m.direction not in DIRECTIONS.get(m.source, ()):
                shown = " or ".join(DIRECTIONS.get(m.source, ())) or "no direction"
                check.err(f"{p}.direction", f"{m.source} takes {shown}")
            if m.operation and not m.service:
                check.err(f"{p}.operation", "an operation needs its service")
            if gateway and m.service:
                if m.service not in check.known("services"):
                    check.err(f"{p}.service", check.missing("services", m.service))
                elif m.operation:
                    in_file = services.get(m.service)
                    ops = ({o.name for o in in_file.operations} if in_file is not None else
                           set(Operation.objects.filter(service__name=m.service).values_list("name", flat=True)))
                    if m.operation not in ops:
                        check.err(f"{p}.operation", f"service '{m.service}' has no operation '{m.operation}'")

    def canonical(self, item: MeterSpec) -> dict[str, Any]:
        return _meter_from_spec(item)

    def stored(self, name: str) -> dict[str, Any] | None:
        m = Meter.objects.filter(name=name).first()
        return _meter_from_db(m) if m else None

    def write(self, items: list[MeterSpec]) -> None:
        for m in items:
            d = _meter_from_spec(m)
            Meter.objects.update_or_create(name=m.name, defaults={
                "title": m.title, "source": m.source, "aggregation": d["aggregation"], "service": m.service or "",
                "operation": m.operation or "", "direction": m.direction or "", "unit": m.unit})

    def export(self) -> tuple[list[dict[str, Any]], list[str]]:
        return [_meter_from_db(m) for m in Meter.objects.order_by("name")], []


class BandSpec(Spec):
    """A tier of a price: units up to `up_to` (leave it out on the last) at `unit_price`, plus `flat` once."""

    up_to: Quantity | None = None
    unit_price: UnitPrice
    flat: Money = Decimal(0)


class PriceSpec(Spec):
    """How one meter is charged."""

    meter: Name
    model: Literal["per_unit", "graduated", "volume"] = "per_unit"
    unit_price: UnitPrice | None = None
    included: Quantity = Decimal(0)
    tiers: list[BandSpec] = []


class PlanSpec(Spec):
    """A price plan for some tiers or accounts, in force between two days."""

    name: Name
    title: Text = ""
    currency: Currency
    flat_fee: Money = Decimal(0)
    minimum_commitment: Money = Decimal(0)
    tiers: list[TierName] = []
    accounts: list[ExternalId] = []
    valid_from: IsoDate | None = None
    valid_until: IsoDate | None = None
    prices: list[PriceSpec] = []


def price_dict(p: dict[str, Any]) -> dict[str, Any]:
    tiers = [drop_empty({"up_to": num(Decimal(str(b["up_to"]))) if b.get("up_to") is not None else None,
                         "unit_price": num(Decimal(str(b["unit_price"]))),
                         "flat": num(Decimal(str(b.get("flat") or 0))) or None}, keep=("unit_price",))
             for b in p.get("tiers") or []]
    unit = p.get("unit_price")
    return drop_empty({"meter": p["meter"], "model": None if p.get("model", "per_unit") == "per_unit" else p["model"],
                       "unit_price": None if unit is None else num(Decimal(str(unit))),
                       "included": num(Decimal(str(p.get("included") or 0))) or None, "tiers": tiers},
                      keep=("meter",))


def plan_dict(name: str, title: str, currency: str, flat_fee: Decimal, minimum: Decimal, tiers: list[str],
              accounts: list[str], valid_from: Any, valid_until: Any, prices: list[dict[str, Any]]) -> dict[str, Any]:
    return drop_empty({"name": name, "title": title, "currency": currency, "flat_fee": num(flat_fee) or None,
                       "minimum_commitment": num(minimum) or None, "tiers": sorted(tiers),
                       "accounts": sorted(accounts), "valid_from": valid_from, "valid_until": valid_until,
                       "prices": [price_dict(p) for p in prices]}, keep=("name", "currency"))


def _prices_json(prices: list[PriceSpec]) -> list[dict[str, Any]]:
    return [{"meter": p.meter, "model": p.model, "unit_price": None if p.unit_price is None else str(p.unit_price),
             "included": str(p.included),
             "tiers": [{"up_to": None if b.up_to is None else str(b.up_to), "unit_price": str(b.unit_price),
                        "flat": str(b.flat)} for b in p.tiers]} for p in prices]


def _plan_from_spec(p: PlanSpec) -> dict[str, Any]:
    return plan_dict(p.name, p.title, p.currency, p.flat_fee, p.minimum_commitment, p.tiers, p.accounts,
                     p.valid_from, p.valid_until, _prices_json(p.prices))


def _plan_from_db(p: Plan) -> dict[str, Any]:
    return plan_dict(p.name, p.title, p.currency, p.flat_fee, p.minimum_commitment,
                     [t.name for t in p.tiers.all()], [a.external_id or str(a.pk) for a in p.accounts.all()],
                     p.valid_from, p.valid_until, list(p.prices))


class PlanKind(Kind, section="plans", singular="plan", spec=PlanSpec, model=Plan, depends=("tiers", "meters")):
    """Plans by name; their tiers and meters must exist, their accounts (by external id) too."""

    def check(self, check: Check) -> None:
        for p, plan in check.each("plans"):
            for j, tier in enumerate(plan.tiers):
                check.refers(f"{p}.tiers[{j}]", "tiers", tier)
            known = set(Account.objects.filter(external_id__in=plan.accounts).values_list("external_id", flat=True))
            for j, ext in enumerate(plan.accounts):
                if ext not in known:
                    check.err(f"{p}.accounts[{j}]", f"no account with external id '{ext}'")
            if plan.valid_from and plan.valid_until and plan.valid_until < plan.valid_from:
                check.err(f"{p}.valid_until", "is before valid_from")
            check.unique(f"{p}.prices", plan.prices, lambda x: x.meter, "meter")
            for j, price in enumerate(plan.prices):
                where = f"{p}.prices[{j}]"
                check.refers(f"{where}.meter", "meters", price.meter)
                if price.model == "per_unit":
                    if price.unit_price is None:
                        check.err(f"{where}.unit_price", "a per_unit price needs a unit_price")
                    if price.tiers:
                        check.err(f"{where}.tiers", "a per_unit price has no tiers (use graduated or volume)")
                    continue
                if price.unit_price is not None:
                    check.err(f"{where}.unit_price", f"a {price.model} price is priced by its tiers")
                if not price.tiers:
                    check.err(f"{where}.tiers", f"a {price.model} price needs at least one tier")
                    continue
                bounds = [b.up_to for b in price.tiers]
                if bounds[-1] is not None:
                    check.err(f"{where}.tiers[{len(bounds) - 1}].up_to", "the last tier has no up_to (it takes "
                                                                         "everything above)")
                for k, b in enumerate(bounds[:-1]):
                    if b is None:
                        check.err(f"{where}.tiers[{k}].up_to", "only the last tier may leave out up_to")
                    elif k and bounds[k - 1] is not None and b <= bounds[k - 1]:
                        check.err(f"{where}.tiers[{k}].up_to", "must be above the tier before")

    def canonical(self, item: PlanSpec) -> dict[str, Any]:
        return _plan_from_spec(item)

    def stored(self, name: str) -> dict[str, Any] | None:
        p = Plan.objects.filter(name=name).prefetch_related("tiers", "accounts").first()
        return _plan_from_db(p) if p else None

    def write(self, items: list[PlanSpec]) -> None:
        for p in items:
            plan, _ = Plan.objects.update_or_create(name=p.name, defaults={
                "title": p.title, "currency": p.currency, "flat_fee": p.flat_fee,
                "minimum_commitment": p.minimum_commitment, "valid_from": p.valid_from,
                "valid_until": p.valid_until, "prices": _prices_json(p.prices)})
            plan.tiers.set(Tier.objects.filter(name__in=p.tiers))
            plan.accounts.set(Account.objects.filter(external_id__in=p.accounts))

    def export(self) -> tuple[list[dict[str, Any]], list[str]]:
        plans = Plan.objects.order_by("name").prefetch_related("tiers", "accounts")
        return [_plan_from_db(p) for p in plans], []


