"""The governor: evaluate every policy on the live indicators, switch gateway actions, record why.

One evaluation (`evaluate_policies`) reads each enabled policy's signals, moves its state machine

    idle --condition held hold_seconds (outside cooldown, inside schedule)--> active
    active --clear condition held clear_seconds, and active min_active_seconds--> idle (cooldown starts)

and turns an activation into a `GatewayAction` named after the policy (the gateways pick it up with their next
snapshot, within a second), or, in dry-run mode, only into an audit event. Manual overrides win over the
condition until they expire. `evaluate_budgets` checks multiwindow burn-rate alerts on the error budgets of
agreement objectives. `accord governor` runs both in a loop.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accord.agreements.burn import burn_rules
from accord.agreements.businesstime import BusinessTime
from accord.gateway.actions import do_clear_action, do_set_action
from accord.gateway.models import GatewayAction
from accord.lib.faults import point
from accord.lib.units import json_number, share, times

from . import expr
from .indicators import (
    budget_status,
    burn_rate,
    objective_window,
    rule_label,
    runtime_objectives,
    signal_values,
)
from .models import AuditEvent, BurnAlert, Override, Policy, PolicyState
from .notify import enqueue

ACTOR = "governor"
INTERVAL = 1.0  # seconds between two evaluations of `accord governor` (its --interval default)


@lru_cache(maxsize=512)
def parsed(text: str) -> expr.Node:
    return expr.parse(text)


def _values_json(values: expr.Values) -> dict[str, float | int | str | None]:
    """Signal values for the audit trail: rounded to 6 places, infinity (a spent zero budget) as "Infinity"."""
    return {str(k): json_number(v if v is None or math.isinf(v) else round(v, 6)) for k, v in values.items()}


@dataclass
class Transition:
    policy: str
    kind: str
    reason: str


def _in_schedule(policy: Policy, now: dt.datetime) -> bool:
    if policy.schedule is None:
        return True
    return BusinessTime.from_calendar(policy.schedule).is_working(now)


def _switch_on(policy: Policy, state: PolicyState, now: dt.datetime, actor: str, reason: str,
               values: dict[str, Any]) -> Transition:
    state.active = True
    state.activated_at = now
    state.true_since = state.clear_since = None
    dry = policy.mode == Policy.Mode.DRY_RUN
    if not dry and policy.action != Policy.Action.NOTIFY:
        do_set_action(
            policy.action_name, policy.action, params=dict(policy.params), tiers=list(policy.tiers),
            accounts=list(policy.accounts), services=list(policy.services), operations=list(policy.operations),
            reason=reason[:300], set_by=f"policy {policy.name}"[:150], priority=policy.priority,
        )
    kind = AuditEvent.Kind.WOULD_ACTIVATE if dry else AuditEvent.Kind.ACTIVATED
    event = AuditEvent.objects.create(at=now, kind=kind, policy=policy, subject=policy.name, actor=actor,
                                      reason=reason, values=values)
    if not dry:
        enqueue(event, policy.notify_emails, policy.notify_webhooks)
    point("governor.switching")  # tests: die with the switch recorded and the policy's state not yet saved
    return Transition(policy.name, kind, reason)


def _switch_off(policy: Policy, state: PolicyState, now: dt.datetime, actor: str, reason: str,
                values: dict[str, Any], cooldown: bool = True) -> Transition:
    state.active = False
    state.deactivated_at = now
    state.true_since = state.clear_since = None
    if cooldown:
        state.cooldown_until = now + dt.timedelta(seconds=policy.cooldown_seconds)
    dry = policy.mode == Policy.Mode.DRY_RUN
    if not dry:
        do_clear_action(policy.action_name)
    kind = AuditEvent.Kind.WOULD_DEACTIVATE if dry else AuditEvent.Kind.DEACTIVATED
    event = AuditEvent.objects.create(at=now, kind=kind, policy=policy, subject=policy.name, actor=actor,
                                      reason=reason, values=values)
    if not dry:
        enqueue(event, policy.notify_emails, policy.notify_webhooks)
    point("governor.switching")  # tests: die with the switch recorded and the policy's state not yet saved
    return Transition(policy.name, kind, reason)


def _settle_clock(policy: Policy, state: PolicyState, now: dt.datetime) -> None:
    """Keep the windows sane after the wall clock moved back (NTP stepping it, a VM restored, an operator).

    The windows are stored instants, not monotonic readings, because they must survive a restart of the
    governor (or a second governor taking over). An instant a window is measured from that lies after `now`
    would make it count negative time: a hold never reached and a minimum active time never served, for as long
    as the clock went back (an hour: an action stuck on for an hour). Such a window starts again at `now`, and
    a cooldown ends at most its own length after `now`: after a backward jump a window waits at most its own
    length again, never the jump. (A forward jump looks like time passing, as it would for a governor that was
    stopped meanwhile: the windows end early.)
    """
    if state.true_since is not None and state.true_since > now:
        state.true_since = now
    if state.clear_since is not None and state.clear_since > now:
        state.clear_since = now
    if state.activated_at is not None and state.activated_at > now:
        state.activated_at = now
    latest = now + dt.timedelta(seconds=policy.cooldown_seconds)
    if state.cooldown_until is not None and state.cooldown_until > latest:
        state.cooldown_until = latest


def evaluate_policy(policy: Policy, now: dt.datetime) -> Transition | None:
    """One step of one policy's state machine; the caller holds a transaction."""
    state, _ = PolicyState.objects.select_for_update().get_or_create(policy=policy)
    state.evaluated_at = now
    _settle_clock(policy, state, now)
    try:
        condition = parsed(policy.condition)
        clear = parsed(policy.clear_condition) if policy.clear_condition.strip() else None
        wanted = expr.signals(condition) + [s for s in (expr.signals(clear) if clear else []) if s]
        values = signal_values(dict.fromkeys(wanted), now)
    except (expr.ExprError, LookupError) as e:
        message = f"{type(e).__name__}: {e}"[:300]
        if state.error != message:
            AuditEvent.objects.create(at=now, kind=AuditEvent.Kind.ERROR, policy=policy, subject=policy.name,
                                      actor=ACTOR, reason=message)
        state.error = message
        state.save()
        return None
    state.error = ""
    holds = expr.evaluate(condition, values)
    clears = expr.evaluate(clear, values) if clear is not None else not holds
    shown = _values_json(values)
    state.values = {"signals": shown, "condition": holds, "clear": clears}
    transition = None
    override = Override.current(policy, now)
    if override is not None:
        if override.force_on and not state.active:
            transition = _switch_on(policy, state, now, override.created_by,
                                    f"switched on by hand: {override.reason}", {"signals": shown})
        elif not override.force_on and state.active:
            transition = _switch_off(policy, state, now, override.created_by,
                                     f"switched off by hand: {override.reason}", {"signals": shown}, cooldown=False)
    elif not state.active:
        state.clear_since = None
        if holds and _in_schedule(policy, now):
            state.true_since = state.true_since or now
            held = (now - state.true_since).total_seconds()
            cooling = state.cooldown_until is not None and now < state.cooldown_until
            if held >= policy.hold_seconds and not cooling:
                transition = _switch_on(
                    policy, state, now, ACTOR,
                    f"{policy.condition} held for {held:.0f}s (hold {policy.hold_seconds}s)", {"signals": shown},
                )
        else:
            state.true_since = None
    else:
        state.true_since = None
        active_for = (now - state.activated_at).total_seconds() if state.activated_at else 1e9
        if not _in_schedule(policy, now):
            transition = _switch_off(policy, state, now, ACTOR, "outside the policy's schedule", {"signals": shown})
        elif clears:
            state.clear_since = state.clear_since or now
            cleared = (now - state.clear_since).total_seconds()
            if cleared >= policy.clear_seconds and active_for >= policy.min_active_seconds:
                what = policy.clear_condition or f"not ({policy.condition})"
                transition = _switch_off(
                    policy, state, now, ACTOR,
                    f"{what} held for {cleared:.0f}s after {active_for:.0f}s active", {"signals": shown},
                )
        else:
            state.clear_since = None
    state.save()
    return transition


