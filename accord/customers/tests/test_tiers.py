"""Tier rules, overrides and history."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from io import StringIO

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.utils import timezone

from accord.customers import tiers
from accord.customers.actions import do_override_tier, do_revoke_override
from accord.customers.models import Account, Commitment, Tier, TierChange

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 6, 15, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def rules() -> dict[str, Tier]:
    """Four tiers: platinum by commitment or revenue, gold needs both, silver by revenue, standard the rest."""
    return {
        t.name: t
        for t in [
            Tier.objects.create(name="platinum", rank=1, min_commitment=500_000, min_revenue_12m=2_000_000),
            Tier.objects.create(
                name="gold", rank=2, min_commitment=100_000, min_revenue_12m=300_000, match=Tier.Match.ALL
            ),
            Tier.objects.create(name="silver", rank=3, min_revenue_12m=50_000),
            Tier.objects.create(name="standard", rank=4),
        ]
    }


def commit(account: Account, amount: int, start: str = "2026-01-01", end: str = "2026-12-31") -> Commitment:
    return Commitment.objects.create(
        account=account, amount=amount, period_start=dt.date.fromisoformat(start), period_end=dt.date.fromisoformat(end)
    )


@time_machine.travel(NOW, tick=False)
def test_it_assigns_the_first_rule_that_matches_in_rank_order(rules: dict[str, Tier]) -> None:
    Account.objects.create(name="Big", revenue_12m=Decimal("2500000"))
    committed = Account.objects.create(name="Committed", revenue_12m=Decimal(0))
    commit(committed, 600_000)
    both = Account.objects.create(name="Both", revenue_12m=Decimal("300000"))
    commit(both, 100_000)
    only_commit = Account.objects.create(name="OnlyCommit", revenue_12m=Decimal("1000"))
    commit(only_commit, 150_000)
    Account.objects.create(name="Small", revenue_12m=Decimal("10"))

    tiers.recompute()

    got = {a.name: a.tier.name for a in Account.objects.select_related("tier")}  # type: ignore[union-attr]
    assert got == {
        "Big": "platinum",
        "Committed": "platinum",
        "Both": "gold",
        "OnlyCommit": "standard",  # gold needs both thresholds; silver needs revenue
        "Small": "standard",
    }


@time_machine.travel(NOW, tick=False)
def test_it_counts_only_commitments_of_the_current_period(rules: dict[str, Tier]) -> None:
    acct = Account.objects.create(name="Past", revenue_12m=Decimal(0))
    commit(acct, 900_000, "2025-01-01", "2025-12-31")
    commit(acct, 900_000, "2027-01-01", "2027-12-31")
    commit(acct, 300_000, "2026-06-15", "2026-06-15")
    commit(acct, 250_000, "2026-01-01", "2026-06-30")
    tiers.recompute()
    acct.refresh_from_db()
    assert acct.tier == rules["platinum"]  # 300k + 250k live today; the other 1.8M are outside the period
    assert acct.committed_amount() == Decimal(550_000)


@time_machine.travel(NOW, tick=False)
def test_it_records_each_change_with_its_cause_and_nothing_when_unchanged(rules: dict[str, Tier]) -> None:
    acct = Account.objects.create(name="Grower", revenue_12m=Decimal("60000"))
    first = tiers.recompute()
    assert [(c.before, c.after, c.cause) for c in first] == [(None, rules["silver"], TierChange.Cause.INITIAL)]

    assert tiers.recompute() == []
    assert TierChange.objects.filter(account=acct).count() == 1

    Account.objects.filter(pk=acct.pk).update(revenue_12m=Decimal("2000000"))
    second = tiers.recompute()
    assert [(c.before, c.after, c.cause) for c in second] == [(rules["silver"], rules["platinum"], "rules")]
    history = list(TierChange.objects.filter(account=acct).order_by("id").values_list("cause", "to_tier__name"))
    assert history == [("initial", "silver"), ("rules", "platinum")]
    assert "12-month revenue 2,000,000.00 EUR" in TierChange.objects.filter(account=acct).order_by("-id")[0].detail


@time_machine.travel(NOW, tick=False)
def test_simulated_accounts_keep_their_tier_and_a_simulated_tier_is_no_rule(rules: dict[str, Tier]) -> None:
    # a scenario's tier without thresholds, ranked above the business's own: as a rule it would take everyone
    made_up = Tier.objects.create(name="scenario-top", rank=0, simulated=True)
    simulated = Account.objects.create(name="RTA platinum customer 1 (simulated)", tier=rules["platinum"],
                                       simulated=True)
    real = Account.objects.create(name="Small", revenue_12m=Decimal("10"))
    changes = tiers.recompute()
    assert [(c.account.name, c.after) for c in changes] == [("Small", rules["standard"])]
    simulated.refresh_from_db()
    real.refresh_from_db()
    assert simulated.tier == rules["platinum"] and real.tier == rules["standard"] != made_up
    assert not TierChange.objects.filter(account=simulated).exists()


def test_tier_names_and_thresholds_are_data(db: None) -> None:
    Tier.objects.create(name="diamond", rank=1, min_revenue_12m=10)
    Tier.objects.create(name="basic", rank=2)
    acct = Account.objects.create(name="A", revenue_12m=Decimal(11))
    tiers.recompute()
    acct.refresh_from_db()
    assert acct.tier.name == "diamond"  # type: ignore[union-attr]


def test_an_account_matching_no_rule_keeps_no_tier(db: None) -> None:
    Tier.objects.create(name="vip", rank=1, min_revenue_12m=1000)
    acct = Account.objects.create(name="Nobody", revenue_12m=Decimal(1))
    assert tiers.recompute() == []
    acct.refresh_from_db()
    assert acct.tier is None


def test_manual_override_beats_the_rules_until_it_expires(rules: dict[str, Tier]) -> None:
    with time_machine.travel(NOW, tick=False):
        acct = Account.objects.create(name="Strategic", revenue_12m=Decimal(10))
        tiers.recompute()
        acct.refresh_from_db()
        assert acct.tier == rules["standard"]
        do_override_tier(acct, rules["platinum"], "pilot with the CEO", NOW + dt.timedelta(days=30))
        acct.refresh_from_db()
        assert acct.tier == rules["platinum"]
        latest = TierChange.objects.filter(account=acct).first()
        assert latest is not None and latest.cause == "override" and "pilot with the CEO" in latest.detail
        assert tiers.recompute() == []  # still overridden
    with time_machine.travel(NOW + dt.timedelta(days=31), tick=False):
        changes = tiers.recompute()
        assert [(c.before, c.after, c.cause) for c in changes] == [
            (rules["platinum"], rules["standard"], TierChange.Cause.OVERRIDE_ENDED)
        ]


@time_machine.travel(NOW, tick=False)
def test_revoking_an_override_falls_back_to_the_rules(rules: dict[str, Tier]) -> None:
    acct = Account.objects.create(name="Revoked", revenue_12m=Decimal("60000"))
    override = do_override_tier(acct, rules["gold"], "trial", NOW + dt.timedelta(days=5))
    acct.refresh_from_db()
    assert acct.tier == rules["gold"]
    do_revoke_override(override)
    acct.refresh_from_db()
    assert acct.tier == rules["silver"]
    assert TierChange.objects.filter(account=acct).first().cause == "override_ended"  # type: ignore[union-attr]


@time_machine.travel(NOW, tick=False)
@pytest.mark.parametrize(
    ("reason", "expires", "field"),
    [("   ", NOW + dt.timedelta(days=1), "reason"), ("ok", NOW - dt.timedelta(seconds=1), "expires_at")],
)
def test_an_override_needs_a_reason_and_a_future_expiry(
    rules: dict[str, Tier], reason: str, expires: dt.datetime, field: str
) -> None:
    acct = Account.objects.create(name="X")
    with pytest.raises(ValidationError) as err:
        do_override_tier(acct, rules["gold"], reason, expires)
    assert field in err.value.message_dict
    assert not acct.tier_overrides.exists()


@time_machine.travel(NOW, tick=False)
def test_the_recompute_command_prints_what_changed(rules: dict[str, Tier]) -> None:
    Account.objects.create(name="Alpha", external_id="A-1", revenue_12m=Decimal("60000"))
    Account.objects.create(name="Beta", external_id="B-2", revenue_12m=Decimal("5"))
    out = StringIO()
    call_command("tiers", "recompute", stdout=out)
    lines = out.getvalue().splitlines()
    assert "A-1\tAlpha\t- -> silver\tinitial" in lines[0] or "A-1\tAlpha\t- -> silver\tinitial" in lines[1]
    assert lines[-1] == "evaluated 2 accounts, changed 2"
    out = StringIO()
    call_command("tiers", "recompute", stdout=out)
    assert out.getvalue().strip() == "evaluated 2 accounts, changed 0"


def test_the_list_command_shows_thresholds_with_their_currency(rules: dict[str, Tier]) -> None:
    out = StringIO()
    call_command("tiers", "list", stdout=out)
    platinum = next(line for line in out.getvalue().splitlines() if "\tplatinum\t" in line)
    assert ">= " in platinum and " EUR" in platinum
    for tier in rules.values():
        for amount in (tier.min_commitment, tier.min_revenue_12m):
            if amount is not None:
                assert f"{amount:,.2f} EUR" in out.getvalue()


def test_the_recompute_command_explains_missing_rules_and_unknown_accounts(rules: dict[str, Tier]) -> None:
    with pytest.raises(CommandError, match="Unknown account external id"):
        call_command("tiers", "recompute", "--account", "nope")
    Tier.objects.all().delete()
    with pytest.raises(CommandError, match="No tier rules"):
        call_command("tiers", "recompute")


def test_recompute_handles_more_accounts_than_one_query_can_bind(rules: dict[str, Tier]) -> None:
    today = timezone.localdate()
    accounts = Account.objects.bulk_create([Account(name=f"A{i}", revenue_12m=Decimal(i * 100)) for i in range(2100)])
    Commitment.objects.bulk_create(
        [
            Commitment(account=a, amount=600_000, period_start=today, period_end=today)
            for a in accounts[:1000]
        ]
    )
    changes = tiers.recompute()
    assert len(changes) == 2100
    assert Account.objects.filter(tier=rules["platinum"]).count() == 1000 + sum(
        1 for i in range(1000, 2100) if i * 100 >= 2_000_000
    )
