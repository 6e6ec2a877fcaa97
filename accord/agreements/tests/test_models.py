"""Agreement selection, credit schedules and calendar rules on the models."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from accord.agreements.models import Agreement, BusinessCalendar, CreditBand, CreditSchedule
from accord.customers.models import Account, Tier

pytestmark = pytest.mark.django_db

WEEKDAYS_9_TO_5 = {d: ["09:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")}


@pytest.fixture
def calendar() -> BusinessCalendar:
    return BusinessCalendar.objects.create(name="office", timezone="Europe/London", hours=WEEKDAYS_9_TO_5)


@pytest.fixture
def gold() -> Tier:
    return Tier.objects.create(name="gold", rank=2)


def test_an_accounts_own_agreement_beats_its_tiers(calendar: BusinessCalendar, gold: Tier) -> None:
    acct = Account.objects.create(name="Acme", tier=gold)
    day = dt.date(2026, 5, 1)
    tier_sla = Agreement.objects.create(name="gold-sla", tier=gold, effective_from=dt.date(2026, 1, 1), calendar=calendar)
    assert Agreement.for_account(acct, day) == tier_sla
    own = Agreement.objects.create(name="acme-sla", account=acct, effective_from=dt.date(2026, 4, 1), calendar=calendar)
    assert Agreement.for_account(acct, day) == own
    assert Agreement.for_account(acct, dt.date(2026, 3, 1)) == tier_sla  # before the account's own starts


def test_the_newest_effective_agreement_wins_and_expired_ones_do_not_apply(calendar: BusinessCalendar, gold: Tier) -> None:
    acct = Account.objects.create(name="Acme", tier=gold)
    Agreement.objects.create(
        name="gold-2025", tier=gold, effective_from=dt.date(2025, 1, 1), effective_to=dt.date(2025, 12, 31), calendar=calendar
    )
    newer = Agreement.objects.create(name="gold-2026", tier=gold, effective_from=dt.date(2026, 1, 1), calendar=calendar)
    older = Agreement.objects.create(name="gold-old", tier=gold, effective_from=dt.date(2025, 6, 1), calendar=calendar)
    assert Agreement.for_account(acct, dt.date(2026, 2, 1)) == newer
    assert Agreement.for_account(acct, dt.date(2025, 7, 1)) in {older}
    assert Agreement.for_account(Account.objects.create(name="No tier"), dt.date(2026, 2, 1)) is None


def test_an_agreement_is_for_a_tier_or_an_account_never_both(calendar: BusinessCalendar, gold: Tier) -> None:
    acct = Account.objects.create(name="Acme")
    both = Agreement(name="both", tier=gold, account=acct, effective_from=dt.date(2026, 1, 1), calendar=calendar)
    with pytest.raises(ValidationError):
        both.full_clean()
    with pytest.raises(IntegrityError), transaction.atomic():
        Agreement.objects.create(name="neither", effective_from=dt.date(2026, 1, 1), calendar=calendar)


def test_credits_take_the_largest_band_below_and_respect_the_cap(calendar: BusinessCalendar, gold: Tier) -> None:
    sla = Agreement.objects.create(name="gold-sla", tier=gold, effective_from=dt.date(2026, 1, 1), calendar=calendar)
    schedule = CreditSchedule.objects.create(agreement=sla, cap_percent=Decimal(50))
    for below, credit in [("99.9", 10), ("99.0", 25), ("95.0", 100)]:
        CreditBand.objects.create(schedule=schedule, below_percent=Decimal(below), credit_percent=credit)
    assert schedule.credit_percent(Decimal("99.95")) == 0
    assert schedule.credit_percent(Decimal("99.9")) == 0  # "below" is strict
    assert schedule.credit_percent(Decimal("99.5")) == 10
    assert schedule.credit_percent(Decimal("98")) == 25
    assert schedule.credit_percent(Decimal("90")) == 50  # 100 capped at 50


@pytest.mark.parametrize(
    ("hours", "message"),
    [
        ({"mon": ["09:00-12:30", "13:30-12:00"]}, "mon[1]: '13:30-12:00' ends before it starts"),
        ({"mon": ["09:00-12:30", "12:00-13:00"]}, "mon[1]: '12:00-13:00' overlaps '09:00-12:30'"),
        ({"mon": ["9-5"]}, "mon[0]: '9-5' is not a window like '09:00-17:30'"),
        ({"mon": ["09:00-24:30"]}, "mon[0]: '09:00-24:30' ends at an impossible time (latest is 24:00)"),
        ({"funday": ["09:00-10:00"]}, "'funday' is not a weekday"),
        ({"mon": []}, "the calendar has no working time at all"),
    ],
)
def test_calendar_hours_are_validated(hours: dict[str, list[str]], message: str) -> None:
    cal = BusinessCalendar(name="bad", timezone="Europe/London", hours=hours)
    with pytest.raises(ValidationError) as err:
        cal.full_clean()
    assert any(message in m for m in err.value.message_dict["hours"])


def test_a_window_may_end_at_midnight_and_hours_are_normalised() -> None:
    cal = BusinessCalendar(
        name="night", timezone="Asia/Tokyo", hours={"fri": ["18:00-24:00", "08:00-12:00"], "sat": ["00:00-24:00"]}
    )
    cal.full_clean()
    assert cal.hours["fri"] == ["08:00-12:00", "18:00-24:00"]
    assert cal.hours["sun"] == []


def test_calendar_holidays_come_from_the_country_plus_extra_minus_removed() -> None:
    cal = BusinessCalendar(
        name="uk",
        timezone="Europe/London",
        hours=WEEKDAYS_9_TO_5,
        holiday_country="GB",
        holiday_subdivision="ENG",
        extra_holidays=["2026-12-24"],
        removed_holidays=["2026-12-28"],
    )
    cal.full_clean()
    assert cal.is_holiday(dt.date(2026, 12, 25))  # Christmas Day
    assert cal.is_holiday(dt.date(2026, 12, 24))  # extra
    assert not cal.is_holiday(dt.date(2026, 12, 28))  # substitute Boxing Day, removed
    assert not cal.is_holiday(dt.date(2026, 12, 23))


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"holiday_country": "XX"}, "holiday_country"),
        ({"holiday_country": "GB", "holiday_subdivision": "ZZZ"}, "holiday_subdivision"),
        ({"extra_holidays": ["24/12/2026"]}, "extra_holidays"),
    ],
)
def test_calendar_zone_holiday_country_and_dates_are_validated(fields: dict[str, object], field: str) -> None:
    cal = BusinessCalendar(name="bad", **{"timezone": "Europe/London", "hours": WEEKDAYS_9_TO_5, **fields})
    with pytest.raises(ValidationError) as err:
        cal.full_clean()
    assert field in err.value.message_dict
