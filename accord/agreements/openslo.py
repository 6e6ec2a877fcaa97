"""OpenSLO v1 (https://github.com/OpenSLO/OpenSLO): the agreements' run-time objectives written as `SLO`s (each
with its `SLI` inline), `Service`s and the governor's burn-rate alerts as `AlertPolicy`s, and read back.

What maps to what (docs/agreements-as-code.md, "OpenSLO"):

- one run-time objective (availability, error rate, latency) is one `SLO`, budgeted by `Occurrences` (Accord
  counts requests); `metadata.name` is `<agreement>-<objective>` made an RFC 1123 label, and the exact names are
  in the annotations `accord/agreement` and `accord/objective`;
- the customer side, which no other SLO tool has, rides in `metadata`: labels `accord-agreement`, `accord-tier`
  or `accord-account`, `accord-kind`; annotations `accord/calendar` (the agreement's business-hours calendar),
  `accord/effective-from`, `accord/effective-to`;
- the indicator reads Accord's own measurements: `metricSource.type: Accord` with `spec` naming the agreement,
  the service and operation the objective is scoped to, and the events (`good`, `bad`, `valid`, or
  `latency_ms`). Availability is a ratio of good to valid events, an error rate a ratio of bad to valid events
  (its `targetPercent` is 100 minus the allowed error rate), a latency objective a threshold metric:
  `op: lte`, `value` the milliseconds, `targetPercent` the percentile;
- the window: a calendar month is `duration: 1M` aligned to the calendar in Accord's time zone; rolling N days
  is `duration: Nd, isRolling: true`;
- the burn-rate alerts are the governor's multiwindow rules (`ACCORD_BURN_RULES`) for the objective's window:
  one `AlertPolicy` per rule with a `burnrate` condition on the long window (the short window, which OpenSLO
  cannot say, is the condition's annotation `accord/short-window`), all notifying `accord-governor`.

Import refuses, with the path of the field, what Accord cannot represent: another data source, time slices,
composite objectives, quarters and years. Alert policies are checked but not applied (the governor alerts by its
own rules); a file whose policies differ from them gets a warning.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings

from accord.lib.manifest import ApplyResult, ManifestError, apply_manifests, dump, read_yaml_documents
from accord.lib.manifest.fields import num, show

from .burn import burn_rules
from .manifest import agreement_dict_from_db
from .models import Agreement, Objective

API_VERSION = "openslo/v1"
SOURCE_TYPE = "Accord"
NOTIFY_TARGET = "accord-governor"
PREFIX = "accord/"
RUNTIME = ("availability", "error_rate", "latency")
KINDS = ("SLO", "SLI", "Service", "AlertPolicy", "AlertCondition", "AlertNotificationTarget", "DataSource")
_LABEL = re.compile(r"[^a-z0-9-]+")
_DURATION = re.compile(r"^([1-9][0-9]*)([mhdwMQY])$")
_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def rfc1123(name: str) -> str:
    """An RFC 1123 label (what every OpenSLO implementation must accept as a name): lower case letters, digits
    and `-`, at most 63 characters; a name that had to be cut keeps a short hash so two never collide."""
    label = _LABEL.sub("-", name.lower()).strip("-") or "x"
    if len(label) <= 63 and label == name:
        return label
    digest = hashlib.sha256(name.encode()).hexdigest()[:6]
    return f"{label[:56].rstrip('-')}-{digest}"


def shorthand(seconds: float) -> str:
    """A duration as OpenSLO's shorthand in whole minutes, hours or days (at least a minute)."""
    minutes = max(1, round(seconds / 60))
    if minutes % 1440 == 0:
        return f"{minutes // 1440}d"
    if minutes % 60 == 0:
        return f"{minutes // 60}h"
    return f"{minutes}m"


def _window_days(o: Objective) -> float:
    return float(o.window_days) if o.window == Objective.Window.ROLLING and o.window_days else 30.0


