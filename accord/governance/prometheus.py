"""Prometheus recording rules and multiwindow burn-rate alerts of the agreements' run-time objectives, per customer,
in the shape Sloth generates (docs/prometheus.md).

Over the gateway's per-account series (`accord.gateway.exposition`): each objective gets a group of SLI recording
rules `slo:sli_error:ratio_rate<window>` (one series per account, label `accord_account`), a group of metadata
rules (`slo:objective:ratio`, `slo:error_budget:ratio`, `slo:time_period:days`, `slo:current_burn_rate:ratio`,
`slo:period_burn_rate:ratio`, `slo:period_error_budget_remaining:ratio`, `accord_slo_info`) and a group of alerts,
one per severity of `accord.agreements.burn.burn_rules` (the table the governor evaluates): a severity fires when
any of its rules has both windows burning faster than its factor, as the governor opens an alert when the long and
the short window are both above (strictly) the rule's rate.

Events are counted as the governor counts them (`indicators.objective_events`): rate-limited requests are not
valid; requests the client abandoned are bad when they had waited past the abandon threshold, else not valid;
availability and error rate count as bad every 5xx and every answer broken off (bad_gateway, timeout); latency
counts as bad every valid request slower than the target (`_count - _bucket{le=target}`, the same sketch buckets
as Accord's own count). Support objectives (first response, next response, resolution) are measured by the desk,
not by the gateway: they are skipped and listed in the file's header.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import yaml
from django.db.models import QuerySet

from accord.agreements.burn import burn_rules
from accord.agreements.models import Objective
from accord.gateway.exposition import DURATION, REQUESTS, le_label
from accord.gateway.snapshot import account_key

from .indicators import (
    ABANDONED,
    BROKEN_OFF_OUTCOMES,
    NOT_VALID_OUTCOMES,
    RUNTIME_KINDS,
    abandon_threshold_ms,
    allowed_bad,
)

# The windows Sloth records for every SLO (its default 30-day alerting uses them); the burn rules' own windows and
# the objective's period are added to them.
SLOTH_WINDOWS = (300, 1800, 3600, 7200, 6 * 3600, 86400, 3 * 86400)
CALENDAR_MONTH_DAYS = 30  # Prometheus rules are static: a calendar month is taken as 30 days (docs/prometheus.md)


def duration(seconds: float) -> str:
    """Seconds as a Prometheus duration: 300 -> "5m", 5400 -> "1h30m", 259200 -> "3d", 0.5 -> "500ms"."""
    ms = round(seconds * 1000)
    if ms <= 0:
        raise ValueError("a window lasts more than 0 ms")
    out = ""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        if ms >= size:
            out += f"{ms // size}{unit}"
            ms %= size
    return out


def _number(value: float | Decimal) -> str:
    """A number without float noise or exponent: Decimal("99.9000") -> "99.9", 30.0 -> "30"."""
    return format((value if isinstance(value, Decimal) else Decimal(str(value))).normalize(), "f")


def _regex(values: Iterable[str]) -> str:
    return "|".join(sorted(values))


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _selector(base: dict[str, str], **extra: str) -> str:
    parts = [f'{k}="{_quoted(v)}"' for k, v in base.items()]  # an external id may hold any character
    for key, value in extra.items():
        name, op = (key[:-4], "!~") if key.endswith("_nre") else (key[:-3], "=~") if key.endswith("_re") else (key, "=")
        parts.append(f'{name}{op}"{value}"')
    return "{" + ",".join(parts) + "}"


@dataclass
class Plan:
    """One objective's rules: its id and labels, the PromQL of its SLI, its windows and its budget."""

    objective: Objective
    id: str
    labels: dict[str, str]
    selector: dict[str, str]
    period_days: float
    budget: float
    windows: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def error_ratio(self, window: str) -> str:
        """bad / valid over a window, one series per account (label `accord_account`)."""
        o = self.objective
        sel = self.selector
        if o.kind == Objective.Kind.LATENCY:
            le = le_label(o.target)
            excluded = _regex(NOT_VALID_OUTCOMES)
            bad = (f"rate({DURATION}_count{_selector(sel, outcome_nre=excluded)}[{window}])\n"
                   f"      - ignoring (le)\n"
                   f"      rate({DURATION}_bucket{_selector(sel, outcome_nre=excluded, le=le)}[{window}])")
            good = (f"rate({DURATION}_bucket"
                    f"{_selector(sel, outcome_nre=_regex({*NOT_VALID_OUTCOMES, ABANDONED}), le=le)}[{window}])")
            ratio = (f"  sum by (account) (\n      {bad}\n  )\n  /\n  (\n"
                     f"    sum by (account) (\n      {bad}\n    )\n    +\n"
                     f"    (sum by (account) ({good}) or 0 * sum by (account) ({DURATION}_count{_selector(sel)}))\n"
                     f"  )")
        else:
            late = (f"(rate({DURATION}_count{_selector(sel, outcome=ABANDONED)}[{window}])"
                    f" - ignoring (le) "
                    f"rate({DURATION}_bucket{_selector(sel, outcome=ABANDONED, le=le_label(self.abandon_ms))}"
                    f"[{window}]))")
            not_bad_by_status = _regex({*NOT_VALID_OUTCOMES, ABANDONED, *BROKEN_OFF_OUTCOMES})
            bad = (f"rate({REQUESTS}{_selector(sel, code_class='5xx', outcome_nre=not_bad_by_status)}[{window}])\n"
                   f"      or\n      rate({REQUESTS}{_selector(sel, outcome_re=_regex(BROKEN_OFF_OUTCOMES))}[{window}])\n"
                   f"      or\n      {late}")
            valid = (f"rate({REQUESTS}{_selector(sel, outcome_nre=_regex({*NOT_VALID_OUTCOMES, ABANDONED}))}"
                     f"[{window}])\n      or\n      {late}")
            ratio = (f"  (\n    sum by (account) (\n      {bad}\n    )\n    or\n"
                     f"    0 * sum by (account) (\n      {valid}\n    )\n  )\n  /\n"
                     f"  sum by (account) (\n      {valid}\n  )")
        return f'label_replace(\n{ratio},\n  "accord_account", "$1", "account", "(.*)"\n)\n'

    @property
    def abandon_ms(self) -> float:
        return abandon_threshold_ms(self.objective)

    def match(self) -> str:
        return f'accord_id="{self.id}"'


