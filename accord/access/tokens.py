"""Staff API tokens: `acc_<prefix>_<secret>`, shown once; the database keeps the prefix and the secret's SHA-256,
an expiry, the last use and a revocation."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils import timezone

from .models import ApiToken

DEFAULT_DAYS = 90
MAX_DAYS = 366


@dataclass(frozen=True)
class Issued:
    token: ApiToken
    secret: str  # the whole `acc_…` string: shown once, never stored


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def default_days() -> int:
    return int(getattr(settings, "ACCORD_TOKEN_DAYS", DEFAULT_DAYS))


def create(user: Any, name: str = "", days: int | None = None) -> Issued:
    """A new token for a user, valid `days` days (1 to 366; default ACCORD_TOKEN_DAYS, 90)."""
    days = default_days() if days is None else days
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"a token lives 1 to {MAX_DAYS} days, not {days}")
    while True:
        prefix = secrets.token_hex(4)
        if not ApiToken.objects.filter(prefix=prefix).exists():
            break
    secret = secrets.token_urlsafe(32)
    whole = f"acc_{prefix}_{secret}"
    token = ApiToken.objects.create(
        user=user,
        name=name[:100],
        prefix=prefix,
        digest=digest(whole),
        expires_at=timezone.now() + dt.timedelta(days=days),
    )
    return Issued(token, whole)


def split(raw: str) -> str | None:
    """The prefix of a well-formed `acc_<prefix>_<secret>`, else None."""
    parts = raw.split("_", 2)
    if len(parts) != 3 or parts[0] != "acc" or len(parts[1]) != 8 or not parts[2]:
        return None
    return parts[1]


def check(raw: str) -> ApiToken | None:
    """The live token this string is, or None (unknown, wrong secret, expired or revoked)."""
    prefix = split(raw)
    if prefix is None:
        return None
    token = ApiToken.objects.select_related("user").filter(prefix=prefix).first()
    if token is None or not hmac.compare_digest(token.digest, digest(raw)) or not token.live:
        return None
    return token


def revoke(prefix: str) -> ApiToken:
    token = ApiToken.objects.get(prefix=prefix)
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token
