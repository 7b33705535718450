"""Timeouts before trust (issue 27, point 1): a socket that has not sent a request's complete
headers within `--handshake-timeout` is closed (idle, half-open, trickling a byte at a time, or
starting its next request on a kept-alive connection); headers past `--max-header-bytes` are
answered 431; an established WebSocket is never closed by either."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator

import httpx
import pytest
from pycrdt import Text

from tests.support.pycrdt_client import connect_synced
from tests.support.rest import scrape
from tests.support.serve_flags import refused_at_start
from tests.support.server_process import ServerProcess

TIMEOUT = 1.0  # the server's --handshake-timeout and --keep-alive-timeout here
PARTIAL = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(
        tmp_path_factory.mktemp("server"),
        "--handshake-timeout",
        str(TIMEOUT),
        "--keep-alive-timeout",
        str(TIMEOUT),
        "--max-header-bytes",
        "4096",
    )
    process.start()
    yield process
    process.stop()


async def open_socket(server: ServerProcess) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", server.port)


async def until_closed(reader: asyncio.StreamReader, timeout: float = 10) -> bytes:
    """Everything the server sent until it closed the socket (bounded in time and bytes)."""
    received = b""
    async with asyncio.timeout(timeout):
        while len(received) < 65536:
            try:
                chunk = await reader.read(4096)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
    return received


async def test_idle_half_open_and_trickling_sockets_are_closed(server: ServerProcess) -> None:
    idle = [await open_socket(server) for _ in range(10)]
    half_open = [await open_socket(server) for _ in range(10)]
    for _, writer in half_open:
        writer.write(PARTIAL)
    trickling_reader, trickling = await open_socket(server)

    async def trickle() -> None:
        # One header byte every tenth of a second: always sending, never done.
        with contextlib.suppress(ConnectionError):
            for index in range(600):
                trickling.write(PARTIAL[index % len(PARTIAL) : index % len(PARTIAL) + 1])
                await trickling.drain()
                await asyncio.sleep(0.1)

    trickler = asyncio.create_task(trickle())
    try:
        for reader, _ in idle:
            assert await until_closed(reader) == b""  # nothing was asked: nothing to answer
        for reader, _ in half_open:
            assert (await until_closed(reader)).startswith(b"HTTP/1.1 408 ")
        assert (await until_closed(trickling_reader)).startswith(b"HTTP/1.1 408 ")
    finally:
        trickler.cancel()
        for _, writer in [*idle, *half_open, (None, trickling)]:
            writer.close()
    assert 'draftsync_sockets_closed_early_total{reason="timeout"}' in await scrape(server)
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await client.get(f"{server.http_url}/healthz")).status_code == 200


async def test_a_kept_alive_connection_gets_the_same_deadline_for_its_next_request(
    server: ServerProcess,
) -> None:
    reader, writer = await open_socket(server)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status = await asyncio.wait_for(reader.readline(), 10)
        assert status.startswith(b"HTTP/1.1 200 ")
        await asyncio.wait_for(reader.readuntil(b'{"status":"ok"}'), 10)
        writer.write(PARTIAL)  # the next request starts and never ends
        assert (await until_closed(reader)).startswith(b"HTTP/1.1 408 ")
    finally:
        writer.close()

    # Pipelined behind a whole request: that one is answered, then the clock runs.
    reader, writer = await open_socket(server)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" + PARTIAL)
        answered = await until_closed(reader)
        assert answered.startswith(b"HTTP/1.1 200 "), answered
        assert b'{"status":"ok"}HTTP/1.1 408 ' in answered, answered
    finally:
        writer.close()

    # Idle after a response: closed by the keep-alive timeout, without an answer.
    reader, writer = await open_socket(server)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await asyncio.wait_for(reader.readuntil(b'{"status":"ok"}'), 10)
        assert await until_closed(reader) == b""
    finally:
        writer.close()


@pytest.mark.parametrize(
    "request_head",
    [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(1000)) + b"\r\n",
        b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
    ids=["one-big-header", "many-headers", "long-url"],
)
async def test_headers_over_the_limit_are_answered_431(
    server: ServerProcess, request_head: bytes
) -> None:
    reader, writer = await open_socket(server)
    try:
        writer.write(request_head)
        assert (await until_closed(reader)).startswith(b"HTTP/1.1 431 ")
    finally:
        writer.close()
    async with httpx.AsyncClient(timeout=10) as client:  # within the limit: served
        response = await client.get(f"{server.http_url}/healthz", headers={"X-Ok": "a" * 3000})
    assert response.status_code == 200


async def test_an_established_websocket_outlives_the_handshake_timeout(
    server: ServerProcess,
) -> None:
    draft = f"hs-{uuid.uuid4().hex[:12]}"
    alice = await connect_synced(server, draft)
    try:
        await asyncio.sleep(3 * TIMEOUT)  # long past both deadlines: nothing may close it
        assert not alice.closed.is_set()
        await alice.edit(lambda doc: doc.get("title", type=Text).insert(0, "still here"))
        await alice.flush()
        assert not alice.closed.is_set()
    finally:
        await alice.disconnect()


@pytest.mark.parametrize(
    "option,value",
    [
        ("--handshake-timeout", "0"),
        ("--handshake-timeout", "-1"),
        ("--handshake-timeout", "nan"),
        ("--keep-alive-timeout", "soon"),
        ("--max-header-bytes", "0"),
        ("--reserved-fds", "-5"),
    ],
)
def test_a_timeout_or_size_that_cannot_work_is_refused_at_start(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    refused_at_start(capsys, option, value)
