"""A connection's sends (server/sync/connection.py): while its writer is idle, `send` sends on the
caller's turn; a send that has to wait, or fails, is finished by the writer, and what comes
meanwhile is queued behind it in order. The socket here is a stand-in for the ASGI transport
(uvicorn's, not ours): one that can be told to push back or to fail."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from server.sync.connection import Connection, ConnectionState
from tests.support.stand_in_socket import PromptSocket, StandInSocket


class Transport(StandInSocket):
    """Its close is recorded among the frames, so that tests see where it came in their order."""

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.frames.append(b"close")


@asynccontextmanager
async def connected() -> AsyncIterator[tuple[Connection, Transport]]:
    transport = Transport()
    conn = Connection(
        transport, user="u", session="s", can_write=True, max_messages=100, max_bytes=1 << 20
    )
    writer = asyncio.create_task(conn.run_writer())
    await asyncio.sleep(0)  # the writer waits for work
    try:
        yield conn, transport
    finally:
        conn.close(1000, "")
        transport.writable.set()
        await asyncio.wait_for(writer, timeout=5)


async def test_an_idle_writers_frame_is_sent_on_the_callers_turn() -> None:
    async with connected() as (conn, transport):
        conn.send(b"a")
        assert transport.frames == [b"a"]  # no await since send
        conn.send(b"b")
        assert transport.frames == [b"a", b"b"]


async def test_a_send_that_must_wait_is_finished_by_the_writer_before_what_came_after() -> None:
    async with connected() as (conn, transport):
        transport.writable.clear()  # the transport pushes back
        for frame in (b"a", b"b", b"c"):
            conn.send(frame)
        await asyncio.sleep(0.01)
        assert transport.frames == []
        transport.writable.set()
        for _ in range(100):
            if len(transport.frames) == 3:
                break
            await asyncio.sleep(0.001)
        assert transport.frames == [b"a", b"b", b"c"]
        conn.send(b"d")  # the writer is idle again
        assert transport.frames[-1] == b"d"


async def test_a_send_that_fails_on_the_callers_turn_stops_the_writer() -> None:
    async with connected() as (conn, transport):
        transport.broken = ConnectionResetError("peer gone")
        conn.send(b"a")
        await asyncio.wait_for(conn.finished.wait(), timeout=5)
        assert conn.state is ConnectionState.CLOSED
        conn.send(b"b")  # dropped: the connection is closed
        assert transport.frames == []


async def test_a_socket_that_sends_at_once_is_not_awaited_and_one_that_pushes_back_is() -> None:
    transport = PromptSocket()
    conn = Connection(
        transport, user="u", session="s", can_write=True, max_messages=100, max_bytes=1 << 20
    )
    writer = asyncio.create_task(conn.run_writer())
    await asyncio.sleep(0)
    try:
        conn.send(b"a")
        assert transport.frames == [b"a"] and transport.awaited == 0
        transport.writable.clear()
        conn.send(b"b")  # refused at once: the writer finishes it through `send_bytes`
        conn.send(b"c")
        assert transport.frames == [b"a"]
        transport.writable.set()
        async with asyncio.timeout(5):
            while transport.frames != [b"a", b"b", b"c"]:  # noqa: ASYNC110 - the writer task
                await asyncio.sleep(0.01)
        assert transport.awaited >= 1
    finally:
        conn.close(1000, "")
        transport.writable.set()
        await asyncio.wait_for(writer, timeout=5)
