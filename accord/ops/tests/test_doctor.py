"""`accord doctor` and `/healthz/details`: each component stopped in turn is found, with what to do."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client, override_settings
from django.utils import timezone

from accord.access.roles import grant
from accord.desk import checks as desk_checks
from accord.desk.models import Mailbox
from accord.gateway import checks as gateway_checks
from accord.gateway.models import Rollup
from accord.lib.testing import accord_command, subprocess_env
from accord.ops import checks
from accord.ops.models import Heartbeat
from accord.ops.tests.test_deploy_check import production_env

CLOCKSHIFT = Path(__file__).resolve().parents[2] / "lib" / "tests" / "clockshift"
KINDS = ("gateway", "governor", "mail-poller", "mail-sender", "worker")


def doctor(env: dict[str, str] | None = None, **extra: str) -> tuple[int, dict]:
    """Run `accord doctor --json` as an operator would; (exit code, report)."""
    run_env = {**(env or subprocess_env()), **extra}
    # mail to files: no SMTP server on a test machine (test_mail_servers_that_do_not_answer checks that finding)
    run_env.setdefault("ACCORD_EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend")
    done = subprocess.run([*accord_command(), "doctor", "--json"], env=run_env, capture_output=True, text=True,
                          timeout=120)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout)


def failed(report: dict) -> dict[str, dict]:
    return {f["check"]: f for f in report["findings"] if f["status"] == "fail"}


def by_check(findings: list[checks.Finding]) -> dict[str, checks.Finding]:
    return {f.check: f for f in findings}


@pytest.fixture
def listening() -> Iterator[int]:
    """A loopback port that accepts connections (what a running mail server looks like to a TCP check)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield server.getsockname()[1]
    server.close()


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.django_db(transaction=True)
def test_a_database_that_is_down_is_one_failure_with_what_to_do(tmp_path: Path) -> None:
    env = subprocess_env(DATABASE_URL=f"postgres://127.0.0.1:{closed_port()}/accord", ACCORD_VAR_DIR=str(tmp_path),
                         ACCORD_DEMO="1")
    code, report = doctor(env)
    assert code == 1 and report["healthy"] is False
    assert "cannot reach the database" in failed(report)["database"]["message"]
    assert "DATABASE_URL" in failed(report)["database"]["fix"]
    assert {f["check"] for f in report["findings"]} >= {"database", "disk var"}  # what needs no database still runs


@pytest.mark.django_db(transaction=True)
def test_migrations_not_applied(tmp_path: Path) -> None:
    env = subprocess_env(DATABASE_URL=f"sqlite:///{tmp_path / 'new.sqlite3'}", ACCORD_VAR_DIR=str(tmp_path),
                         ACCORD_DEMO="1")
    code, report = doctor(env)
    assert code == 1
    assert list(failed(report)) == ["migrations"]
    assert "not applied" in failed(report)["migrations"]["message"] and "accord migrate" in failed(report)["migrations"]["fix"]
    subprocess.run([*accord_command(), "migrate", "-v0"], env=env, check=True, timeout=300)
    code, report = doctor(env)
    assert code == 0 and failed(report) == {}, report


