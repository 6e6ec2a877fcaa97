"""The staff UI's YAML editor for what stays code: agreements, calendars, services and policies.

The editor shows one object as `accord export` writes it, checks the edited text with the same code as
`accord apply --dry-run` (accord.lib.manifest) and applies it the same way, with an audit entry. On top of the
engine's own bounds it is stricter, because the text comes from a browser: at most MAX_BYTES, no anchors or
aliases, at most MAX_NODES values, and exactly the one object the page edits.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from django.db import models, transaction

from accord.access.models import AuditEntry
from accord.agreements.applylog import record_apply
from accord.lib.manifest import (
    ApplyResult,
    ManifestError,
    ManifestSyntaxError,
    apply_manifest,
    export_object,
    export_objects,
    kind,
    load_manifest,
    read_yaml,
)

MAX_BYTES = 256 * 1024
MAX_NODES = 20_000
SOURCE = "text"  # what the engine's syntax errors start with; shown as "line L, column C"
# The kinds the editor edits: section -> the model's permission prefix (app label).
EDITABLE = ("agreements", "calendars", "services", "policies")


def model_of(section: str) -> type[models.Model]:
    return kind(section).model


def perm(section: str, action: str) -> str:
    """`agreements.change_agreement`: the permission to `action` (add, change, view) objects of a section."""
    meta = model_of(section)._meta
    return f"{meta.app_label}.{action}_{meta.model_name}"


def normalise(text: str) -> str:
    """A browser sends CRLF line ends; the hash and the engine see LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def digest(section: str, name: str, text: str) -> str:
    """What the Apply button carries: the hash of the text that was checked, for this object."""
    return hashlib.sha256(f"{section}\0{name}\0{normalise(text)}".encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class Checked:
    """The result of a check: the errors (each `path: message`), or the dry run's diff and lines."""

    errors: list[str] = field(default_factory=list)
    syntax: bool = False
    diff: list[tuple[str, str]] = field(default_factory=list)  # (kind: add | del | hunk | ctx, line)
    diff_text: str = ""
    lines: list[str] = field(default_factory=list)
    summary: str = ""
    warnings: list[str] = field(default_factory=list)
    name: str = ""  # the object's name as the text gives it
    changed: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors


_WHERE = re.compile(rf"^{SOURCE}:(\d+):(\d+): ")


def _readable(line: str) -> str:
    """`text:3:7: problem` -> `line 3, column 7: problem`; `text: problem` -> `problem`."""
    line = _WHERE.sub(lambda m: f"line {m.group(1)}, column {m.group(2)}: ", line)
    return line.removeprefix(f"{SOURCE}: ")


def guard(text: str) -> list[str]:
    """The editor's own bounds, checked before anything builds the document: size, anchors and aliases, nodes.

    A syntax error stops the scan quietly: the engine reports it with its line and column.
    """
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_BYTES:
        return [f"the text is {size:,} bytes; the editor takes at most {MAX_BYTES:,} "
                "(apply larger manifests with `accord apply -f FILE`)"]
    nodes = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                mark = event.start_mark
                where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
                return [f"{where}anchors and aliases (&name, *name) are not accepted in the editor; write the "
                        "values out (the command line takes them)"]
            if isinstance(event, yaml.ScalarEvent | yaml.MappingStartEvent | yaml.SequenceStartEvent):
                nodes += 1
                if nodes > MAX_NODES:
                    return [f"the document has more than {MAX_NODES:,} values; the editor edits one object "
                            "(apply larger manifests with `accord apply -f FILE`)"]
    except yaml.YAMLError:
        return []
    return []


def _scope(section: str, name: str | None, data: Any) -> list[str]:
    """The text must hold exactly the one object this page edits (or, for New, one object not stored yet)."""
    k = kind(section)
    if not isinstance(data, dict):
        return []  # the engine says what the top level must be
    errors = [f"{other}: this page edits {'a new' if name is None else 'one'} {k.singular}; "
              f"edit {other} on their own pages or with `accord apply`" for other in data if other != section]
    items = data.get(section)
    if not isinstance(items, list):
        if section not in data:
            errors.append(f"(top level): the text must have the section `{section}:` with one {k.singular}")
        return errors
    if len(items) != 1:
        errors.append(f"{section}: the editor takes exactly one {k.singular}, the text has {len(items)}")
        return errors
    item = items[0]
    given = item.get("name") if isinstance(item, dict) else None
    if not isinstance(given, str):
        return errors  # the engine reports the missing or wrong name
    if name is not None and given != name:
        errors.append(
            f"{section}[0].name: this page edits {k.singular} '{name}', the text names '{given}'. Applying it would "
            f"not rename '{name}': it would create a second {k.singular} '{given}' and leave '{name}' as it is. "
            f"Keep the name '{name}' here; to start a new {k.singular}, use New on the list page."
        )
    if name is None and k.stored(given) is not None:
        errors.append(f"{section}[0].name: {k.singular} '{given}' exists already; edit it on its own page "
                      "(New creates an object)")
    return errors


def _diff(before: str, after: str, label: str) -> list[tuple[str, str]]:
    lines = difflib.unified_diff(before.splitlines(), after.splitlines(), f"{label} (stored)",
                                 f"{label} (after applying)", lineterm="", n=3)
    out = []
    for line in lines:
        if line.startswith(("+++", "---")):
            out.append(("file", line))
        elif line.startswith("@@"):
            out.append(("hunk", line))
        elif line.startswith("+"):
            out.append(("add", line))
        elif line.startswith("-"):
            out.append(("del", line))
        else:
            out.append(("ctx", line))
    return out


def check(section: str, name: str | None, text: str) -> Checked:
    """Check the text as `accord apply --dry-run` does, plus the editor's bounds and scope; a diff when valid."""
    text = normalise(text)
    out = Checked()
    out.errors = guard(text)
    if out.errors:
        return out
    if not text.strip():
        out.errors = [f"the text is empty: write the {kind(section).singular} (or Cancel)"]
        return out
    try:
        data = read_yaml(text, SOURCE)
    except ManifestSyntaxError as e:
        out.errors, out.syntax = [_readable(x) for x in e.errors], True
        return out
    scope = _scope(section, name, data)
    result: ApplyResult | None = None
    try:
        result = apply_manifest(text, dry_run=True, source=SOURCE)  # the same code as `accord apply --dry-run`
    except ManifestSyntaxError as e:
        out.errors, out.syntax = [_readable(x) for x in e.errors], True
        return out
    except ManifestError as e:
        out.errors = [_readable(x) for x in e.errors]
    out.errors = scope + out.errors
    if out.errors or result is None:
        return out
    items = load_manifest(text, SOURCE).items[section]
    out.name = items[0].name
    before = export_object(section, out.name) or ""
    after = export_objects(section, items)
    out.diff = _diff(before, after, f"{kind(section).singular} {out.name}")
    out.diff_text = "\n".join(line for _kind, line in out.diff)
    out.lines, out.summary, out.warnings = result.lines(), result.summary(), result.warnings
    out.changed = result.changed
    return out


def apply(section: str, name: str | None, text: str, user: Any) -> tuple[Checked, ApplyResult | None]:
    """Check again, then apply in one transaction with an audit entry whose summary is the diff."""
    checked = check(section, name, text)
    if not checked.ok:
        return checked, None
    try:
        with transaction.atomic():
            result = apply_manifest(normalise(text), source=SOURCE)
            singular = kind(section).singular
            record_apply(result, user, source=AuditEntry.Source.UI,
                         summaries={(singular, checked.name): checked.diff_text})
    except ManifestError as e:  # the database refused what the check let through (a race): nothing was written
        checked.errors = [_readable(x) for x in e.errors]
        return checked, None
    return checked, result