def plan(objective: Objective) -> Plan:
    """What the rules of one run-time objective are made of."""
    agreement = objective.agreement
    selector: dict[str, str] = {}
    labels = {"accord_id": f"{agreement.name}-{objective.name}", "accord_agreement": agreement.name,
              "accord_objective": objective.name, "accord_kind": objective.kind}
    if agreement.tier_id and agreement.tier:
        selector["tier"] = labels["accord_tier"] = agreement.tier.name
    if agreement.account_id and agreement.account:
        selector["account"] = account_key(agreement.account.external_id, agreement.account.pk)
        if agreement.account.tier_id and agreement.account.tier:
            labels["accord_tier"] = agreement.account.tier.name
    if objective.service_id and objective.service:
        selector["service"] = labels["service"] = objective.service.name
    if objective.operation_id and objective.operation:
        selector["operation"] = labels["operation"] = objective.operation.name
    notes = []
    if objective.window == Objective.Window.ROLLING:
        days = float(objective.window_days or 30)
    else:
        days = float(CALENDAR_MONTH_DAYS)
        notes.append("calendar month taken as 30 days: the governor scales its burn windows by the month's days")
    windows = {float(w) for w in SLOTH_WINDOWS} | {days * 86400}
    for _sev, _rate, long_s, short_s in burn_rules(days):
        windows |= {long_s, short_s}
    return Plan(objective, labels["accord_id"], labels, selector, days, float(allowed_bad(objective)),
                sorted(windows), notes)


def objectives(agreements: Iterable[str] = ()) -> tuple[list[Objective], list[Objective]]:
    """(run-time objectives, skipped support objectives) of the named agreements (all without names)."""
    qs: QuerySet[Objective] = Objective.objects.select_related(
        "agreement__tier", "agreement__account__tier", "agreement__calendar", "service", "operation"
    ).order_by("agreement__name", "name")
    names = list(agreements)
    if names:
        qs = qs.filter(agreement__name__in=names)
    everything = list(qs)
    return [o for o in everything if o.kind in RUNTIME_KINDS], [o for o in everything if o.kind not in RUNTIME_KINDS]


class _Block(str):
    """A string YAML writes as a literal block (PromQL over several lines, as Sloth writes it)."""
    __slots__ = ()


def _block(text: str) -> Any:
    return _Block(text)


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # each rule spells its labels out, as Sloth writes them


