"""The manifest engine: everything of agreements-as-code that is not about one kind of object.

Each app declares its own kinds (calendars, tiers, services, partners, agreements, policies ...) in its own
`manifest.py` as a `Kind`; `settings.ACCORD_MANIFEST_KINDS` registers them, in the order they are exported. The
engine validates a manifest in three steps and reports every problem with its path in the file:

1. YAML (syntax, duplicate keys, size), with line and column (`yamlio`);
2. structure and types: the kinds' pydantic specs, unknown keys forbidden;
3. meaning: each kind's `check`, with references to other kinds in the file and in the database.

Nothing is written unless all pass; then every kind is written in one transaction, the kinds it refers to
first. Each object is compared with its canonical (exported) form first, so applying the same file twice
changes nothing and apply(export()) is a no-op. `--prune` deletes, in the reverse order, the stored objects of
the sections the files name but do not list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, ClassVar

from django.conf import settings
from django.core.signals import setting_changed
from django.db import DataError, IntegrityError, models, transaction
from django.db.models import ProtectedError, Q, RestrictedError
from django.utils.module_loading import import_string
from pydantic import ValidationError as PydanticValidationError
from pydantic import create_model

from ..db import in_use
from .diff import changes
from .fields import Spec, message, path, show
from .yamlio import ManifestError, ManifestSyntaxError, dump, read_yaml


class Kind:
    """One section of the manifest: its spec, how it is checked, compared, written and exported.

    Objects are named (`name` is unique within a kind) and stored as rows of `model` looked up by name. A kind
    is declared in its class line: `class TierKind(Kind, section="tiers", singular="tier", spec=TierSpec,
    model=Tier)`.
    """

    section: ClassVar[str]  # 'agreements'
    singular: ClassVar[str]  # 'agreement'
    spec: ClassVar[type[Spec]]  # one object as written in the file
    model: ClassVar[type[models.Model]]
    depends: ClassVar[tuple[str, ...]] = ()  # sections this kind refers to: written before it, pruned after

    def __init_subclass__(cls, *, section: str | None = None, singular: str | None = None,
                          spec: type[Spec] | None = None, model: type[models.Model] | None = None,
                          depends: tuple[str, ...] | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declared = {"section": section, "singular": singular, "spec": spec, "model": model, "depends": depends}
        for name, value in declared.items():
            if value is not None:  # else inherited
                setattr(cls, name, value)

    def message(self, error: Any) -> str | None:
        """A kind's own wording for a pydantic error (None: the engine's)."""
        return None

    def check(self, check: Check) -> None:
        """Step 3 for this kind's objects: report problems with `check.err(path, message)`."""

    def canonical(self, item: Any) -> dict[str, Any]:
        """An object of the file in canonical form (as export writes it)."""
        raise NotImplementedError

    def stored(self, name: str) -> dict[str, Any] | None:
        """The stored object of that name in canonical form, or None."""
        raise NotImplementedError

    def write(self, items: list[Any]) -> None:
        """Create or update the objects that changed (all of one kind, in file order)."""
        raise NotImplementedError

    def export(self) -> tuple[list[dict[str, Any]], list[str]]:
        """Every stored object in canonical form, in a stable order, and notes on what was left out."""
        raise NotImplementedError

    def real(self, rows: models.QuerySet[Any], **made_up: Any) -> tuple[models.QuerySet[Any], list[str]]:
        """The rows to export, without those a scenario made up (`simulated`, e.g. by `accord scenario rta`):
        they are no part of the business's configuration. `made_up` names more lookups that mark a row as
        simulated (an agreement of a simulated account). The note says how many were left out."""
        marks = Q(simulated=True)
        for lookup, value in made_up.items():
            marks |= Q(**{lookup: value})
        left_out = rows.filter(marks).count()
        note = (f"left out as simulated (`accord scenario clean` removes them): {left_out} "
                f"{self.singular if left_out == 1 else self.section}")
        return rows.exclude(marks), [note] if left_out else []


