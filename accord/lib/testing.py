"""Helpers for tests that start real `accord` processes against the test database."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

from django.db import connection


def database_url() -> str:
    """A DATABASE_URL for the database the running test is using."""
    s = connection.settings_dict
    if s["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{Path(s['NAME']).resolve()}"
    user = s.get("USER") or ""
    auth = f"{user}:{s.get('PASSWORD') or ''}@" if user else ""
    return f"postgres://{auth}{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}/{s['NAME']}"


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for an `accord` subprocess that sees the test database."""
    env = {**os.environ, "DATABASE_URL": database_url(), **extra}
    env.pop("ACCORD_TEST_DB_NAME", None)
    return env


def accord_command() -> list[str]:
    """How to run the `accord` console script of this environment."""
    script = Path(sys.executable).with_name("accord")
    return [str(script)] if script.exists() else [shutil.which("accord") or "accord"]


def run_in_thread(main: Any) -> Any:
    """`asyncio.run(main)` in a thread of its own: the session's browser keeps an event loop on the main thread."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main).result()
