"""HAProxy's Runtime API (the `stats socket ... level admin` of the rendered configuration): map edits without a
reload, and what a running instance says about itself."""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


class RuntimeError_(Exception):
    """HAProxy refused a command, or its socket could not be reached."""


def diff_map(path: Path, old: dict[str, str], new: dict[str, str]) -> list[str]:
    """The Runtime API commands that turn a map's entries `old` into `new`: deletions first (a revoked key stops
    working before anything else changes), then additions and changed values."""
    commands = [f"del map {path} {key}" for key in old if key not in new]
    for key, value in new.items():
        if key not in old:
            commands.append(f"add map {path} {key} {value}")
        elif old[key] != value:
            commands.append(f"set map {path} {key} {value}")
    return commands


@dataclass
class Runtime:
    """One instance's Runtime API socket."""

    path: Path
    timeout: float = 5.0

    def command(self, line: str) -> str:
        """Send one command and return HAProxy's answer (one connection per command: the socket's default mode)."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(str(self.path))
                sock.sendall(line.encode() + b"\n")
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except OSError as e:
            raise RuntimeError_(f"HAProxy's Runtime API at {self.path}: {e}") from e
        return b"".join(chunks).decode(errors="replace")

    def apply(self, commands: Iterable[str]) -> int:
        """Run map commands; an answer other than an empty line is HAProxy refusing it. Returns how many ran."""
        n = 0
        for line in commands:
            answer = self.command(line).strip()
            if answer:
                raise RuntimeError_(f"HAProxy refused `{line}`: {answer}")
            n += 1
        return n

    def replace_map(self, path: Path, entries: dict[str, str]) -> None:
        """Swap a map's whole content in one step (`prepare map`, `add map @version`, `commit map`): requests see the
        old entries or the new ones, never a map half filled. The way back to a known state after a partial edit."""
        answer = self.command(f"prepare map {path}")
        version = answer.rsplit(":", 1)[-1].strip()
        if not version.isdigit():
            raise RuntimeError_(f"HAProxy refused `prepare map {path}`: {answer.strip()}")
        self.apply(f"add map @{version} {path} {key} {value}" for key, value in entries.items())
        self.apply([f"commit map @{version} {path}"])

    def info(self) -> dict[str, str]:
        """`show info`: the worker's Pid, Uptime, CurrConns ..."""
        out = {}
        for row in self.command("show info").splitlines():
            name, sep, value = row.partition(":")
            if sep:
                out[name.strip()] = value.strip()
        return out

    def show_map(self, path: Path) -> dict[str, str]:
        """A map's entries as the running process holds them (`show map`: `<ref> <key> <value>` per line)."""
        out = {}
        for row in self.command(f"show map {path}").splitlines():
            parts = row.split(" ", 2)
            if len(parts) == 3:
                out[parts[1]] = parts[2]
        return out
