"""`accord serve`: the web UI, the API and the live chat's WebSockets, on uvicorn (ASGI)."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = ("Serve the UI, the API, the portal and the live chat (WebSockets) with uvicorn: `serve --listen "
            "HOST:PORT [--workers N]`. Several workers need ACCORD_REDIS_URL (the chat's channel layer on Redis).")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--listen", default="127.0.0.1:8000")
        parser.add_argument("--workers", type=int, default=1)

    def handle(self, *args: Any, **options: Any) -> None:
        import os

        import uvicorn
        from django.conf import settings

        host, _, port = options["listen"].rpartition(":")
        if not host or not port.isdigit():
            raise CommandError(f"--listen {options['listen']!r}: give HOST:PORT, e.g. 127.0.0.1:8000")
        if options["workers"] > 1 and "Redis" not in settings.CHANNEL_LAYERS["default"]["BACKEND"]:
            raise CommandError("several workers share chats only through Redis: set ACCORD_REDIS_URL")
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "accord.settings")
        # Sync code runs on one thread (thread-sensitive sync_to_async): keep its SQLite connection open between
        # calls, as PostgreSQL's already is. Reopening the file for every chat message was a fifth of the
        # server's time (py-spy on bench/chat.py). Here for this process, in the environment for workers.
        os.environ.setdefault("ACCORD_SQLITE_CONN_MAX_AGE", "60")
        if settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
            settings.DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ["ACCORD_SQLITE_CONN_MAX_AGE"])
        self.stdout.write(f"serving http://{host}:{port}/ (and ws://{host}:{port}/ws/chat/) with uvicorn; Ctrl-C stops")
        uvicorn.run("accord.asgi:application", host=host, port=int(port), workers=options["workers"],
                    log_level="warning", ws="websockets-sansio", lifespan="off")
