"""A TCP proxy on loopback in front of a Redis server, for the fan-out's fault tests: each
connection a client opens gets one of its own to Redis, and bytes pass both ways unless a
subclass's hooks say otherwise (a reply lost, a connection gone silent)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Self

__all__ = ["RedisProxy"]

CHUNK = 65536
LAST_CHUNK_SECONDS = 0.2  # after a connection's last chunk is passed on: Redis acts on it


class RedisProxy:
    def __init__(self, redis_port: int) -> None:
        self._redis_port = redis_port
        self._server: asyncio.Server | None = None
        self.port = 0
        self._open: set[asyncio.StreamWriter] = set()
        self._serving: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._open:
            writer.close()
        if self._serving:
            await asyncio.wait(self._serving, timeout=5)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    # -- hooks ----------------------------------------------------------------------------

    def passes_up(self, client: asyncio.StreamWriter, chunk: bytes) -> bool:
        """Whether `chunk`, sent by `client`, goes on to Redis."""
        return True

    def passes_down(self, client: asyncio.StreamWriter) -> bool:
        """Whether what Redis sends goes on to `client`."""
        return True

    def is_last(self, client: asyncio.StreamWriter, chunk: bytes) -> bool:
        """Whether `chunk` ends the connection: nothing Redis answers from then on reaches
        `client`, the chunk is passed on, and the connection drops soon after."""
        return False

    # -- the relay ------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._serving.add(task)
        self._open.add(writer)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._redis_port)

        async def down() -> None:
            with contextlib.suppress(OSError):
                while chunk := await up_reader.read(CHUNK):
                    if self.passes_down(writer):
                        writer.write(chunk)
                        await writer.drain()

        relay = asyncio.create_task(down())
        try:
            while chunk := await reader.read(CHUNK):
                last = self.is_last(writer, chunk)
                if last:
                    relay.cancel()  # its reply is never passed on
                if self.passes_up(writer, chunk):
                    up_writer.write(chunk)
                    await up_writer.drain()
                if last:
                    await asyncio.sleep(LAST_CHUNK_SECONDS)
                    break
        except OSError:
            pass
        finally:
            relay.cancel()
            writer.close()
            up_writer.close()
            self._open.discard(writer)
            self._serving.discard(task)
