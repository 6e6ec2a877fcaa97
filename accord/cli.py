"""The `accord` console script: Django's management commands under one name."""

from __future__ import annotations

import os
import sys

DATABASE_FAILED = 3  # the exit status when the database is full or cannot be reached


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "accord.settings")
    from django.core.management import execute_from_command_line
    from django.db import InterfaceError, OperationalError

    try:
        execute_from_command_line(["accord", *(sys.argv[1:] if argv is None else argv)])
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
