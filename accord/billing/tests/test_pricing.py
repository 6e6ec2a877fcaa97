"""Prices: per unit, graduated and volume tiers, included quantities, and rounding half-up to cents per line."""

from __future__ import annotations

from decimal import Decimal as D

from accord.billing.pricing import Band, Price, cents

TIERS = (Band(D(1000), D("0.10")), Band(D(5000), D("0.05")), Band(None, D("0.01")))


def test_graduated_charges_each_tier_at_its_price_and_volume_charges_all_units_at_one() -> None:
    graduated = Price("m", "graduated", bands=TIERS)
    volume = Price("m", "volume", bands=TIERS)
    assert graduated.charge(D(6000)) == (D(6000), D("310.00"), None)  # 1000*0.10 + 4000*0.05 + 1000*0.01
    assert volume.charge(D(6000)) == (D(6000), D("60.00"), D("0.01"))  # all 6000 at the third tier's price
    assert graduated.charge(D(1000))[1] == volume.charge(D(1000))[1] == D("100.00")  # the bound is in its tier
    assert volume.charge(D(1001))[1] == D("50.05")  # one more unit: all at 0.05


def test_included_quantity_is_free_and_prorated_by_the_share_of_the_month() -> None:
    price = Price("m", "per_unit", unit_price=D("0.02"), included=D(1000))
    assert price.charge(D(999)) == (D(0), D("0.00"), D("0.02"))
    assert price.charge(D(1500)) == (D(500), D("10.00"), D("0.02"))
    assert price.charge(D(1500), share=D("0.5")) == (D(1000), D("20.00"), D("0.02"))  # 500 included for half


def test_a_line_is_rounded_half_up_to_cents_once() -> None:
    assert cents(D("0.005")) == D("0.01") and cents(D("0.0049")) == D("0.00") and cents(D("2.675")) == D("2.68")
    price = Price("m", "per_unit", unit_price=D("0.0005"))
    assert price.charge(D(3))[1] == D("0.00")  # 0.0015
    assert price.charge(D(10))[1] == D("0.01")  # 0.005: half goes up


def test_a_volume_tier_with_a_flat_fee_adds_it_once() -> None:
    price = Price("m", "volume", bands=(Band(D(10), D(0), D(5)), Band(None, D(1), D(20))))
    assert price.charge(D(0))[1] == D("0.00")
    assert price.charge(D(3))[1] == D("5.00")
    assert price.charge(D(12))[1] == D("32.00")
