"""accord apply / accord export: validation with paths, one transaction, idempotence, round trip."""

from __future__ import annotations

import subprocess
import textwrap
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from accord.agreements.manifest import ManifestError, apply_manifest, export_manifest, load_manifest
from accord.agreements.models import Agreement, BusinessCalendar, CreditBand, Objective
from accord.catalog.models import Endpoint, Operation, PartnerService, Service
from accord.customers.models import Account, Tier
from accord.lib.testing import accord_command, subprocess_env

pytestmark = pytest.mark.django_db

DEMO = Path(__file__).resolve().parents[1] / "fixtures" / "demo.yaml"

BASE = """
calendars:
  - name: emea-support
    timezone: Europe/London
    hours: {mon: ["09:00-12:30", "13:30-17:30"], tue: ["09:00-17:30"], wed: ["09:00-17:30"],
            thu: ["09:00-17:30"], fri: ["09:00-17:00"], sat: [], sun: []}
    holidays: {country: GB, subdivision: ENG, extra: ["2026-12-24"], removed: []}
tiers:
  - {name: platinum, rank: 1, min_commitment: 500000}
  - {name: standard, rank: 2}
services:
  - name: booking
    base_path: /bookings
    cost_per_instance_hour: 0.1234
    operations: [{name: book-trip, method: POST, path: /bookings}]
    pools:
      - {name: primary, role: primary, capacity: 10, endpoints: [{url: "http://127.0.0.1:9201"}]}
agreements:
  - name: platinum-sla
    tier: platinum
    effective_from: 2026-01-01
    monthly_fee: 12000.50
    calendar: emea-support
    services: [booking]
    objectives:
      - {name: availability, kind: availability, target: 99.95, service: booking}
      - {name: p95, kind: latency, percentile: 95, target: 400, window: {rolling_days: 28}, service: booking, operation: book-trip}
      - {name: urgent-first, kind: first_response, target: 30, priority: urgent}
    credits: {cap: 100, bands: [{below: 99.9, credit: 10}, {below: 99.0, credit: 25}, {below: 95.0, credit: 100}]}
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(ManifestError) as err:
        load_manifest(textwrap.dedent(text))
    return err.value.errors


def with_base(extra: str = "", **replace: str) -> str:
    text = BASE
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    return text + textwrap.dedent(extra)


def test_the_calendar_from_the_issue_applies_and_reads_back() -> None:
    result = apply_manifest(BASE)
    assert result.summary() == "5 created, 0 updated, 0 unchanged"
    cal = BusinessCalendar.objects.get(name="emea-support")
    assert cal.hours["mon"] == ["09:00-12:30", "13:30-17:30"] and cal.hours["sat"] == []
    assert (cal.holiday_country, cal.holiday_subdivision, cal.extra_holidays) == ("GB", "ENG", ["2026-12-24"])
    sla = Agreement.objects.get(name="platinum-sla")
    assert sla.tier.name == "platinum" and sla.monthly_fee == Decimal("12000.50")  # type: ignore[union-attr]
    p95 = sla.objectives.get(name="p95")
    assert (p95.percentile, p95.window, p95.window_days, p95.operation.name) == (95, "rolling", 28, "book-trip")  # type: ignore[union-attr]
    assert [b.credit_percent for b in CreditBand.objects.filter(schedule__agreement=sla)] == [10, 25, 100]
    assert Service.objects.get(name="booking").cost_per_instance_hour == Decimal("0.1234")


def test_applying_twice_changes_nothing() -> None:
    apply_manifest(BASE)
    ids = sorted(Objective.objects.values_list("id", flat=True))
    second = apply_manifest(BASE)
    assert second.summary() == "0 created, 0 updated, 5 unchanged" and not second.changed
    assert sorted(Objective.objects.values_list("id", flat=True)) == ids


def test_export_then_apply_changes_nothing_and_exports_identically() -> None:
    apply_manifest(DEMO.read_text())
    first = export_manifest()
    assert not apply_manifest(first).changed
    assert export_manifest() == first
    assert "target: 99.95" in first and "cost_per_instance_hour: 0.48" in first


def test_the_demo_manifest_is_valid_and_covers_every_tier() -> None:
    apply_manifest(DEMO.read_text())
    assert list(Tier.objects.values_list("name", flat=True)) == ["platinum", "gold", "silver", "standard"]
    assert {a.tier.name for a in Agreement.objects.all()} == {"platinum", "gold", "silver", "standard"}  # type: ignore[union-attr]
    assert set(Service.objects.values_list("name", flat=True)) == {"fare-search", "booking", "ticketing"}
    for service in Service.objects.all():
        assert sorted(service.pools.values_list("role", flat=True)) == ["primary", "standby"]


def test_children_follow_the_file_and_unchanged_ones_keep_their_ids() -> None:
    apply_manifest(BASE)
    kept = Objective.objects.get(name="availability").pk
    changed = with_base(
        **{
            "      - {name: urgent-first, kind: first_response, target: 30, priority: urgent}\n": "",
            'endpoints: [{url: "http://127.0.0.1:9201"}]': 'endpoints: [{url: "http://127.0.0.1:9205", weight: 3}]',
            "target: 400": "target: 350",
        }
    )
    result = apply_manifest(changed)
    assert ("agreement", "platinum-sla", "updated") in result.outcomes
    assert ("service", "booking", "updated") in result.outcomes
    assert ("calendar", "emea-support", "unchanged") in result.outcomes
    assert set(Objective.objects.values_list("name", flat=True)) == {"availability", "p95"}
    assert Objective.objects.get(name="availability").pk == kept
    assert Objective.objects.get(name="p95").target == 350
    assert list(Endpoint.objects.values_list("url", "weight")) == [("http://127.0.0.1:9205", 3)]


def test_two_tiers_can_swap_ranks_in_one_apply() -> None:
    apply_manifest(BASE)
    apply_manifest(with_base(**{"rank: 1,": "rank: 2,", "rank: 2}": "rank: 1}"}))
    assert dict(Tier.objects.values_list("name", "rank")) == {"platinum": 2, "standard": 1}


def test_dry_run_reports_and_writes_nothing() -> None:
    result = apply_manifest(BASE, dry_run=True)
    assert result.count("created") == 5
    assert not BusinessCalendar.objects.exists() and not Agreement.objects.exists()


def test_an_agreement_can_name_an_account_instead_of_a_tier() -> None:
    Account.objects.create(name="Globex", external_id="GLOBEX")
    apply_manifest(with_base(**{"    tier: platinum\n": "    account: GLOBEX\n"}))
    assert Agreement.objects.get().account.external_id == "GLOBEX"  # type: ignore[union-attr]
    assert not apply_manifest(export_manifest()).changed


@pytest.mark.parametrize(
    ("replace", "expected"),
    [
        ({'"13:30-17:30"]': '"13:30-12:00"]'}, "calendars[0].hours.mon[1]: '13:30-12:00' ends before it starts"),
        ({'"13:30-17:30"]': '"12:00-13:00"]'}, "calendars[0].hours.mon[1]: '12:00-13:00' overlaps '09:00-12:30'"),
        ({'tue: ["09:00-17:30"]': 'tue: ["9am-5pm"]'}, "calendars[0].hours.tue[0]: '9am-5pm' is not a window like '09:00-17:30'"),
        ({'tue: ["09:00-17:30"]': 'tue: ["09:00-25:00"]'}, "calendars[0].hours.tue[0]: '09:00-25:00' ends at an impossible time (latest is 24:00)"),
        ({"sat: []": "sat: [], funday: []"}, "calendars[0].hours.funday: must be 'mon', 'tue', 'wed', 'thu', 'fri', 'sat' or 'sun'"),
        ({"timezone: Europe/London": "timezone: Europe/Atlantis"}, "calendars[0].timezone: 'Europe/Atlantis' is not an IANA time zone (e.g. Europe/London)."),
        ({"country: GB": "country: XX"}, "calendars[0].holidays.country: 'XX' is not a country the holidays package knows (e.g. GB, US, DE)"),
        ({"subdivision: ENG": "subdivision: MARS"}, "calendars[0].holidays.subdivision: 'MARS' is not a subdivision of GB"),
        ({'extra: ["2026-12-24"]': 'extra: ["24.12.2026"]'}, "calendars[0].holidays.extra[0]: input should be a valid date"),
        ({"rank: 2}": "rank: 1}"}, "tiers[1].rank: 1 appears more than once (first at tiers[0])"),
        ({"rank: 2}": "rank: 0}"}, "tiers[1].rank: input should be greater than or equal to 1"),
        ({"base_path: /bookings": "base_path: bookings/"}, "services[0].base_path: 'bookings/' is not a base path"),
        ({"method: POST": "method: FETCH"}, "services[0].operations[0].method: must be 'GET', 'HEAD', 'POST'"),
        ({"capacity: 10": "capacity: 0"}, "services[0].pools[0].capacity: input should be greater than or equal to 1"),
        ({"role: primary": "role: backup"}, "services[0].pools[0].role: must be 'primary' or 'standby'"),
        ({'url: "http://127.0.0.1:9201"': 'url: "ftp://x"'}, "services[0].pools[0].endpoints[0].url: 'ftp://x' is not an http(s) URL"),
        ({"    tier: platinum\n": ""}, "agreements[0]: give exactly one of `tier` or `account`"),
        ({"    tier: platinum\n": "    tier: platinum\n    account: NOBODY\n"}, "agreements[0]: give exactly one of `tier` or `account`"),
        ({"    tier: platinum\n": "    tier: diamond\n"}, "agreements[0].tier: no tier named 'diamond'"),
        ({"    tier: platinum\n": "    account: NOBODY\n"}, "agreements[0].account: no account with external id 'NOBODY'"),
        ({"calendar: emea-support": "calendar: apac"}, "agreements[0].calendar: no calendar named 'apac'"),
        ({"services: [booking]": "services: [booking, hotels]"}, "agreements[0].services[1]: no service named 'hotels'"),
        ({"effective_from: 2026-01-01": "effective_from: 2026-01-01\n    effective_to: 2025-12-31"}, "agreements[0].effective_to: ends before effective_from"),
        ({"percentile: 95, ": ""}, "agreements[0].objectives[1].percentile: a latency objective needs a percentile, e.g. 95"),
        ({"percentile: 95,": "percentile: 100,"}, "agreements[0].objectives[1].percentile: must be between 0 and 100 (exclusive)"),
        ({"target: 99.95,": "target: 99.95, percentile: 50,"}, "agreements[0].objectives[0].percentile: only latency objectives have a percentile, not availability"),
        ({"target: 99.95,": "target: 101,"}, "agreements[0].objectives[0].target: a availability target is a percentage between 0 and 100"),
        ({"target: 30,": "target: 0,"}, "agreements[0].objectives[2].target: a support target is a positive whole number of business minutes"),
        ({"target: 30,": "target: 12.5,"}, "agreements[0].objectives[2].target: a support target is a positive whole number of business minutes"),
        ({"{rolling_days: 28}": "{rolling_days: 0}"}, "agreements[0].objectives[1].window.rolling_days: input should be greater than or equal to 1"),
        ({"kind: availability,": "kind: uptime,"}, "agreements[0].objectives[0].kind: must be 'availability', 'latency'"),
        ({"operation: book-trip": "operation: fly"}, "agreements[0].objectives[1].operation: service 'booking' has no operation 'fly'"),
        ({"priority: urgent}": "priority: urgent, service: booking}"}, "agreements[0].objectives[2]: support objectives are scoped by channel and priority"),
        ({"priority: urgent}": "priority: asap}"}, "agreements[0].objectives[2].priority: must be 'urgent', 'high', 'normal' or 'low'"),
        ({"{name: p95,": "{name: availability,"}, "agreements[0].objectives[1].name: 'availability' appears more than once (first at agreements[0].objectives[0])"),
        ({"{below: 99.0, credit: 25}": "{below: 99.95, credit: 25}"}, "agreements[0].credits.bands[1].below: must be lower than the band before (99.9): bands go downwards"),
        ({"{below: 99.0, credit: 25}": "{below: 99.0, credit: 5}"}, "agreements[0].credits.bands[1].credit: must be more than the band before (10)"),
        ({"cap: 100,": "cap: 50,"}, "agreements[0].credits.bands[2].credit: 100 exceeds the cap of 50"),
        ({"cap: 100,": "cap: 150,"}, "agreements[0].credits.cap: must be above 0 and at most 100 (% of the monthly fee)"),
        ({"monthly_fee: 12000.50": "monthly_fee: lots"}, "agreements[0].monthly_fee: input should be a valid decimal"),
        ({"  - name: platinum-sla\n": "  - name: Platinum SLA\n"}, "agreements[0].name: 'Platinum SLA' is not a name (lower-case letters, digits, '-' and '_')"),
        ({"    monthly_fee": "    colour: blue\n    monthly_fee"}, "agreements[0].colour: unknown key"),
        ({"    calendar: emea-support\n    services": "    services"}, "agreements[0].calendar: is required"),
    ],
)
def test_every_error_is_reported_with_its_path(replace: dict[str, str], expected: str) -> None:
    errors = errors_of(with_base(**replace))
    assert any(e.startswith(expected) for e in errors), errors


def test_a_calendar_with_no_working_time_is_refused() -> None:
    errors = errors_of("calendars: [{name: never, timezone: UTC, hours: {mon: [], tue: []}}]")
    assert errors == ["calendars[0].hours: the calendar has no working time at all"]


def test_duplicate_names_and_keys_and_bad_shapes_are_refused() -> None:
    twice = BASE.replace("  - {name: standard, rank: 2}", "  - {name: standard, rank: 2}\n  - {name: standard, rank: 3}")
    assert errors_of(twice) == ["tiers[2].name: 'standard' appears more than once (first at tiers[1])"]
    assert "objectives[1].window: must be 'calendar_month'" in errors_of(BASE.replace("{rolling_days: 28}", "weekly"))[0]
    assert errors_of("tiers: []\ntiers: []\n") == ["<string>:2:1: duplicate key 'tiers' (first on line 1)"]
    assert errors_of("- just\n- a list\n") == [
        "(top level): must be a mapping with sections calendars, tiers, services, partners, agreements"
    ]
    assert errors_of("policies: []\n") == ["policies: unknown key"]
    assert errors_of("tiers: [\n")[0].startswith("<string>:2:1: expected the node content")


def test_every_error_is_listed_at_once_and_nothing_changes() -> None:
    apply_manifest(BASE)
    before = export_manifest()
    bad = with_base(**{'"13:30-17:30"]': '"13:30-12:00"]', "calendar: emea-support": "calendar: apac"})
    bad = bad.replace("target: 400", "target: 500")  # a valid change in the same file must not land either
    with pytest.raises(ManifestError) as err:
        apply_manifest(bad)
    assert len(err.value.errors) == 2
    assert export_manifest() == before


def test_an_empty_file_does_nothing() -> None:
    assert apply_manifest("").summary() == "0 created, 0 updated, 0 unchanged"
    assert apply_manifest("# only a comment\n").outcomes == []


def test_partners_reference_services() -> None:
    apply_manifest(BASE + "partners:\n  - {name: gds, promised_availability: 99.9, services: [booking]}\n")
    assert list(PartnerService.objects.get().services.values_list("name", flat=True)) == ["booking"]
    errors = errors_of(BASE + "partners:\n  - {name: gds, promised_availability: 100.5}\n")
    assert errors == ["partners[0].promised_availability: input should be less than or equal to 100"]
    errors = errors_of(BASE + "partners:\n  - {name: gds, promised_availability: 99, services: [trains]}\n")
    assert errors == ["partners[0].services[0]: no service named 'trains'"]


def test_the_apply_command_prints_changes_and_exits_2_on_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(BASE)
    out = StringIO()
    call_command("apply", "-f", str(good), stdout=out)
    assert "agreement platinum-sla: created" in out.getvalue()
    assert out.getvalue().strip().endswith("5 created, 0 updated, 0 unchanged")
    bad = tmp_path / "bad.yaml"
    bad.write_text(with_base(**{'"13:30-17:30"]': '"13:30-12:00"]'}))
    err = StringIO()
    with pytest.raises(CommandError) as exc:
        call_command("apply", "-f", str(bad), stderr=err)
    assert exc.value.returncode == 2
    assert "calendars[0].hours.mon[1]: '13:30-12:00' ends before it starts" in err.getvalue()
    with pytest.raises(CommandError) as missing:
        call_command("apply", "-f", str(tmp_path / "missing.yaml"))
    assert missing.value.returncode == 1


@pytest.mark.django_db(transaction=True)
def test_the_real_commands_round_trip_through_files(tmp_path: Path) -> None:
    env = subprocess_env()
    applied = subprocess.run([*accord_command(), "apply", "-f", str(DEMO)], env=env, capture_output=True, text=True)
    assert applied.returncode == 0, applied.stderr
    exported = tmp_path / "export.yaml"
    subprocess.run([*accord_command(), "export", "-o", str(exported)], env=env, check=True)
    again = subprocess.run([*accord_command(), "apply", "-f", str(exported)], env=env, capture_output=True, text=True)
    assert again.stdout.strip() == "0 created, 0 updated, 16 unchanged"
    bad = tmp_path / "bad.yaml"
    bad.write_text("calendars:\n  - {name: x, timezone: UTC, hours: {mon: ['10:00-09:00']}}\n")
    failed = subprocess.run([*accord_command(), "apply", "-f", str(bad)], env=env, capture_output=True, text=True)
    assert failed.returncode == 2
    assert "calendars[0].hours.mon[0]: '10:00-09:00' ends before it starts" in failed.stderr
    assert Operation.objects.count() == 7
