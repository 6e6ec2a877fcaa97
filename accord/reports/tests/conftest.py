"""An account under its own agreement (availability 99.9 % on `booking`, a credit schedule with bands at 99.9,
99.0 and 95.0) and helpers to put its traffic into rollups the way the gateway does (through the flusher)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from accord.agreements.models import Agreement, BusinessCalendar, CreditBand, CreditSchedule, Objective
from accord.catalog.models import Service
from accord.customers.models import Account, Tier
from accord.governance.tests.rollups import add_rollup

ALWAYS = {d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
BANDS = [(Decimal("99.9"), Decimal(10)), (Decimal("99.0"), Decimal(25)), (Decimal("95.0"), Decimal(100))]


def make_agreement(name: str, account: Account, *, start: dt.date, end: dt.date | None = None,
                   target: Decimal = Decimal("99.9"), fee: Decimal = Decimal(1000), bands: Any = BANDS,
                   cap: Decimal = Decimal(100), **schedule: Any) -> Agreement:
    calendar = BusinessCalendar.objects.get_or_create(name="always", defaults={"timezone": "UTC", "hours": ALWAYS})[0]
    service = Service.objects.get_or_create(name="booking", defaults={"base_path": "/bookings"})[0]
    agreement = Agreement.objects.create(name=name, account=account, calendar=calendar, effective_from=start,
                                         effective_to=end, monthly_fee=fee, currency="EUR")
    agreement.services.add(service)
    Objective.objects.create(agreement=agreement, name="availability", kind="availability", target=target,
                             service=service)
    if bands:
        s = CreditSchedule.objects.create(agreement=agreement, cap_percent=cap, **schedule)
        for below, credit in bands:
            CreditBand.objects.create(schedule=s, below_percent=below, credit_percent=credit)
    return agreement


@pytest.fixture
def acme(db: None) -> Account:
    tier = Tier.objects.create(name="gold", rank=1)
    account = Account.objects.create(name="Acme", external_id="ACME", tier=tier)
    make_agreement("acme-sla", account, start=dt.date(2026, 1, 1))
    return account


def traffic(day: dt.date, count: int, errors: int = 0, *, account: str = "ACME", outcome: str | None = None,
            hour: int = 10) -> None:
    """`count` requests of the account to booking at `hour` on `day`, `errors` of them 5xx."""
    at = dt.datetime.combine(day, dt.time(hour), tzinfo=dt.UTC)
    add_rollup(at, count=count, errors=errors, account=account, tier="gold", latencies=[20.0] * min(count, 50),
               outcome=outcome)


def need_pdf() -> str:
    """pdftotext's path, with WeasyPrint importable; skipped without them unless ACCORD_REQUIRE_PDF=1."""
    import os
    import shutil

    from accord.reports.freeze import pdf_available

    binary = shutil.which("pdftotext")
    if binary is None or not pdf_available():
        if os.environ.get("ACCORD_REQUIRE_PDF") == "1":
            pytest.fail("pdftotext or WeasyPrint is missing and ACCORD_REQUIRE_PDF=1 "
                        "(apt-get install poppler-utils libpango-1.0-0 libpangoft2-1.0-0; pip install weasyprint)")
        pytest.skip("pdftotext or WeasyPrint (with Pango) is not installed")
    return binary
