"""What a higher layer keeps that is scoped to a service or an operation, found without importing it.

Agreements' objectives are scoped to services and operations, and deleting either would delete them with it (the
foreign keys cascade). The catalog sits below agreements (docs/architecture.md, the layers), so it does not import
them: the agreements app registers, from its `ready()`, how to find its objectives (`register_objectives`), and
the catalog's API and manifest ask here before they delete (`objectives`). As the desk's IMAP poller reaches
outreach's bounce handling through a hook outreach registers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db.models import Q

# Q over the objective's fields (service, operation, agreement__name, ...) -> the matching objectives' queryset
_finder: Callable[[Q], Any] | None = None


def register_objectives(finder: Callable[[Q], Any]) -> None:
    global _finder
    _finder = finder


def objectives(where: Q) -> Any:
    """The objectives matching `where` (a queryset), or None when no app registered them."""
    return _finder(where) if _finder is not None else None
