"""State changes on customers, each atomic."""

from __future__ import annotations

import datetime as dt

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from . import tiers
from .models import Account, Tier, TierOverride


def do_override_tier(
    account: Account, tier: Tier, reason: str, expires_at: dt.datetime, user: AbstractBaseUser | None = None
) -> TierOverride:
    """Set an account's tier by hand until expires_at, and record the change in its history."""
    if not reason.strip():
        raise ValidationError({"reason": "A manual override needs a reason."})
    if expires_at <= timezone.now():
        raise ValidationError({"expires_at": "The expiry must be in the future."})
    with transaction.atomic():
        override = TierOverride.objects.create(
            account=account, tier=tier, reason=reason.strip(), expires_at=expires_at, created_by=user  # type: ignore[misc]
        )
        tiers.recompute(Account.objects.filter(pk=account.pk).select_related("tier"))
    return override


def do_revoke_override(override: TierOverride) -> None:
    """End a manual override now; the account falls back to its rules."""
    with transaction.atomic():
        TierOverride.objects.filter(pk=override.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        tiers.recompute(Account.objects.filter(pk=override.account_id).select_related("tier"))
