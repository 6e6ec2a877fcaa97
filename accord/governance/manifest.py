"""The `policies` section of the manifest: governance policies as code (docs/governance.md)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, StrictInt, StringConstraints

from accord.lib.manifest import Check, Kind
from accord.lib.manifest.fields import ExternalId, Name, Seconds, Spec, TierName, drop_empty

from .models import Policy
from .policies import policy_errors, save_policy

# Policy model fields as the manifest names them, for error paths.
FIELD_PATHS = {"condition": "when", "clear_condition": "clear_when", "hold_seconds": "hold",
               "clear_seconds": "clear_after", "min_active_seconds": "min_active", "cooldown_seconds": "cooldown",
               "tiers": "scope.tiers", "accounts": "scope.accounts", "services": "scope.services",
               "operations": "scope.operations", "notify_emails": "notify.emails", "notify_webhooks": "notify.webhooks"}


class ScopeSpec(Spec):
    """What a policy's action applies to; an empty list means any."""

    tiers: list[TierName] = []
    accounts: list[ExternalId] = []
    services: list[Name] = []
    operations: list[Name] = []


class WebhookSpec(Spec):
    """A webhook notified of a policy's switches, with the secret it is signed with."""
    url: Annotated[str, StringConstraints(max_length=500)]
    secret: Annotated[str, StringConstraints(max_length=200)] = ""


class NotifySpec(Spec):
    """Who hears of a policy's switches: e-mail addresses and webhooks."""
    emails: list[Annotated[str, StringConstraints(max_length=254)]] = []
    webhooks: list[WebhookSpec] = []


class PolicySpec(Spec):
    """A governance policy: when a condition holds, enforce an action on a scope (docs/governance.md)."""

    name: Name
    description: Annotated[str, StringConstraints(max_length=300)] = ""
    enabled: StrictBool = True
    mode: Literal["enforce", "dry_run"] = "enforce"
    priority: StrictInt = Field(default=100, ge=-1000, le=1000)
    when: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    hold: Seconds = 0
    clear_when: Annotated[str, StringConstraints(max_length=2000)] = ""
    clear_after: Seconds = 30
    min_active: Seconds = 60
    cooldown: Seconds = 60
    scope: ScopeSpec = ScopeSpec()
    action: Literal["route", "rate_limit", "shed", "admission", "notify"]
    params: dict[str, Any] = {}
    schedule: Name | None = None
    notify: NotifySpec = NotifySpec()

    def model_data(self) -> dict[str, Any]:
        """The fields of the Policy model."""
        return {
            "description": self.description, "enabled": self.enabled, "mode": self.mode, "priority": self.priority,
            "condition": self.when, "hold_seconds": self.hold, "clear_condition": self.clear_when,
            "clear_seconds": self.clear_after, "min_active_seconds": self.min_active,
            "cooldown_seconds": self.cooldown, "tiers": list(self.scope.tiers), "accounts": list(self.scope.accounts),
            "services": list(self.scope.services), "operations": list(self.scope.operations), "action": self.action,
            "params": dict(self.params), "schedule": self.schedule, "notify_emails": list(self.notify.emails),
            "notify_webhooks": [w.model_dump() for w in self.notify.webhooks],
        }


def _policy_dict(d: dict[str, Any], name: str) -> dict[str, Any]:
    scope = drop_empty({k: list(d[k]) for k in ("tiers", "accounts", "services", "operations")})
    notify = drop_empty({"emails": list(d["notify_emails"]), "webhooks": list(d["notify_webhooks"])})
    out = {
        "name": name, "description": d["description"], "enabled": d["enabled"], "mode": d["mode"],
        "priority": d["priority"], "when": d["condition"], "hold": d["hold_seconds"],
        "clear_when": d["clear_condition"], "clear_after": d["clear_seconds"], "min_active": d["min_active_seconds"],
        "cooldown": d["cooldown_seconds"], "scope": scope, "action": d["action"], "params": dict(d["params"]),
        "schedule": d["schedule"], "notify": notify,
    }
    return drop_empty(out, keep=("enabled", "hold", "clear_after", "min_active", "cooldown", "priority"))


def policy_dict_from_spec(p: PolicySpec) -> dict[str, Any]:
    """A policy of the file in canonical form."""
    return _policy_dict(p.model_data(), p.name)


def policy_dict_from_db(p: Policy) -> dict[str, Any]:
    """A stored policy in canonical form."""
    data = {k: getattr(p, k) for k in ("description", "enabled", "mode", "priority", "condition", "hold_seconds",
                                       "clear_condition", "clear_seconds", "min_active_seconds", "cooldown_seconds",
                                       "tiers", "accounts", "services", "operations", "action", "params",
                                       "notify_emails", "notify_webhooks")}
    data["schedule"] = p.schedule.name if p.schedule else None
    return _policy_dict(data, p.name)


class PolicyKind(Kind, section="policies", singular="policy", spec=PolicySpec, model=Policy,
                 depends=("calendars", "tiers", "services")):
    """Governance policies: a condition, its hysteresis, a scope and the action enforced while it holds."""

    def check(self, check: Check) -> None:
        for p, policy in check.each("policies"):
            if len(policy.name) > 73:
                check.err(f"{p}.name", "at most 73 characters (its gateway action is named policy-<name>)")
            for fld, problem in policy_errors(policy.model_data()):
                check.err(f"{p}.{FIELD_PATHS.get(fld, fld)}", problem)
            if policy.schedule:
                check.refers(f"{p}.schedule", "calendars", policy.schedule)
            for j, tier in enumerate(policy.scope.tiers):
                check.refers(f"{p}.scope.tiers[{j}]", "tiers", tier)
            for j, service in enumerate(policy.scope.services):
                check.refers(f"{p}.scope.services[{j}]", "services", service)

    def canonical(self, item: PolicySpec) -> dict[str, Any]:
        return policy_dict_from_spec(item)

    def stored(self, name: str) -> dict[str, Any] | None:
        stored = Policy.objects.filter(name=name).select_related("schedule").first()
        return policy_dict_from_db(stored) if stored else None

    def write(self, items: list[PolicySpec]) -> None:
        for pol in items:
            save_policy(pol.name, pol.model_data())

    def export(self) -> tuple[list[dict[str, Any]], list[str]]:
        rows, notes = self.real(Policy.objects.order_by("priority", "name"))
        return [policy_dict_from_db(p) for p in rows.select_related("schedule")], notes
