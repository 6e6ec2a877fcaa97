"""A catalog with one service, meters over it and over the desk, and helpers to bill a month."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from accord.billing.actions import RunResult, do_run
from accord.billing.models import Invoice
from accord.customers.models import Account, Tier
from accord.lib.manifest import apply_manifest
from accord.portal.tests.conftest import orgs  # noqa: F401  (the portal's two organisations, for test_portal)

CATALOG = """
services:
  - name: booking
    base_path: /bookings
    operations:
      - {name: create, method: POST, path: /bookings}
      - {name: read, method: GET, path: "/bookings/{id}"}
meters:
  - {name: api-calls, source: gateway.requests, service: booking, unit: requests}
  - {name: tickets, source: desk.tickets, unit: tickets}
  - {name: inbound, source: desk.messages, direction: inbound, unit: messages}
  - {name: outbound, source: desk.messages, direction: outbound, unit: messages}
  - {name: agents, source: desk.active_agents, unit: agents}
"""


@pytest.fixture
def catalog(db: None) -> Tier:
    """The catalog and meters above, and the tier `gold` (no plan yet)."""
    apply_manifest(CATALOG)
    return Tier.objects.create(name="gold", rank=1)


def account(ext: str, tier: Tier | None = None, zone: str = "UTC") -> Account:
    return Account.objects.create(name=ext.title(), external_id=ext, tier=tier, timezone=zone)


def plan(text: str) -> None:
    """Apply `plans:` YAML (with the catalog's meters)."""
    apply_manifest("plans:\n" + text)


def run(period: str, ext: str | None = None, **kwargs: object) -> RunResult:
    return do_run(period, Account.objects.filter(external_id=ext) if ext else None, **kwargs)  # type: ignore[arg-type]


def lines(ext: str, period: str, kind: str = Invoice.Kind.INVOICE) -> dict[str, tuple[Decimal, Decimal]]:
    """The live document's lines by key prefix 'usage:METER' etc.: (quantity, amount)."""
    inv = Invoice.objects.exclude(status="void").get(account__external_id=ext, period=period, kind=kind)
    return {":".join(x.key.split(":")[:2]) if x.key.startswith("usage") else x.key.split(":")[0]:
            (x.quantity, x.amount) for x in inv.lines.all()}


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)
