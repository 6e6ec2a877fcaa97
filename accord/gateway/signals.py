"""Bump the snapshot version when something the gateway's snapshot holds is saved or deleted.

Bulk writes (`QuerySet.update`, raw SQL) send no signals: code that changes routes, credentials or tiers that
way calls `bump_snapshot_version()` itself; the gateway also reloads in full every few seconds as a safety net.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import F
from django.db.models.signals import post_delete, post_save
from django.utils import timezone


def _bump() -> None:
    from .models import SnapshotVersion

    if not SnapshotVersion.objects.filter(pk=1).update(version=F("version") + 1, changed_at=timezone.now()):
        SnapshotVersion.objects.get_or_create(pk=1, defaults={"version": 1})


def bump_snapshot_version() -> None:
    """Count one change now, or when the current transaction commits (once, however many changes it holds)."""
    conn = transaction.get_connection()
    if conn.in_atomic_block and any(func is _bump for _sids, func, _robust in conn.run_on_commit):
        return
    transaction.on_commit(_bump)


def _changed(sender: Any, **kwargs: Any) -> None:
    if kwargs.get("raw"):  # loading fixtures
        return
    bump_snapshot_version()


def connect() -> None:
    """Listen to the models the snapshot is built from."""
    from accord.catalog.models import ApiCredential, Endpoint, Operation, Pool, Service
    from accord.customers.models import Account, Tier

    from .models import GatewayAction

    for model in (Service, Operation, Pool, Endpoint, ApiCredential, Account, Tier, GatewayAction):
        post_save.connect(_changed, sender=model, dispatch_uid=f"gateway-snapshot-{model.__name__}-save")
        post_delete.connect(_changed, sender=model, dispatch_uid=f"gateway-snapshot-{model.__name__}-delete")
