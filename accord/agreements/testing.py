"""Test data other apps' tests share: a tier under an agreement on a calendar that never closes."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from accord.customers.models import Tier

from .models import Agreement, BusinessCalendar, Objective

WEEK = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def always_agreement(tier: str = "gold", *objectives: dict[str, object]) -> Agreement:
    """`<tier>-sla` for the tier, from 2026-01-01, on a 24x7 calendar `always`, with these support objectives
    (keyword dicts for Objective: name, kind, target in minutes, and optionally priority or channel)."""
    calendar = BusinessCalendar.objects.create(name="always", timezone="UTC", hours={d: ["00:00-24:00"] for d in WEEK})
    agreement = Agreement.objects.create(name=f"{tier}-sla", tier=Tier.objects.create(name=tier, rank=1),
                                         effective_from=dt.date(2026, 1, 1), calendar=calendar)
    for spec in objectives:
        Objective.objects.create(agreement=agreement, **{**spec, "target": Decimal(str(spec["target"]))})
    return agreement