def _end_expired_overrides(now: dt.datetime) -> None:
    for override in Override.objects.filter(expires_at__lte=now, ended_at__isnull=True).select_related("policy"):
        override.ended_at = override.expires_at
        override.save(update_fields=["ended_at"])
        AuditEvent.objects.create(at=now, kind=AuditEvent.Kind.OVERRIDE_ENDED, policy=override.policy,
                                  subject=override.policy.name, actor=ACTOR,
                                  reason=f"override by {override.created_by} expired: {override.reason}")


def _retire_orphans(now: dt.datetime) -> list[Transition]:
    """Switch off policy actions whose policy was disabled, deleted or put in dry-run while active."""
    out = []
    policies = {p.action_name: p for p in Policy.objects.all()}
    for action in GatewayAction.objects.filter(active=True, name__startswith="policy-"):
        policy = policies.get(action.name)
        if policy is None or not policy.enabled or policy.mode != Policy.Mode.ENFORCE:
            do_clear_action(action.name)
            why = "deleted" if policy is None else "disabled" if not policy.enabled else "in dry run"
            AuditEvent.objects.create(at=now, kind=AuditEvent.Kind.DEACTIVATED, policy=policy,
                                      subject=policy.name if policy else action.name, actor=ACTOR,
                                      reason=f"the policy is {why}: its action is switched off")
            out.append(Transition(policy.name if policy else action.name, AuditEvent.Kind.DEACTIVATED, why))
    for state in PolicyState.objects.filter(active=True, policy__enabled=False).select_related("policy"):
        state.active, state.deactivated_at = False, now
        state.true_since = state.clear_since = None
        state.save()
    return out


