"""`accord check --deploy` is clean with the production settings the README documents (section Production)."""

from __future__ import annotations

import re
import secrets
import subprocess
from pathlib import Path

import pytest

from accord.lib.testing import accord_command, subprocess_env

README = Path(__file__).resolve().parents[3] / "README.md"


def production_env() -> dict[str, str]:
    """The variables of the README's production block, with a real secret in place of the placeholder."""
    text = README.read_text()
    block = re.search(r"<!-- production-env -->\n```sh\n(.*?)```", text, re.S)
    assert block, "README.md has no production settings block"
    env = dict(re.findall(r"^export (\w+)=(\S+)$", block.group(1), re.M))
    assert {"SECRET_KEY", "ALLOWED_HOSTS", "ACCORD_SSL_REDIRECT", "ACCORD_HTTPS"} <= set(env), env
    env["SECRET_KEY"] = secrets.token_urlsafe(60)
    env.pop("DATABASE_URL", None)  # the test's own database stands in for the production one
    return env


@pytest.mark.django_db
def test_check_deploy_is_clean_with_the_documented_production_settings(tmp_path: Path) -> None:
    env = subprocess_env(ACCORD_VAR_DIR=str(tmp_path), **production_env())
    for name in ("DEBUG", "DJANGO_ALLOW_ASYNC_UNSAFE"):  # the browser tests set the latter for themselves
        env.pop(name, None)
    done = subprocess.run(
        [*accord_command(), "check", "--deploy", "--fail-level", "WARNING"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


@pytest.mark.django_db
def test_check_deploy_warns_without_them(tmp_path: Path) -> None:
    env = subprocess_env(ACCORD_VAR_DIR=str(tmp_path), SECRET_KEY="short", DEBUG="1")
    done = subprocess.run(
        [*accord_command(), "check", "--deploy", "--fail-level", "WARNING"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "security.W" in done.stderr + done.stdout
