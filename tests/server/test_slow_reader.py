"""A slow reader cannot hurt a room (design.md, "Promises"; close code 4408).

A client that stops reading fills its TCP buffers, then its bounded send queue on the server.
While that happens the other clients of the room keep editing and receive everything; the stalled
client, when it reads again, gets what was already on its way and then close 4408 with a reason,
and it resyncs when it reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import websockets
from pycrdt import Doc, Text
from websockets.asyncio.client import ClientConnection

from tests.support.pycrdt_client import PycrdtClient
from tests.support.server_process import ServerProcess

QUEUE_MESSAGES = 64
QUEUE_BYTES = 1024 * 1024
CHUNK = 256 * 1024  # one big insert: buffers fill in a few dozen rounds
CLIENT_RCVBUF = 64 * 1024
TIMEOUT = 30


def _tcp_limit(name: str, default: int) -> int:
    """The largest socket buffer the kernel grows to (last field of tcp_wmem / tcp_rmem)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(Path(f"/proc/sys/net/ipv4/{name}").read_text().split()[2])
    return default


def bytes_to_overflow() -> int:
    """More than can wait anywhere between the room and a client that reads nothing.

    The server's socket send buffer (autotuned up to tcp_wmem's maximum), the client's receive
    buffer (fixed, doubled by the kernel), what the client library and the server's transport
    hold (about one merged frame each: at most the queue's byte bound and a chunk), and the
    queue itself (its byte bound and one more chunk).
    """
    kernel = _tcp_limit("tcp_wmem", 4 * 1024 * 1024) + 2 * CLIENT_RCVBUF
    return kernel + 3 * (QUEUE_BYTES + CHUNK)


@pytest.fixture(scope="module")
def tight_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(
        tmp_path_factory.mktemp("tight"),
        "--send-queue-messages",
        str(QUEUE_MESSAGES),
        "--send-queue-bytes",
        str(QUEUE_BYTES),
    )
    process.start()
    yield process
    process.stop()


@contextlib.asynccontextmanager
async def stalled_client(server: ServerProcess, draft: str) -> AsyncIterator[ClientConnection]:
    """A client that reads one frame (it has joined), then nothing until the test says so.

    `max_queue=1` stops the library from reading off the socket as soon as one frame waits, and
    a small receive buffer makes the kernel stop acknowledging soon after.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CLIENT_RCVBUF)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
    url = f"{server.ws_url}/{draft}?token={server.token('alice')}"
    client = await websockets.connect(
        url, sock=sock, max_queue=1, max_size=None, ping_interval=None, proxy=None
    )
    try:
        await asyncio.wait_for(client.recv(), TIMEOUT)  # sync step 1: it is in the room
        yield client
    finally:
        await client.close()


async def read_to_the_end(client: ClientConnection) -> int:
    """Read until the server closes; return how many frames came first."""
    frames = 0
    with contextlib.suppress(websockets.ConnectionClosed):
        async for _ in client:
            frames += 1
    return frames


def append(field: str, text: str) -> Callable[[Doc], None]:
    def change(doc: Doc) -> None:
        root = doc.get(field, type=Text)
        root.insert(len(root), text)

    return change


async def all_have(clients: list[PycrdtClient], body_len: int, title: str) -> None:
    for client in clients:
        await client.wait_for(
            lambda c=client: c.text("title") == title and len(c.text("body")) == body_len,
            TIMEOUT,
        )


async def test_a_stalled_reader_is_closed_4408_and_the_room_flows_on(
    tight_server: ServerProcess,
) -> None:
    server = tight_server
    draft = f"d-{uuid.uuid4().hex[:12]}"
    token = server.token("alice")
    writer = await PycrdtClient(server.ws_url, draft, token).connect()
    await asyncio.wait_for(writer.synced.wait(), TIMEOUT)  # the draft exists: no join races
    typist = await PycrdtClient(server.ws_url, draft, token).connect()
    try:
        await asyncio.wait_for(typist.synced.wait(), TIMEOUT)
        async with asyncio.timeout(TIMEOUT), stalled_client(server, draft) as stalled:
            rounds = -(-bytes_to_overflow() // CHUNK)
            body_len = 0
            for i in range(rounds):
                # the two live clients keep editing; each round both see both edits
                chunk = f"{i:08d}" * (CHUNK // 8)
                await writer.edit(append("body", chunk))
                await typist.edit(append("title", f"[{i}]"))
                body_len += len(chunk)
                title = "".join(f"[{n}]" for n in range(i + 1))
                await all_have([writer, typist], body_len, title)
            assert writer.text("body") == typist.text("body")
            assert not writer.closed.is_set() and not typist.closed.is_set()

            frames = await read_to_the_end(stalled)
            received = stalled.protocol.close_rcvd
            assert received is not None, "the stalled client got no close frame"
            assert received.code == 4408, f"closed with {received.code} ({received.reason!r})"
            assert received.reason
            assert frames > 0, "the frames already on their way were dropped"

        # reconnecting resyncs everything
        again = await PycrdtClient(server.ws_url, draft, token).connect()
        try:
            await again.wait_for(lambda: again.synced.is_set() or again.closed.is_set(), TIMEOUT)
            assert again.synced.is_set(), f"closed {again.close_code} {again.close_reason!r}"
            assert again.text("body") == writer.text("body")
            assert again.text("title") == writer.text("title")
        finally:
            await again.disconnect()
    finally:
        await asyncio.gather(writer.disconnect(), typist.disconnect())
