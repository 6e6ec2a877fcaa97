"""Database helpers for bulk work that the ORM does slowly."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connection, models
from django.db.models import ProtectedError, RestrictedError


def bulk_update_rows(model: type[models.Model], fields: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> int:
    """UPDATE many rows by primary key with one prepared statement (executemany).

    `rows` are tuples of the new values in `fields` order followed by the primary key. Django's bulk_update
    builds a CASE expression per field and batch, which takes minutes for 100,000 rows; this takes seconds.
    Values go through each field's get_db_prep_value, so decimals and dates are stored as the ORM would.
    """
    if not rows:
        return 0
    meta = model._meta
    qn = connection.ops.quote_name
    columns: list[Any] = [meta.get_field(f) for f in fields]
    assert meta.pk is not None
    assignments = ", ".join(f"{qn(col.column)} = %s" for col in columns)
    sql = f"UPDATE {qn(meta.db_table)} SET {assignments} WHERE {qn(str(meta.pk.column))} = %s"
    prepared = [
        [col.get_db_prep_value(value, connection, prepared=False) for col, value in zip(columns, row[:-1], strict=True)]
        + [row[-1]]
        for row in rows
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, prepared)
    return len(rows)



def in_use(e: ProtectedError | RestrictedError) -> str:
    """What stops a delete, counted by kind: 'still used by 2 accounts, 1 agreement'."""
    objects = e.protected_objects if isinstance(e, ProtectedError) else e.restricted_objects
    counts: dict[str, int] = {}
    for obj in objects:
        label = str(obj._meta.verbose_name)
        counts[label] = counts.get(label, 0) + 1
    return "still used by " + ", ".join(f"{n} {label}{'' if n == 1 else 's'}" for label, n in sorted(counts.items()))
