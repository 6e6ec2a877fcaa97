"""The `tiers` section of the manifest: tier rules as code (docs/agreements-as-code.md)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import Field, StrictInt

from accord.lib.manifest import Check, Kind
from accord.lib.manifest.fields import Money, Spec, Text, TierName, drop_empty, num

from .models import Tier


class TierSpec(Spec):
    """A tier and the rule that earns it."""

    name: TierName
    rank: StrictInt = Field(ge=1, le=1000)
    min_commitment: Money | None = None
    min_revenue_12m: Money | None = None
    match: Literal["any", "all"] = "any"
    description: Text = ""


def tier_dict(t: TierSpec | Tier) -> dict[str, Any]:
    """A tier in canonical form, from the file or the database."""
    min_commitment: Decimal | None = t.min_commitment
    return drop_empty(
        {
            "name": t.name,
            "rank": t.rank,
            "min_commitment": num(min_commitment),
            "min_revenue_12m": num(t.min_revenue_12m),
            "match": None if t.match == "any" else t.match,
            "description": t.description,
        },
        keep=("name", "rank"),
    )


class TierKind(Kind, section="tiers", singular="tier", spec=TierSpec, model=Tier):
    """Tiers by name; ranks are unique, also across the file and the stored tiers it leaves alone."""

    def check(self, check: Check) -> None:
        check.unique_in("tiers", lambda t: t.rank, "rank")
        if check.pruned("tiers"):
            return
        names = [t.name for t in check.items("tiers")]
        taken = dict(Tier.objects.exclude(name__in=names).values_list("rank", "name"))
        for where, t in check.each("tiers"):
            if t.rank in taken:
                check.err(f"{where}.rank", f"rank {t.rank} is taken by tier '{taken[t.rank]}' (not in this file)")

    def canonical(self, item: TierSpec) -> dict[str, Any]:
        return tier_dict(item)

    def stored(self, name: str) -> dict[str, Any] | None:
        tier = Tier.objects.filter(name=name).first()
        return tier_dict(tier) if tier else None

    def write(self, items: list[TierSpec]) -> None:
        # Ranks are unique: park the changed tiers out of the way first, so two tiers can swap ranks.
        for i, t in enumerate(items):
            Tier.objects.filter(name=t.name).update(rank=30000 + i)
        for t in items:
            Tier.objects.update_or_create(
                name=t.name,
                defaults={"rank": t.rank, "min_commitment": t.min_commitment, "min_revenue_12m": t.min_revenue_12m,
                          "match": t.match, "description": t.description},
            )

    def export(self) -> tuple[list[dict[str, Any]], list[str]]:
        rows, notes = self.real(Tier.objects.order_by("rank"))
        return [tier_dict(t) for t in rows], notes
