"""A TCP forwarder the test can cut and restore: a stand-in for a database that goes away.

The app connects to the proxy's port; `stop()` closes the listener and every open connection
(new connections are refused, as with a crashed server), `start()` listens on the same port
again. `partition()` is the other kind of outage, a network that drops packets: connections stay
open and new ones are accepted, but no byte goes through in either direction until `heal()`,
which delivers what was held back (as TCP retransmission would); `partition_after_reply_to()`
starts one between two statements. The real server behind it is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from typing import Self


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port: int = probe.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tcp-proxy", daemon=True
        )
        self._thread.start()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing: asyncio.Event | None = None  # set: bytes go through (on the proxy loop)
        # partition_after_reply_to: the marker to wait for, then whether its reply is due.
        self._marker: bytes | None = None
        self._replying = False

    def _call(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)  # type: ignore[arg-type]

    def start(self) -> Self:
        self._call(self._start())
        return self

    async def _start(self) -> None:
        if self._flowing is None:
            self._flowing = asyncio.Event()
            self._flowing.set()
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )

    def stop(self) -> None:
        self._call(self._stop())

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def partition(self) -> None:
        """Stop forwarding bytes without closing anything: peers see silence, not an error."""
        self._call(self._set_flowing(False))

    def partition_after_reply_to(self, marker: bytes) -> None:
        """Partition once the database has answered the next bytes the app sends holding
        `marker`: a partition that falls between two statements of one exchange. (The first
        reply after them on any connection counts: for a test with one request at a time.)"""
        self._call(self._arm(marker))

    async def _arm(self, marker: bytes) -> None:
        self._marker, self._replying = marker, False

    def heal(self) -> None:
        """Forward bytes again, those held back during the partition first."""
        self._call(self._set_flowing(True))

    async def _set_flowing(self, flowing: bool) -> None:
        assert self._flowing is not None, "start() the proxy first"
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    def close(self) -> None:
        self.heal()
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        # During a partition a new connection is accepted but reaches nothing (the SYN of a
        # real partition would go unanswered; for the client both are silence).
        self._writers.add(writer)
        await self._flowing.wait()
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, upstream_writer))
        await asyncio.gather(
            self._pipe(reader, upstream_writer, from_app=True),
            self._pipe(upstream_reader, writer, from_app=False),
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, from_app: bool
    ) -> None:
        assert self._flowing is not None
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                await self._flowing.wait()
                if from_app and self._marker is not None and self._marker in data:
                    self._marker, self._replying = None, True
                elif not from_app and self._replying:  # the reply goes through, then silence
                    self._replying = False
                    self._flowing.clear()
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
        self._writers.discard(writer)