_Dumper.add_representer(_Block, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", str(s), style="|"))


def groups(p: Plan) -> list[dict[str, Any]]:
    """The three rule groups of one objective: SLI recordings, metadata recordings, alerts."""
    o = p.objective
    by_window = {w: duration(w) for w in p.windows}
    period = duration(p.period_days * 86400)
    sli_rules: list[dict[str, Any]] = []
    for seconds in p.windows:
        window = by_window[seconds]
        if window == period:
            continue
        sli_rules.append({"record": f"slo:sli_error:ratio_rate{window}", "expr": _block(p.error_ratio(window)),
                          "labels": {**p.labels, "accord_window": window}})
    short = by_window[min(p.windows)]
    sli_rules.append({
        "record": f"slo:sli_error:ratio_rate{period}",
        "expr": _block(f"sum_over_time(slo:sli_error:ratio_rate{short}{{{p.match()}}}[{period}])\n"
                       f"/ ignoring (accord_window)\n"
                       f"count_over_time(slo:sli_error:ratio_rate{short}{{{p.match()}}}[{period}])\n"),
        "labels": {**p.labels, "accord_window": period}})
    budget = repr(p.budget)
    calendar = o.agreement.calendar
    meta_labels = dict(p.labels)
    meta = [
        {"record": "slo:objective:ratio", "expr": f"vector(1 - {budget})", "labels": meta_labels},
        {"record": "slo:error_budget:ratio", "expr": f"vector({budget})", "labels": meta_labels},
        {"record": "slo:time_period:days", "expr": f"vector({_number(p.period_days)})", "labels": meta_labels},
        {"record": "slo:current_burn_rate:ratio",
         "expr": _block(f"slo:sli_error:ratio_rate{short}{{{p.match()}}}\n/ on (accord_id) group_left\n"
                        f"slo:error_budget:ratio{{{p.match()}}}\n"), "labels": meta_labels},
        {"record": "slo:period_burn_rate:ratio",
         "expr": _block(f"slo:sli_error:ratio_rate{period}{{{p.match()}}}\n/ on (accord_id) group_left\n"
                        f"slo:error_budget:ratio{{{p.match()}}}\n"), "labels": meta_labels},
        {"record": "slo:period_error_budget_remaining:ratio",
         "expr": f"1 - slo:period_burn_rate:ratio{{{p.match()}}}", "labels": meta_labels},
        {"record": "accord_slo_info", "expr": "vector(1)",
         "labels": {**meta_labels, "accord_target": _number(o.target),
                    **({"accord_percentile": _number(o.percentile or Decimal(95))} if o.kind == Objective.Kind.LATENCY else {}),
                    "accord_window_kind": o.window, "accord_calendar": calendar.name}},
    ]
    alerts = []
    severities: dict[str, list[tuple[float, float, float]]] = {}
    for sev, rate, long_s, short_s in burn_rules(p.period_days):
        severities.setdefault(sev, []).append((rate, long_s, short_s))
    for sev, rules in severities.items():
        parts = []
        for rate, long_s, short_s in rules:
            threshold = f"({_number(rate)} * {budget})"
            parts.append(f"(\n    (slo:sli_error:ratio_rate{by_window[short_s]}{{{p.match()}}} > {threshold})\n"
                         f"    and ignoring (accord_window)\n"
                         f"    (slo:sli_error:ratio_rate{by_window[long_s]}{{{p.match()}}} > {threshold})\n)")
        rule_text = ", ".join(f"{_number(r)}x over {by_window[ls]} and {by_window[ss]}" for r, ls, ss in rules)
        alerts.append({
            "alert": "AccordErrorBudgetBurn",
            # without the window label: one alert per account and severity, whichever of its rules fires
            "expr": _block("max without (accord_window) (\n" + "\nor ignoring (accord_window)\n".join(parts) + "\n)\n"),
            "labels": {**p.labels, "severity": sev, "accord_severity": sev},  # the objective's: no two rules alike
            "annotations": {
                "summary": f"{o.agreement.name}/{o.name} ({o.target_label()}, {o.window_label()}): the error "
                           f"budget of account {{{{ $labels.accord_account }}}} is burning too fast ({rule_text})",
                "title": f"({sev}) {{{{ $labels.accord_agreement }}}}/{{{{ $labels.accord_objective }}}} for "
                         f"{{{{ $labels.accord_account }}}}: error budget burn rate is too fast",
                "accord_calendar": (f"Prometheus evaluates 24x7, as the governor does for run-time objectives; the "
                                    f"agreement's calendar '{calendar.name}' applies to its support objectives"),
                **({"accord_note": "; ".join(p.notes)} if p.notes else {}),
            },
        })
    name = p.id
    return [{"name": f"accord-slo-sli-recordings-{name}", "rules": sli_rules},
            {"name": f"accord-slo-meta-recordings-{name}", "rules": meta},
            {"name": f"accord-slo-alerts-{name}", "rules": alerts}]


@dataclass
class Rules:
    """The generated file and what it holds."""

    text: str
    objectives: int
    skipped: list[str]


def rules(agreements: Iterable[str] = ()) -> Rules:
    """The Prometheus rules file of the named agreements' run-time objectives (every agreement's without names)."""
    runtime, support = objectives(agreements)
    skipped = [f"{o.agreement.name}/{o.name} ({o.kind})" for o in support]
    doc = {"groups": [g for o in runtime for g in groups(plan(o))]}
    header = ["# Generated by `accord prometheus rules` (Accord): Sloth-style SLO recording rules and multiwindow",
              "# burn-rate alerts per agreement, objective and customer, over the gateway's per-account metrics.",
              "# The burn rules are the governor's (ACCORD_BURN_RULES or the default table). Regenerate; do not edit.",
              "# Prometheus evaluates every rule 24x7, as Accord's governor does for run-time objectives.",
              f"# {len(runtime)} run-time objective(s). Skipped: {len(skipped)} support objective(s), measured by the "
              "desk on business time, not by the gateway" + (":" if skipped else ".")]
    header += [f"#   {s}" for s in skipped]
    body = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)
    return Rules("\n".join(header) + "\n" + body, len(runtime), skipped)
