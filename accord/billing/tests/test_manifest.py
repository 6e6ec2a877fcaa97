"""Meters and plans as data: applied with the manifest, refused with the path of what is wrong."""

from __future__ import annotations

import pytest

from accord.billing.models import Meter, Plan
from accord.customers.models import Tier
from accord.lib.manifest import ManifestError, apply_manifest, export_manifest

from .conftest import CATALOG


def errors(text: str) -> list[str]:
    with pytest.raises(ManifestError) as e:
        apply_manifest(text)
    return e.value.errors


@pytest.mark.django_db
def test_a_meter_over_an_unknown_service_or_operation_is_refused_with_its_path() -> None:
    apply_manifest(CATALOG)
    found = errors("meters:\n  - {name: m1, source: gateway.requests, service: bokking}\n"
                   "  - {name: m2, source: gateway.requests, service: booking, operation: delete}\n"
                   "  - {name: m3, source: desk.tickets, aggregation: max}\n")
    assert found == ["meters[0].service: no service named 'bokking'",
                     "meters[1].operation: service 'booking' has no operation 'delete'",
                     "meters[2].aggregation: desk.tickets is aggregated by count"]
    assert not Meter.objects.filter(name__in=["m1", "m2", "m3"]).exists()


@pytest.mark.django_db
def test_plans_refer_to_meters_and_tiers_and_tier_bounds_must_rise() -> None:
    apply_manifest(CATALOG)
    Tier.objects.create(name="gold", rank=1)
    found = errors("""
plans:
  - name: p
    currency: EUR
    tiers: [gold, silver]
    prices:
      - {meter: api-calls, model: graduated, tiers: [{up_to: 10, unit_price: 1}, {up_to: 5, unit_price: 1}, {unit_price: 0}]}
      - {meter: nope, unit_price: 1}
""")
    assert found == ["plans[0].tiers[1]: no tier named 'silver'",
                     "plans[0].prices[0].tiers[1].up_to: must be above the tier before",
                     "plans[0].prices[1].meter: no meter named 'nope'"]
    assert not Plan.objects.exists()


@pytest.mark.django_db
def test_applying_the_export_changes_nothing() -> None:
    apply_manifest(CATALOG)
    Tier.objects.create(name="gold", rank=1)
    apply_manifest("""
plans:
  - name: gold-2026
    currency: EUR
    flat_fee: 100
    minimum_commitment: 250.50
    tiers: [gold]
    valid_from: 2026-01-01
    prices:
      - {meter: api-calls, model: volume, included: 1000, tiers: [{up_to: 10000, unit_price: 0.002}, {unit_price: 0.001, flat: 5}]}
      - {meter: tickets, unit_price: 1.5}
""")
    result = apply_manifest(export_manifest())
    assert not result.changed, result.lines()
