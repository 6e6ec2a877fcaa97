"""The web app when its database is down: 503 with a page that says so (JSON under /api/), never a traceback,
and back to normal by itself once the database returns."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from accord.lib.cutproxy import CutProxy
from accord.lib.ports import free_port
from accord.lib.testing import accord_command, subprocess_env

SESSION = {"Cookie": "sessionid=0123456789abcdefghijklmnopqrstuv"}  # any session id makes the page read the database
TOKEN = {"Authorization": "Bearer acc_01234567_notarealsecretbutwellformed"}


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


OPENER = urllib.request.build_opener(NoRedirect)


def get(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with OPENER.open(request, timeout=20) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def serve(database_url: str) -> Iterator[str]:
    port = free_port()
    env = subprocess_env(DATABASE_URL=database_url, DEBUG="0", SECRET_KEY="outage-test-" + "x" * 40)
    proc = subprocess.Popen([*accord_command(), "runserver", "--noreload", f"127.0.0.1:{port}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(base + "/login/", timeout=2).close()
                break
            except urllib.error.HTTPError:
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def assert_unavailable(base: str) -> None:
    status, headers, body = get(base + "/", SESSION)
    assert status == 503, body[:500]
    assert headers.get("Retry-After") == "10"
    assert "briefly unavailable" in body and "Traceback" not in body
    status, headers, body = get(base + "/api/v1/accounts/", TOKEN)
    assert status == 503 and headers.get("Retry-After") == "10"
    assert json.loads(body)["error"]["code"] == "unavailable"


@pytest.mark.django_db(transaction=True)
def test_a_sqlite_database_that_cannot_be_opened_gives_503_then_the_app_recovers_by_itself(tmp_path: Path) -> None:
    if connection.vendor != "sqlite":
        pytest.skip("the SQLite case; PostgreSQL is cut by a proxy below")
    path = tmp_path / "accord.sqlite3"
    connection.ensure_connection()
    with sqlite3.connect(path) as copy:
        connection.connection.backup(copy)  # the migrated test database, for the server's own use
    for base in serve(f"sqlite:///{path}"):
        assert get(base + "/", SESSION)[0] == 302  # an unknown session: to the login page, after reading the database
        # The file goes away (an unmounted or broken volume): each request opens the database anew and cannot.
        path.rename(tmp_path / "away.sqlite3")
        path.mkdir()
        for _ in range(3):
            assert_unavailable(base)
        path.rmdir()
        (tmp_path / "away.sqlite3").rename(path)
        assert get(base + "/", SESSION)[0] == 302


@pytest.mark.django_db(transaction=True)
def test_postgresql_cut_for_a_while_gives_503_then_the_app_recovers_by_itself() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (CI runs the suite on it)")
    db = settings.DATABASES["default"]
    with CutProxy(db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432)) as proxy:
        url = subprocess_env()["DATABASE_URL"].replace(f":{db.get('PORT') or 5432}/", f":{proxy.port}/")
        assert str(proxy.port) in url
        for base in serve(url):
            status, _h, _b = get(base + "/", SESSION)
            assert status == 302  # an unknown session: to the login page, after reading the database
            proxy.cut()
            for _ in range(3):
                assert_unavailable(base)
            proxy.restore()
            started = time.monotonic()
            while (status := get(base + "/", SESSION)[0]) != 302:
                assert status == 503 and time.monotonic() - started < 30
                time.sleep(0.1)
            recovery = time.monotonic() - started
            assert recovery < 5, f"took {recovery:.1f} s to serve again after the database returned"
