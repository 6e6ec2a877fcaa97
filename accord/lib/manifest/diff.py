"""What changed between an object's stored and desired canonical forms, said briefly for `accord apply`'s lines."""

from __future__ import annotations

from typing import Any

from .yamlio import dump


def _brief(value: Any) -> str:
    if value is None:
        return "(none)"
    text = dump(value, inline=True).strip().removesuffix("...").strip()
    return text if len(text) <= 60 else text[:57] + "..."


def _named_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(x, dict) and "name" in x for x in value)


def changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What differs between two canonical forms, key by key; named children by name."""
    out = []
    for key in [*after, *(k for k in before if k not in after)]:
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if _named_list(old) or _named_list(new):
            olds = {x["name"]: x for x in old or []}
            news = {x["name"]: x for x in new or []}
            parts = [f"added {n}" for n in news if n not in olds]
            parts += [f"removed {n}" for n in olds if n not in news]
            parts += [f"changed {n}" for n in news if n in olds and olds[n] != news[n]]
            out.append(f"{key}: {', '.join(parts)}")
        else:
            out.append(f"{key}: {_brief(old)} -> {_brief(new)}")
    return out