@cache
def kinds() -> tuple[Kind, ...]:
    """The registered kinds (settings.ACCORD_MANIFEST_KINDS); each must come after the kinds it refers to."""
    found: list[Kind] = []
    for dotted in settings.ACCORD_MANIFEST_KINDS:
        kind = import_string(dotted)()
        late = [d for d in kind.depends if d not in {k.section for k in found}]
        if late:
            raise ValueError(f"ACCORD_MANIFEST_KINDS: {dotted} refers to {', '.join(late)}, registered after it")
        found.append(kind)
    return tuple(found)


def _registry_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "ACCORD_MANIFEST_KINDS":  # tests register kinds of their own
        kinds.cache_clear()
        manifest_spec.cache_clear()


setting_changed.connect(_registry_changed)


def kind(section: str) -> Kind:
    """The registered kind of a section."""
    return next(k for k in kinds() if k.section == section)


def sections() -> list[str]:
    """The registered sections, in export order."""
    return [k.section for k in kinds()]


@dataclass
class Loaded:
    """A validated manifest (one or several files merged) and where each object came from."""

    items: dict[str, list[Any]]  # per section, the objects as specs
    where: dict[str, list[str]]  # per section, each object's path as the user reads it: 'tiers[2]'
    present: set[str]  # sections the files name (even empty): the ones --prune may empty
    warnings: list[str] = field(default_factory=list)  # applied anyway, shown with their paths

    def __getattr__(self, section: str) -> list[Any]:
        try:
            return self.__dict__["items"][section]
        except KeyError:
            raise AttributeError(section) from None


@dataclass
class Check:
    """What a kind's `check` works with: the file's objects, the database, and the errors so far."""

    loaded: Loaded
    prune: bool = False
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def each(self, section: str) -> Iterator[tuple[str, Any]]:
        """(path, object) of a section of the file."""
        return zip(self.loaded.where[section], self.loaded.items[section], strict=True)

    def items(self, section: str) -> list[Any]:
        return self.loaded.items[section]

    def err(self, where: str, problem: str) -> None:
        self.errors.append(f"{where}: {problem}")

    def warn(self, where: str, problem: str) -> None:
        """Something the file may do but probably should not (it is applied, and the warning shown)."""
        self.warnings.append(f"{where}: {problem}")

    def pruned(self, section: str) -> bool:
        return self.prune and section in self.loaded.present

    def known(self, section: str) -> set[str]:
        """Names an object may refer to: the file's, and the stored ones unless --prune empties the section."""
        names = {x.name for x in self.items(section)}
        if not self.pruned(section):
            names |= set(kind(section).model._default_manager.values_list("name", flat=True))
        return names

    def missing(self, section: str, name: str) -> str:
        """The message for a reference to an object that is not there."""
        k = kind(section)
        text = f"no {k.singular} named '{name}'"
        if self.pruned(section) and k.model._default_manager.filter(name=name).exists():
            text += " in the file (--prune removes the stored one)"
        return text

    def refers(self, where: str, section: str, name: str) -> None:
        """Report `name` unless it names an object of the section (in the file or stored)."""
        if name not in self.known(section):
            self.err(where, self.missing(section, name))

    def unique_in(self, section: str, key: Callable[[Any], Any], label: str) -> None:
        """Report objects of a section of the file that share a key (a tier's rank, a service's base path)."""
        self.unique(self.loaded.where[section], self.items(section), key, label)

    def unique(self, where: str | list[str], items: Sequence[Any], key: Callable[[Any], Any], label: str = "name",
               shown: Callable[[Any], str] = show) -> None:
        """Report objects that share a key; `where` is a list's path, or each object's path (top level)."""
        paths = where if isinstance(where, list) else [f"{where}[{i}]" for i in range(len(items))]
        first: dict[Any, int] = {}
        for i, item in enumerate(items):
            k = key(item)
            if k in first:
                self.err(f"{paths[i]}.{label}", f"{shown(k)} appears more than once (first at {paths[first[k]]})")
            else:
                first[k] = i


