"""The per-account series on the admin port's /metrics: the real `accord gateway` with two workers, requests of two
accounts sent, the scrape parsed and checked by `promtool check metrics`, each count equal to what was sent."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from accord.gateway.exposition import AccountSeries, le_label, merge_report, render_account_series
from accord.gateway.measure import Tally

from .conftest import EchoServer, wait_until
from .test_live import admin_status, metrics
from .test_proxy import call, dead_port

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
SAMPLE = re.compile(r'^(?P<name>[a-z_:]+)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$')


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, line
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m["labels"] or ""))
        out.append((m["name"], labels, float(m["value"])))
    return out


def _scrape(admin: int) -> str:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=5)
    try:
        conn.request("GET", "/metrics")
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def test_le_labels_are_written_as_prometheus_3_normalises_them() -> None:
    assert [le_label(ms) for ms in (5, 250, 300, 1000, 30000, 1234.5)] == [
        "0.005", "0.25", "0.3", "1.0", "30.0", "1.2345"]


def test_a_worker_keeps_at_most_its_series_and_counts_what_it_dropped() -> None:
    series = AccountSeries([100.0], max_series=2)
    for account in ("a", "b", "c"):
        tally = Tally()
        tally.count, tally.errors = 3, 1
        for ms in (50.0, 99.0, 150.0):
            tally.sketch.add(ms)
        series.add((0, account, "svc", "op", "primary", "ok", "gold"), tally)
    series.add((0, "", "", "", "", "unauthorized", ""), Tally())  # no account: not a per-account series
    report = series.report()
    assert [row[0] for row in report["rows"]] == ["a", "b"] and report["dropped"] == 3
    assert report["rows"][0][5:] == [3, 1, 0.0, [2]]  # 50 and 99 ms under the 100 ms bound, 150 above
    lines = render_account_series([report, report])  # two workers: summed
    assert 'accord_gateway_account_requests_total{account="a",tier="gold",service="svc",operation="op",' \
           'outcome="ok",code_class="5xx"} 2' in lines
    assert 'accord_gateway_account_request_duration_seconds_bucket{account="a",tier="gold",service="svc",' \
           'operation="op",outcome="ok",le="0.1"} 4' in lines
    assert "accord_gateway_account_series_dropped_requests_total 6" in lines
    # a later report names only the series counted since; the supervisor keeps the others
    kept = merge_report(None, report, pid=7)
    tally = Tally()
    tally.count = 1
    tally.sketch.add(500.0)
    series.add((1, "b", "svc", "op", "primary", "ok", "gold"), tally)
    partial = series.report(full=False)
    assert [row[0] for row in partial["rows"]] == ["b"]
    kept = merge_report(kept, partial, pid=7)
    assert {k[0]: row[5] for k, row in kept["rows"].items()} == {"a": 3, "b": 4}
    assert merge_report(kept, partial, pid=8)["rows"].keys() == {("b", "gold", "svc", "op", "ok")}  # a new worker
    assert series.report(full=False)["rows"] == []


@pytest.mark.django_db(transaction=True)
def test_metrics_count_each_accounts_requests_by_route_outcome_and_latency(upstreams: list[EchoServer]) -> None:
    from accord.agreements.models import Agreement, BusinessCalendar, Objective
    from accord.catalog.models import ApiCredential, Endpoint, Pool, Service
    from accord.customers.models import Account, Tier
    from accord.lib.testing import accord_command, subprocess_env

    svc = Service.objects.create(name="booking", base_path="/bookings")
    pool = Pool.objects.create(service=svc, name="primary", role="primary", capacity=20)
    Endpoint.objects.create(pool=pool, url=upstreams[0].url)
    gold, silver = Tier.objects.create(name="gold", rank=2), Tier.objects.create(name="silver", rank=1)
    _c, key_a = ApiCredential.issue(Account.objects.create(name="Globex", external_id="GLOBEX", tier=gold))
    _c, key_b = ApiCredential.issue(Account.objects.create(name="Initech", external_id="INITECH", tier=silver))
    calendar = BusinessCalendar.objects.create(name="always", timezone="UTC")
    agreement = Agreement.objects.create(name="silver-sla", tier=silver, effective_from="2020-01-01",
                                         calendar=calendar)
    Objective.objects.create(agreement=agreement, name="fast", kind="latency", target=200, percentile=95,
                             service=svc)  # its threshold becomes a bucket bound (0.2 s)
    port, admin = dead_port(), dead_port()
    log_path = f"{os.environ.get('TMPDIR', '/tmp')}/accord-gateway-metrics-test-{os.getpid()}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([*accord_command(), "gateway", "--listen", f"127.0.0.1:{port}", "--workers", "2",
                             "--admin", f"127.0.0.1:{admin}", "--flush", "0.5", "--no-compile"],
                            env=subprocess_env(), stdout=log, stderr=log, start_new_session=True)
    try:
        wait_until(lambda: admin_status(admin, "/readyz") == 200 or proc.poll() is not None, timeout=60,
                   what="the gateway to be ready")
        assert proc.poll() is None, Path(log_path).read_text(errors="replace")[-3000:]
        sent = {("GLOBEX", "/bookings/1"): 7, ("GLOBEX", "/bookings/status=503"): 3,
                ("GLOBEX", "/bookings/status=404"): 2, ("INITECH", "/bookings/2"): 5,
                ("INITECH", "/bookings/slow=0.3"): 2}
        keys = {"GLOBEX": key_a, "INITECH": key_b}
        for (account, path), n in sent.items():
            for _ in range(n):
                status, _h, _b = call(port, "GET", path, headers={"X-Api-Key": keys[account]})
                assert status == int(path.rsplit("=", 1)[1]) if "status=" in path else status == 200
        def reported() -> float:
            return sum(v for k, v in metrics(admin).items() if k.startswith("accord_gateway_account_requests_total{"))

        with contextlib.suppress(AssertionError):
            wait_until(lambda: reported() == 19, timeout=20, what="the workers' reports")
        text = _scrape(admin)
        assert reported() == 19, text
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
        log.close()
    counts: dict[tuple[str, ...], float] = {}
    buckets: dict[tuple[str, ...], float] = {}
    for name, labels, value in _samples(text):
        if name == "accord_gateway_account_requests_total":
            assert labels["service"] == "booking"
            key = (labels["account"], labels["tier"], labels["outcome"], labels["code_class"])
            counts[key] = counts.get(key, 0) + value
        elif name == "accord_gateway_account_request_duration_seconds_bucket":
            buckets[(labels["account"], labels["outcome"], labels["le"])] = value
    assert {k: v for k, v in counts.items() if v} == {
        ("GLOBEX", "gold", "ok", "other"): 7, ("GLOBEX", "gold", "server_error", "5xx"): 3,
        ("GLOBEX", "gold", "client_error", "other"): 2, ("INITECH", "silver", "ok", "other"): 7}
    assert buckets[("INITECH", "ok", "+Inf")] == 7
    assert buckets[("INITECH", "ok", "0.2")] == 5  # the two of 0.3 s are slower than the objective's 200 ms
    assert buckets[("INITECH", "ok", "30.0")] == 7
    if not os.path.exists(PROMTOOL):
        assert os.environ.get("ACCORD_REQUIRE_PROMTOOL") != "1", f"no promtool at {PROMTOOL} (package prometheus)"
        return  # the counts are checked; promtool's opinion of the format needs promtool
    check = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
