"""OpenSLO v1: export of the run-time objectives, import back, round trip, and what Accord refuses with its path."""

from __future__ import annotations

import re
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
import yaml
from django.core.management import CommandError, call_command

from accord.agreements import openslo
from accord.agreements.models import Agreement, Objective
from accord.lib.manifest import ManifestError, ManifestSyntaxError, apply_manifest

pytestmark = pytest.mark.django_db

DEMO = Path(__file__).resolve().parents[1] / "fixtures" / "demo.yaml"
RFC1123 = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


@pytest.fixture
def demo() -> None:
    apply_manifest(DEMO.read_text())


def _docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def _import(text: str, **kw: object):  # type: ignore[no-untyped-def]
    return openslo.import_documents([("slo.yaml", text)], **kw)  # type: ignore[arg-type]


def _errors(text: str) -> list[str]:
    with pytest.raises(ManifestError) as e:
        _import(text)
    return e.value.errors


def _runtime() -> list[tuple]:
    return list(Objective.objects.filter(kind__in=openslo.RUNTIME)
                .order_by("agreement__name", "name").values_list("agreement__name", "name", "kind", "target",
                                                                 "percentile", "window", "window_days"))


def test_export_is_openslo_v1_with_every_reference_resolved(demo: None) -> None:
    docs = _docs(openslo.export_text())
    slos = [d for d in docs if d["kind"] == "SLO"]
    assert len(slos) == Objective.objects.filter(kind__in=openslo.RUNTIME).count() > 0
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert len(names) == len(docs), "two documents of one kind share a name"
    for d in docs:
        assert d["apiVersion"] == "openslo/v1"
        assert RFC1123.match(d["metadata"]["name"]), d["metadata"]["name"]
        for key in d["metadata"].get("labels", {}):
            assert re.match(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$", key), key
    services = {d["metadata"]["name"] for d in docs if d["kind"] == "Service"}
    policies = {d["metadata"]["name"]: d for d in docs if d["kind"] == "AlertPolicy"}
    targets = {d["metadata"]["name"] for d in docs if d["kind"] == "AlertNotificationTarget"}
    for slo in slos:
        spec = slo["spec"]
        assert spec["service"] in services
        assert spec["budgetingMethod"] == "Occurrences" and len(spec["timeWindow"]) == 1
        assert len(spec["objectives"]) == 1 and 0 <= spec["objectives"][0]["targetPercent"] < 100
        for ref in spec["alertPolicies"]:
            policy = policies[ref["alertPolicyRef"]]
            assert len(policy["spec"]["conditions"]) == 1
            assert {t["targetRef"] for t in policy["spec"]["notificationTargets"]} <= targets
    # the objective's numbers, as OpenSLO says them
    o = Objective.objects.filter(kind="latency").select_related("agreement").first()
    assert o is not None
    slo = next(s for s in slos if s["metadata"]["annotations"]["accord/objective"] == o.name
               and s["metadata"]["annotations"]["accord/agreement"] == o.agreement.name)
    assert slo["spec"]["objectives"][0] == {"displayName": o.name, "op": "lte", "value": float(o.target)
                                             if o.target != o.target.to_integral_value() else int(o.target),
                                             "targetPercent": float(o.percentile) if o.percentile
                                             != o.percentile.to_integral_value() else int(o.percentile)}
    assert "thresholdMetric" in slo["spec"]["indicator"]["spec"]


def test_round_trip_changes_nothing_and_export_is_stable(demo: None) -> None:
    before = _runtime()
    text = openslo.export_text()
    result = _import(text)
    assert result.outcomes and {state for _k, _n, state in result.outcomes} == {"unchanged"}
    assert _runtime() == before
    assert openslo.export_text() == text


def test_import_updates_an_objective_and_keeps_support_objectives(demo: None) -> None:
    text = openslo.export_text(["gold-sla"])
    docs = _docs(text)
    slo = next(d for d in docs if d["kind"] == "SLO" and d["metadata"]["labels"]["accord-kind"] == "error_rate")
    name = slo["metadata"]["annotations"]["accord/objective"]
    slo["spec"]["objectives"][0]["targetPercent"] = 99.75  # at most 0.25 % errors
    support_before = Agreement.objects.get(name="gold-sla").objectives.exclude(kind__in=openslo.RUNTIME).count()
    assert support_before > 0
    out = "".join("---\n" + yaml.safe_dump(d) for d in docs)
    dry = _import(out, dry_run=True)
    assert ("agreement", "gold-sla", "updated") in dry.outcomes
    assert Objective.objects.get(agreement__name="gold-sla", name=name).target != Decimal("0.25")
    _import(out)
    assert Objective.objects.get(agreement__name="gold-sla", name=name).target == Decimal("0.25")
    assert Agreement.objects.get(name="gold-sla").objectives.exclude(kind__in=openslo.RUNTIME).count() == support_before


def test_replace_removes_runtime_objectives_the_files_leave_out(demo: None) -> None:
    docs = _docs(openslo.export_text(["gold-sla"]))
    slos = [d for d in docs if d["kind"] == "SLO"]
    keep = slos[0]["metadata"]["annotations"]["accord/objective"]
    out = "---\n" + yaml.safe_dump(slos[0])
    _import(out)  # without --replace nothing else goes
    assert Agreement.objects.get(name="gold-sla").objectives.filter(kind__in=openslo.RUNTIME).count() == len(slos)
    _import(out, replace=True)
    gold = Agreement.objects.get(name="gold-sla")
    assert list(gold.objectives.filter(kind__in=openslo.RUNTIME).values_list("name", flat=True)) == [keep]
    assert gold.objectives.exclude(kind__in=openslo.RUNTIME).exists()


FOREIGN = """\
apiVersion: openslo/v1
kind: DataSource
metadata: {name: accord-source}
spec: {type: Accord, connectionDetails: {}}
---
apiVersion: openslo/v1
kind: SLI
metadata: {name: checkout-errors}
spec:
  ratioMetric:
    counter: true
    bad: {metricSource: {metricSourceRef: accord-source, spec: {agreement: acme-sla, service: booking, events: bad}}}
    total: {metricSource: {metricSourceRef: accord-source, spec: {agreement: acme-sla, service: booking, events: valid}}}
---
apiVersion: openslo/v1
kind: SLO
metadata:
  name: acme-checkout-errors
  labels: {accord-tier: gold}
  annotations: {accord/agreement: acme-sla, accord/calendar: emea-support, accord/effective-from: "2026-03-01"}
spec:
  service: booking
  indicatorRef: checkout-errors
  timeWindow: [{duration: 4w, isRolling: true}]
  budgetingMethod: Occurrences
  objectives: [{target: 0.995}]
"""


def test_a_file_written_elsewhere_creates_its_agreement(demo: None) -> None:
    result = _import(FOREIGN)
    assert ("agreement", "acme-sla", "created") in result.outcomes
    a = Agreement.objects.get(name="acme-sla")
    assert (a.tier.name, a.calendar.name, a.effective_from.isoformat()) == ("gold", "emea-support", "2026-03-01")
    o = a.objectives.get()
    assert (o.name, o.kind, o.target, o.window, o.window_days, o.service.name) == (
        "acme-checkout-errors", "error_rate", Decimal("0.5"), "rolling", 28, "booking")


def _mutate(path: str, value: object) -> str:
    """FOREIGN with one field of its SLO document set (a dotted path; None deletes it)."""
    docs = _docs(FOREIGN)
    node = docs[2]
    *parents, last = path.split(".")
    for p in parents:
        node = node[int(p)] if p.isdigit() else node[p]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return "".join("---\n" + yaml.safe_dump(d) for d in docs)


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("spec.budgetingMethod", "Timeslices", r"\[2\]\.spec\.budgetingMethod: Accord budgets by Occurrences"),
        ("spec.timeWindow", [{"duration": "1Q", "calendar": {"startTime": "2026-01-01 00:00:00", "timeZone": "UTC"}}],
         r"\[2\]\.spec\.timeWindow\[0\]\.duration: Accord's calendar window is the month"),
        ("spec.timeWindow", [{"duration": "12h", "isRolling": True}], r"whole days or weeks, not '12h'"),
        ("spec.timeWindow", [{"duration": "1M", "calendar": {"startTime": "2026-01-01 00:00:00",
                                                            "timeZone": "America/New_York"}}],
         r"timeZone: Accord's months start at midnight"),
        ("spec.objectives", [{"target": 0.99}, {"target": 0.9}], r"spec\.objectives: needs exactly one objective"),
        ("spec.objectives", [{"target": 0.99, "targetPercent": 99}], r"exactly one of target and targetPercent"),
        ("spec.objectives", [{"target": 1.5}], r"objectives\[0\]\.target: must be in \[0, 1\)"),
        ("spec.objectives", [{"targetPercent": "lots"}], r"'lots' is not a number"),
        ("spec.indicatorRef", "nowhere", r"spec\.indicatorRef: no SLI 'nowhere' in the files"),
        ("apiVersion", "openslo.com/v2alpha", r"\[2\]\.apiVersion: Accord reads openslo/v1"),
        ("metadata.annotations", {"accord/agreement": "acme-sla"},
         r"agreement 'acme-sla' does not exist; to create it the SLO needs annotation accord/effective-from, "
         r"annotation accord/calendar"),
    ],
)
def test_what_accord_cannot_represent_is_refused_with_its_path(demo: None, path: str, value: object,
                                                              expected: str) -> None:
    before = _runtime()
    errors = _errors(_mutate(path, value))
    assert any(re.search(expected, e) for e in errors), errors
    assert all(e.startswith("slo.yaml") for e in errors), errors
    assert _runtime() == before and not Agreement.objects.filter(name="acme-sla").exists()