@cache
def manifest_spec() -> type[Spec]:
    """The whole manifest: every registered section, each optional."""
    fields: dict[str, Any] = {k.section: (list[k.spec], []) for k in kinds()}  # type: ignore[name-defined]
    return create_model("ManifestSpec", __base__=Spec, **fields)


def _error_text(error: Any) -> str:
    loc = error["loc"]
    if error["type"] == "extra_forbidden" and len(loc) == 1:
        return f"unknown section (the sections are {', '.join(sections())})"
    if loc and loc[0] in sections():
        own = kind(loc[0]).message(error)
        if own is not None:
            return own
    return message(error)


def _structure(data: Any, prefix: str = "") -> Any:
    if data is None:
        return manifest_spec()()
    if not isinstance(data, dict):
        raise ManifestError([f"{prefix}(top level): must be a mapping with the sections {', '.join(sections())}"])
    try:
        return manifest_spec().model_validate(data)
    except PydanticValidationError as e:
        lines: list[str] = []
        for error in e.errors():
            line = f"{prefix}{path(error['loc'])}: {_error_text(error)}"
            if line not in lines:
                lines.append(line)
        raise ManifestError(lines) from None


def load_manifests(sources: Sequence[tuple[str, str]], *, prune: bool = False) -> Loaded:
    """Parse and validate (source name, text) pairs as one manifest; raises ManifestError listing every problem.

    With several files every path starts with its file's name; names must be unique across the files.
    """
    errors: list[str] = []
    syntax = False
    parts: list[tuple[str, Any]] = []
    for source, text in sources:
        prefix = f"{source}: " if len(sources) > 1 else ""
        try:
            parts.append((prefix, _structure(read_yaml(text, source), prefix)))
        except ManifestSyntaxError as e:
            syntax = True
            errors.extend(e.errors)
        except ManifestError as e:
            errors.extend(e.errors)
    if errors:
        raise (ManifestSyntaxError if syntax else ManifestError)(errors)
    loaded = Loaded({s: [] for s in sections()}, {s: [] for s in sections()}, set())
    for prefix, spec in parts:
        loaded.present |= spec.model_fields_set
        for section in sections():
            objects = getattr(spec, section)
            loaded.items[section].extend(objects)
            loaded.where[section].extend(f"{prefix}{section}[{i}]" for i in range(len(objects)))
    check = Check(loaded, prune)
    for k in kinds():
        check.unique(loaded.where[k.section], loaded.items[k.section], lambda x: x.name)
    for k in kinds():
        k.check(check)
    if check.errors:
        raise ManifestError(check.errors)
    # checks across kinds that belong to a higher layer (settings.ACCORD_MANIFEST_CHECKS: f(check), may warn)
    for dotted in getattr(settings, "ACCORD_MANIFEST_CHECKS", []):
        import_string(dotted)(check)
    if check.errors:
        raise ManifestError(check.errors)
    loaded.warnings = check.warnings
    return loaded


def load_manifest(text: str, source: str = "<string>") -> Loaded:
    """Parse and validate a manifest; raises ManifestError (ManifestSyntaxError for bad YAML) listing every problem."""
    return load_manifests([(source, text)])


@dataclass
class ApplyResult:
    """Per object: (kind, name, 'created' | 'updated' | 'unchanged' | 'deleted'), and what changed."""

    outcomes: list[tuple[str, str, str]] = field(default_factory=list)
    changes: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    dry_run: bool = False
    warnings: list[str] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(1 for o in self.outcomes if o[2] == outcome)

    @property
    def changed(self) -> bool:
        return any(o[2] != "unchanged" for o in self.outcomes)

    def lines(self) -> list[str]:
        """One line per object: 'agreement gold-sla: updated (monthly_fee: 4000 -> 4500)'."""
        out = []
        for singular, name, state in self.outcomes:
            shown = f"would be {state}" if self.dry_run and state != "unchanged" else state
            detail = self.changes.get((singular, name))
            out.append(f"{singular} {name}: {shown}" + (f" ({'; '.join(detail)})" if detail else ""))
        return out

    def summary(self) -> str:
        verb = "would be " if self.dry_run else ""
        parts = [f"{self.count('created')} {verb}created", f"{self.count('updated')} {verb}updated",
                 f"{self.count('unchanged')} unchanged"]
        if self.count("deleted"):
            parts.append(f"{self.count('deleted')} {verb}deleted")
        return ", ".join(parts)

    def record(self, singular: str, name: str, before: dict[str, Any] | None, after: dict[str, Any]) -> bool:
        """Record what happens to one object; True if it must be written."""
        state = "created" if before is None else "unchanged" if before == after else "updated"
        self.outcomes.append((singular, name, state))
        if before is not None and state == "updated":
            self.changes[(singular, name)] = changes(before, after)
        return state != "unchanged"


