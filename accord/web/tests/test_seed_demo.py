"""`accord seed-demo`: the demo company on an empty database, deterministic, and careful with existing data."""

from __future__ import annotations

import datetime as dt
import smtplib
import socket
from collections import Counter
from decimal import Decimal
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.utils import timezone

from accord.agreements.models import Agreement
from accord.catalog.models import ApiCredential, Service
from accord.customers.models import Account, Commitment, Contact, ContactPoint, Tier, TierChange, TierOverride
from accord.web import demo

pytestmark = pytest.mark.django_db


def seed(*args: str) -> str:
    out = StringIO()
    call_command("seed-demo", *args, stdout=out)
    return out.getvalue()


def snapshot() -> dict[str, list[tuple[object, ...]]]:
    """Everything the seed draws at random, in a comparable form (database ids and instants left out)."""
    return {
        "accounts": list(
            Account.objects.order_by("external_id").values_list(
                "external_id", "name", "kind", "timezone", "revenue_12m", "cost_to_serve_12m", "owner__username",
                "tier__name",
            )
        ),
        "commitments": list(
            Commitment.objects.order_by("account__external_id", "period_start").values_list(
                "account__external_id", "period_start", "amount", "volume"
            )
        ),
        "contacts": list(
            ContactPoint.objects.order_by("contact__external_id", "kind").values_list(
                "contact__external_id", "contact__name", "kind", "value"
            )
        ),
        "history": list(
            TierChange.objects.order_by("account__external_id", "at", "id").values_list(
                "account__external_id", "from_tier__name", "to_tier__name", "cause", "detail"
            )
        ),
        "overrides": list(
            TierOverride.objects.order_by("account__external_id").values_list("account__external_id", "tier__name")
        ),
    }


def test_it_seeds_a_company_with_every_tier_a_history_and_a_summary() -> None:
    out = seed()
    assert Account.objects.count() == 300
    per_tier = {t.name: t.accounts.count() for t in Tier.objects.order_by("rank")}
    assert list(per_tier) == ["platinum", "gold", "silver", "standard"]
    # A handful at the top, more in gold, most in silver and standard.
    assert 0 < per_tier["platinum"] < per_tier["gold"] < per_tier["silver"]
    assert per_tier["silver"] + per_tier["standard"] > 0.7 * 300
    assert not Account.objects.filter(tier__isnull=True).exists()
    assert "accounts by tier: " + ", ".join(f"{name} {n}" for name, n in per_tier.items()) in out
    assert f"{Service.objects.count()} services, {Agreement.objects.count()} agreements" in out
    assert Service.objects.count() >= 3 and Agreement.objects.count() == 4
    assert "log in as demo / demo at /login/" in out and "after `accord serve`" in out  # README's command
    demo_user = User.objects.get(username="demo")
    assert demo_user.is_superuser and demo_user.is_staff and demo_user.check_password("demo")


