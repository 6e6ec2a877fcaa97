"""The governance page: policies and their state with a manual override each, the gateway actions in force,
error budgets, the audit timeline, and live charts refreshed from `live.json` every two seconds."""

from __future__ import annotations

import datetime as dt
import math
import threading
from collections import defaultdict
from typing import Any

from django import forms
from django.contrib import messages
from django.db.models import OuterRef, Q, Subquery
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.views.decorators.http import require_POST

from accord.gateway.measure import Sketch
from accord.gateway.models import GatewayAction, LivePool, LiveTraffic
from accord.lib import units
from accord.lib.middleware import error_response
from accord.lib.views import needs, staff_required

from . import charts, engine
from .api import MAX_OVERRIDE_MINUTES, current_override, live_overrides, policy_status, state_of
from .indicators import BudgetStatus, budget_status, runtime_objectives, slot_busy_ms
from .models import AuditEvent, Policy

LIVE_SECONDS = 15 * 60
BUCKET_SECONDS = 10
# Live rows are written within a second or two or never (a failed live write is dropped), so a bucket that
# ended this long ago no longer changes and its percentiles are kept instead of re-read every two seconds.
SETTLE_SECONDS = 15
TIMELINE_HOURS = 6
EVENTS_SHOWN = 50
STATUS_LABELS = {"active": "active", "idle": "idle", "dry_run_active": "dry run: would be active",
                 "dry_run_idle": "dry run: idle", "disabled": "disabled"}
SWITCH_ON: dict[str, bool] = {AuditEvent.Kind.ACTIVATED: False, AuditEvent.Kind.WOULD_ACTIVATE: True}
SWITCH_OFF = {AuditEvent.Kind.DEACTIVATED, AuditEvent.Kind.WOULD_DEACTIVATE}
MARKED = {AuditEvent.Kind.OVERRIDE, AuditEvent.Kind.OVERRIDE_ENDED, AuditEvent.Kind.ERROR}


class OverrideForm(forms.Form):
    on = forms.TypedChoiceField(choices=[("on", "Force on"), ("off", "Force off")], coerce=lambda v: v == "on",
                                initial="on", label="Switch")
    reason = forms.CharField(max_length=300, label="Reason",
                             error_messages={"required": "Give a reason: it goes into the audit trail."})
    minutes = forms.IntegerField(min_value=1, max_value=MAX_OVERRIDE_MINUTES, initial=30, label="Minutes")


def _form(policy: Policy, data: Any = None) -> OverrideForm:
    return OverrideForm(data, auto_id=f"override-{policy.name}-%s")


# -- live series ------------------------------------------------------------------------------------------------


def _epoch(at: dt.datetime) -> int:
    return int(at.timestamp())


def _when(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC)


def live_window(now: dt.datetime) -> tuple[int, int]:
    """The live charts' buckets: [start, end) in epoch seconds, the last bucket holding now."""
    end = _epoch(now) // BUCKET_SECONDS * BUCKET_SECONDS + BUCKET_SECONDS
    return end - LIVE_SECONDS, end


_settled: dict[int, tuple[tuple[int, int, int], dict[str, float | None]]] = {}
_settled_lock = threading.Lock()