class _DryRun(Exception):
    pass


def apply_manifests(sources: Sequence[tuple[str, str]], *, dry_run: bool = False, prune: bool = False) -> ApplyResult:
    """Validate (source, text) pairs as one manifest, then create or update every object in one transaction.

    With `prune`, stored objects of the sections the files name but not in the files are deleted. With
    `dry_run`, everything is written and rolled back, so the result shows what would happen.
    """
    result = ApplyResult(dry_run=dry_run)
    try:
        with transaction.atomic():
            loaded = load_manifests(sources, prune=prune)
            result.warnings = loaded.warnings
            if prune:
                _prune(loaded, result)
            for k in kinds():
                items = loaded.items[k.section]
                k.write([x for x in items if result.record(k.singular, x.name, k.stored(x.name), k.canonical(x))])
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    except (IntegrityError, DataError) as e:  # validation should have caught it; say so, not with a traceback
        raise ManifestError([f"(database): the database refused the change, nothing was written: {e}"]) from e
    return result


def apply_manifest(text: str, *, dry_run: bool = False, source: str = "<string>", prune: bool = False) -> ApplyResult:
    """Validate one manifest, then create or update every object of it in one transaction."""
    return apply_manifests([(source, text)], dry_run=dry_run, prune=prune)


def _prune(loaded: Loaded, result: ApplyResult) -> None:
    """Delete stored objects of the sections the files name that the files do not list (dependents first)."""
    errors: list[str] = []
    for k in reversed(kinds()):
        if k.section not in loaded.present:
            continue
        keep = [x.name for x in loaded.items[k.section]]
        for obj in k.model._default_manager.exclude(name__in=keep).order_by("name"):
            name = str(obj.name)  # type: ignore[attr-defined]
            try:
                obj.delete()
            except (ProtectedError, RestrictedError) as e:
                errors.append(f"{k.section}: cannot remove {k.singular} '{name}': {in_use(e)}")
                continue
            result.outcomes.append((k.singular, name, "deleted"))
    if errors:
        raise ManifestError(errors)


def export_data() -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """Everything the manifest covers, in canonical form, and notes on what could not be exported."""
    data: dict[str, list[dict[str, Any]]] = {}
    notes: list[str] = []
    for k in kinds():
        data[k.section], kind_notes = k.export()
        notes += kind_notes
    return data, notes


def export_manifest() -> str:
    """The stored objects of every kind as manifest YAML (stable order)."""
    data, notes = export_data()
    header = "# Accord manifest: apply with `accord apply -f FILE` (docs/agreements-as-code.md)\n"
    header += "".join(f"# {note}\n" for note in notes)
    data = {k: v for k, v in data.items() if v}
    return header + dump(data) if data else header


def export_object(section: str, name: str) -> str | None:
    """One stored object as manifest YAML (`{section: [object]}`), exactly as `accord export` writes it; None if
    there is no object of that name. The staff UI's YAML editor starts from it."""
    found = kind(section).stored(name)
    return dump({section: [found]}) if found is not None else None


def export_objects(section: str, items: list[Any]) -> str:
    """Objects of the file (specs of `section`) in canonical form as manifest YAML, as the export would write
    them once applied (applying is idempotent: the stored form then equals the canonical one)."""
    k = kind(section)
    return dump({section: [k.canonical(x) for x in items]})
