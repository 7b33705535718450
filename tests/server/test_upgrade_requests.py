"""The WebSocket upgrade request is parsed once (httptools), and websockets gets the `Request`
its own parser would have made (server/sync/wsprotocol.py `take_parsed_upgrade`); a request
that parser would refuse or treat otherwise still goes through it. Either way the answer is
websockets': each request here is sent as is and with a `Content-Length: 0` header (which
websockets accepts, and which sends the request the old way) and must get the same answer."""

from __future__ import annotations

import asyncio
import base64

import pytest
from websockets.utils import accept_key

from tests.support.rest import new_id
from tests.support.server_process import ServerProcess

KEY = base64.b64encode(b"0123456789abcdef").decode()
UPGRADE = {
    "Host": "127.0.0.1",
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": KEY,
    "Sec-WebSocket-Version": "13",
}


def _request(path: str, headers: dict[str, str], extra: tuple[tuple[str, str], ...]) -> bytes:
    lines = [f"GET {path} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += [f"{name}: {value}" for name, value in extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _answer(server: ServerProcess, request: bytes) -> tuple[str, dict[str, str]]:
    """The status line and headers (lower-case names, without Date) the server answers."""
    (status, *lines), _ = await _raw_head(server, request)
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    headers.pop("date", None)
    return status, headers


async def _both_ways(
    server: ServerProcess, headers: dict[str, str], extra: tuple[tuple[str, str], ...] = ()
) -> tuple[str, dict[str, str]]:
    path = f"/ws/{new_id('upgrade')}?token={server.token('alice')}"
    parsed_once = await _answer(server, _request(path, headers, extra))
    parsed_again = await _answer(server, _request(path, headers, (*extra, ("Content-Length", "0"))))
    assert parsed_once == parsed_again
    return parsed_once


async def test_an_upgrade_is_accepted_with_websockets_answer(server: ServerProcess) -> None:
    status, headers = await _both_ways(server, UPGRADE)
    assert status == "HTTP/1.1 101 Switching Protocols"
    assert headers["sec-websocket-accept"] == accept_key(KEY)
    assert headers["upgrade"].lower() == "websocket"


async def test_non_ascii_header_values_pass_as_latin_1(server: ServerProcess) -> None:
    status, _ = await _both_ways(server, {**UPGRADE, "User-Agent": "caf\xe9/1.0"})
    assert status == "HTTP/1.1 101 Switching Protocols"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"Sec-WebSocket-Key": None}, "400"),
        ({"Sec-WebSocket-Key": "not base64!"}, "400"),
        ({"Sec-WebSocket-Key": base64.b64encode(b"short").decode()}, "400"),
        ({"Sec-WebSocket-Version": "8"}, "400"),
        ({"Sec-WebSocket-Version": None}, "400"),
    ],
)
async def test_a_bad_handshake_gets_websockets_refusal(
    server: ServerProcess, change: dict[str, str | None], expected: str
) -> None:
    headers = {**UPGRADE, **change}
    present = {name: value for name, value in headers.items() if value is not None}
    status, _ = await _both_ways(server, present)
    assert status.split(" ")[1] == expected


async def test_requests_past_websockets_limits_get_its_431(server: ServerProcess) -> None:
    many = tuple((f"X-Header-{index}", "1") for index in range(130))
    status, _ = await _both_ways(server, UPGRADE, many)
    assert status.split(" ")[1] == "431"
    long_line = (("X-Long", "a" * 9000),)  # under --max-header-bytes, over websockets' line
    status, _ = await _both_ways(server, UPGRADE, long_line)
    assert status.split(" ")[1] == "431"


async def _raw_head(server: ServerProcess, request: bytes) -> tuple[list[str], int]:
    """The answer's status line and header lines as sent (nothing merged), and the local port
    of the socket that asked."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        port = int(writer.get_extra_info("sockname")[1])
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()
        await writer.wait_closed()
    return head.decode("latin-1").split("\r\n")[:-2], port


async def test_the_101_has_one_date_header(server: ServerProcess) -> None:
    """websockets' accept makes no Date of its own here (uvicorn's default headers bring one):
    two Date headers, or none, would be a malformed answer."""
    path = f"/ws/{new_id('upgrade')}?token={server.token('alice')}"
    lines, _ = await _raw_head(server, _request(path, UPGRADE, ()))
    assert lines[0] == "HTTP/1.1 101 Switching Protocols"
    names = [line.partition(":")[0].strip().lower() for line in lines[1:]]
    for name in ("date", "upgrade", "connection", "sec-websocket-accept"):
        assert names.count(name) == 1, name


async def test_the_websocket_knows_the_clients_address(server: ServerProcess) -> None:
    """The WebSocket protocol takes the addresses the HTTP protocol read (not read again):
    the accept's log line names the client's address and port."""
    draft = new_id("upgrade")
    path = f"/ws/{draft}?token={server.token('alice')}"
    lines, port = await _raw_head(server, _request(path, UPGRADE, ()))
    assert lines[0] == "HTTP/1.1 101 Switching Protocols"
    expected = f'127.0.0.1:{port} - "WebSocket /ws/{draft}'
    for _ in range(100):  # the log line is written as the accept goes out: a moment at most
        if expected in server.log():
            break
        await asyncio.sleep(0.05)
    assert expected in server.log()
