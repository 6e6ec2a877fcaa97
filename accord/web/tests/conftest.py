"""Fixtures of the staff UI tests: a staff client and the demo company, seeded once per module.

The browser fixtures (`browser`, `page`: Debian's Chromium through Playwright, skipped when it is missing
unless ACCORD_REQUIRE_BROWSER=1) live in the repository's top-level conftest.py so every app can use them.
"""

from __future__ import annotations

from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client

DEMO_ACCOUNTS = 120


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    """Hash the personas' passwords with a fast hasher: the real one takes a quarter second per user."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def staff(alice: User) -> Client:
    """A browser-like client logged in as Alice (staff)."""
    client = Client()
    client.force_login(alice)
    return client


@pytest.fixture(scope="module")
def demo_company(django_db_setup: Any, django_db_blocker: Any) -> Iterator[None]:
    """The demo company, committed once for a module of read-only tests, and removed after them.

    Each test still runs in its own transaction, rolled back at its end, so tests cannot see each other's writes.
    """
    with django_db_blocker.unblock():
        call_command("seed-demo", "--accounts", str(DEMO_ACCOUNTS), stdout=StringIO())
    yield
    with django_db_blocker.unblock():
        call_command("flush", "--no-input", verbosity=0)


@pytest.fixture
def demo(demo_company: None, db: None) -> None:
    """Use the module's demo company in a test."""
