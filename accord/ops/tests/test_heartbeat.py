"""Heartbeats: a process that dies is reported missing, one that stops cleanly is not."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import time

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client, override_settings
from django.utils import timezone

from accord.access.roles import grant
from accord.lib.testing import accord_command, subprocess_env
from accord.ops.heartbeat import Beat, missing
from accord.ops.models import Heartbeat


def wait_for(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


@pytest.mark.django_db
def test_a_fresh_beat_is_alive_three_missed_beats_are_missing_and_a_clean_stop_is_not() -> None:
    beat = Beat("worker", interval=10)
    assert beat.beat()
    now = timezone.now()
    assert missing(now) == []
    assert missing(now + dt.timedelta(seconds=29)) == []
    late = missing(now + dt.timedelta(seconds=31))
    assert [m.kind for m in late] == ["worker"]
    assert "no heartbeat since" in str(late[0])
    beat.stop()
    assert missing(now + dt.timedelta(seconds=31)) == []
    # A beat within the interval writes nothing more; a forced one does.
    row = Heartbeat.objects.get()
    first = row.beat_at
    beat.beat()
    assert Heartbeat.objects.get().beat_at == first
    beat.beat(force=True)
    assert Heartbeat.objects.get().beat_at > first and Heartbeat.objects.get().stopped_at is None


@pytest.mark.django_db
def test_another_process_of_the_same_kind_keeps_the_kind_alive_and_configured_kinds_are_expected() -> None:
    old, new = Beat("governor", interval=10), Beat("governor", interval=10)
    new.pid = old.pid + 1  # a second process, as after a restart
    old.beat()
    later = timezone.now() + dt.timedelta(minutes=5)
    with override_settings(ACCORD_EXPECTED_PROCESSES=["gateway"]):
        assert next(str(m) for m in missing(later)) == "gateway: never started"
        assert [m.kind for m in missing(later)] == ["gateway", "governor"]
        Heartbeat.objects.filter(pid=old.pid).update(beat_at=later - dt.timedelta(minutes=5))
        new.beat()
        Heartbeat.objects.filter(pid=new.pid).update(beat_at=later)
        assert [m.kind for m in missing(later)] == ["gateway"]
    # A kind last seen more than a day ago is forgotten.
    assert missing(later + dt.timedelta(days=2)) == []


@pytest.mark.django_db(transaction=True)
def test_a_killed_worker_goes_missing_and_a_terminated_one_stops_cleanly() -> None:
    env = subprocess_env()
    killed = subprocess.Popen([*accord_command(), "worker", "--interval", "0.2"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stopped = subprocess.Popen([*accord_command(), "worker", "--interval", "0.2"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: Heartbeat.objects.filter(kind="worker", pid__in=[killed.pid, stopped.pid]).count() == 2)
        killed.send_signal(signal.SIGKILL)
        stopped.send_signal(signal.SIGTERM)
        assert stopped.wait(30) == 0
        killed.wait(30)
    finally:
        for p in (killed, stopped):
            if p.poll() is None:
                p.kill()
    rows = {r.pid: r for r in Heartbeat.objects.filter(kind="worker")}
    assert rows[stopped.pid].stopped_at is not None
    assert rows[killed.pid].stopped_at is None  # a hard kill says nothing: its beats simply stop
    assert missing() == []  # within three beats of the last one it still counts as alive
    soon = rows[killed.pid].beat_at + dt.timedelta(seconds=31)
    assert [m.kind for m in missing(soon)] == ["worker"]


@pytest.mark.django_db
@override_settings(DEMO=True)  # production settings are doctor's business too: tests/test_doctor.py
def test_staff_pages_show_a_banner_for_a_missing_process_and_doctor_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    user = User.objects.create_user("staff", password="pw-staff-1", is_staff=True)
    grant(user, "agent")
    client = Client()
    client.force_login(user)
    assert "Background process missing" not in client.get("/").content.decode()
    call_command("doctor")
    assert "0 failure(s)" in capsys.readouterr().out
    Heartbeat.objects.create(kind="governor", host="h", pid=1, started_at=timezone.now(), interval=10,
                             beat_at=timezone.now() - dt.timedelta(minutes=2))
    page = client.get("/").content.decode()
    assert "Background process missing" in page and "governor: no heartbeat since" in page
    with pytest.raises(CommandError) as err:
        call_command("doctor", "--json")
    assert err.value.returncode == 1
    report = json.loads(capsys.readouterr().out)
    failed = [f for f in report["findings"] if f["status"] == "fail"]
    assert [f["check"] for f in failed] == ["process governor"] and "accord governor" in failed[0]["fix"]
    assert report["processes"][0]["state"] == "silent" and report["healthy"] is False
    # The public form's visitors get no banner (and no query for it).
    assert "Background process missing" not in Client().get("/support/").content.decode()
