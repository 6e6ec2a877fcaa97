"""accord sla due / elapsed."""

from __future__ import annotations

import json
import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accord.agreements.models import BusinessCalendar

pytestmark = pytest.mark.django_db


@pytest.fixture
def emea() -> BusinessCalendar:
    return BusinessCalendar.objects.create(
        name="emea-support", timezone="Europe/London",
        hours={"mon": ["09:00-12:30", "13:30-17:30"], "tue": ["09:00-17:30"], "wed": ["09:00-17:30"],
               "thu": ["09:00-17:30"], "fri": ["09:00-17:00"]},
        holiday_country="GB", holiday_subdivision="ENG", extra_holidays=["2026-12-24"],
    )


def run(*args: str) -> str:
    out = StringIO()
    call_command("sla", *args, stdout=out)
    return out.getvalue().strip()


def test_due_skips_the_weekend_and_answers_in_the_calendars_zone(emea: BusinessCalendar) -> None:
    # Friday 27 March 2026 16:00 UTC; clocks go forward on Sunday 29th: Monday is BST (+01:00).
    assert run("due", "--calendar", "emea-support", "--start", "2026-03-27T16:00:00+00:00", "--minutes", "120") == (
        "2026-03-30T10:00:00+01:00"
    )


def test_due_skips_christmas_and_the_extra_holiday(emea: BusinessCalendar) -> None:
    out = run("due", "--calendar", "emea-support", "--start", "2026-12-23T17:00:00Z", "--minutes", "60", "--json")
    assert json.loads(out)["due"] == "2026-12-29T09:30:00+00:00"  # 24th extra, 25th-28th holidays and weekend


def test_elapsed_counts_business_minutes(emea: BusinessCalendar) -> None:
    assert run("elapsed", "--calendar", "emea-support", "--start", "2026-11-23T08:00:00Z",
               "--end", "2026-11-23T14:00:00Z") == "240"  # 09:00-12:30 and 13:30-14:00
    assert run("elapsed", "--calendar", "emea-support", "--start", "2026-11-23T09:00:00Z",
               "--end", "2026-11-23T09:00:30Z") == "0.50"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["due", "--calendar", "nope", "--start", "2026-01-01T00:00:00Z", "--minutes", "5"], "No calendar named 'nope' (known: emea-support)"),
        (["due", "--calendar", "emea-support", "--start", "yesterday", "--minutes", "5"], "is not an ISO 8601 instant"),
        (["due", "--calendar", "emea-support", "--start", "2026-01-01T09:00", "--minutes", "5"], "has no offset"),
        (["due", "--calendar", "emea-support", "--start", "2026-01-01T09:00Z", "--minutes", "-5"], "must not be negative"),
        (["elapsed", "--calendar", "emea-support", "--start", "2026-01-02T09:00Z", "--end", "2026-01-01T09:00Z"], "before --start"),
    ],
)
def test_bad_input_gets_a_clear_error(emea: BusinessCalendar, args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=re.escape(message)):
        run(*args)


def test_an_empty_calendar_is_refused(db: None) -> None:
    BusinessCalendar.objects.create(name="never", timezone="UTC", hours={"mon": []})
    with pytest.raises(CommandError, match="no working time"):
        run("due", "--calendar", "never", "--start", "2026-01-01T00:00:00Z", "--minutes", "5")
