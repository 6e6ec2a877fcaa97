"""Tier evaluation: rules first-match in rank order, a live manual override beats the rules."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.db.models import OuterRef, QuerySet, Subquery, Sum
from django.utils import timezone

from accord.lib.db import bulk_update_rows
from accord.lib.units import money

from .models import Account, Commitment, Tier, TierChange, TierOverride


@dataclass(frozen=True)
class Decision:
    """The tier an account should have now, and why."""

    tier: Tier | None
    cause: str
    detail: str


def decide(
    rules: Sequence[Tier], committed: Decimal, revenue_12m: Decimal, override: TierOverride | None
) -> Decision:
    """Pure tier decision for one account's figures."""
    if override is not None:
        return Decision(override.tier, TierChange.Cause.OVERRIDE, f"override until {override.expires_at:%Y-%m-%d %H:%M}: {override.reason}")
    for rule in rules:
        if rule.matches(committed, revenue_12m):
            return Decision(rule, TierChange.Cause.RULES,
                            f"committed {money(committed)}, 12-month revenue {money(revenue_12m)}")
    return Decision(None, TierChange.Cause.RULES,
                    f"no rule matches committed {money(committed)}, revenue {money(revenue_12m)}")


@dataclass(frozen=True)
class Change:
    """A tier change made by a recompute."""

    account: Account
    before: Tier | None
    after: Tier | None
    cause: str
    detail: str


def recompute(accounts: QuerySet[Account] | None = None, now: dt.datetime | None = None) -> list[Change]:
    """Re-evaluate the tier of the given accounts (all by default); record and return what changed."""
    now = now or timezone.now()
    today = timezone.localdate(now)
    # Simulated accounts keep the tier their scenario gave them (they have no revenue or commitments), and a tier
    # a scenario had to create (no thresholds: it would match everyone) is no rule of the business.
    rules = list(Tier.objects.filter(simulated=False).order_by("rank"))
    last_cause = TierChange.objects.filter(account=OuterRef("pk")).order_by("-at", "-id").values("cause")[:1]
    qs = (Account.objects.all() if accounts is None else accounts).exclude(simulated=True).select_related("tier")
    account_list = list(qs.annotate(last_cause=Subquery(last_cause)))
    ids = [a.pk for a in account_list]
    committed: dict[int, Decimal] = {}
    overrides: dict[int, TierOverride] = {}
    # Batch the look-ups; SQLite caps the number of bound parameters per query.
    for start in range(0, len(ids), 900):
        chunk = ids[start : start + 900]
        for row in (
            Commitment.objects.filter(account_id__in=chunk, period_start__lte=today, period_end__gte=today)
            .values("account_id")
            .annotate(total=Sum("amount"))
        ):
            committed[row["account_id"]] = row["total"] or Decimal(0)
        for o in (
            TierOverride.objects.filter(account_id__in=chunk, revoked_at__isnull=True)
            .select_related("tier")
            .order_by("created_at")
        ):
            if o.expires_at > now:
                overrides[o.account_id] = o  # the newest live one wins

    changes: list[Change] = []
    for account in account_list:
        decision = decide(rules, committed.get(account.pk, Decimal(0)), account.revenue_12m, overrides.get(account.pk))
        previous = account.last_cause
        if decision.tier == account.tier and (previous is not None or account.tier is None):
            continue
        cause = decision.cause
        if previous is None and cause == TierChange.Cause.RULES:
            cause = TierChange.Cause.INITIAL
        elif previous == TierChange.Cause.OVERRIDE and cause == TierChange.Cause.RULES:
            cause = TierChange.Cause.OVERRIDE_ENDED
        changes.append(Change(account, account.tier, decision.tier, cause, decision.detail))

    with transaction.atomic():
        for change in changes:
            change.account.tier = change.after
        bulk_update_rows(Account, ["tier"], [(c.after.pk if c.after else None, c.account.pk) for c in changes])
        TierChange.objects.bulk_create(
            [
                TierChange(
                    account=c.account, from_tier=c.before, to_tier=c.after, cause=c.cause, detail=c.detail[:300], at=now
                )
                for c in changes
            ],
            batch_size=500,
        )
    return changes
