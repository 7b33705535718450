"""The protocol's own paths for a relayed edit (server/sync/wsprotocol.py):
`send_binary_now` sends a binary message on the caller's turn, or sends nothing and says so
where `send` would wait; `receive_nowait` hands over what has arrived without a coroutine, and
`Inbox.ready` (server/sync/inbox.py) asks it, so a look that found nothing does not keep a
`receive()` pending that would hide the next message from the following look; frames read by
the protocol itself (`_read_frames`) give the app exactly what websockets' parser gave it,
however the bytes are cut, and whatever websockets refuses it still refuses.

A real uvicorn with the protocol and draftsync's HTTP protocol (as `draftsync serve` runs
them) on loopback, a real `websockets` client or raw bytes on a socket; the ASGI app hands the
test its connection's `receive` and `send`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.frames import Frame, Opcode

from server.admission.sockets import SocketGuard, guarded_protocol
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


@asynccontextmanager
async def _serving(max_size: int = 1 << 20) -> AsyncIterator[tuple[_Endpoint, int]]:
    """uvicorn on a free loopback port as `draftsync serve` configures its protocols."""
    endpoint = _Endpoint()
    guard = SocketGuard(handshake_timeout=10, max_header_bytes=16384, max_sockets=100)
    config = uvicorn.Config(
        endpoint, host="127.0.0.1", port=0, ws=LeanWebSocketProtocol,
        http=guarded_protocol(guard), ws_max_size=max_size, ws_per_message_deflate=False,
        lifespan="off", log_level="warning",
    )  # fmt: skip
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        await _until(lambda: server.started)
        yield endpoint, server.servers[0].sockets[0].getsockname()[1]
    finally:
        endpoint.done.set()
        server.should_exit = True
        async with asyncio.timeout(10):
            await serving


@pytest.fixture
async def socket_pair() -> AsyncIterator[tuple[LeanWebSocketProtocol, Any, ClientConnection]]:
    """(the server's protocol, its ASGI receive, a connected client)."""
    async with _serving() as (endpoint, port):
        async with asyncio.timeout(10):
            client = await connect(f"ws://127.0.0.1:{port}/")
            receive, send = await endpoint.channel
        protocol = send.__self__
        assert isinstance(protocol, LeanWebSocketProtocol)
        try:
            yield protocol, receive, client
        finally:
            await client.close()


async def test_send_binary_now_sends_on_the_callers_turn(socket_pair: Any) -> None:
    protocol, _receive, client = socket_pair
    assert protocol.send_binary_now(b"\x00\x02abc") is True
    async with asyncio.timeout(5):
        assert await client.recv() == b"\x00\x02abc"


@pytest.mark.parametrize("size", [0, 1, 2, 125, 126, 127, 300, 65_535, 65_536, 70_000])
async def test_send_binary_now_frames_every_length_as_websockets_reads_it(
    socket_pair: Any, size: int
) -> None:
    # under 126 bytes a frame takes the short lane (a header from the table), above it
    # `_send_binary`'s; a client's parser reads both as the same message
    protocol, _receive, client = socket_pair
    payload = bytes(n % 251 for n in range(size))
    assert protocol.send_binary_now(payload) is True
    assert protocol.send_binary_now(b"next") is True
    async with asyncio.timeout(5):
        assert await client.recv() == payload
        assert await client.recv() == b"next"


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


_UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2RlZg==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def _masked(opcode: Opcode, data: bytes, *, fin: bool = True) -> bytes:
    """A client's frame, as websockets' own client writes it (masked)."""
    return Frame(opcode, data, fin=fin).serialize(mask=True)


@asynccontextmanager
async def _raw(
    max_size: int = 1 << 20,
) -> AsyncIterator[tuple[LeanWebSocketProtocol, asyncio.StreamReader, asyncio.StreamWriter]]:
    """A socket past the handshake: (the server's protocol, the client's reader and writer)."""
    async with _serving(max_size) as (endpoint, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(_UPGRADE)
            async with asyncio.timeout(10):
                head = await reader.readuntil(b"\r\n\r\n")
                _receive, send = await endpoint.channel
            assert head.startswith(b"HTTP/1.1 101")
            yield send.__self__, reader, writer
        finally:
            writer.close()


# Sizes around each header length boundary, and past the size up to which a frame waits whole.
_SIZES = (0, 1, 125, 126, 127, 300, 65535, 65536, 70_000, 200_000)


def _stream() -> tuple[bytes, list[dict[str, object]]]:
    """Frames of every kind a client may send while open, and the messages the app must get."""
    frames, expected = [], []
    for n, size in enumerate(_SIZES):
        payload = bytes((n + i) % 251 for i in range(size))
        frames.append(_masked(Opcode.BINARY, payload))
        expected.append({"type": "websocket.receive", "bytes": payload})
        if n == 2:
            frames.append(_masked(Opcode.PING, b"p"))  # answered with a pong, not queued
        if n == 4:
            frames.append(_masked(Opcode.TEXT, "h\u00e9".encode()))
            expected.append({"type": "websocket.receive", "text": "h\u00e9"})
        if n == 5:  # a fragmented message, then binary frames again
            frames += [
                _masked(Opcode.BINARY, b"ab", fin=False),
                _masked(Opcode.CONT, b"cd", fin=False),
                _masked(Opcode.CONT, b"ef"),
            ]
            expected.append({"type": "websocket.receive", "bytes": b"abcdef"})
    return b"".join(frames), expected


@pytest.mark.parametrize("cut", [1, 7, 1000, 1 << 30])
async def test_frames_read_here_give_what_websockets_gave_however_they_are_cut(cut: int) -> None:
    stream, expected = _stream()
    async with _raw() as (protocol, reader, writer):
        for at in range(0, len(stream), cut):
            writer.write(stream[at : at + cut])
            if cut < 100 and at % (50 * cut) == 0:
                await writer.drain()
                await asyncio.sleep(0)  # the server reads it in pieces this small
        await writer.drain()
        got: list[Any] = []
        async with asyncio.timeout(20):
            while len(got) < len(expected):
                message = protocol.receive_nowait()
                if message is None:
                    await asyncio.sleep(0.005)
                else:
                    got.append(message)
            pong = await reader.readexactly(3)
        assert got == expected
        assert protocol.receive_nowait() is None
        assert pong == b"\x8a\x01p"
        # still read here after pings, text and fragments: only a refusal hands all to websockets
        assert protocol._read_here


async def _close_code(reader: asyncio.StreamReader) -> int:
    """The code of the close frame the server sends (it sends nothing else here)."""
    async with asyncio.timeout(10):
        head = await reader.readexactly(2)
        assert head[0] == 0x88
        body = await reader.readexactly(head[1] & 0x7F)
    return int.from_bytes(body[:2], "big")


async def test_a_frame_over_the_size_limit_is_refused_on_its_header_with_1009() -> None:
    async with _raw(max_size=1000) as (protocol, reader, writer):
        writer.write(_masked(Opcode.BINARY, b"ok"))
        writer.write(_masked(Opcode.BINARY, bytes(1001))[:20])  # the header and a little
        assert await _close_code(reader) == 1009
        assert protocol.receive_nowait() == {"type": "websocket.receive", "bytes": b"ok"}


async def test_an_unmasked_frame_is_refused_with_1002() -> None:
    async with _raw() as (protocol, reader, writer):
        writer.write(Frame(Opcode.BINARY, b"bare").serialize(mask=False))
        assert await _close_code(reader) == 1002
        assert protocol.receive_nowait() != {"type": "websocket.receive", "bytes": b"bare"}


async def test_a_frame_with_a_reserved_bit_is_refused_with_1002() -> None:
    async with _raw() as (_protocol, reader, writer):
        frame = bytearray(_masked(Opcode.BINARY, b"rsv"))
        frame[0] |= 0x40  # RSV1 without the extension that would give it a meaning
        writer.write(bytes(frame))
        assert await _close_code(reader) == 1002


class _RecordingSink:
    """A sink that notes what it took, in the order it took it, in `got` (shared with the
    test's reader); answers `answer` (False: busy, the reader's task must finish)."""

    def __init__(self, got: list[Any]) -> None:
        self.got = got
        self.calls: list[list[bytes]] = []
        self.answer = True

    def take(self, payloads: list[bytes]) -> bool:
        self.calls.append(list(payloads))
        self.got += [{"type": "websocket.receive", "bytes": p} for p in payloads]
        return self.answer


def _reading(protocol: LeanWebSocketProtocol, got: list[Any]) -> asyncio.Task[None]:
    """The app's reader: waits in `receive()` and notes each message in `got`."""

    async def read() -> None:
        while True:
            message = await protocol.receive()
            got.append(message)
            if message["type"] == "websocket.disconnect":
                return

    return asyncio.create_task(read())


@pytest.mark.parametrize("cut", [1, 7, 1000, 1 << 30])
async def test_a_sink_takes_binary_frames_in_order_with_what_is_queued(cut: int) -> None:
    # Every kind of frame, cut anyhow: the sink's messages and the queued ones, in the order
    # they were handled, are exactly what websockets gave; the binary frames that arrive while
    # the reader waits with nothing queued go to the sink, not through the queue.
    stream, expected = _stream()
    async with _raw() as (protocol, reader, writer):
        got: list[Any] = []
        sink = _RecordingSink(got)
        protocol.deliver_to(sink)
        reading = _reading(protocol, got)
        try:
            for at in range(0, len(stream), cut):
                writer.write(stream[at : at + cut])
                if cut < 100 and at % (50 * cut) == 0:
                    await writer.drain()
                    await asyncio.sleep(0)
            await writer.drain()
            await _until(lambda: len(got) >= len(expected), timeout=20)
            assert got == expected
            assert await reader.readexactly(3) == b"\x8a\x01p"  # the ping's pong
            taken = [p for call in sink.calls for p in call]
            assert taken[:3] == [m["bytes"] for m in expected[:3]]  # before the first text frame
            assert protocol.queue.empty()
        finally:
            reading.cancel()


async def test_frames_of_one_read_reach_the_sink_as_one_run() -> None:
    async with _raw() as (protocol, _reader, writer):
        got: list[Any] = []
        sink = _RecordingSink(got)
        protocol.deliver_to(sink)
        reading = _reading(protocol, got)
        try:
            await asyncio.sleep(0)  # the reader waits
            writer.write(b"".join(_masked(Opcode.BINARY, bytes([n])) for n in range(5)))
            await _until(lambda: len(got) == 5)
            assert sink.calls == [[bytes([n]) for n in range(5)]]
        finally:
            reading.cancel()


async def test_a_busy_sink_wakes_the_reader_and_what_follows_is_queued_in_order() -> None:
    from server.sync.wsprotocol import SINK_BUSY

    async with _raw() as (protocol, _reader, writer):
        got: list[Any] = []
        sink = _RecordingSink(got)
        sink.answer = False
        protocol.deliver_to(sink)
        seen: list[Any] = []
        resume = asyncio.Event()

        async def read() -> None:  # a reader that finishes the sink's work before it reads on
            while True:
                message = await protocol.receive()
                seen.append(message)
                if message is SINK_BUSY:
                    await resume.wait()

        reading = asyncio.create_task(read())
        try:
            await asyncio.sleep(0)
            writer.write(_masked(Opcode.BINARY, b"a"))
            await _until(lambda: seen == [SINK_BUSY])
            assert sink.calls == [[b"a"]]
            writer.write(_masked(Opcode.BINARY, b"b") + _masked(Opcode.BINARY, b"c"))
            await _until(lambda: protocol.queue.qsize() == 2)  # queued behind the busy sink
            assert sink.calls == [[b"a"]]
            sink.answer = True
            resume.set()
            await _until(lambda: len(seen) == 3)
            assert seen[1:] == [{"type": "websocket.receive", "bytes": x} for x in (b"b", b"c")]
            writer.write(_masked(Opcode.BINARY, b"d"))  # the reader waits again: the sink's
            await _until(lambda: len(sink.calls) == 2)
            assert sink.calls[1] == [b"d"] and len(seen) == 3
        finally:
            reading.cancel()


async def test_frames_are_queued_while_the_reader_does_not_wait_or_without_a_sink() -> None:
    async with _raw() as (protocol, _reader, writer):
        got: list[Any] = []
        sink = _RecordingSink(got)
        protocol.deliver_to(sink)  # nobody waits in receive(): a sink must not be handed it
        writer.write(_masked(Opcode.BINARY, b"first"))
        await _until(lambda: protocol.queue.qsize() == 1)
        assert protocol.receive_nowait() == {"type": "websocket.receive", "bytes": b"first"}
        protocol.deliver_to(None)
        reading = _reading(protocol, got)
        try:
            await asyncio.sleep(0)
            writer.write(_masked(Opcode.BINARY, b"second"))
            await _until(lambda: len(got) == 1)
            assert got == [{"type": "websocket.receive", "bytes": b"second"}]
            assert sink.calls == []
        finally:
            reading.cancel()


async def test_a_frame_over_the_size_limit_is_refused_with_1009_beside_a_sink() -> None:
    async with _raw(max_size=1000) as (protocol, reader, writer):
        got: list[Any] = []
        sink = _RecordingSink(got)
        protocol.deliver_to(sink)
        reading = _reading(protocol, got)
        try:
            await asyncio.sleep(0)
            writer.write(_masked(Opcode.BINARY, b"ok"))
            writer.write(_masked(Opcode.BINARY, bytes(1001))[:20])
            assert await _close_code(reader) == 1009
            assert sink.calls[0] == [b"ok"]
        finally:
            reading.cancel()
