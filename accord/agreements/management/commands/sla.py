"""`accord sla due|elapsed`: business-time arithmetic on a stored calendar, for people and scripts."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accord.agreements.businesstime import BusinessTime, BusinessTimeError
from accord.agreements.models import BusinessCalendar


def _instant(text: str, name: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--{name} '{text}' is not an ISO 8601 instant like 2026-03-27T16:00:00+00:00") from None
    if value.tzinfo is None:
        raise CommandError(f"--{name} '{text}' has no offset; add one, e.g. {text}+00:00 or {text}Z")
    return value


class Command(BaseCommand):
    help = (
        "Business time on a calendar. `due --calendar NAME --start ISO --minutes N` prints the instant N business "
        "minutes after start (ISO 8601 with offset, in the calendar's zone); `elapsed --calendar NAME --start ISO "
        "--end ISO` prints the business minutes between (a whole number when whole, else with decimals)."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        due = sub.add_parser("due", help="the due instant")
        elapsed = sub.add_parser("elapsed", help="business minutes between two instants")
        for p in (due, elapsed):
            p.add_argument("--calendar", required=True)
            p.add_argument("--start", required=True, help="ISO 8601 with an offset")
            p.add_argument("--json", action="store_true", help="print a JSON object")
        due.add_argument("--minutes", type=float, required=True)
        elapsed.add_argument("--end", required=True, help="ISO 8601 with an offset")

    def handle(self, *args: Any, **options: Any) -> None:
        calendar = BusinessCalendar.objects.filter(name=options["calendar"]).first()
        if calendar is None:
            known = ", ".join(BusinessCalendar.objects.values_list("name", flat=True)) or "none yet"
            raise CommandError(f"No calendar named '{options['calendar']}' (known: {known})")
        start = _instant(options["start"], "start")
        try:
            engine = BusinessTime.from_calendar(calendar)
            if options["action"] == "due":
                if options["minutes"] < 0:
                    raise CommandError("--minutes must not be negative")
                due = engine.add(start, options["minutes"])
                text = due.isoformat()
                result: dict[str, Any] = {"calendar": calendar.name, "start": start.isoformat(),
                                          "minutes": options["minutes"], "due": text}
            else:
                end = _instant(options["end"], "end")
                if end < start:
                    raise CommandError("--end is before --start")
                minutes = engine.elapsed(start, end)
                text = str(int(minutes)) if minutes == int(minutes) else f"{minutes:.2f}"
                result = {"calendar": calendar.name, "start": start.isoformat(), "end": end.isoformat(),
                          "minutes": minutes}
        except BusinessTimeError as e:
            raise CommandError(str(e)) from e
        self.stdout.write(json.dumps(result) if options["json"] else text)