def test_other_data_sources_and_raw_ratios_are_refused(demo: None) -> None:
    datadog = FOREIGN.replace("spec: {type: Accord, connectionDetails: {}}", "spec: {type: Datadog}")
    assert any("[1].spec.ratioMetric.bad.metricSource.type: Accord cannot read data source type 'Datadog'" in e
               for e in _errors(datadog))
    docs = _docs(FOREIGN)
    docs[1]["spec"]["ratioMetric"] = {"rawType": "success", "raw": {"metricSource": {"type": "Accord", "spec": {}}}}
    raw = "".join("---\n" + yaml.safe_dump(d) for d in docs)
    assert any("ratioMetric.raw: Accord counts events" in e for e in _errors(raw))
    docs = _docs(FOREIGN)
    docs[1]["spec"]["ratioMetric"]["total"]["metricSource"]["spec"]["service"] = "search"
    scope = "".join("---\n" + yaml.safe_dump(d) for d in docs)
    assert any("counts another scope than bad" in e for e in _errors(scope))


def test_latency_must_be_at_or_under_its_value(demo: None) -> None:
    docs = _docs(openslo.export_text())
    slo = next(d for d in docs if d["kind"] == "SLO" and d["metadata"]["labels"]["accord-kind"] == "latency")
    slo["spec"]["objectives"][0]["op"] = "gt"
    text = "---\n" + yaml.safe_dump(slo)
    assert any(re.search(r"\[0\]\.spec\.objectives\[0\]\.op: a latency objective is met at or under", e)
               for e in _errors(text))


