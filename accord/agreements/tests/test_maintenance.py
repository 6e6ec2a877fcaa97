"""Declared maintenance windows in the agreement YAML: validated with paths, declared in advance, round trip."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
import yaml

from accord.agreements.models import MaintenanceWindow
from accord.lib.manifest import ManifestError, apply_manifest, export_manifest

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 11, 10, 12, 0, tzinfo=dt.UTC)

HEAD = """\
calendars:
  - {name: always, timezone: Europe/Paris, hours: {mon: ["00:00-24:00"], tue: ["00:00-24:00"]}}
tiers:
  - {name: gold, rank: 1}
agreements:
  - name: gold-sla
    tier: gold
    effective_from: 2026-01-01
    calendar: always
"""


def manifest(windows: str) -> str:
    return HEAD + "    maintenance:\n" + "".join(f"      - {w}\n" for w in windows.strip().splitlines())


def errors_of(text: str) -> list[str]:
    with pytest.raises(ManifestError) as err:
        apply_manifest(text)
    return err.value.errors


@time_machine.travel(NOW, tick=False)
def test_windows_are_stored_as_instants_declared_now_and_export_applies_back_unchanged() -> None:
    text = manifest("""
{start: "2026-11-14T02:00:00+01:00", end: "2026-11-14T04:30+01:00", reason: database upgrade}
{start: 2026-11-21T01:00:00Z, end: 2026-11-21T02:00:00Z}
""")
    apply_manifest(text)
    stored = list(MaintenanceWindow.objects.values_list("start", "end", "reason", "declared_at"))
    assert stored == [
        (dt.datetime(2026, 11, 14, 1, 0, tzinfo=dt.UTC), dt.datetime(2026, 11, 14, 3, 30, tzinfo=dt.UTC),
         "database upgrade", NOW),
        (dt.datetime(2026, 11, 21, 1, 0, tzinfo=dt.UTC), dt.datetime(2026, 11, 21, 2, 0, tzinfo=dt.UTC), "", NOW),
    ]
    exported = export_manifest()
    [agreement] = yaml.safe_load(exported)["agreements"]
    assert agreement["maintenance"] == [
        {"start": "2026-11-14T01:00Z", "end": "2026-11-14T03:30Z", "reason": "database upgrade"},
        {"start": "2026-11-21T01:00Z", "end": "2026-11-21T02:00Z"}]
    assert not apply_manifest(exported).changed
    assert not apply_manifest(text).changed  # the same windows written with their offsets


def test_a_window_that_has_begun_cannot_be_declared_or_stretched_but_a_stored_one_stays() -> None:
    with time_machine.travel(NOW, tick=False):
        apply_manifest(manifest('{start: "2026-11-14T01:00Z", end: "2026-11-14T02:00Z"}'))
    with time_machine.travel(dt.datetime(2026, 11, 14, 1, 30, tzinfo=dt.UTC), tick=False):
        # the window it already had is kept as declared; a new one that starts now, or a longer one, is refused
        assert not apply_manifest(manifest('{start: "2026-11-14T01:00Z", end: "2026-11-14T02:00Z"}')).changed
        errors = errors_of(manifest("""
{start: "2026-11-14T01:00Z", end: "2026-11-14T03:00Z"}
{start: "2026-11-14T01:30Z", end: "2026-11-14T01:45Z"}
"""))
    assert errors == [
        "agreements[0].maintenance[0].start: 2026-11-14T01:00Z has begun (it is 2026-11-14T01:30Z): a maintenance "
        "window is declared in advance, before it starts",
        "agreements[0].maintenance[1]: overlaps maintenance[0]",
        "agreements[0].maintenance[1].start: 2026-11-14T01:30Z has begun (it is 2026-11-14T01:30Z): a maintenance "
        "window is declared in advance, before it starts",
    ]
    assert list(MaintenanceWindow.objects.values_list("end", "declared_at")) == [
        (dt.datetime(2026, 11, 14, 2, 0, tzinfo=dt.UTC), NOW)]


@time_machine.travel(NOW, tick=False)
def test_bad_windows_are_refused_with_their_paths_and_nothing_changes() -> None:
    errors = errors_of(manifest("""
{start: "2026-11-14T02:00", end: "2026-11-14T03:00Z"}
{start: "2026-11-15T02:00:30Z", end: "tomorrow"}
{start: "2026-11-16T03:00Z", end: "2026-11-16T02:00Z"}
{start: 2026-11-17, end: "2026-11-17T02:00Z"}
{start: "2026-11-18T01:00Z"}
"""))
    assert errors == [
        "agreements[0].maintenance[3].start: 2026-11-17 is a day: write an instant with its offset, like "
        "2026-11-17T02:00:00+00:00",
        "agreements[0].maintenance[4].end: is required",
    ]  # the file's shape first; the instants themselves are checked once it has the right shape
    errors = errors_of(manifest("""
{start: "2026-11-14T02:00", end: "2026-11-14T03:00Z"}
{start: "2026-11-15T02:00:30Z", end: "tomorrow"}
{start: "2026-11-16T03:00Z", end: "2026-11-16T02:00Z"}
"""))
    assert errors == [
        "agreements[0].maintenance[0].start: '2026-11-14T02:00' has no offset: write it like "
        "2026-11-14T02:00:00+01:00 (or Z for UTC)",
        "agreements[0].maintenance[1].start: '2026-11-15T02:00:30Z' is not on a whole minute (rollups count whole "
        "minutes)",
        "agreements[0].maintenance[1].end: 'tomorrow' is not an instant like 2026-11-14T02:00:00+01:00",
        "agreements[0].maintenance[2].end: 2026-11-16T02:00Z is not after start (2026-11-16T03:00Z)",
    ]
    assert not MaintenanceWindow.objects.exists()
