"""A y-websocket connection's writer task starts only when there is work `send` cannot do on
the caller's turn (server/sync/connection.py `write_lazily`, used by server/sync/endpoint.py):
the frames still go out in order, a send that has to wait or fails is finished by the writer,
a close from the room is sent, and the reader's `finish` sends the close itself when no writer
ever started. The socket is a stand-in for the ASGI transport (uvicorn's, not ours), as in
test_connection.py; the real endpoint is exercised by the relay and admission tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from server.errors import CloseCode
from server.sync.connection import Connection, ConnectionState
from tests.support.stand_in_socket import PromptSocket


class Spawner:
    """`asyncio.create_task`, counting the writers it starts."""

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[None]] = []

    def __call__(self, coroutine: object) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine)  # type: ignore[arg-type]
        self.tasks.append(task)
        return task


@asynccontextmanager
async def lazy() -> AsyncIterator[tuple[Connection, PromptSocket, Spawner]]:
    transport = PromptSocket()
    conn = Connection(
        transport, user="u", session="s", can_write=True, max_messages=100, max_bytes=1 << 20
    )
    spawner = Spawner()
    conn.write_lazily(spawner)
    try:
        yield conn, transport, spawner
    finally:
        transport.writable.set()
        await asyncio.wait_for(conn.finish(), timeout=5)
        assert conn.state is ConnectionState.CLOSED and conn.finished.is_set()


async def _until(predicate: object, seconds: float = 5) -> None:
    async with asyncio.timeout(seconds):
        while not predicate():  # type: ignore[operator]  # noqa: ASYNC110 - the writer task
            await asyncio.sleep(0.001)


async def test_frames_that_go_out_at_once_start_no_task_and_finish_sends_the_close() -> None:
    async with lazy() as (conn, transport, spawner):
        for frame in (b"a", b"b", b"c"):
            conn.send(frame)
        assert transport.frames == [b"a", b"b", b"c"]
        await asyncio.sleep(0)
        assert spawner.tasks == []
    assert spawner.tasks == []  # the close was sent on the reader's task
    assert transport.closes == [(1000, "")]


async def test_a_send_that_must_wait_starts_the_writer_and_order_is_kept() -> None:
    async with lazy() as (conn, transport, spawner):
        conn.send(b"a")
        transport.writable.clear()  # the transport pushes back
        for frame in (b"b", b"c", b"d"):
            conn.send(frame)
        assert len(spawner.tasks) == 1
        transport.writable.set()
        await _until(lambda: len(transport.frames) == 4)
        assert transport.frames == [b"a", b"b", b"c", b"d"]
        await asyncio.sleep(0)
        conn.send(b"e")  # the writer is parked again: sent on the caller's turn
        assert transport.frames[-1] == b"e"
        transport.writable.clear()
        conn.send(b"f")
        conn.send(b"g")
        transport.writable.set()
        await _until(lambda: len(transport.frames) == 7)
        assert transport.frames == [b"a", b"b", b"c", b"d", b"e", b"f", b"g"]
        assert len(spawner.tasks) == 1  # the one writer, woken again
    assert transport.closes == [(1000, "")]


async def test_a_close_from_the_room_is_sent_by_a_writer_started_for_it() -> None:
    async with lazy() as (conn, transport, spawner):
        conn.send(b"a")
        conn.close(CloseCode.TOO_SLOW, "too slow")
        assert len(spawner.tasks) == 1
        await asyncio.wait_for(conn.finished.wait(), timeout=5)
        assert transport.closes == [(CloseCode.TOO_SLOW, "too slow")]
    assert transport.closes == [(CloseCode.TOO_SLOW, "too slow")]  # finish added none


async def test_a_send_that_fails_on_the_callers_turn_stops_the_writer() -> None:
    async with lazy() as (conn, transport, spawner):
        transport.broken = ConnectionResetError("peer gone")
        conn.send(b"a")
        await asyncio.wait_for(conn.finished.wait(), timeout=5)
        assert conn.state is ConnectionState.CLOSED and len(spawner.tasks) == 1
        conn.send(b"b")  # dropped: the connection is closed
        assert transport.frames == []


async def test_a_send_left_waiting_before_write_lazily_starts_the_writer_at_once() -> None:
    transport = PromptSocket()
    conn = Connection(
        transport, user="u", session="s", can_write=True, max_messages=100, max_bytes=1 << 20
    )
    transport.writable.clear()
    conn.send(b"join")  # the join's frame, before the reader takes over
    conn.send(b"next")
    spawner = Spawner()
    conn.write_lazily(spawner)
    assert len(spawner.tasks) == 1
    transport.writable.set()
    await _until(lambda: len(transport.frames) == 2)
    assert transport.frames == [b"join", b"next"]
    await asyncio.wait_for(conn.finish(), timeout=5)
    assert transport.closes == [(1000, "")] and conn.finished.is_set()


async def test_finish_waits_for_a_flushing_close_under_way() -> None:
    async with lazy() as (conn, transport, spawner):
        transport.writable.clear()
        conn.send(b"a")
        conn.send(b"b")
        conn.close(CloseCode.GOING_AWAY, "server shutting down", flush=True)
        finishing = asyncio.ensure_future(conn.finish())
        await asyncio.sleep(0.01)
        assert not finishing.done()
        transport.writable.set()
        await asyncio.wait_for(finishing, timeout=5)
        assert transport.frames == [b"a", b"b"]
        assert transport.closes == [(CloseCode.GOING_AWAY, "server shutting down")]
        assert len(spawner.tasks) == 1