def test_errors_from_the_agreement_checks_name_the_slo_file(demo: None) -> None:
    docs = _docs(FOREIGN)
    docs[2]["metadata"]["annotations"]["accord/calendar"] = "no-such-calendar"
    errors = _errors("".join("---\n" + yaml.safe_dump(d) for d in docs))
    assert any(e.startswith("slo.yaml: [2] (agreement acme-sla).calendar") for e in errors), errors


def test_the_command_line(demo: None, tmp_path: Path) -> None:
    target = tmp_path / "slo.yaml"
    out = StringIO()
    call_command("openslo", "export", "-o", str(target), stdout=out)
    count = Objective.objects.filter(kind__in=openslo.RUNTIME).count()
    assert f"wrote {count} SLOs" in out.getvalue()
    out = StringIO()
    call_command("openslo", "import", str(target), "--dry-run", stdout=out)
    assert out.getvalue().rstrip().endswith("(dry run: nothing was written)")
    assert "0 would be created, 0 would be updated" in out.getvalue()
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: openslo/v1\nkind: SLO\nmetadata: {name: x\n")
    with pytest.raises(CommandError) as e:
        call_command("openslo", "import", str(bad), stderr=StringIO())
    assert e.value.returncode == 1
    bad.write_text(_mutate("spec.budgetingMethod", "Timeslices"))
    err = StringIO()
    with pytest.raises(CommandError) as e:
        call_command("openslo", "import", str(bad), stderr=err)
    assert e.value.returncode == 2 and "Occurrences" in err.getvalue()
    with pytest.raises(CommandError, match="no agreement named nope"):
        call_command("openslo", "export", "--agreement", "nope")


def test_bombs_and_non_documents_are_refused(demo: None) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdef", "bcdefg", strict=True))
    with pytest.raises(ManifestSyntaxError, match="expand to more than"):
        _import(bomb)
    assert any("[0]: an OpenSLO document is a mapping" in e for e in _errors("- just\n- a list\n"))
    assert any("no SLO documents" in e for e in _errors("apiVersion: openslo/v1\nkind: Service\n"
                                                        "metadata: {name: booking}\nspec: {}\n"))