def test_the_revenue_is_heavy_tailed_so_80_20_roughly_holds() -> None:
    seed()
    revenues = sorted(Account.objects.values_list("revenue_12m", flat=True), reverse=True)
    top_fifth = sum(revenues[: len(revenues) // 5])
    assert top_fifth / sum(revenues) > Decimal("0.7")
    assert revenues[0] > 20 * revenues[len(revenues) // 2]  # the biggest client dwarfs the median one


def test_every_account_has_a_history_contacts_and_this_years_commitment() -> None:
    seed("--accounts", "150")
    today = timezone.localdate()
    for account in Account.objects.prefetch_related("tier_changes", "contacts__points", "commitments"):
        changes = sorted(account.tier_changes.all(), key=lambda c: (c.at, c.id))
        assert changes and changes[0].cause == "initial", account
        assert changes[-1].to_tier_id == account.tier_id
        contacts = list(account.contacts.all())
        assert 1 <= len(contacts) <= 3
        for contact in contacts:
            assert contact.emails and contact.emails[0].endswith(".example")
            assert contact.phones and contact.phones[0].startswith("+")
        assert any(c.period_start <= today <= c.period_end and c.volume for c in account.commitments.all())
    causes = Counter(TierChange.objects.values_list("cause", flat=True))
    assert causes["rules"] > 10 and causes["override"] >= 3 and causes["override_ended"] >= 1
    zones = set(Account.objects.values_list("timezone", flat=True))
    assert any(z.startswith("Europe/") for z in zones)
    assert any(z.startswith("America/") for z in zones)
    assert any(z.startswith("Asia/") for z in zones)


def test_it_makes_a_couple_of_manual_overrides_with_reasons() -> None:
    seed("--accounts", "150")
    live = TierOverride.objects.filter(revoked_at__isnull=True, expires_at__gt=timezone.now()).select_related(
        "account", "tier"
    )
    assert live.count() >= 2
    for override in live:
        assert override.reason.strip()
        assert override.account.tier == override.tier  # an override beats the rules
        latest = override.account.tier_changes.order_by("-at", "-id").first()
        assert latest is not None and latest.cause == "override"
    assert TierOverride.objects.filter(expires_at__lte=timezone.now()).count() == 1


def test_it_issues_a_few_api_keys_one_of_them_rotated() -> None:
    seed("--accounts", "60")
    keys = ApiCredential.objects.all()
    assert 3 <= keys.count() <= 10
    assert keys.filter(revoked_at__isnull=False).count() == 1
    assert keys.filter(revoked_at__isnull=True, last_used_at__isnull=False).exists()
    biggest = Account.objects.order_by("-revenue_12m").first()
    assert biggest is not None and biggest.credentials.count() == 2


@time_machine.travel(dt.datetime(2026, 11, 30, 9, 10, 30, tzinfo=dt.UTC), tick=False)
def test_the_same_seed_gives_the_same_company_and_another_seed_another() -> None:
    # Frozen: the seed dates overrides and history from now, so two seeds a minute apart would differ.
    seed("--accounts", "60", "--seed", "42")
    first = snapshot()
    Account.objects.all().delete()
    Contact.objects.all().delete()
    seed("--accounts", "60", "--seed", "42")
    assert snapshot() == first
    Account.objects.all().delete()
    Contact.objects.all().delete()
    seed("--accounts", "60", "--seed", "43")
    assert snapshot()["accounts"] != first["accounts"]


def test_if_empty_does_nothing_when_accounts_exist_and_says_so() -> None:
    seed("--accounts", "40")
    before = snapshot()
    out = seed("--if-empty")
    assert "40 accounts exist already; the demo data is not seeded again" in out
    assert snapshot() == before
    out = seed("--if-empty", "--accounts", "999")
    assert "not seeded again" in out and snapshot() == before


def test_if_empty_seeds_an_empty_database() -> None:
    out = seed("--if-empty", "--accounts", "30")
    assert Account.objects.count() == 30 and "30 accounts by tier" in out


def test_it_refuses_to_seed_over_existing_accounts() -> None:
    Account.objects.create(name="A real customer", external_id="REAL-1")
    with pytest.raises(CommandError, match="1 accounts exist already"):
        seed()
    assert list(Account.objects.values_list("name", flat=True)) == ["A real customer"]
    assert not Tier.objects.exists() and not User.objects.filter(username="demo").exists()


@pytest.mark.parametrize("value", ["0", "-5", "100001"])
def test_it_refuses_an_impossible_number_of_accounts(value: str) -> None:
    with pytest.raises(CommandError, match="--accounts must be between 1 and 100000"):
        seed("--accounts", value)
    assert not Account.objects.exists() and not Tier.objects.exists()


@pytest.mark.parametrize(("option", "value"), [("--accounts", "many"), ("--seed", "1.5")])
def test_it_refuses_options_that_are_not_numbers(option: str, value: str) -> None:
    with pytest.raises(CommandError, match="invalid int value"):
        seed(option, value)
    assert not Account.objects.exists()


def test_a_broken_demo_manifest_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "demo.yaml"
    broken.write_text("tiers:\n  - {name: platinum, rank: first}\n")
    monkeypatch.setattr(demo, "MANIFEST", broken)
    err = StringIO()
    with pytest.raises(CommandError, match="is not valid; nothing was changed"):
        call_command("seed-demo", stdout=StringIO(), stderr=err)
    assert "rank" in err.getvalue()
    assert not Tier.objects.exists() and not Account.objects.exists() and not User.objects.exists()


def test_a_missing_demo_manifest_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "MANIFEST", tmp_path / "gone.yaml")
    with pytest.raises(CommandError, match=r"the demo manifest is missing: .*gone\.yaml"):
        seed()
    assert not Account.objects.exists()


def test_an_existing_demo_user_keeps_its_password(alice: User) -> None:
    User.objects.create_user("demo", password="a-secret-someone-chose", is_staff=True)
    out = seed("--accounts", "20")
    assert "the user existed already; its password is unchanged" in out
    assert User.objects.get(username="demo").check_password("a-secret-someone-chose")


@pytest.mark.django_db(transaction=True)
def test_demo_replies_are_written_to_files_not_sent_over_smtp(settings: Any, tmp_path: Path) -> None:
    from accord.desk.models import Message

    # An SMTP port with nothing listening: a reply sent there would be flagged "not sent".
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    with pytest.raises(OSError):
        smtplib.SMTP("127.0.0.1", closed_port, timeout=2)
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", closed_port
    settings.EMAIL_FILE_PATH = str(tmp_path)
    seed("--accounts", "30")
    replies = Message.objects.filter(author_user__username="demo")
    assert replies.exists()
    assert not Message.objects.filter(flag_reason__startswith="not sent").exists()
    assert len(list(tmp_path.iterdir())) >= 1
