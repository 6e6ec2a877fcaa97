"""The `health` section of the manifest: the health score's weights as data (docs/insight.md)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import Field, StrictInt

from accord.lib.manifest import Check, Kind
from accord.lib.manifest.fields import Name, Spec, Text, drop_empty, num

from .models import HealthWeights

# The factors the score knows (accord/insight/health.py); a weight for another name is an error in the file.
FACTORS = ("sla_breaches", "error_budget", "credits", "ticket_volume", "response_timeliness", "order_recency",
           "order_frequency", "clv_trend")
DEFAULT_WEIGHTS = {"sla_breaches": 20, "error_budget": 15, "credits": 10, "ticket_volume": 10,
                   "response_timeliness": 15, "order_recency": 10, "order_frequency": 10, "clv_trend": 10}


class HealthSpec(Spec):
    """A named set of weights; `default` is the one the score uses."""

    name: Name
    description: Text = ""
    window_days: StrictInt = Field(default=90, ge=7, le=730)
    weights: dict[str, Decimal] = Field(default_factory=dict)


def health_dict(h: HealthSpec | HealthWeights) -> dict[str, Any]:
    """A set of weights in canonical form, from the file or the database."""
    weights = {k: num(Decimal(str(v))) for k, v in sorted(h.weights.items())}
    return drop_empty({"name": h.name, "description": h.description,
                       "window_days": None if h.window_days == 90 else h.window_days, "weights": weights},
                      keep=("name", "weights"))


class HealthKind(Kind, section="health", singular="health weights", spec=HealthSpec, model=HealthWeights):
    """Health weights by name: every factor named must be known, every weight between 0 and 100."""

    def check(self, check: Check) -> None:
        for where, h in check.each("health"):
            for factor, weight in h.weights.items():
                if factor not in FACTORS:
                    check.err(f"{where}.weights.{factor}", f"unknown factor (the factors are {', '.join(FACTORS)})")
                elif not (0 <= weight <= 100):
                    check.err(f"{where}.weights.{factor}", f"weight {weight} must be between 0 and 100")
            if h.weights and not any(w > 0 for w in h.weights.values()):
                check.err(f"{where}.weights", "at least one weight must be above 0")

    def canonical(self, item: HealthSpec) -> dict[str, Any]:
        return health_dict(item)

    def stored(self, name: str) -> dict[str, Any] | None:
        found = HealthWeights.objects.filter(name=name).first()
        return health_dict(found) if found else None

    def write(self, items: list[HealthSpec]) -> None:
        for h in items:
            HealthWeights.objects.update_or_create(
                name=h.name, defaults={"description": h.description, "window_days": h.window_days,
                                       "weights": {k: float(v) for k, v in h.weights.items()}},
            )

    def export(self) -> tuple[list[dict[str, Any]], list[str]]:
        return [health_dict(h) for h in HealthWeights.objects.order_by("name")], []



