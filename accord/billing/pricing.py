"""Prices: a quantity of a meter to money under one plan's price for it (docs/billing.md, "Plans").

Money is Decimal throughout; a line's amount is rounded once, half-up to cents (`cents`), never its parts, so a
graduated charge of three tiers is exact to the cent of the whole line.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

CENT = Decimal("0.01")


def cents(amount: Decimal) -> Decimal:
    """Half-up to cents: 0.005 -> 0.01, 0.0049 -> 0.00, -0.005 -> -0.01 (away from zero on a half)."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Band:
    """A tier of a price: the units up to `up_to` (None: all above) at `unit_price`, plus a `flat` fee once."""

    up_to: Decimal | None
    unit_price: Decimal
    flat: Decimal = Decimal(0)


@dataclass(frozen=True)
class Price:
    """How one meter is charged under one plan."""

    meter: str
    model: str  # per_unit | graduated | volume
    unit_price: Decimal = Decimal(0)
    included: Decimal = Decimal(0)
    bands: tuple[Band, ...] = ()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Price:
        bands = tuple(Band(None if b.get("up_to") is None else Decimal(str(b["up_to"])), Decimal(str(b["unit_price"])),
                           Decimal(str(b.get("flat") or 0))) for b in d.get("tiers") or [])
        return cls(d["meter"], d.get("model", "per_unit"), Decimal(str(d.get("unit_price") or 0)),
                   Decimal(str(d.get("included") or 0)), bands)

    def charge(self, quantity: Decimal, share: Decimal = Decimal(1)) -> tuple[Decimal, Decimal, Decimal | None]:
        """(billable quantity, amount rounded to cents, the one unit price or None) for a quantity used while the
        plan was in force for `share` of the month: the included quantity is prorated by it, tier bounds are not."""
        included = self.included * share
        billable = max(Decimal(0), quantity - included)
        if self.model == "per_unit":
            return billable, cents(billable * self.unit_price), self.unit_price
        if self.model == "volume":
            band = next((b for b in self.bands if b.up_to is None or billable <= b.up_to), self.bands[-1])
            flat = band.flat if billable > 0 else Decimal(0)
            return billable, cents(billable * band.unit_price + flat), band.unit_price if not flat else None
        # graduated: each tier's units at that tier's price
        amount, below = Decimal(0), Decimal(0)
        for band in self.bands:
            if billable <= below:
                break
            top = billable if band.up_to is None else min(billable, band.up_to)
            amount += (top - below) * band.unit_price + band.flat
            below = top if band.up_to is None else band.up_to
        return billable, cents(amount), None
