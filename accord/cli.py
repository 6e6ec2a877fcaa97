"""The `accord` console script: Django's management commands under one name.

`accord`, `accord --help` (and `accord help`) list Accord's own commands grouped by area, one line each from the
command's `help`; `accord --help --all` (or `accord help --all`) prints Django's full list, developer commands
included. `accord help COMMAND` and `accord COMMAND --help` are Django's as ever.
"""

from __future__ import annotations

import os
import re
import sys
from typing import TextIO

DATABASE_FAILED = 3  # the exit status when the database is full or cannot be reached

# The areas of the grouped help, in order: an app's commands go to its area.
AREAS: list[tuple[str, tuple[str, ...]]] = [
    ("customers", ("customers",)),
    ("agreements", ("agreements",)),
    ("catalog", ("catalog",)),
    ("gateway", ("gateway",)),
    ("governance", ("governance",)),
    ("desk", ("desk",)),
    ("reports", ("reports",)),
    ("billing", ("billing",)),
    ("HAProxy data plane", ("haproxy",)),
    ("insight", ("insight",)),
    ("outreach", ("outreach",)),
    ("portal (the customers' side)", ("portal",)),
    ("privacy", ("privacy",)),
    ("live chat and serving (pages, API, portal and the chat's WebSockets)", ("chat",)),
    ("lab (load, upstreams and scenarios to try the governance on)", ("lab",)),
    ("access and operations", ("access", "ops", "web")),
]
# Django's commands an operator needs, shown with Accord's; the rest only under --help --all.
SETUP = ("migrate", "createsuperuser", "runserver", "check")
HELP_FLAGS = ("-h", "--help", "help")


def _first_line(text: str) -> str:
    """The help's first sentence, at most 90 characters (cut at a word, with an ellipsis)."""
    line = " ".join(text.strip().split("\n\n")[0].split())
    line = re.split(r"(?<=[a-z)]\.)\s(?=[A-Z])", line, maxsplit=1)[0]
    return line if len(line) <= 90 else line[:89].rsplit(" ", 1)[0] + " …"


def grouped_help(out: TextIO) -> None:
    """Accord's own commands by area, one line each (from each command's `help`)."""
    from django.core.management import get_commands, load_command_class

    commands = get_commands()  # name -> the app module that defines it
    width = 18
    out.write("Usage: accord COMMAND [options]   (accord help COMMAND, or accord COMMAND --help, for its options)\n")

    def line(app: str, name: str) -> str:
        try:
            text = _first_line(str(load_command_class(app, name).help or ""))
        except Exception as e:  # a command that cannot load is still listed, with why
            text = f"(cannot load: {e})"
        return f"  {name:<{width}}{text}\n"

    for area, apps in AREAS:
        names = sorted(n for n, app in commands.items() if app in {f"accord.{a}" for a in apps})
        if not names:
            continue
        out.write(f"\n{area.capitalize() if area[0].islower() else area}:\n")
        for name in names:
            out.write(line(commands[name], name))
    out.write("\nSetting up (Django's):\n")
    for name in SETUP:
        if name in commands:
            out.write(line(commands[name], name))
    out.write("\nDjango's developer commands (shell, dbshell, makemigrations ...): accord --help --all\n")


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "accord.settings")
    from django.core.management import execute_from_command_line
    from django.db import InterfaceError, OperationalError

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or (args[0] in HELP_FLAGS and args[1:] in ([], ["--all"])):
        if "--all" in args:
            args = ["help"]  # Django's full list
        else:
            import django

            django.setup()
            grouped_help(sys.stdout)
            return
    try:
        execute_from_command_line(["accord", *args])
    except (OperationalError, InterfaceError) as e:
        # A database that is full or gone is not a bug: say so, without a traceback. The failed transaction was
        # rolled back, so nothing of it was written; exit 3 (the commands' own codes are 0, 1 and 2).
        from accord.lib.middleware import database_problem

        sys.stderr.write(f"accord: {database_problem(e)} ({e}); nothing of the failed step was written. "
                         f"{'Free disk space' if 'full' in database_problem(e) else 'Check the database'} and run "
                         f"the command again.\n")
        sys.exit(DATABASE_FAILED)


if __name__ == "__main__":
    main()
