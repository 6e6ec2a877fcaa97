"""Operations that change what the gateway enforces: set, clear and list gateway actions."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from .models import GatewayAction

SCOPES = ("tiers", "accounts", "services", "operations")
PARAMS: dict[str, dict[str, str]] = {
    "route": {"pool": "the pool to send matching calls to, e.g. standby"},
    "rate_limit": {"rps": "tokens per second (> 0)", "burst": "bucket size (>= 1, default max(1, rps))"},
    "shed": {"retry_after": "seconds for Retry-After (default 1)"},
    "admission": {"max_wait_ms": "longest wait in the queue (default 1000)",
                  "retry_after": "seconds for Retry-After on a 503 (default 1)"},
}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def action_errors(kind: str, params: Any, *scopes: Any) -> list[tuple[str, str]]:
    """Problems with an action's kind, params and scope lists, as (field, message)."""
    errors: list[tuple[str, str]] = []
    if kind not in PARAMS:
        return [("kind", f"'{kind}' is not a kind of action (use {', '.join(PARAMS)})")]
    for name, scope in zip(SCOPES, scopes, strict=True):
        if not isinstance(scope, list) or not all(isinstance(v, str) and v.strip() for v in scope):
            errors.append((name, "must be a list of non-empty names"))
    if not isinstance(params, dict):
        return [*errors, ("params", "must be an object")]
    unknown = sorted(set(params) - set(PARAMS[kind]))
    if unknown:
        errors.append(("params", f"unknown for {kind}: {', '.join(unknown)} (known: {', '.join(PARAMS[kind])})"))
    if kind == "route":
        if not isinstance(params.get("pool"), str) or not params["pool"]:
            errors.append(("params", "a route action needs a pool name, e.g. {\"pool\": \"standby\"}"))
    elif kind == "rate_limit":
        rps = _number(params.get("rps"))
        if rps is None or not 0 < rps <= 1_000_000:
            errors.append(("params", "rps must be a number above 0 (at most 1000000)"))
        if "burst" in params:
            burst = _number(params["burst"])
            if burst is None or not 1 <= burst <= 10_000_000:
                errors.append(("params", "burst must be a number of at least 1"))
    for key in ("retry_after",):
        if key in params:
            value = _number(params[key])
            if value is None or value != int(value) or not 1 <= value <= 86_400:
                errors.append(("params", f"{key} must be a whole number of seconds between 1 and 86400"))
    if "max_wait_ms" in params:
        value = _number(params["max_wait_ms"])
        if value is None or not 0 <= value <= 600_000:
            errors.append(("params", "max_wait_ms must be a number between 0 and 600000"))
    return errors


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
