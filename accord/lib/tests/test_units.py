"""Numbers as people read them: each with its unit, no float noise, infinity as ∞ (and as "Infinity" in JSON)."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess
import sys
from decimal import Decimal
from fractions import Fraction

import pytest
from django.template import Context, Template

from accord.lib import units


@pytest.mark.parametrize(("seconds", "largest", "shown"), [
    (14400 * 60, "d", "10 d"),
    (14400 * 60, "h", "240 h"),
    (2 * 86400, "d", "2 d"),
    (4 * 3600, "d", "4 h"),
    (30 * 60, "d", "30 min"),
    (90 * 60, "d", "1 h 30 min"),
    (86400 + 3600 + 60 + 1, "d", "1 d 1 h 1 min 1 s"),
    (1.5, "d", "1.5 s"),
    (0, "d", "0 s"),
    (-90, "d", "-1 min 30 s"),
    (Decimal("14400.0000") * 60, "h", "240 h"),
    (None, "d", "\u2013"),
])
def test_durations_are_whole_units_largest_first(seconds: float | Decimal | None, largest: str, shown: str) -> None:
    assert units.duration(seconds, largest=largest) == shown


def test_minutes_are_durations_and_a_bad_largest_unit_is_refused() -> None:
    assert units.minutes(Decimal("14400.0000"), largest="h") == "240 h"
    assert units.minutes(240) == "4 h" and units.minutes(30) == "30 min" and units.minutes(2880) == "2 d"
    with pytest.raises(ValueError, match="largest must be one of d, h, min, s"):
        units.duration(60, largest="w")


def test_latencies_keep_exact_targets_and_round_measured_values() -> None:
    assert units.latency_ms(Decimal("600.0000")) == "600 ms"
    assert units.latency_ms(1000) == "1,000 ms" and units.latency_ms(Decimal("12.5")) == "12.5 ms"
    assert units.latency_ms(412.37) == "412 ms" and units.latency_ms(3.14159) == "3.1 ms"
    assert units.latency_ms(0.0314) == "0.03 ms" and units.latency_ms(None) == "\u2013"


def test_money_carries_its_currency_and_the_setting_is_the_default(settings: object) -> None:
    assert units.money(Decimal("1200"), "USD") == "1,200.00 USD"
    assert units.money(Decimal("-1234567.505")) == "-1,234,567.51 EUR"
    assert units.money(1200, places=0) == "1,200 EUR"
    assert units.money(Decimal("0.1234"), places=None) == "0.1234 EUR"
    assert units.money(Decimal("0.1000"), places=None) == "0.10 EUR"
    settings.ACCORD_CURRENCY = "CHF"  # type: ignore[attr-defined]
    assert units.money(5) == "5.00 CHF"


def test_numbers_show_no_float_noise() -> None:
    assert units.number(0.1 + 0.2, 2) == "0.30"
    assert units.number(0.0009999999999998899, 4) == "0.0010"
    assert units.number(Decimal("99.9000")) == "99.9" and units.number(Decimal("400.0000")) == "400"
    assert units.number(0.125, 2) == "0.13"  # half up on the decimal, not on the binary value (0.12)
    assert units.number(-0.0001, 2) == "0.00"  # no "-0.00"
    assert units.number(1234567) == "1,234,567"
    assert units.number(Fraction(1, 3), 3) == "0.333"


def test_percentages_shares_and_multiples() -> None:
    assert units.percent(Decimal("99.95")) == "99.95 %" and units.percent(99.95, 3) == "99.950 %"
    assert units.share(0.0005) == "0.05 %" and units.share(Fraction(1, 3), 2) == "33.33 %"
    assert units.share(1 - 0.999) == "0.1 %"  # 0.0010000000000000009 by float arithmetic
    assert units.times(14.4) == "14.4x" and units.times(20.0) == "20x" and units.times(0.04) == "0.04x"
    assert units.times(math.inf) == "∞" and units.share(math.inf) == "∞ %" and units.share(-math.inf) == "-∞ %"
    assert units.number(Decimal("Infinity")) == "∞"


def test_json_numbers_carry_infinity_as_a_string_that_reads_back() -> None:
    values = [units.json_number(v) for v in (math.inf, -math.inf, Fraction(1, 1000), Decimal("0.001"), 3,
                                             math.nan, None)]
    assert values == ["Infinity", "-Infinity", 0.001, 0.001, 3, None, None]
    text = json.dumps(values, allow_nan=False)
    assert float(json.loads(text)[0]) == math.inf


def test_the_template_filters_use_the_same_rules() -> None:
    html = Template(
        "{% load accord %}{{ fee|money:'USD' }} | {{ revenue|money0 }} | {{ 240|minutes }} | {{ 5400|duration }} | "
        "{{ target|latency_ms }} | {{ level|percent }} | {{ left|share:1 }} | {{ rate|times }} | {{ n|number }}"
    ).render(Context({"fee": Decimal("1200"), "revenue": Decimal("123456.78"), "target": Decimal("600.0000"),
                      "level": Decimal("99.9000"), "left": 0.5, "rate": math.inf, "n": 12345}))
    assert html == "1,200.00 USD | 123,457 EUR | 4 h | 1 h 30 min | 600 ms | 99.9 % | 50.0 % | ∞ | 12,345"


@pytest.mark.parametrize(("name", "value", "message"), [
    ("ACCORD_CURRENCY", "euro", "ACCORD_CURRENCY='euro' is not a currency code like EUR"),
    ("ACCORD_SLI_ABANDON_MS", "30s", "ACCORD_SLI_ABANDON_MS='30s' is not a positive number of milliseconds"),
    ("ACCORD_SLI_ABANDON_MS", "0", "ACCORD_SLI_ABANDON_MS='0' is not a positive number of milliseconds"),
])
def test_a_bad_unit_setting_stops_the_start_with_its_name(name: str, value: str, message: str) -> None:
    result = subprocess.run([sys.executable, "-c", "import accord.settings"], capture_output=True, text=True,
                            env={**os.environ, name: value}, timeout=60)
    assert result.returncode != 0 and message in result.stderr


def test_an_instant_names_its_zone() -> None:
    t = dt.datetime(2026, 11, 23, 10, 30, tzinfo=dt.UTC)
    assert units.instant(t, "America/New_York") == "2026-11-23 05:30 EST (America/New_York)"
    assert units.instant(t, "Europe/London") == "2026-11-23 10:30 GMT (Europe/London)"
    assert units.instant(t, "UTC") == "2026-11-23 10:30 UTC"
    assert units.instant(t, dt.UTC) == "2026-11-23 10:30 UTC"
    summer = dt.datetime(2026, 7, 1, 9, 0, tzinfo=dt.UTC)
    assert units.instant(summer, "Europe/London", "%a %d %b %Y %H:%M") == "Wed 01 Jul 2026 10:00 BST (Europe/London)"
