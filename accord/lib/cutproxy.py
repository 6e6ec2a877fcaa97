"""A TCP forwarder that a test can cut and restore: a database (or any server) that goes away and comes back.

`with CutProxy("127.0.0.1", 5432) as proxy:` listens on `proxy.port` and forwards each connection to the target.
`proxy.cut()` closes every forwarded connection and stops listening (new connections are refused, as by a
restarting server); `proxy.restore()` listens on the same port again. Used by the fault tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

from .ports import free_port


class CutProxy:
    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.host, self.port = host, free_port(host)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="cut-proxy", daemon=True)
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.connections = 0  # accepted so far

    def __enter__(self) -> CutProxy:
        self.thread.start()
        self.restore()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cut()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def _call(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)  # type: ignore[arg-type]

    def cut(self) -> None:
        """Refuse new connections and drop every open one."""
        self._call(self._cut())

    def restore(self) -> None:
        """Accept and forward connections again, on the same port."""
        self._call(self._listen())

    async def _listen(self) -> None:
        if self.server is None:
            self.server = await asyncio.start_server(self._handle, self.host, self.port, reuse_address=True)

    async def _cut(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.close()
        for w in list(self.writers):
            w.transport.abort()
        self.writers.clear()
        if server is not None:
            await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers -= {writer, up_writer}
