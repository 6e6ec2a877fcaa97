"""Shared test fixtures: a few named personas instead of factories."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

CLOCK_KEY = pytest.StashKey[object]()
CLOCKSHIFT = Path(__file__).resolve().parent / "accord" / "lib" / "tests" / "clockshift"


def pytest_configure(config: pytest.Config) -> None:
    """ACCORD_TEST_CLOCK_SHIFT=200d runs the suite, and every process it starts, on a clock moved that far.

    CI runs the suite once so: a test that mixes a fixed instant with the real clock fails there the day it
    is written, instead of on `main` weeks later.
    """
    shift = os.environ.get("ACCORD_TEST_CLOCK_SHIFT")
    if not shift:
        return
    from accord.lib.tests.clockshift.shift import start

    moved = start(shift)
    paths = [str(CLOCKSHIFT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    config.stash[CLOCK_KEY] = moved


def pytest_report_header(config: pytest.Config) -> str | None:
    moved = config.stash.get(CLOCK_KEY, None)
    return f"clock moved by ACCORD_TEST_CLOCK_SHIFT={os.environ['ACCORD_TEST_CLOCK_SHIFT']}: now is {moved}" if moved else None


@pytest.fixture
def alice(db: None) -> User:
    """Alice is a staff account manager with full rights."""
    return User.objects.create_user("alice", "alice@example.com", "alice-password", is_staff=True, is_superuser=True)


@pytest.fixture
def bob(db: None) -> User:
    """Bob has a login but no staff rights."""
    return User.objects.create_user("bob", "bob@example.com", "bob-password")


@pytest.fixture
def api(alice: User) -> APIClient:
    """An API client authenticated with Alice's token."""
    client = APIClient()
    token = Token.objects.create(user=alice)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


# Browser fixtures: Debian's Chromium driven by Playwright; skipped without it unless CI requires it.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium; CI sets ACCORD_REQUIRE_BROWSER=1 so a missing browser fails instead of skipping.

    Per module, not per session: Playwright's sync API keeps an event loop running on the main thread while
    it is open, and later tests that run asyncio themselves must not find one there.
    """
    if not CHROMIUM.exists():
        if os.environ.get("ACCORD_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} is missing and ACCORD_REQUIRE_BROWSER=1 (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is not installed")
    # Playwright's sync API runs an event loop in this thread; Django must still allow ORM use in tests.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()
