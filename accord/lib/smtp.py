"""A real SMTP server on loopback for tests and the demo: collects what it receives (aiosmtpd).

The fault tests make it misbehave: `refuse("451 4.3.0 Try again later")` answers every DATA with that line
until `refuse(None)`; `refuse_recipient(addr, "550 ...")` refuses one address for good; `hold()` makes it take
the next message and then keep the client waiting for its answer, as a server whose reply is lost.
"""

from __future__ import annotations

import asyncio
import threading
from email import message_from_bytes
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller

from .ports import free_port  # aiosmtpd cannot listen on port 0


class _Collector:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], Message]] = []
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)
        self.refusal: str | None = None
        self.refused_recipients: dict[str, str] = {}
        self.refused = 0  # DATA commands refused so far
        self.holding = False
        self.released = threading.Event()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        refusal = self.refused_recipients.get(address)
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refusal is not None:
            with self.lock:
                self.refused += 1
            return self.refusal
        msg = message_from_bytes(envelope.original_content)
        with self.arrived:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
            self.arrived.notify_all()
            hold, self.holding = self.holding, False
        if hold:
            while not self.released.is_set():
                await asyncio.sleep(0.05)
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
        self.release()
        self._controller.stop()

    def refuse(self, line: str | None) -> None:
        """Answer every DATA with this line (e.g. "451 4.3.0 Try again later"), or accept again with None."""
        self._collector.refusal = line

    def refuse_recipient(self, address: str, line: str) -> None:
        """Refuse RCPT TO this address with this line (e.g. "550 5.1.1 No such user"); "" accepts it again."""
        self._collector.refused_recipients[address] = line

    @property
    def refused(self) -> int:
        return self._collector.refused

    def hold(self) -> None:
        """Take the next message, then keep its sender waiting for the answer until `release()`."""
        self._collector.released.clear()
        self._collector.holding = True

    def release(self) -> None:
        self._collector.released.set()

    @property
    def messages(self) -> list[tuple[str, list[str], Message]]:
        with self._collector.lock:
            return list(self._collector.messages)

    def wait_for(self, count: int, timeout: float = 30.0) -> list[tuple[str, list[str], Message]]:
        with self._collector.arrived:
            self._collector.arrived.wait_for(lambda: len(self._collector.messages) >= count, timeout)
            return list(self._collector.messages)
