"""A real SMTP server on loopback for tests and the demo: collects what it receives (aiosmtpd)."""

from __future__ import annotations

import socket
import threading
from email import message_from_bytes
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (aiosmtpd cannot listen on port 0)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class _Collector:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], Message]] = []
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.original_content)
        with self.arrived:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
            self.arrived.notify_all()
        return "250 OK"


class SmtpSink:
    """Start with `with SmtpSink() as sink:`; `sink.port`, `sink.messages`, `sink.wait_for(n)`."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._collector = _Collector()
        self.host = host
        self.port = free_port(host)
        self._controller = Controller(self._collector, hostname=host, port=self.port)

    def __enter__(self) -> SmtpSink:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()

    @property
    def messages(self) -> list[tuple[str, list[str], Message]]:
        with self._collector.lock:
            return list(self._collector.messages)

    def wait_for(self, count: int, timeout: float = 30.0) -> list[tuple[str, list[str], Message]]:
        with self._collector.arrived:
            self._collector.arrived.wait_for(lambda: len(self._collector.messages) >= count, timeout)
            return list(self._collector.messages)
