"""Operations that change what the gateway enforces: set, clear and list gateway actions."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from .models import GatewayAction


def do_set_action(
    name: str, kind: str, *, params: dict[str, Any] | None = None, tiers: list[str] | None = None,
    accounts: list[str] | None = None, services: list[str] | None = None, operations: list[str] | None = None,
    reason: str = "", expires_at: dt.datetime | None = None, set_by: str = "", priority: int = 100,
) -> GatewayAction:
    """Create or replace the action called `name` and switch it on; raises ValidationError on bad input."""
    with transaction.atomic():
        action = GatewayAction.objects.select_for_update().filter(name=name).first() or GatewayAction(name=name)
        action.kind = kind
        action.params = params or {}
        action.tiers, action.accounts = tiers or [], accounts or []
        action.services, action.operations = services or [], operations or []
        action.reason, action.expires_at, action.set_by = reason, expires_at, set_by
        action.priority = priority
        action.active = True
        if expires_at is not None and expires_at <= timezone.now():
            raise ValidationError({"expires_at": ["is in the past"]})
        action.full_clean()
        action.save()
    return action


def do_clear_action(name: str) -> bool:
    """Switch the named action off; returns whether it was on."""
    with transaction.atomic():
        action = GatewayAction.objects.select_for_update().filter(name=name).first()
        if action is None or not action.active:
            return False
        action.active = False
        action.save(update_fields=["active", "updated_at"])
    return True
