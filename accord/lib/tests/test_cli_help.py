"""`accord --help`: Accord's own commands grouped by area, Django's developer commands only with --all."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import get_commands, load_command_class

from accord.cli import AREAS, _first_line

ROOT = Path(__file__).resolve().parents[3]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """The real console entry point in a child process, as a person types it."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "accord.settings"}
    return subprocess.run([sys.executable, "-c", "from accord.cli import main; main()", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def sections(text: str) -> dict[str, list[str]]:
    """The grouped help's areas and the command names listed under each."""
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            current = line[:-1]
            out[current] = []
        elif current and (m := re.match(r"  (\S+)\s{2,}\S", line)):
            out[current].append(m.group(1))
    return out


def accord_commands() -> dict[str, str]:
    return {name: app for name, app in get_commands().items() if app.startswith("accord.")}


@pytest.mark.parametrize("args", [(), ("--help",), ("-h",), ("help",)])
def test_grouped_help_lists_every_accord_command_once_under_its_area(args: tuple[str, ...]) -> None:
    result = run(*args)
    assert result.returncode == 0, result.stderr
    found = sections(result.stdout)
    listed = [name for area, names in found.items() if not area.startswith("Setting up") for name in names]
    assert sorted(listed) == sorted(accord_commands()), "each of Accord's commands exactly once"
    for area in ("Customers", "Agreements", "Catalog", "Gateway", "Governance", "Desk", "Reports", "Insight",
                 "Access and operations"):
        assert found.get(area), f"area {area} missing or empty"
    area_of = {app: label for label, apps in AREAS for app in apps}
    for area, names in found.items():
        for name in names:
            if area.startswith("Setting up"):
                continue
            app = accord_commands()[name].split(".")[1]
            assert area.lower() == area_of[app].lower(), f"{name} listed under {area}"
    # one line each, the command's own help
    slo = load_command_class("accord.governance", "slo").help
    assert f"  slo{' ' * 15}{_first_line(str(slo))}" in result.stdout.splitlines()
    # Django's developer commands are hidden, and the way to them is said
    for hidden in ("makemigrations", "dbshell", "shell", "squashmigrations", "sendtestemail"):
        assert not re.search(rf"^\s+{hidden}\b", result.stdout, re.M), hidden
    assert "accord --help --all" in result.stdout


@pytest.mark.parametrize("args", [("--help", "--all"), ("help", "--all")])
def test_help_all_prints_djangos_full_list(args: tuple[str, ...]) -> None:
    result = run(*args)
    assert result.returncode == 0, result.stderr
    names = set(re.findall(r"^    (\S+)$", result.stdout, re.M))
    assert {"makemigrations", "dbshell", "shell", "migrate"} <= names
    assert set(accord_commands()) <= names
    assert "[django]" in result.stdout


def test_help_of_one_command_is_still_djangos() -> None:
    result = run("help", "slo")
    assert result.returncode == 0, result.stderr
    assert "usage: accord slo" in result.stdout and "status" in result.stdout


def test_first_line_takes_the_first_sentence_and_cuts_long_ones_at_a_word() -> None:
    assert _first_line("Show things. Then more.\n\nDetails") == "Show things."
    long = "word " * 40
    cut = _first_line(long)
    assert len(cut) <= 92 and cut.endswith(" …") and "wor …" not in cut