def _policy_name(rule: tuple[str, float, float, float]) -> str:
    severity, rate, long_s, _short = rule
    return rfc1123(f"accord-burn-{severity}-{num(Decimal(str(rate)))}x-{shorthand(long_s)}".replace(".", "-"))


def _alert_policy(rule: tuple[str, float, float, float]) -> dict[str, Any]:
    severity, rate, long_s, short_s = rule
    name = _policy_name(rule)
    return {
        "apiVersion": API_VERSION, "kind": "AlertPolicy",
        "metadata": {"name": name, "displayName": f"Burn rate over {num(Decimal(str(rate)))}x ({severity})"},
        "spec": {
            "description": (f"Accord's governor: the error budget burns faster than {num(Decimal(str(rate)))}x over "
                            f"{shorthand(long_s)} and over {shorthand(short_s)} (multiwindow)"),
            "alertWhenNoData": False, "alertWhenResolved": True, "alertWhenBreaching": True,
            "conditions": [{
                "kind": "AlertCondition",
                "metadata": {"name": f"{name}-condition", "annotations": {f"{PREFIX}short-window": shorthand(short_s)}},
                "spec": {"severity": severity, "condition": {
                    "kind": "burnrate", "op": "gt", "threshold": Decimal(str(rate)),
                    "lookbackWindow": shorthand(long_s), "alertAfter": "0m"}},
            }],
            "notificationTargets": [{"targetRef": NOTIFY_TARGET}],
        },
    }


def _source(agreement: str, service: str | None, operation: str | None, events: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"agreement": agreement}
    if service:
        spec["service"] = service
    if operation:
        spec["operation"] = operation
    spec["events"] = events
    return {"metricSource": {"type": SOURCE_TYPE, "spec": spec}}


def _slo_document(o: Objective) -> dict[str, Any]:
    a = o.agreement
    service = o.service.name if o.service else None
    operation = o.operation.name if o.operation else None
    name = rfc1123(f"{a.name}-{o.name}")
    labels: dict[str, Any] = {"accord-agreement": a.name, "accord-kind": o.kind}
    if a.tier:
        labels["accord-tier"] = a.tier.name
    if a.account:
        labels["accord-account"] = a.account.external_id
    annotations = {f"{PREFIX}agreement": a.name, f"{PREFIX}objective": o.name, f"{PREFIX}calendar": a.calendar.name,
                   f"{PREFIX}effective-from": a.effective_from.isoformat()}
    if a.effective_to:
        annotations[f"{PREFIX}effective-to"] = a.effective_to.isoformat()
    if o.kind == Objective.Kind.LATENCY:
        indicator_spec: dict[str, Any] = {"thresholdMetric": _source(a.name, service, operation, "latency_ms")}
        objective: dict[str, Any] = {"displayName": o.name, "op": "lte", "value": num(o.target),
                                     "targetPercent": num(o.percentile or Decimal(95))}
    elif o.kind == Objective.Kind.ERROR_RATE:
        indicator_spec = {"ratioMetric": {"counter": True, "bad": _source(a.name, service, operation, "bad"),
                                          "total": _source(a.name, service, operation, "valid")}}
        objective = {"displayName": o.name, "targetPercent": num(Decimal(100) - o.target)}
    else:
        indicator_spec = {"ratioMetric": {"counter": True, "good": _source(a.name, service, operation, "good"),
                                          "total": _source(a.name, service, operation, "valid")}}
        objective = {"displayName": o.name, "targetPercent": num(o.target)}
    if o.window == Objective.Window.ROLLING:
        window: dict[str, Any] = {"duration": f"{o.window_days}d", "isRolling": True}
    else:
        window = {"duration": "1M", "calendar": {"startTime": "2020-01-01 00:00:00", "timeZone": settings.TIME_ZONE},
                  "isRolling": False}
    return {
        "apiVersion": API_VERSION, "kind": "SLO",
        "metadata": {"name": name, "displayName": f"{a.title or a.name}: {o.name}", "labels": labels,
                     "annotations": annotations},
        "spec": {
            "description": f"{o.get_kind_display()} {o.target_label()} over the {o.window_label()}",
            "service": rfc1123(service or a.name),
            "indicator": {"metadata": {"name": rfc1123(f"{name}-sli")}, "spec": indicator_spec},
            "timeWindow": [window],
            "budgetingMethod": "Occurrences",
            "objectives": [objective],
            "alertPolicies": [{"alertPolicyRef": _policy_name(r)} for r in burn_rules(_window_days(o))],
        },
    }


