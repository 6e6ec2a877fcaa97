"""Counting failures (and public-form posts) per key in a sliding window, in the database: every process and
every worker sees the same counts."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from .models import Strike


@dataclass(frozen=True)
class Limit:
    count: int
    window: int  # seconds


def signin_limits() -> tuple[Limit, Limit]:
    """(per account, per address) failures of sign-in or of an API token before 429."""
    window = int(getattr(settings, "ACCORD_SIGNIN_WINDOW", 900))
    return (
        Limit(int(getattr(settings, "ACCORD_SIGNIN_ACCOUNT_FAILURES", 5)), window),
        Limit(int(getattr(settings, "ACCORD_SIGNIN_ADDRESS_FAILURES", 20)), window),
    )


def wait(key: str, limit: Limit) -> int:
    """Seconds until `key` is under its limit again (0: it is now)."""
    now = timezone.now()
    since = now - dt.timedelta(seconds=limit.window)
    times = list(
        Strike.objects.filter(key=key, at__gt=since)
        .order_by("-at")
        .values_list("at", flat=True)[: limit.count]
    )
    if len(times) < limit.count:
        return 0
    # The oldest of the last `count` strikes leaving the window frees one place.
    return max(1, math.ceil((times[-1] + dt.timedelta(seconds=limit.window) - now).total_seconds()))


def strike(key: str, limit: Limit) -> None:
    now = timezone.now()
    Strike.objects.create(key=key, at=now)
    Strike.objects.filter(key=key, at__lte=now - dt.timedelta(seconds=limit.window)).delete()


def signin_keys(kind: str, account: str | None, address: str) -> list[tuple[str, Limit]]:
    per_account, per_address = signin_limits()
    keys = [(f"{kind}:addr:{address}", per_address)]
    if account:
        keys.insert(0, (f"{kind}:user:{account.lower()}", per_account))
    return keys


def signin_wait(kind: str, account: str | None, address: str) -> int:
    """Seconds to wait before another sign-in (kind `login`) or token (kind `token`) is even checked."""
    return max((wait(key, limit) for key, limit in signin_keys(kind, account, address)), default=0)


def signin_failed(kind: str, account: str | None, address: str) -> None:
    for key, limit in signin_keys(kind, account, address):
        strike(key, limit)
