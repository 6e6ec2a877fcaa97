"""Demo data of the catalog: API keys of the demo's biggest clients (the services come from the demo manifest)."""

from __future__ import annotations

import datetime as dt
import random

from accord.customers.models import Account

from .models import ApiCredential


def credentials(rng: random.Random, accounts: list[Account], now: dt.datetime) -> int:
    """API keys for the five biggest clients' booking integrations; the biggest one rotated its key."""
    biggest = sorted(accounts, key=lambda a: a.revenue_12m, reverse=True)[:5]
    count = 0
    for i, account in enumerate(biggest):
        if i == 0:
            old, _key = ApiCredential.issue(account, "booking integration (old key)")
            ApiCredential.objects.filter(pk=old.pk).update(
                created_at=now - dt.timedelta(days=400), revoked_at=now - dt.timedelta(days=200),
                last_used_at=now - dt.timedelta(days=201),
            )
            count += 1
        cred, _key = ApiCredential.issue(account, "booking integration")
        count += 1
        if i < 4:
            used = now - dt.timedelta(minutes=rng.randint(5, 3 * 24 * 60))
            ApiCredential.objects.filter(pk=cred.pk).update(last_used_at=used)
    return count
