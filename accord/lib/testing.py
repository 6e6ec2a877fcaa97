"""Helpers for tests that start real `accord` processes against the test database."""

from __future__ import annotations

from typing import Any

from .processes import accord_command, database_url, subprocess_env

__all__ = ["accord_command", "database_url", "run_in_thread", "subprocess_env"]


def run_in_thread(main: Any) -> Any:
    """`asyncio.run(main)` in a thread of its own: the session's browser keeps an event loop on the main thread."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main).result()
