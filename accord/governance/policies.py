"""Checking and saving policies: one validation shared by the API, `accord apply` and the admin."""

from __future__ import annotations

import re
from typing import Any

from django.db import transaction

from accord.agreements.models import BusinessCalendar
from accord.gateway.models import action_errors

from . import expr
from .models import Policy
from .notify import webhook_list

FIELDS = ("description", "enabled", "mode", "priority", "condition", "hold_seconds", "clear_condition",
          "clear_seconds", "min_active_seconds", "cooldown_seconds", "tiers", "accounts", "services", "operations",
          "action", "params", "schedule", "notify_emails", "notify_webhooks")
MAX_SECONDS = 7 * 86400
NAME = re.compile(r"^[A-Za-z0-9_-]{1,73}$")


def policy_errors(data: dict[str, Any]) -> list[tuple[str, str]]:
    """Problems with a policy's fields, as (field, message); an empty list means it can be saved."""
    errors: list[tuple[str, str]] = []
    for name in ("condition", "clear_condition"):
        text = data.get(name) or ""
        if name == "condition" and not str(text).strip():
            errors.append((name, "a policy needs a condition, e.g. pool(booking, primary).utilisation > 0.8"))
            continue
        if str(text).strip():
            try:
                expr.parse(str(text))
            except expr.ExprError as e:
                errors.append((name, str(e)))
    for name in ("hold_seconds", "clear_seconds", "min_active_seconds", "cooldown_seconds"):
        value = data.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SECONDS:
            errors.append((name, f"must be a whole number of seconds between 0 and {MAX_SECONDS}"))
    priority = data.get("priority", 100)
    if isinstance(priority, bool) or not isinstance(priority, int) or not -1000 <= priority <= 1000:
        errors.append(("priority", "must be a whole number between -1000 and 1000"))
    if data.get("mode", Policy.Mode.ENFORCE) not in Policy.Mode.values:
        errors.append(("mode", f"must be one of {', '.join(Policy.Mode.values)}"))
    action = data.get("action", "")
    if action == Policy.Action.NOTIFY:
        if data.get("params"):
            errors.append(("params", "a notify action takes no params"))
        if not data.get("notify_emails") and not data.get("notify_webhooks"):
            errors.append(("notify_emails", "a notify action needs notify_emails or notify_webhooks"))
    else:
        errors += action_errors(action, data.get("params") or {}, *(data.get(s) or [] for s in
                                                                    ("tiers", "accounts", "services", "operations")))
        errors = [("action" if f == "kind" else f, m.replace("kind of action", "action").replace("(use ", "(use notify, "))
                  for f, m in errors]
    emails = data.get("notify_emails") or []
    if not isinstance(emails, list) or not all(isinstance(e, str) and "@" in e for e in emails):
        errors.append(("notify_emails", "must be a list of e-mail addresses"))
    try:
        webhook_list(data.get("notify_webhooks") or [])
    except ValueError as e:
        errors.append(("notify_webhooks", str(e)))
    return errors


def save_policy(name: str, data: dict[str, Any]) -> tuple[Policy, bool]:
    """Create or update the policy `name` from plain data (schedule by calendar name); raises ValueError."""
    data = {k: v for k, v in data.items() if k in FIELDS}
    errors = policy_errors({"priority": 100, **data})
    if not isinstance(name, str) or not NAME.match(name):
        errors.insert(0, ("name", "must be 1-73 letters, digits, '-' or '_'"))
    schedule = data.get("schedule")
    calendar = None
    if schedule:
        calendar = BusinessCalendar.objects.filter(name=schedule).first()
        if calendar is None:
            errors.append(("schedule", f"no calendar named {schedule!r}"))
    if errors:
        raise PolicyError(errors)
    with transaction.atomic():
        policy = Policy.objects.select_for_update().filter(name=name).first()
        created = policy is None
        policy = policy or Policy(name=name)
        for key, value in data.items():
            if key != "schedule":
                setattr(policy, key, value)
        policy.schedule = calendar
        policy.full_clean()
        policy.save()
    return policy, created


class PolicyError(ValueError):
    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {m}" for f, m in errors))
        self.errors = errors
