"""Starting `accord` child processes that use the same database as this process (scenario, tests)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from django.db import connection


def database_url() -> str:
    """A DATABASE_URL for the database this process is using."""
    s = connection.settings_dict
    if s["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{Path(s['NAME']).resolve()}"
    user = s.get("USER") or ""
    auth = f"{user}:{s.get('PASSWORD') or ''}@" if user else ""
    return f"postgres://{auth}{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}/{s['NAME']}"


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for an `accord` child process that uses this process's database."""
    env = {**os.environ, "DATABASE_URL": database_url(), **extra}
    # The child imports the same `accord` as this process: the console script of an editable install would
    # otherwise import the checkout it was installed from, not a git worktree this process runs in.
    source = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([source, *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)])
    env.pop("ACCORD_TEST_DB_NAME", None)
    return env


def accord_command() -> list[str]:
    """How to run the `accord` console script of this environment."""
    script = Path(sys.executable).with_name("accord")
    return [str(script)] if script.exists() else [shutil.which("accord") or "accord"]