def export_documents(agreements: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The run-time objectives of every agreement (or of those named) as OpenSLO documents, in a stable order:
    the notification target, the alert policies, the services, then one SLO per objective."""
    qs = Agreement.objects.select_related("tier", "account", "calendar").order_by("name")
    if agreements:
        qs = qs.filter(name__in=agreements)
    objectives = list(
        Objective.objects.filter(agreement__in=qs, kind__in=RUNTIME)
        .select_related("agreement__tier", "agreement__account", "agreement__calendar", "service", "operation")
        .order_by("agreement__name", "name")
    )
    services: dict[str, dict[str, Any]] = {}
    policies: dict[str, dict[str, Any]] = {}
    for o in objectives:
        key = rfc1123(o.service.name if o.service else o.agreement.name)
        if key not in services:
            if o.service:
                meta = {"name": key, "displayName": o.service.title or o.service.name}
                desc = f"Accord service {o.service.name} ({o.service.base_path})"
            else:
                meta = {"name": key, "displayName": o.agreement.title or o.agreement.name}
                desc = f"Every service of Accord agreement {o.agreement.name}"
            services[key] = {"apiVersion": API_VERSION, "kind": "Service", "metadata": meta,
                             "spec": {"description": desc}}
        for rule in burn_rules(_window_days(o)):
            policies.setdefault(_policy_name(rule), _alert_policy(rule))
    docs: list[dict[str, Any]] = []
    if objectives:
        docs.append({"apiVersion": API_VERSION, "kind": "AlertNotificationTarget",
                     "metadata": {"name": NOTIFY_TARGET},
                     "spec": {"target": "accord", "description": "Accord's governor: its audit trail, e-mail and "
                                                                 "signed-webhook notifications (docs/governance.md)"}})
    docs += [policies[k] for k in sorted(policies)]
    docs += [services[k] for k in sorted(services)]
    docs += [_slo_document(o) for o in objectives]
    return docs


def export_text(agreements: Sequence[str] = ()) -> str:
    docs = export_documents(agreements)
    header = "# OpenSLO v1 from Accord: read back with `accord openslo import FILE` (docs/agreements-as-code.md)\n"
    return header + "".join(f"---\n{dump(d)}" for d in docs)


# -- import -----------------------------------------------------------------------------------------------------


@dataclass
class Imported:
    """What the files say, per agreement: objectives in manifest form, and where each came from."""

    objectives: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    where: dict[tuple[str, str], str] = field(default_factory=dict)
    new_agreements: dict[str, dict[str, Any]] = field(default_factory=dict)
    policies: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class _Doc:
    """One document of one file, for error paths like `slo.yaml: [2].spec.objectives[0].target`."""

    def __init__(self, imported: Imported, source: str, index: int, data: Any) -> None:
        self.out, self.source, self.index, self.data = imported, source, index, data

    def path(self, where: str) -> str:
        return f"{self.source}: [{self.index}]{'.' if where and not where.startswith('[') else ''}{where}"

    def error(self, where: str, message: str) -> None:
        self.out.errors.append(f"{self.path(where)}: {message}")

    def get(self, node: Any, where: str, key: str, kind: type | tuple[type, ...], *, required: bool = True) -> Any:
        full = f"{where}.{key}" if where else key
        if not isinstance(node, dict):
            self.error(where, "must be a mapping")
            return None
        if key not in node or node[key] is None:
            if required:
                self.error(full, "is required")
            return None
        value = node[key]
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            names = " or ".join(t.__name__ for t in (kind if isinstance(kind, tuple) else (kind,)))
            self.error(full, f"must be a {names.replace('dict', 'mapping').replace('str', 'string')}, not {show(value)}")
            return None
        return value


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return d if d.is_finite() else None


def _days(doc: _Doc, where: str, text: Any) -> int | None:
    m = _DURATION.match(text) if isinstance(text, str) else None
    if not m:
        doc.error(where, f"{show(text)} is not a duration like 28d or 4w")
        return None
    n, unit = int(m.group(1)), m.group(2)
    if unit not in ("d", "w"):
        doc.error(where, f"Accord measures rolling windows in whole days or weeks, not {show(text)}")
        return None
    days = n * (7 if unit == "w" else 1)
    if not 1 <= days <= 366:
        doc.error(where, f"a rolling window is 1 to 366 days, not {days}")
        return None
    return days


def _metric(doc: _Doc, where: str, node: Any, sources: dict[str, Any]) -> dict[str, Any] | None:
    """The `spec` of an Accord metric source (resolving a `metricSourceRef` to a DataSource), else an error."""
    ms = doc.get(node, where, "metricSource", dict)
    if ms is None:
        return None
    where = f"{where}.metricSource"
    kind = ms.get("type")
    ref = ms.get("metricSourceRef")
    if ref is not None:
        if ref not in sources:
            doc.error(f"{where}.metricSourceRef", f"no DataSource {show(ref)} in the files")
            return None
        kind = kind or sources[ref].get("spec", {}).get("type")
    if kind != SOURCE_TYPE:
        doc.error(f"{where}.type", f"Accord cannot read data source type {show(kind)}: it computes its indicators "
                                   f"from its own measurements (type: {SOURCE_TYPE})")
        return None
    spec = doc.get(ms, where, "spec", dict)
    if spec is None:
        return None
    for key in ("agreement", "service", "operation", "events"):
        if key in spec and not isinstance(spec[key], str):
            doc.error(f"{where}.spec.{key}", f"must be a string, not {show(spec[key])}")
            return None
    if not spec.get("agreement"):
        doc.error(f"{where}.spec.agreement", "is required: the agreement whose requests are counted")
        return None
    return spec


def _indicator(doc: _Doc, where: str, spec: Any, sources: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(objective kind, the metric source spec) of an SLI's spec."""
    if not isinstance(spec, dict):
        doc.error(where, "must be a mapping")
        return None
    ratio, threshold = spec.get("ratioMetric"), spec.get("thresholdMetric")
    if (ratio is None) == (threshold is None):
        doc.error(where, "needs exactly one of ratioMetric and thresholdMetric")
        return None
    if threshold is not None:
        src = _metric(doc, f"{where}.thresholdMetric", threshold, sources)
        if src is None:
            return None
        if src.get("events", "latency_ms") != "latency_ms":
            doc.error(f"{where}.thresholdMetric.metricSource.spec.events",
                      f"a threshold metric reads latency_ms, not {show(src.get('events'))}")
            return None
        return "latency", src
    where = f"{where}.ratioMetric"
    if not isinstance(ratio, dict):
        doc.error(where, "must be a mapping")
        return None
    if "raw" in ratio:
        doc.error(f"{where}.raw", "Accord counts events: give good (or bad) and total, not a precomputed ratio")
        return None
    if ("good" in ratio) == ("bad" in ratio):
        doc.error(where, "needs exactly one of good and bad, with total")
        return None
    if ratio.get("counter") is False:
        doc.error(f"{where}.counter", "Accord's events are counters (counter: true)")
        return None
    part = "good" if "good" in ratio else "bad"
    numerator = _metric(doc, f"{where}.{part}", ratio[part], sources)
    total = _metric(doc, f"{where}.total", ratio.get("total"), sources) if "total" in ratio else None
    if "total" not in ratio:
        doc.error(f"{where}.total", "is required")
    if numerator is None or total is None:
        return None
    scope = ("agreement", "service", "operation")
    if any(numerator.get(k) != total.get(k) for k in scope):
        doc.error(f"{where}.total.metricSource.spec", f"counts another scope than {part}: both must name the same "
                                                      "agreement, service and operation")
        return None
    if numerator.get("events", part) != part or total.get("events", "valid") not in ("valid", "total"):
        doc.error(f"{where}", f"the {part} events over valid events is what Accord measures")
        return None
    return ("availability" if part == "good" else "error_rate"), numerator


def _read_slo(doc: _Doc, slis: dict[str, _Doc], sources: dict[str, Any]) -> None:
    data, out = doc.data, doc.out
    meta = doc.get(data, "", "metadata", dict)
    spec = doc.get(data, "", "spec", dict)
    if meta is None or spec is None:
        return
    annotations = meta.get("annotations") or {}
    labels = meta.get("labels") or {}
    if not isinstance(annotations, dict) or not isinstance(labels, dict):
        doc.error("metadata", "labels and annotations must be mappings")
        return
    # the indicator: inline, or a reference to an SLI document of the files
    if ("indicator" in spec) == ("indicatorRef" in spec):
        doc.error("spec", "needs exactly one of indicator and indicatorRef")
        return
    if "indicatorRef" in spec:
        ref = spec["indicatorRef"]
        if ref not in slis:
            doc.error("spec.indicatorRef", f"no SLI {show(ref)} in the files")
            return
        sli = slis[ref]  # its problems are told at the SLI document's own path
        found = _indicator(sli, "spec", sli.data.get("spec"), sources)
    else:
        found = _indicator(doc, "spec.indicator.spec", (spec["indicator"] or {}).get("spec"), sources)
    if spec.get("budgetingMethod") != "Occurrences":
        doc.error("spec.budgetingMethod", f"Accord budgets by Occurrences (requests), not {show(spec.get('budgetingMethod'))}")
    windows = spec.get("timeWindow")
    rolling_days: int | None = None
    if not isinstance(windows, list) or len(windows) != 1 or not isinstance(windows[0], dict):
        doc.error("spec.timeWindow", "needs exactly one window")
    else:
        w = windows[0]
        if w.get("isRolling", "calendar" not in w):
            rolling_days = _days(doc, "spec.timeWindow[0].duration", w.get("duration"))
        else:
            if w.get("duration") != "1M":
                doc.error("spec.timeWindow[0].duration", f"Accord's calendar window is the month (1M), not "
                                                         f"{show(w.get('duration'))}")
            zone = (w.get("calendar") or {}).get("timeZone", settings.TIME_ZONE)
            if zone != settings.TIME_ZONE:
                doc.error("spec.timeWindow[0].calendar.timeZone", f"Accord's months start at midnight "
                                                                  f"{settings.TIME_ZONE} (TIME_ZONE), not {show(zone)}")
    objectives = spec.get("objectives")
    if not isinstance(objectives, list) or len(objectives) != 1 or not isinstance(objectives[0], dict):
        doc.error("spec.objectives", "needs exactly one objective (Accord has no composite objectives)")
        return
    ob = objectives[0]
    if ("target" in ob) == ("targetPercent" in ob):
        doc.error("spec.objectives[0]", "needs exactly one of target and targetPercent")
        return
    raw = ob.get("targetPercent", ob.get("target"))
    value = _number(raw)
    field_name = "targetPercent" if "targetPercent" in ob else "target"
    if value is None:
        doc.error(f"spec.objectives[0].{field_name}", f"{show(raw)} is not a number")
        return
    percent = value if field_name == "targetPercent" else value * 100
    if not Decimal(0) <= percent < Decimal(100):
        doc.error(f"spec.objectives[0].{field_name}", f"must be in [0, {'100' if field_name == 'targetPercent' else '1'})")
        return
    if found is None:
        return
    kind, source = found
    agreement = annotations.get(f"{PREFIX}agreement") or source["agreement"]
    if agreement != source["agreement"]:
        doc.error(f"metadata.annotations.{PREFIX}agreement",
                  f"{show(agreement)} but the indicator counts agreement {show(source['agreement'])}")
        return
    name = annotations.get(f"{PREFIX}objective") or str(meta.get("name", ""))
    if kind == "latency":
        if ob.get("op") not in ("lte", "lt"):
            doc.error("spec.objectives[0].op", f"a latency objective is met at or under its value (lte), not "
                                               f"{show(ob.get('op'))}")
            return
        ms = _number(ob.get("value"))
        if ms is None or ms <= 0:
            doc.error("spec.objectives[0].value", f"the latency in milliseconds, not {show(ob.get('value'))}")
            return
        objective: dict[str, Any] = {"name": name, "kind": kind, "target": ms, "percentile": percent}
    else:
        for key in ("op", "value"):
            if key in ob:
                doc.error(f"spec.objectives[0].{key}", "only a threshold metric (latency) has op and value")
                return
        target = percent if kind == "availability" else Decimal(100) - percent
        objective = {"name": name, "kind": kind, "target": target}
    objective["window"] = {"rolling_days": rolling_days} if rolling_days else "calendar_month"
    for key in ("service", "operation"):
        if source.get(key):
            objective[key] = source[key]
    if (agreement, name) in out.where:
        doc.error(f"metadata.annotations.{PREFIX}objective",
                  f"objective {show(name)} of agreement {show(agreement)} is also in {out.where[(agreement, name)]}")
        return
    out.where[(agreement, name)] = doc.path("")
    out.objectives.setdefault(agreement, {})[name] = objective
    refs = spec.get("alertPolicies") or []
    out.policies.update(r.get("alertPolicyRef", "") for r in refs if isinstance(r, dict))
    if agreement not in out.new_agreements:
        new: dict[str, Any] = {"name": agreement, "effective_from": annotations.get(f"{PREFIX}effective-from"),
                               "calendar": annotations.get(f"{PREFIX}calendar"), "monthly_fee": 0}
        for key, label in (("tier", "accord-tier"), ("account", "accord-account")):
            if labels.get(label):
                new[key] = labels[label]
        if annotations.get(f"{PREFIX}effective-to"):
            new["effective_to"] = annotations[f"{PREFIX}effective-to"]
        new["_where"] = doc.path("metadata")
        out.new_agreements[agreement] = new


def read_documents(sources: Sequence[tuple[str, str]]) -> Imported:
    """Check OpenSLO files; every problem is in `errors` as 'file: [document].path: message'."""
    out = Imported()
    docs: list[_Doc] = []
    for source, text in sources:
        for i, data in enumerate(read_yaml_documents(text, source)):  # raises ManifestSyntaxError
            doc = _Doc(out, source, i, data)
            if not isinstance(data, dict):
                doc.error("", "an OpenSLO document is a mapping with apiVersion, kind, metadata and spec")
                continue
            if data.get("apiVersion") != API_VERSION:
                doc.error("apiVersion", f"Accord reads {API_VERSION}, not {show(data.get('apiVersion'))}")
                continue
            if data.get("kind") not in KINDS:
                doc.error("kind", f"{show(data.get('kind'))} is not one of {', '.join(KINDS)}")
                continue
            meta = doc.get(data, "", "metadata", dict)
            if meta is not None and doc.get(meta, "metadata", "name", str) is not None:
                docs.append(doc)
    slis = {d.data["metadata"]["name"]: d for d in docs if d.data["kind"] == "SLI"}
    sources_ = {d.data["metadata"]["name"]: d.data for d in docs if d.data["kind"] == "DataSource"}
    for doc in docs:
        if doc.data["kind"] == "SLO":
            _read_slo(doc, slis, sources_)
    out.errors = list(dict.fromkeys(out.errors))  # an SLI several SLOs refer to is told once
    if not out.objectives and not out.errors:
        out.errors.append(f"{', '.join(s for s, _ in sources)}: no SLO documents")
    return out


def _expected_policies(objectives: Iterable[dict[str, Any]]) -> set[str]:
    names: set[str] = set()
    for o in objectives:
        w = o["window"]
        days = float(w["rolling_days"]) if isinstance(w, dict) else 30.0
        names.update(_policy_name(r) for r in burn_rules(days))
    return names


def import_documents(sources: Sequence[tuple[str, str]], *, dry_run: bool = False,
                     replace: bool = False) -> ApplyResult:
    """Read OpenSLO files into the agreements: each SLO creates or updates its run-time objective (support
    objectives, fees and credits are left as they are); with `replace`, the agreements' run-time objectives the
    files do not list are deleted. Goes through `accord apply`'s checks and transaction; raises ManifestError."""
    imported = read_documents(sources)
    if imported.errors:
        raise ManifestError(imported.errors)
    stored = {a.name: a for a in Agreement.objects.filter(name__in=imported.objectives)
              .select_related("tier", "account", "calendar")}
    agreements: list[dict[str, Any]] = []
    origin: list[str] = []
    errors: list[str] = []
    for name in sorted(imported.objectives):
        files = imported.objectives[name]
        if name in stored:
            current = agreement_dict_from_db(stored[name])
        else:
            current = dict(imported.new_agreements[name])
            where = current.pop("_where")
            missing = [k for k in ("effective_from", "calendar") if not current.get(k)]
            if "tier" not in current and "account" not in current:
                missing.append("tier or account")
            if missing:
                errors.append(f"{where}: agreement {show(name)} does not exist; to create it the SLO needs "
                              + ", ".join({"effective_from": f"annotation {PREFIX}effective-from",
                                           "calendar": f"annotation {PREFIX}calendar",
                                           "tier or account": "label accord-tier or accord-account"}[m]
                                          for m in missing))
                continue
        kept = [o for o in current.get("objectives", [])
                if o["name"] not in files and not (replace and o["kind"] in RUNTIME)]
        current["objectives"] = kept + list(files.values())
        services = set(current.get("services", []))
        services.update(o["service"] for o in files.values() if o.get("service"))
        current["services"] = sorted(services)
        agreements.append(current)
        origin.append(next(iter(imported.where[(name, n)] for n in files)))
    if errors:
        raise ManifestError(errors)
    text = dump({"agreements": agreements})

    def locate(line: str) -> str:
        """'agreements[2].objectives[1].target: ...' names the file and document the agreement came from."""
        m = re.match(r"^(warning: )?agreements\[(\d+)\]", line)
        if not m:
            return line
        i = int(m.group(2))
        return f"{m.group(1) or ''}{origin[i]} (agreement {agreements[i]['name']}){line[m.end():]}"

    try:
        result = apply_manifests([("openslo", text)], dry_run=dry_run)
    except ManifestError as e:
        raise type(e)([locate(line) for line in e.errors]) from e
    result.warnings = [locate(line) for line in result.warnings]
    expected = _expected_policies(o for a in agreements for o in a["objectives"] if o["kind"] in RUNTIME)
    stray = sorted(p for p in imported.policies - expected if p)
    if stray:
        result.warnings.append(
            "alert policies not applied (the governor alerts by its own burn rules, ACCORD_BURN_RULES): "
            + ", ".join(stray))
    result.warnings += imported.warnings
    return result
