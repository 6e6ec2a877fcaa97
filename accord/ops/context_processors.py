"""Template context: the background processes that are missing, for the staff pages' banner."""

from __future__ import annotations

from typing import Any

from django.db import DatabaseError
from django.http import HttpRequest

from .heartbeat import missing


def processes(request: HttpRequest) -> dict[str, Any]:
    """`missing_processes` for signed-in staff; nothing for anyone else (the public form needs no query)."""
    user = getattr(request, "user", None)
    if not (user and user.is_authenticated and user.is_staff):
        return {}
    try:
        return {"missing_processes": missing()}
    except DatabaseError:
        return {}
