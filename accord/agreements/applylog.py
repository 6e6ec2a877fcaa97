"""Every change a manifest makes lands in the audit trail (accord.access.audit): from `accord apply` on the
command line and from the staff UI's YAML editor alike, one entry per object created, updated or deleted."""

from __future__ import annotations

from typing import Any

from accord.access.audit import record
from accord.access.models import AuditEntry
from accord.lib.manifest import ApplyResult, kinds


def record_apply(result: ApplyResult, user: Any, *, source: str, note: str = "",
                 summaries: dict[tuple[str, str], str] | None = None) -> list[AuditEntry]:
    """One audit entry (action "apply", or "delete" for --prune) per object the applied manifest changed.

    Call it in the transaction that applied the manifest. `summaries` gives an object's own summary (the UI's
    diff); otherwise the summary is the apply line (`agreement gold-sla: updated (monthly_fee: 4000 -> 4500)`),
    followed by `note` (who ran the command, from which files).
    """
    by_singular = {k.singular: k for k in kinds()}
    entries = []
    for singular, name, state in result.outcomes:
        if state == "unchanged":
            continue
        kind = by_singular[singular]
        line = f"{singular} {name}: {state}"
        detail = result.changes.get((singular, name))
        if detail:
            line += f" ({'; '.join(detail)})"
        summary = (summaries or {}).get((singular, name)) or line
        if note:
            summary += f"\n{note}"
        obj = kind.model._default_manager.filter(name=name).first() if state != "deleted" else None
        entries.append(record(
            user, "delete" if state == "deleted" else "apply", obj,
            object_type=kind.model._meta.label_lower, object_repr=name,
            changes={"outcome": state, "kind": singular, "changes": detail or []},
            summary=summary, source=source,
        ))
    return entries