def latency_by_tier(now: dt.datetime) -> dict[str, list[tuple[float, float | None]]]:
    """p95 latency per tier per bucket over the last 15 minutes, from the gateways' live rows.

    Merging sketches is the costly part, so a settled bucket's percentiles are kept in this process, keyed by a
    fingerprint of its rows (how many, the sum of their ids and of their counts): a bucket is re-read when its
    rows change (late rows, pruning) and every refresh reads only the last few seconds' sketches.
    """
    start, end = live_window(now)
    keys: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
    for pk, at, count in LiveTraffic.objects.filter(at__gte=_when(start), at__lte=now).values_list(
            "id", "at", "count"):
        acc = keys[_epoch(at) // BUCKET_SECONDS * BUCKET_SECONDS]
        acc[0], acc[1], acc[2] = acc[0] + 1, acc[1] + pk, acc[2] + count
    fingerprints = {b: (acc[0], acc[1], acc[2]) for b, acc in keys.items()}
    found: dict[int, dict[str, float | None]] = {}
    with _settled_lock:
        for b, fp in fingerprints.items():
            cached = _settled.get(b)
            if cached is not None and cached[0] == fp:
                found[b] = cached[1]
    stale = sorted(set(fingerprints) - set(found))
    if stale:
        wanted = set(stale)
        sketches: dict[int, dict[str, Sketch]] = defaultdict(dict)
        rows = LiveTraffic.objects.filter(at__gte=_when(stale[0]), at__lte=now).values_list(
            "at", "tier", "latency_sketch")
        for at, tier, blob in rows:
            b = _epoch(at) // BUCKET_SECONDS * BUCKET_SECONDS
            if b in wanted:
                try:
                    sketches[b].setdefault(tier, Sketch()).merge(Sketch.decode(blob))
                except ValueError:
                    continue
        settled_before = _epoch(now) - SETTLE_SECONDS
        with _settled_lock:
            for b in stale:
                found[b] = {tier: s.quantile(0.95) for tier, s in sketches[b].items()}
                if b + BUCKET_SECONDS <= settled_before:
                    _settled[b] = (fingerprints[b], found[b])
            for b in [b for b in _settled if b < start]:
                del _settled[b]
    tiers = sorted({tier for values in found.values() for tier in values})
    buckets = range(start, end, BUCKET_SECONDS)
    return {tier or "no tier": [(b + BUCKET_SECONDS / 2, found.get(b, {}).get(tier)) for b in buckets]
            for tier in tiers}


def utilisation_by_pool(now: dt.datetime) -> dict[str, list[tuple[float, float | None]]]:
    """Busy time over capacity time per pool per bucket over the last 15 minutes, summed over workers: the
    policies' `pool(...).utilisation` over each bucket (the same rows, the same `slot_busy_ms`)."""
    start, end = live_window(now)
    sums: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0.0]))
    for at, service, pool, busy, interval, capacity in LivePool.objects.filter(
            at__gte=_when(start), at__lte=now).values_list("at", "service", "pool", "busy_ms", "interval_ms",
                                                           "capacity"):
        acc = sums[f"{service}/{pool}"][_epoch(at) // BUCKET_SECONDS * BUCKET_SECONDS]
        acc[0] += slot_busy_ms(busy, interval, capacity)
        acc[1] += interval * capacity
    buckets = range(start, end, BUCKET_SECONDS)
    return {name: [(b + BUCKET_SECONDS / 2, (per[b][0] / per[b][1]) if b in per and per[b][1] else None)
                   for b in buckets]
            for name, per in sorted(sums.items())}


def live_charts(now: dt.datetime) -> dict[str, Any]:
    start, end = live_window(now)
    latency = latency_by_tier(now)
    utilisation = utilisation_by_pool(now)
    return {
        "latency": latency,
        "utilisation": utilisation,
        "latency_svg": charts.line_chart(
            "latency-chart", "p95 latency per tier, last 15 minutes",
            [charts.Series(name, points) for name, points in latency.items()], start, end, fmt=charts.fmt_ms,
            empty="No traffic through the gateways in the last 15 minutes.",
        ),
        "utilisation_svg": charts.line_chart(
            "utilisation-chart", "Utilisation per pool, last 15 minutes",
            [charts.Series(name, points) for name, points in utilisation.items()], start, end,
            fmt=charts.fmt_share, y_min_top=1.0, reference=1.0,
            empty="No pool measurements in the last 15 minutes.",
        ),
        "start": _when(start),
        "end": _when(end),
    }



def live_json(request: HttpRequest) -> HttpResponse:
    """The live charts as JSON (series and their SVG), for the page's refresh; staff only."""
    user = request.user
    if not (user.is_authenticated and user.is_active and user.is_staff):
        return error_response(403, "permission_denied", "Staff only: log in as staff to see live indicators.")
    if request.method != "GET":
        return error_response(405, "method_not_allowed", f"Method {request.method} is not allowed.")
    now = timezone.now()
    data = live_charts(now)
    return JsonResponse({
        "at": now.isoformat(),
        "at_label": timezone.localtime(now).strftime("%H:%M:%S"),
        "start": data["start"].isoformat(),
        "end": data["end"].isoformat(),
        "bucket_seconds": BUCKET_SECONDS,
        "latency_p95_ms": data["latency"],
        "utilisation": data["utilisation"],
        "latency_svg": str(data["latency_svg"]),
        "utilisation_svg": str(data["utilisation_svg"]),
        # Each policy's status: the page announces a policy that switched (a live region of changes, not a clock).
        "policies": [{"name": p.name, "status": status, "status_label": STATUS_LABELS[status]}
                     for p in Policy.objects.order_by("name") for status in [policy_status(p, state_of(p))]],
    }, headers={"Cache-Control": "no-store"})


# -- the page ---------------------------------------------------------------------------------------------------


def _fmt_value(value: Any) -> str:
    if value is None:
        return "no data"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value in ("Infinity", "-Infinity"):  # a spent zero budget, as JSON carries it (units.json_number)
        return units.number(float(value))
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _values(values: Any) -> list[tuple[str, str]]:
    """An evaluation's or event's values as (name, shown value) pairs: the signals first."""
    if not isinstance(values, dict):
        return []
    out = []
    signals = values.get("signals")
    if isinstance(signals, dict):
        out += [(str(k), _fmt_value(v)) for k, v in signals.items()]
    out += [(str(k), _fmt_value(v)) for k, v in values.items() if k != "signals" and not isinstance(v, dict)]
    return out


def _scope(obj: Policy | GatewayAction) -> str:
    parts = [f"{name} {', '.join(getattr(obj, name))}" for name in ("tiers", "accounts", "services", "operations")
             if getattr(obj, name)]
    return "; ".join(parts) or "everyone"


def _policy_rows(policies: list[Policy], forms_given: dict[str, OverrideForm]) -> list[dict[str, Any]]:
    rows = []
    for p in policies:
        state = state_of(p)
        status = policy_status(p, state)
        values = state.values if state else {}
        rows.append({
            "policy": p,
            "status": status,
            "status_label": STATUS_LABELS[status],
            "since": (state.activated_at if state.active else state.deactivated_at) if state else None,
            "evaluated_at": state.evaluated_at if state else None,
            "signals": _values({"signals": values.get("signals", {})}) if isinstance(values, dict) else [],
            "condition_holds": values.get("condition") if isinstance(values, dict) else None,
            "error": state.error if state else "",
            "override": current_override(p),
            "scope": _scope(p),
            "form": forms_given.get(p.name) or _form(p),
        })
    return rows


def timeline_lanes(policies: list[Policy], start: dt.datetime, now: dt.datetime) -> list[charts.Lane]:
    """Each policy's active periods (and dry-run would-be-active periods) in [start, now], from the audit."""
    ids = [p.pk for p in policies]
    by_action = {p.action_name: p.pk for p in policies}
    switch_kinds = [*SWITCH_ON, *SWITCH_OFF]
    before = dict(
        Policy.objects.filter(pk__in=ids).annotate(last=Subquery(
            AuditEvent.objects.filter(policy=OuterRef("pk"), kind__in=switch_kinds, at__lt=start)
            .order_by("-at", "-id").values("kind")[:1]
        )).values_list("pk", "last")
    )
    lanes = {p.pk: charts.Lane(p.name) for p in policies}
    open_since: dict[int, tuple[dt.datetime, bool]] = {
        pk: (start, SWITCH_ON[kind]) for pk, kind in before.items() if kind in SWITCH_ON
    }
    events = AuditEvent.objects.filter(at__gte=start, at__lte=now).filter(
        Q(policy_id__in=ids) | Q(policy__isnull=True, subject__in=list(by_action))
    ).order_by("at", "id")
    for e in events:
        pk = e.policy_id or by_action.get(e.subject)
        if pk is None:
            continue
        if e.kind in SWITCH_ON:
            open_since.setdefault(pk, (e.at, SWITCH_ON[e.kind]))
        elif e.kind in SWITCH_OFF:
            if pk in open_since:
                began, dry = open_since.pop(pk)
                lanes[pk].periods.append(charts.Period(began, e.at, dry))
        elif e.kind in MARKED:
            title = f"{timezone.localtime(e.at):%H:%M:%S} {e.get_kind_display()} by {e.actor}: {e.reason}"
            lanes[pk].marks.append(charts.Mark(e.at, e.kind, title[:300]))
    states = {p.pk: state_of(p) for p in policies}
    for pk, (began, dry) in open_since.items():
        state = states.get(pk)
        if state is not None and not state.active and state.deactivated_at is not None:
            ended = max(began, state.deactivated_at)  # switched off without an event (e.g. disabled)
        else:
            ended = now
        lanes[pk].periods.append(charts.Period(began, ended, dry))
    return [lanes[p.pk] for p in policies]


def _budget_cell(s: BudgetStatus) -> SafeString:
    """The bar of budget left, and what the bar cannot say: a zero budget spent (infinitely, by any bad event),
    and a window whose every request was excluded."""
    if s.consumed is not None and math.isinf(s.consumed):
        label = f"{units.INFINITY} used: a zero budget, {s.bad:,} bad"
    elif s.valid == 0 and s.requests:
        label = f"no valid events ({s.excluded:,} excluded)"
    else:
        return charts.budget_bar(s.remaining)
    level = charts.budget_level(s.remaining)
    return format_html(
        '<svg class="budget-bar {}" viewBox="0 0 160 16" width="160" height="16" role="img" aria-label="{}" '
        'data-remaining="{}"><title>error budget: {}</title><rect class="track" x="1" y="1" width="158" '
        'height="14" rx="3"></rect></svg><span class="budget-label {}">{}</span>',
        level, f"error budget: {label}", units.json_number(s.remaining) or "", label, level, label,
    )


def _objective_rows(now: dt.datetime, simulated: str = "") -> list[dict[str, Any]]:
    """Each run-time objective's budget; `simulated` "true" or "false" keeps only the scenario's agreements or
    only the real ones."""
    rows = []
    objectives = runtime_objectives().order_by("agreement__name", "name", "id")
    if simulated in ("true", "false"):
        objectives = objectives.filter(agreement__simulated=simulated == "true")
    for o in objectives:
        s = budget_status(o, now)
        rows.append({"objective": o, "status": s, "target": o.target_label(), "sli": s.sli_label(),
                     "window": o.window_label(), "bar": _budget_cell(s), "level": charts.budget_level(s.remaining)})
    return rows


def _render(request: HttpRequest, forms_given: dict[str, OverrideForm] | None = None, failed: str = "",
            status: int = 200) -> HttpResponse:
    now = timezone.now()
    policies = list(Policy.objects.select_related("state", "schedule").prefetch_related(live_overrides())
                    .order_by("priority", "name"))
    start = now - dt.timedelta(hours=TIMELINE_HOURS)
    live = live_charts(now)
    events = AuditEvent.objects.select_related("policy").order_by("-at", "-id")[:EVENTS_SHOWN]
    rows = _policy_rows(policies, forms_given or {})
    counts = {label: sum(r["status"] == status for r in rows) for status, label in STATUS_LABELS.items()}
    context = {
        "policies": rows,
        "summary": " · ".join(f"{n} {label}" for label, n in counts.items() if n),
        "failed": failed,
        "actions": [{"action": a, "scope": _scope(a)} for a in GatewayAction.live().order_by("priority", "name")],
        "objectives": _objective_rows(now, request.GET.get("simulated", "")),
        "simulated": request.GET.get("simulated", ""),
        "timeline": charts.timeline(timeline_lanes(policies, start, now), start, now),
        "timeline_hours": TIMELINE_HOURS,
        "events": [{"event": e, "values": _values(e.values)} for e in events],
        "events_shown": EVENTS_SHOWN,
        "latency_svg": live["latency_svg"],
        "utilisation_svg": live["utilisation_svg"],
        "now": now,
        "max_minutes": MAX_OVERRIDE_MINUTES,
    }
    return render(request, "governance/governance.html", context, status=status)


@staff_required
@needs("governance.view_policy")
def page(request: HttpRequest) -> HttpResponse:
    return _render(request)


@staff_required
@needs("governance.change_policy")
@require_POST
def override(request: HttpRequest, name: str) -> HttpResponse:
    """Force a policy's action on or off; errors re-render the page with the form as it was sent."""
    policy = get_object_or_404(Policy, name=name)
    form = _form(policy, request.POST)
    if form.is_valid():
        d = form.cleaned_data
        until = timezone.now() + dt.timedelta(minutes=d["minutes"])
        if not policy.enabled:
            form.add_error(None, f"{policy.name} is disabled: enable it before overriding it.")
        else:
            try:
                engine.set_override(policy, d["on"], d["reason"], until, request.user.get_username())
            except ValueError as e:
                form.add_error(None, str(e))
            else:
                messages.success(request, f"{policy.name} forced {'on' if d['on'] else 'off'} until "
                                          f"{timezone.localtime(until):%H:%M}: {d['reason']}")
                return redirect(reverse("governance:page") + f"#policy-{policy.name}")
    return _render(request, {policy.name: form}, failed=policy.name, status=400)


@staff_required
@needs("governance.change_policy")
@require_POST
def end_override(request: HttpRequest, name: str) -> HttpResponse:
    policy = get_object_or_404(Policy, name=name)
    if engine.end_override(policy, request.user.get_username()):
        messages.success(request, f"The override of {policy.name} has ended; the governor decides again.")
    else:
        messages.info(request, f"{policy.name} had no override in force.")
    return redirect(reverse("governance:page") + f"#policy-{policy.name}")
