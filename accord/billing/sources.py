"""Meter sources of the apps above billing, registered from their `AppConfig.ready()` (docs/billing.md).

Billing (layer 7) cannot import the apps above it, so an app that has something to bill (outreach: the campaign
messages it hands to the SMTP server) registers a source here, the way it registers a handler with the desk's
IMAP poller (`accord.desk.imap.intercept`). A registered source is a name (`outreach.messages`), a label, the
aggregations it implements, and a function `(meter, account ids, start, end) -> {account id: Decimal}` that
measures a meter over [start, end) for those accounts (an account left out counted 0).

The manifest accepts a meter over a registered source only (an unknown source is refused at apply, with its
path); `usage.measure`, and so the invoices and the forecasts, call the function.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import Meter

Measure = Callable[["Meter", list[int], dt.datetime, dt.datetime], dict[int, Decimal]]


@dataclass(frozen=True)
class Source:
    name: str
    label: str
    measure: Measure
    aggregations: tuple[str, ...] = ("count",)  # the first is the default


SOURCES: dict[str, Source] = {}


def register(name: str, label: str, measure: Measure, aggregations: tuple[str, ...] = ("count",)) -> Source:
    """Register (or register again, as `ready()` may run twice) a meter source; returns it."""
    if not name or "." not in name or len(name) > 24:
        raise ValueError(f"a meter source is named app.what in at most 24 characters, not {name!r}")
    if not aggregations:
        raise ValueError(f"the source {name} needs at least one aggregation")
    source = Source(name, label, measure, tuple(aggregations))
    SOURCES[name] = source
    return source


def registered(name: str) -> Source | None:
    return SOURCES.get(name)