@pytest.mark.django_db(transaction=True)
@override_settings(ACCORD_EXPECTED_PROCESSES=list(KINDS))
def test_each_background_process_stopped_in_turn() -> None:
    now = timezone.now()
    for pid, kind in enumerate(KINDS, start=100):
        Heartbeat.objects.create(kind=kind, host="h", pid=pid, started_at=now - dt.timedelta(hours=1), interval=10,
                                 beat_at=now)
    with override_settings(DEMO=True):
        assert all(f.status == checks.OK for f in checks.processes())
    for kind in KINDS:
        Heartbeat.objects.filter(kind=kind).update(beat_at=now - dt.timedelta(minutes=2))
        found = by_check(checks.processes())
        assert [k for k, f in found.items() if f.status == checks.FAIL] == [f"process {kind}"]
        assert "no heartbeat since" in found[f"process {kind}"].message
        assert f"`accord {checks.START.get(kind, kind)}`" in found[f"process {kind}"].fix
        Heartbeat.objects.filter(kind=kind).update(beat_at=now)


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_killed_is_reported_by_the_command() -> None:
    env = subprocess_env(ACCORD_DEMO="1")
    worker = subprocess.Popen([*accord_command(), "worker", "--interval", "0.2"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not Heartbeat.objects.filter(kind="worker", pid=worker.pid).exists():
            assert time.monotonic() < deadline, "the worker never beat"
            time.sleep(0.1)
        code, report = doctor(env)
        assert code == 0 and "worker" in next(f for f in report["findings"] if f["check"] == "processes")["message"]
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(30)
    # a hard kill leaves its last beat behind; three missed beats later it is missing
    Heartbeat.objects.filter(pid=worker.pid).update(beat_at=timezone.now() - dt.timedelta(minutes=1))
    code, report = doctor(env)
    assert code == 1 and list(failed(report)) == ["process worker"]


@pytest.mark.django_db
def test_rollups_stale_while_a_gateway_runs() -> None:
    now = timezone.now()
    assert by_check(gateway_checks.rollups())["rollups"].message.startswith("no gateway running")
    Heartbeat.objects.create(kind="gateway", host="h", pid=1, started_at=now - dt.timedelta(minutes=30),
                             interval=10, beat_at=now)
    assert by_check(gateway_checks.rollups())["rollups"].status == checks.WARN  # never written
    Rollup.objects.create(window_start=now.replace(second=0, microsecond=0), account="a", service="s",
                          outcome="ok", count=1, latency_sketch=b"")
    assert by_check(gateway_checks.rollups())["rollups"].status == checks.OK
    Rollup.objects.update(updated_at=now - dt.timedelta(minutes=20))  # auto_now: only update() can age it
    found = by_check(gateway_checks.rollups())["rollups"]
    assert found.status == checks.WARN and "last written 20 min ago" in found.message


@pytest.mark.django_db
def test_mail_servers_that_do_not_answer(listening: int) -> None:
    smtp = "django.core.mail.backends.smtp.EmailBackend"
    with override_settings(EMAIL_BACKEND=smtp, EMAIL_HOST="127.0.0.1", EMAIL_PORT=listening):
        assert by_check(desk_checks.mail())["smtp"].status == checks.OK
    with override_settings(EMAIL_BACKEND=smtp, EMAIL_HOST="127.0.0.1", EMAIL_PORT=closed_port()):
        found = by_check(desk_checks.mail())["smtp"]
        assert found.status == checks.FAIL and "outbox" in found.fix
    Mailbox.objects.create(name="support", host="127.0.0.1", port=listening, username="u", password="p")
    Mailbox.objects.create(name="sales", host="127.0.0.1", port=closed_port(), username="u", password="p")
    Mailbox.objects.create(name="off", host="127.0.0.1", port=closed_port(), username="u", password="p", enabled=False)
    found = by_check(desk_checks.mail())
    assert found["mailbox support"].status == checks.OK
    assert found["mailbox sales"].status == checks.FAIL and "refused" in found["mailbox sales"].message.lower()
    assert "mailbox off" not in found


@pytest.mark.django_db(transaction=True)
def test_clock_skew_against_the_database_server() -> None:
    if connection.vendor == "sqlite":
        assert by_check(checks.clock())["clock"].message == "SQLite runs in this process: one clock"
        pytest.skip("the skew is between this host and a database server (PostgreSQL)")
    assert by_check(checks.clock())["clock"].status == checks.OK
    # this host's clock an hour ahead of the server's (the test clock shim moves the doctor process's clock)
    env = subprocess_env(ACCORD_DEMO="1", ACCORD_TEST_CLOCK_SHIFT="1h",
                         PYTHONPATH=os.pathsep.join(filter(None, [str(CLOCKSHIFT), os.environ.get("PYTHONPATH")])))
    code, report = doctor(env)
    assert code == 1 and "ahead of the database server's" in failed(report)["clock"]["message"]


@pytest.mark.django_db
def test_disk_space(monkeypatch: pytest.MonkeyPatch) -> None:
    assert all(f.status == checks.OK for f in checks.disk())
    monkeypatch.setenv("ACCORD_DOCTOR_MIN_FREE_MB", str(10**12))
    found = checks.disk()
    assert found and all(f.status == checks.FAIL and "MB free" in f.message for f in found)


@pytest.mark.django_db(transaction=True)
def test_production_settings(tmp_path: Path) -> None:
    # no SECRET_KEY, DEBUG off, not the demo: a production host with the key generated for a laptop
    bare = subprocess_env(ACCORD_VAR_DIR=str(tmp_path))
    for name in ("SECRET_KEY", "DEBUG", "ACCORD_DEMO", "DJANGO_ALLOW_ASYNC_UNSAFE"):
        bare.pop(name, None)
    code, report = doctor(bare)
    assert code == 1 and "SECRET_KEY is not set" in failed(report)["secret key"]["message"]
    assert any(check.startswith("setting security.") for check in failed(report))
    # the README's production settings: clean
    prod = {**bare, **production_env()}
    code, report = doctor(prod)
    assert code == 0 and failed(report) == {}, report
    assert next(f for f in report["findings"] if f["check"] == "deployment")["message"] == "`check --deploy` is clean"
    # on a laptop (the demo) the same findings are warnings
    code, report = doctor({**bare, "ACCORD_DEMO": "1"})
    assert code == 0 and any(f["status"] == "warn" and f["check"] == "secret key" for f in report["findings"])


@pytest.mark.django_db
@override_settings(DEMO=True)
def test_health_details_for_staff() -> None:
    assert Client().get("/healthz/details").status_code == 302  # to the login page
    nobody = User.objects.create_user("nobody", password="pw-nobody-1", is_staff=True)
    client = Client()
    client.force_login(nobody)
    assert client.get("/healthz/details").status_code == 403  # staff without a role
    agent = User.objects.create_user("agent", password="pw-agent-1", is_staff=True)
    grant(agent, "agent")
    client.force_login(agent)
    response = client.get("/healthz/details")
    assert response.status_code == 200 and response.json()["healthy"] is True
    Heartbeat.objects.create(kind="governor", host="h", pid=1, started_at=timezone.now(), interval=10,
                             beat_at=timezone.now() - dt.timedelta(minutes=2))
    response = client.get("/healthz/details")
    assert response.status_code == 503
    assert [f["check"] for f in response.json()["findings"] if f["status"] == "fail"] == ["process governor"]


def test_the_apps_checks_are_registered_once_between_the_processes_and_the_clock() -> None:
    names = [c.__name__ for c in checks.all_checks()]
    assert names == ["database", "processes", "rollups", "mail", "dkim", "clock", "disk", "deployment"]
    assert checks.register(gateway_checks.rollups) is gateway_checks.rollups  # a second registration adds nothing
    assert [c.__name__ for c in checks.all_checks()] == names