def evaluate_policies(now: dt.datetime | None = None) -> list[Transition]:
    """Evaluate every enabled policy once; returns the switches made."""
    now = now or timezone.now()
    transitions: list[Transition] = []
    with transaction.atomic():
        _end_expired_overrides(now)
        transitions += _retire_orphans(now)
    for policy in Policy.objects.filter(enabled=True).select_related("schedule").order_by("priority", "name"):
        with transaction.atomic():
            t = evaluate_policy(policy, now)
        if t is not None:
            transitions.append(t)
    return transitions


def set_override(policy: Policy, force_on: bool, reason: str, until: dt.datetime, user: str) -> Override:
    """Switch a policy's action on or off by hand until `until`; applied at once."""
    if not reason.strip():
        raise ValueError("an override needs a reason")
    now = timezone.now()
    if until <= now:
        raise ValueError("an override must expire in the future")
    with transaction.atomic():
        Override.objects.filter(policy=policy, ended_at__isnull=True, expires_at__gt=now).update(ended_at=now)
        override = Override.objects.create(policy=policy, force_on=force_on, reason=reason, expires_at=until,
                                           created_by=user)
        AuditEvent.objects.create(at=now, kind=AuditEvent.Kind.OVERRIDE, policy=policy, subject=policy.name,
                                  actor=user, reason=f"forced {'on' if force_on else 'off'} until "
                                  f"{until.isoformat(timespec='seconds')}: {reason}")
        evaluate_policy(policy, now)
    return override


def end_override(policy: Policy, user: str) -> bool:
    now = timezone.now()
    with transaction.atomic():
        n = Override.objects.filter(policy=policy, ended_at__isnull=True, expires_at__gt=now).update(ended_at=now)
        if n:
            AuditEvent.objects.create(at=now, kind=AuditEvent.Kind.OVERRIDE_ENDED, policy=policy,
                                      subject=policy.name, actor=user, reason="override cancelled by hand")
            evaluate_policy(policy, now)  # back to what the condition says, now rather than at the next pass
    return bool(n)


# -- error-budget burn alerts -------------------------------------------------------------------------------------


def evaluate_budgets(now: dt.datetime | None = None) -> list[Transition]:
    """Open or close multiwindow burn-rate alerts for every run-time objective."""
    now = now or timezone.now()
    out = []
    emails = [e for e in getattr(settings, "ACCORD_ALERT_EMAILS", []) if e]
    hooks = list(getattr(settings, "ACCORD_ALERT_WEBHOOKS", []))
    for objective in runtime_objectives():
        _start, _end, days = objective_window(objective, now)
        for rule in burn_rules(days):
            severity, rate, long_s, short_s = rule
            label = rule_label(rule)
            long_rate = burn_rate(objective, now, long_s)
            short_rate = burn_rate(objective, now, short_s) if long_rate is not None and long_rate > rate else None
            # a zero budget (a 100 % objective) burns at infinity on any bad event, so it fires every rule whose
            # short window holds one
            firing = short_rate is not None and short_rate > rate
            values = {"long": json_number(long_rate), "short": json_number(short_rate), "threshold": rate}
            subject = f"{objective.agreement.name}/{objective.name}"
            with transaction.atomic():
                open_alert = BurnAlert.objects.select_for_update().filter(objective=objective, rule=label,
                                                                          closed_at__isnull=True).first()
                if firing and open_alert is None:
                    BurnAlert.objects.create(objective=objective, rule=label, severity=severity, opened_at=now,
                                             values=values)
                    status = budget_status(objective, now)
                    left = ("a zero budget (any bad event spends it)" if status.allowed == 0
                            else f"{share(status.remaining or 0, 1)} of the budget left")
                    reason = (f"{severity}: error budget burning at {times(long_rate)} over "
                              f"{label.split()[-1].split('/')[0]} and {times(short_rate)} over the short window "
                              f"(threshold {times(rate)}); {left}")
                    event = AuditEvent.objects.create(at=now, kind=AuditEvent.Kind.BURN_ALERT, subject=subject,
                                                      actor=ACTOR, reason=reason, values={**values, "rule": label})
                    enqueue(event, emails, hooks)
                    out.append(Transition(subject, AuditEvent.Kind.BURN_ALERT, reason))
                elif not firing and open_alert is not None:
                    open_alert.closed_at = now
                    open_alert.save(update_fields=["closed_at"])
                    AuditEvent.objects.create(at=now, kind=AuditEvent.Kind.BURN_RESOLVED, subject=subject,
                                              actor=ACTOR, reason=f"{label}: the burn rate is back under {rate:g}x",
                                              values={**values, "rule": label})
                    out.append(Transition(subject, AuditEvent.Kind.BURN_RESOLVED, label))
    return out
