"""A running gateway process (`accord gateway`, one worker) under hostile input: malformed, smuggling, desync
and slow requests, each followed by a good request on a new connection. The worker is never replaced (the same
pid throughout, /healthz 200), and the upstream's own log shows no request smuggled past the gateway."""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import EchoServer, wait_until
from .test_live import admin_status
from .test_proxy import dead_port

GOOD = b"GET /fuzz/good HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
# Everything meant to reach the upstream only if the gateway were fooled has SMUGGLED in its path.
SMUGGLED = b"GET /fuzz/SMUGGLED HTTP/1.1\r\nHost: x\r\n\r\n"


@dataclass
class Case:
    name: str
    parts: list[bytes]  # written one after another
    pause: float = 0.0  # seconds between parts (slow clients)
    expect: tuple[bytes, ...] | None = (b"400",)  # the statuses of the answers, in order; None: any but 500


def _cases() -> list[Case]:
    post = b"POST /fuzz/a HTTP/1.1\r\nHost: x\r\n"
    cases = [
        # request smuggling: framing two parsers could read differently is refused, never re-framed
        Case("CL.TE", [post + b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED]),
        Case("TE.CL", [post + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n"
                       + SMUGGLED]),
        Case("TE twice", [post + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n"
                          + SMUGGLED]),
        Case("TE xchunked", [post + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + SMUGGLED],
             expect=(b"501",)),
        Case("TE space before colon", [post + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + SMUGGLED]),
        Case("TE tab", [post + b"Transfer-Encoding:\tchunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n" + SMUGGLED]),
        Case("TE leading space", [post + b" Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED]),
        Case("TE gzip", [post + b"Transfer-Encoding: gzip\r\n\r\n" + SMUGGLED], expect=(b"501",)),
        Case("TE on HTTP/1.0", [b"POST /fuzz/a HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                                b"Content-Length: 3\r\n\r\n0\r\n\r\n" + SMUGGLED]),
        Case("two Content-Lengths", [post + b"Content-Length: 3\r\nContent-Length: 40\r\n\r\nabc" + SMUGGLED]),
        Case("Content-Length list", [post + b"Content-Length: 3, 40\r\n\r\nabc" + SMUGGLED]),
        Case("Content-Length +3", [post + b"Content-Length: +3\r\n\r\nabc" + SMUGGLED]),
        Case("Content-Length hex", [post + b"Content-Length: 0x3\r\n\r\nabc" + SMUGGLED]),
        Case("Content-Length overflow", [post + b"Content-Length: 99999999999999999999999\r\n\r\n" + SMUGGLED]),
        Case("chunk size overflow", [post + b"Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nab\r\n"
                                     + SMUGGLED]),
        Case("chunk size negative", [post + b"Transfer-Encoding: chunked\r\n\r\n-1\r\nab\r\n0\r\n\r\n"
                                     + SMUGGLED]),
        Case("chunk without CRLF", [post + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabcX0\r\n\r\n" + SMUGGLED]),
        Case("bad chunk after a pause", [post + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
                                         b"zz\r\n" + SMUGGLED], pause=0.2),
        Case("chunk extension with LF", [post + b"Transfer-Encoding: chunked\r\n\r\n3;x=\nabc\r\n0\r\n\r\n"
                                         + SMUGGLED]),
        Case("obs-fold", [b"GET /fuzz/a HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n" + SMUGGLED]),
        Case("obs-fold of TE", [post + b"Transfer-Encoding:\r\n chunked\r\nContent-Length: 3\r\n\r\nabc"
                                + SMUGGLED]),
        Case("bare LF", [b"GET /fuzz/a HTTP/1.1\nHost: x\n\n" + SMUGGLED]),
        Case("bare LF in a header", [b"GET /fuzz/a HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n" + SMUGGLED]),
        Case("bare CR", [b"GET /fuzz/a HTTP/1.1\rHost: x\r\n\r\n" + SMUGGLED]),
        Case("NUL in a value", [b"GET /fuzz/a HTTP/1.1\r\nHost: x\r\nX-A: b\x00c\r\n\r\n" + SMUGGLED]),
        Case("NUL in a name", [b"GET /fuzz/a HTTP/1.1\r\nHost: x\r\nX-\x00A: b\r\n\r\n" + SMUGGLED]),
        Case("NUL in the path", [b"GET /fuzz/a\x00b HTTP/1.1\r\nHost: x\r\n\r\n" + SMUGGLED]),
        Case("space in a name", [b"GET /fuzz/a HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n" + SMUGGLED]),
        Case("no version (HTTP/0.9)", [b"GET /fuzz/a\r\nHost: x\r\n\r\n" + SMUGGLED], expect=(b"505",)),
        Case("HTTP/0.9", [b"GET /fuzz/a\r\n\r\n"], expect=(b"505",)),
        Case("HTTP/2.0 line", [b"GET /fuzz/a HTTP/2.0\r\nHost: x\r\n\r\n" + SMUGGLED], expect=(b"505",)),
        Case("HTTP/1.2", [b"GET /fuzz/a HTTP/1.2\r\nHost: x\r\n\r\n" + SMUGGLED], expect=(b"505",)),
        Case("HTTP/2 preface", [b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SMUGGLED]),
        Case("lower-case method", [b"get /fuzz/a HTTP/1.1\r\nHost: x\r\n\r\n" + SMUGGLED]),
        Case("two spaces (read as one)", [b"GET  /fuzz/a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                                          + SMUGGLED], expect=(b"200",)),
        Case("no Host", [b"GET /fuzz/a HTTP/1.1\r\n\r\n" + SMUGGLED]),
        Case("two Hosts", [b"GET /fuzz/a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n" + SMUGGLED]),
        # a WebSocket handshake goes upstream; this HTTP upstream ignores the upgrade and answers 200, so no tunnel
        # opens and what followed the head is dropped, never forwarded
        Case("websocket upgrade", [b"GET /fuzz/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                                   b"Upgrade: websocket\r\n\r\n" + SMUGGLED], expect=(b"200",)),
        Case("websocket upgrade with a body", [post + b"Connection: Upgrade\r\nUpgrade: websocket\r\n"
                                               b"Content-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED]),
        Case("other upgrade", [b"GET /fuzz/a HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n"
                               + SMUGGLED], expect=(b"501",)),
        Case("CONNECT", [b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n" + SMUGGLED],
             expect=(b"501",)),
        Case("dot-segments above the root", [b"GET /fuzz/../../SMUGGLED HTTP/1.1\r\nHost: x\r\n"
                                             b"Connection: close\r\n\r\n"]),
        Case("TLS hello", [b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64)]),
        Case("head too large", [b"GET /fuzz/a HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n"],
             expect=(b"431",)),
        Case("many headers", [b"GET /fuzz/a HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 5000 + b"\r\n"],
             expect=(b"431",)),
        # desync: a well-framed request whose body holds a request must stay a body; garbage after a good
        # request ends that connection, not the next one
        Case("request in a body", [post + b"Content-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED
                                   + b"GET /fuzz/after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"],
             expect=(b"200", b"200")),
        Case("request in a chunk", [post + b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % len(SMUGGLED) + SMUGGLED
                                    + b"\r\n0\r\n\r\nGET /fuzz/after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"],
             expect=(b"200", b"200")),
        Case("GET with a body", [b"GET /fuzz/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n" + SMUGGLED],
             expect=(b"200", b"400")),  # the body is "GET /", the rest a malformed request line
        Case("good then garbage", [b"GET /fuzz/a HTTP/1.1\r\nHost: x\r\n\r\n\x01\x02 garbage \r\n\r\n"],
             expect=(b"200", b"400")),
        Case("Expect then another request", [post + b"Content-Length: 5\r\nExpect: 100-continue\r\n\r\n" + SMUGGLED],
             expect=(b"200", b"400")),  # the body came with the head: no 100 Continue
        # slow clients: the head must be whole within --header-timeout, a body's bytes keep coming within
        # --idle-timeout
        Case("slowloris head", [b"GET /fuzz/a HTTP/1.1\r\n", b"Host: x\r\n", b"X-A: 1\r\n", b"X-B: 2\r\n",
                                b"X-C: 3\r\n", b"X-D: 4\r\n"], pause=0.3, expect=(b"408",)),
        Case("slow body", [post + b"Content-Length: 100\r\n\r\n0123456789"], expect=(b"408",)),
        Case("silent connection", [b""], expect=None),
    ]
    rng = random.Random(14)
    # (a mutation may well make the first request valid, and the one after it an ordinary pipelined one)
    templates = [c.parts[0].replace(SMUGGLED, b"GET /fuzz/pipelined HTTP/1.1\r\nHost: x\r\n\r\n")
                 .replace(b"SMUGGLED", b"mutated") for c in cases if len(c.parts) == 1 and c.parts[0]]
    for i in range(12):  # mutations of the cases above: whatever comes of them, the gateway stays up
        data = bytearray(rng.choice(templates))
        for _ in range(rng.randrange(1, 5)):
            at = rng.randrange(len(data) + 1)
            data[at:at + rng.randrange(0, 3)] = bytes([rng.choice(b"\r\n\x00 :;,\t0123456789abcdefXT-")])
        cases.append(Case(f"mutation {i}", [bytes(data)], expect=None))
    return cases


def _exchange(port: int, case: Case) -> bytes:
    """Write the case's parts; read until the gateway closes the connection (it must, within a few seconds)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for i, part in enumerate(case.parts):
            if i and case.pause:
                time.sleep(case.pause)
            with contextlib.suppress(OSError):  # the gateway may have closed already (a refusal, a timeout)
                sock.sendall(part)
        chunks = []
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)


def _good(port: int) -> bytes:
    return _exchange(port, Case("good", [GOOD]))


def _workers(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.mark.django_db(transaction=True)
def test_hostile_input_never_takes_the_gateway_down_or_past_it(upstreams: list[EchoServer]) -> None:
    from accord.catalog.models import Endpoint, Pool, Service
    from accord.lib.testing import accord_command, subprocess_env

    svc = Service.objects.create(name="fuzz", base_path="/fuzz", allow_anonymous=True)
    pool = Pool.objects.create(service=svc, name="primary", role="primary", capacity=50)
    Endpoint.objects.create(pool=pool, url=upstreams[0].url)
    port, admin = dead_port(), dead_port()
    log_path = f"{os.environ.get('TMPDIR', '/tmp')}/accord-gateway-fuzz-{os.getpid()}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed below; a pipe nobody reads could fill and block
    proc = subprocess.Popen([*accord_command(), "gateway", "--listen", f"127.0.0.1:{port}", "--workers", "1",
                             "--admin", f"127.0.0.1:{admin}", "--header-timeout", "1", "--idle-timeout", "1",
                             "--upstream-timeout", "5", "--max-header-bytes", "16384", "--no-compile"],
                            env=subprocess_env(), stdout=log, stderr=log, start_new_session=True)
    try:
        wait_until(lambda: admin_status(admin, "/readyz") == 200 or proc.poll() is not None, timeout=60,
                   what="the gateway to be ready")
        workers = _workers(proc.pid)
        assert len(workers) == 1 and _good(port).startswith(b"HTTP/1.1 200 ")
        mismatched: list[str] = []
        for case in _cases():
            reply = _exchange(port, case)
            statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", reply)
            assert reply == b"" or reply.startswith(b"HTTP/1.1 "), (case.name, reply[:200])
            assert b" 500 " not in reply and b"Traceback" not in reply, (case.name, reply[:300])
            if case.expect is not None and tuple(statuses) != case.expect:
                mismatched.append(f"{case.name}: {[s.decode() for s in statuses]} {reply[:160]!r}")
            smuggled = [path for path in upstreams[0].order if "SMUGGLED" in path]
            assert not smuggled, (case.name, smuggled)  # nothing got past the gateway's framing
            good = _good(port)
            assert good.startswith(b"HTTP/1.1 200 "), (case.name, good[:200])
            assert proc.poll() is None and _workers(proc.pid) == workers, case.name  # the same worker, never restarted
        assert admin_status(admin, "/healthz") == 200
        assert not mismatched, "\n".join(mismatched)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        log.close()
    seen = list(upstreams[0].order)
    assert not [p for p in seen if "SMUGGLED" in p], seen  # nothing got past the gateway's framing
    assert seen.count("/fuzz/good") == len(_cases()) + 1
    assert "Traceback" not in Path(log_path).read_text(errors="replace")
