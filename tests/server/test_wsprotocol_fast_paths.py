"""The protocol's synchronous paths for a relayed edit (server/sync/wsprotocol.py):
`send_binary_now` sends a binary message on the caller's turn, or sends nothing and says so
where `send` would wait; `receive_nowait` hands over what has arrived without a coroutine, and
`Inbox.ready` (server/sync/inbox.py) asks it, so a look that found nothing does not keep a
`receive()` pending that would hide the next message from the following look.

A real uvicorn with the protocol on loopback, a real `websockets` client; the ASGI app hands
the test its connection's `receive` and `send`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect

from server.sync.inbox import Inbox
from server.sync.wsprotocol import LeanWebSocketProtocol


async def _until(check: Any, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110 - state of the server task and the socket
            await asyncio.sleep(0.01)


class _Endpoint:
    """Accepts one socket and parks it until `done` is set."""

    def __init__(self) -> None:
        self.channel: asyncio.Future[tuple[Any, Any]] = asyncio.get_running_loop().create_future()
        self.done = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "websocket"
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        self.channel.set_result((receive, send))
        await self.done.wait()


@pytest.fixture
async def socket_pair() -> AsyncIterator[tuple[LeanWebSocketProtocol, Any, ClientConnection]]:
    """(the server's protocol, its ASGI receive, a connected client)."""
    endpoint = _Endpoint()
    config = uvicorn.Config(
        endpoint, host="127.0.0.1", port=0, ws=LeanWebSocketProtocol, lifespan="off",
        log_level="warning",
    )  # fmt: skip
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        await _until(lambda: server.started)
        port = server.servers[0].sockets[0].getsockname()[1]
        async with asyncio.timeout(10):
            client = await connect(f"ws://127.0.0.1:{port}/")
            receive, send = await endpoint.channel
        protocol = send.__self__
        assert isinstance(protocol, LeanWebSocketProtocol)
        try:
            yield protocol, receive, client
        finally:
            endpoint.done.set()
            await client.close()
    finally:
        server.should_exit = True
        async with asyncio.timeout(10):
            await serving


async def test_send_binary_now_sends_on_the_callers_turn(socket_pair: Any) -> None:
    protocol, _receive, client = socket_pair
    assert protocol.send_binary_now(b"\x00\x02abc") is True
    async with asyncio.timeout(5):
        assert await client.recv() == b"\x00\x02abc"


async def test_send_binary_now_sends_nothing_while_the_transport_pushes_back(
    socket_pair: Any,
) -> None:
    protocol, _receive, client = socket_pair
    protocol.pause_writing()  # what the transport calls past its high-water mark
    assert protocol.send_binary_now(b"held") is False
    protocol.resume_writing()
    assert protocol.send_binary_now(b"sent") is True
    async with asyncio.timeout(5):
        assert await client.recv() == b"sent"  # the refused one was never written


async def test_send_binary_now_sends_nothing_once_closing(socket_pair: Any) -> None:
    protocol, _receive, _client = socket_pair
    await protocol.send({"type": "websocket.close", "code": 1000, "reason": ""})
    assert protocol.send_binary_now(b"late") is False


async def test_receive_nowait_hands_over_what_arrived_in_order(socket_pair: Any) -> None:
    protocol, _receive, client = socket_pair
    assert protocol.receive_nowait() is None
    for n in range(3):
        await client.send(bytes([n]))
    await _until(lambda: protocol.queue.qsize() == 3)
    got = [protocol.receive_nowait() for _ in range(4)]
    assert got[:3] == [{"type": "websocket.receive", "bytes": bytes([n])} for n in range(3)]
    assert got[3] is None


async def test_an_inbox_look_that_found_nothing_does_not_hide_the_next_message(
    socket_pair: Any,
) -> None:
    protocol, receive, client = socket_pair
    inbox = Inbox(receive)
    assert inbox.ready() is None
    await client.send(b"\x07")
    # Had the look started a `receive()` and kept it pending, this look would answer None
    # until the reader awaited `next()`.
    await _until(lambda: protocol.queue.qsize() == 1)
    assert inbox.ready() == {"type": "websocket.receive", "bytes": b"\x07"}
    await client.send(b"\x08")
    async with asyncio.timeout(5):
        assert await inbox.next() == {"type": "websocket.receive", "bytes": b"\x08"}
