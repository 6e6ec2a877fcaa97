"""Helpers for tests that start real `accord` processes against the test database."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from .processes import accord_command, database_url, subprocess_env

T = TypeVar("T")

__all__ = ["FullDatabase", "accord_command", "database_url", "full_sqlite_database", "run_in_thread", "subprocess_env"]


def run_in_thread(main: Any) -> Any:
    """`asyncio.run(main)` in a thread of its own: the session's browser keeps an event loop on the main thread."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main).result()


@dataclass
class FullDatabase:
    """A SQLite test database that cannot grow: `pages` is its cap (give it to `accord` subprocesses as
    ACCORD_SQLITE_MAX_PAGES); `free()` deletes the filler, making room inside the file again."""

    pages: int

    @staticmethod
    def free() -> None:
        from django.db import connection

        with connection.cursor() as c:
            c.execute("DELETE FROM zz_filler")


@contextlib.contextmanager
def full_sqlite_database() -> Iterator[FullDatabase]:
    """Fill the test database (SQLite) to a cap, as a full file system would: every page is taken by a filler
    table and every new connection of this process gets `PRAGMA max_page_count` at that size (a
    `connection_created` hook), so SQLite answers "database or disk is full" (SQLITE_FULL). Undone on exit."""
    from django.db import OperationalError, connection
    from django.db.backends.signals import connection_created

    limit: list[int] = []

    def cap(sender: Any, connection: Any, **kwargs: Any) -> None:
        if limit:
            with connection.cursor() as c:
                c.execute(f"PRAGMA max_page_count = {limit[0]}")

    def fill(cursor: Any, size: int) -> None:
        while True:
            try:
                cursor.execute("INSERT INTO zz_filler (x) VALUES (randomblob(%s))", [size])
            except OperationalError as e:
                assert "full" in str(e)
                return

    with connection.cursor() as c:
        c.execute("CREATE TABLE zz_filler (x BLOB)")
        c.execute("PRAGMA page_count")
        pages = c.fetchone()[0]
        c.execute(f"PRAGMA max_page_count = {pages + 50}")
        for size in (3000, 300, 30, 1):  # large blobs, then smaller ones into what room is left on each page
            fill(c, size)
        c.execute("PRAGMA page_count")
        limit.append(c.fetchone()[0])
        c.execute("PRAGMA freelist_count")
        assert c.fetchone()[0] == 0
    connection_created.connect(cap)
    try:
        yield FullDatabase(limit[0])
    finally:
        connection_created.disconnect(cap)
        with connection.cursor() as c:
            c.execute("PRAGMA max_page_count = 1073741823")
            c.execute("DROP TABLE zz_filler")


def shard() -> tuple[int, int]:
    """(i, n) from ACCORD_TEST_SHARD=i/n: this is pass i of n passes that `dev.py test` runs at once (SQLite,
    PostgreSQL, SQLite on a moved clock); (1, 1) when the suite runs alone."""
    i, _, n = os.environ.get("ACCORD_TEST_SHARD", "1/1").partition("/")
    return int(i), int(n or 1)


def share(items: list[T]) -> list[T]:
    """This pass's share of a long list of independent checks that neither the engine nor the clock can change
    (the admin's ~190 pages under axe-core): the passes of one run split it, each item checked by exactly one."""
    i, n = shard()
    return items[i - 1 :: n]
