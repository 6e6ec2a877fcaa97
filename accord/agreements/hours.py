"""Working-hours windows: parsing and validation shared by models, YAML and the API."""

from __future__ import annotations

import itertools
import re

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")


class WindowError(ValueError):
    """A working window that cannot be used, with the message to show."""


def parse_window(text: object) -> tuple[int, int]:
    """'09:00-12:30' -> (540, 750) minutes since midnight; a window may end at 24:00."""
    if not isinstance(text, str):
        raise WindowError(f"{text!r} is not a window like '09:00-17:30'")
    m = _WINDOW.match(text.strip())
    if not m:
        raise WindowError(f"'{text}' is not a window like '09:00-17:30'")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h1 > 23 or m1 > 59:
        raise WindowError(f"'{text}' starts at an impossible time")
    if h2 > 24 or m2 > 59 or (h2 == 24 and m2 != 0):
        raise WindowError(f"'{text}' ends at an impossible time (latest is 24:00)")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if end < start:
        raise WindowError(f"'{text}' ends before it starts")
    if end == start:
        raise WindowError(f"'{text}' is empty")
    return start, end


def day_errors(windows: object) -> list[tuple[int | None, str]]:
    """Problems with one weekday's list of windows, as (index or None, message)."""
    if not isinstance(windows, list):
        return [(None, "must be a list of windows like ['09:00-17:30']")]
    errors: list[tuple[int | None, str]] = []
    parsed: list[tuple[int, int, int]] = []
    for i, text in enumerate(windows):
        try:
            start, end = parse_window(text)
        except WindowError as e:
            errors.append((i, str(e)))
            continue
        parsed.append((start, end, i))
    parsed.sort()
    for (_s1, e1, i1), (s2, _e2, i2) in itertools.pairwise(parsed):
        if s2 < e1:
            errors.append((i2, f"'{windows[i2]}' overlaps '{windows[i1]}'"))
    return errors


def normalise_hours(hours: dict[str, list[str]]) -> dict[str, list[str]]:
    """Every weekday present, windows sorted and written as HH:MM-HH:MM."""
    out: dict[str, list[str]] = {}
    for day in WEEKDAYS:
        windows = sorted(parse_window(w) for w in hours.get(day, []))
        out[day] = [f"{s // 60:02d}:{s % 60:02d}-{e // 60:02d}:{e % 60:02d}" for s, e in windows]
    return out


def weekly_minutes(hours: dict[str, list[str]]) -> int:
    return sum(e - s for day in WEEKDAYS for s, e in (parse_window(w) for w in hours.get(day, [])))
