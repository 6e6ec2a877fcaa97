"""The audit trail: `record()` notes who changed what, when and how; `diff()` makes the `changes` of an edit."""

from __future__ import annotations

from typing import Any

from django.db import models, transaction

from .models import AuditEntry


def _plain(value: Any) -> Any:
    """A JSON-safe form of a field's value (model instances by their primary key, the rest as text)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, models.Model):
        return value.pk
    if isinstance(value, list | tuple | set):
        return [_plain(v) for v in value]
    return str(value)


def snapshot(obj: models.Model, fields: list[str] | None = None) -> dict[str, Any]:
    """The concrete fields' values of `obj` (or only `fields`), JSON-safe, to compare before and after an edit."""
    names = fields or [f.attname for f in obj._meta.concrete_fields]
    return {name: _plain(getattr(obj, name)) for name in names}


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """`{field: [before, after]}` for the fields whose value changed."""
    return {k: [before.get(k), after.get(k)] for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)}


def record(
    user: Any,
    action: str,
    obj: models.Model | None = None,
    *,
    object_type: str = "",
    object_id: str = "",
    object_repr: str = "",
    changes: dict[str, Any] | None = None,
    summary: str = "",
    source: str = AuditEntry.Source.UI,
) -> AuditEntry:
    """Write one audit entry; `obj` names what changed (or give `object_type`/`object_id`/`object_repr`).

    Call it inside the transaction that makes the change, so the change and its entry land together.
    """
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or str(obj.pk)
        object_repr = object_repr or str(obj)[:300]
    who = user if user is not None and getattr(user, "is_authenticated", False) else None
    return AuditEntry.objects.create(
        user=who,
        source=source,
        action=action,
        object_type=object_type,
        object_id=object_id,
        object_repr=object_repr[:300],
        changes=changes or {},
        summary=summary,
    )


def trail(obj: models.Model, limit: int = 50) -> models.QuerySet[AuditEntry]:
    """The latest entries about one object, newest first."""
    return AuditEntry.objects.filter(object_type=obj._meta.label_lower, object_id=str(obj.pk)).select_related(
        "user"
    )[:limit]


_SECRET_PARTS = ("hash", "password", "secret")  # never in an entry's changes (a key's hash, a token's digest)


def _fields(obj: models.Model) -> list[str]:
    """The fields an entry's changes show: not secrets, not the time of the last save (it moves on every save)."""
    return [f.attname for f in obj._meta.concrete_fields
            if not any(p in f.attname for p in _SECRET_PARTS) and not getattr(f, "auto_now", False)]


class Audited:
    """Added by the API router (`accord.api.urls.audit_every_change`) to every writable viewset: every create, update
    and delete through the API writes its audit entry (source "API", the token's user) in the same transaction as
    the change, as the staff UI and the command line do (docs/access.md). A viewset that overrides `perform_create`,
    `perform_update` or `perform_destroy` calls `super()` for the change itself; `test_api_audit` checks them all."""

    request: Any

    def _audit(self, action: str, obj: models.Model, changes: dict[str, Any], **names: str) -> None:
        record(self.request.user, action, obj if not names else None, changes=changes, source=AuditEntry.Source.API,
               **names)

    def perform_create(self, serializer: Any) -> None:
        with transaction.atomic():
            super().perform_create(serializer)  # type: ignore[misc]
            obj = serializer.instance
            self._audit("create", obj, diff({}, snapshot(obj, _fields(obj))))

    def perform_update(self, serializer: Any) -> None:
        with transaction.atomic():
            obj = serializer.instance
            before = snapshot(obj, _fields(obj))
            super().perform_update(serializer)  # type: ignore[misc]
            obj = serializer.instance
            self._audit("update", obj, diff(before, snapshot(obj, _fields(obj))))

    def perform_destroy(self, instance: Any) -> None:
        with transaction.atomic():
            before = snapshot(instance, _fields(instance))
            names = {"object_type": instance._meta.label_lower, "object_id": str(instance.pk),
                     "object_repr": str(instance)[:300]}
            super().perform_destroy(instance)  # type: ignore[misc]
            self._audit("delete", instance, diff(before, {}), **names)
