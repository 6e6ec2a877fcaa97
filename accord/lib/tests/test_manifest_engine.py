"""The manifest engine on its own: bounded input, kinds registered by settings, order and errors."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.test import override_settings

from accord.desk.models import SupportGroup
from accord.lib.manifest import (
    Check,
    Kind,
    ManifestError,
    ManifestSyntaxError,
    apply_manifest,
    export_manifest,
    kinds,
    load_manifest,
    yamlio,
)
from accord.lib.manifest.fields import Name, Spec, show

pytestmark = pytest.mark.django_db

BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
tiers: *i
"""


def test_an_alias_bomb_is_refused_at_once_with_a_clear_error() -> None:
    started = time.monotonic()
    with pytest.raises(ManifestSyntaxError) as err:
        load_manifest(BOMB, source="bomb.yaml")
    assert time.monotonic() - started < 2
    assert err.value.errors == [
        f"bomb.yaml: the document expands to more than {yamlio.MAX_NODES:,} values "
        "(anchors and aliases count each time they are used); nothing was read"
    ]


def test_anchors_and_merge_keys_within_bounds_still_work() -> None:
    text = """\
    calendars:
      - &office {name: london, timezone: Europe/London, hours: {mon: ["09:00-17:00"]}}
      - <<: *office
        name: paris
        timezone: Europe/Paris
    """
    loaded = load_manifest("\n".join(line[4:] for line in text.splitlines()))
    assert [(c.name, c.timezone) for c in loaded.calendars] == [("london", "Europe/London"), ("paris", "Europe/Paris")]


def test_an_oversize_manifest_is_refused_before_parsing() -> None:
    text = "tiers: []\n" + "#" * (yamlio.MAX_BYTES + 1)
    with pytest.raises(ManifestSyntaxError, match="a manifest may have at most 4,194,304"):
        load_manifest(text, source="big.yaml")


def test_a_huge_value_is_quoted_short_in_its_error() -> None:
    with pytest.raises(ManifestError) as err:
        load_manifest("agreements: [{name: a, tier: t, calendar: c, effective_from: '" + "x" * 100_000 + "'}]")
    assert len(err.value.errors) == 1 and len(err.value.errors[0]) < 200
    assert err.value.errors[0].startswith("agreements[0].effective_from: 'xxxxx")
    assert err.value.errors[0].endswith("...' is not a date like 2026-12-24")
    assert show("y" * 1000).endswith("...'") and len(show("y" * 1000)) <= 60


class GroupSpec(Spec):
    """A support group as a test kind writes it."""

    name: Name
    email: str = ""


class GroupKind(Kind, section="groups", singular="group", spec=GroupSpec, model=SupportGroup):
    """A kind that is not part of Accord: proves a new kind is one class and one registration line."""

    def check(self, check: Check) -> None:
        for where, group in check.each("groups"):
            if group.email and "@" not in group.email:
                check.err(f"{where}.email", f"'{group.email}' is not an e-mail address")

    def canonical(self, item: GroupSpec) -> dict[str, Any]:
        return {"name": item.name, "email": item.email}

    def stored(self, name: str) -> dict[str, Any] | None:
        group = SupportGroup.objects.filter(name=name).first()
        return {"name": group.name, "email": group.email} if group else None

    def write(self, items: list[GroupSpec]) -> None:
        for g in items:
            SupportGroup.objects.update_or_create(name=g.name, defaults={"email": g.email})

    def export(self) -> tuple[list[dict[str, Any]], list[str]]:
        return [{"name": g.name, "email": g.email} for g in SupportGroup.objects.order_by("name")], []


class LateKind(GroupKind, section="late", depends=("nothing-registered",)):
    """A kind registered before a section it depends on."""


def registered(*extra: str) -> Any:
    from django.conf import settings

    return override_settings(ACCORD_MANIFEST_KINDS=[*settings.ACCORD_MANIFEST_KINDS, *extra])


def test_a_kind_registered_in_settings_is_applied_checked_and_exported() -> None:
    with registered(f"{__name__}.GroupKind"):
        assert [k.section for k in kinds()][-1] == "groups"
        result = apply_manifest("groups: [{name: billing, email: billing@example.com}]\n")
        assert result.lines() == ["group billing: created"]
        assert SupportGroup.objects.get(name="billing").email == "billing@example.com"
        assert "groups:\n- name: billing\n  email: billing@example.com\n" in export_manifest()
        assert not apply_manifest(export_manifest()).changed
        with pytest.raises(ManifestError) as err:
            load_manifest("groups: [{name: x, email: nobody}, {name: x}]\n")
        assert err.value.errors == ["groups[1].name: 'x' appears more than once (first at groups[0])",
                                    "groups[0].email: 'nobody' is not an e-mail address"]
    with pytest.raises(ManifestError, match=r"unknown section \(the sections are calendars, tiers, services, "
                                            r"partners, agreements, policies, health, meters, plans\)"):
        load_manifest("groups: []\n")


def test_a_kind_registered_before_what_it_refers_to_is_a_configuration_error() -> None:
    with registered(f"{__name__}.LateKind"), pytest.raises(ValueError, match="refers to nothing-registered"):
        kinds()
