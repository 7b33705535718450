"""Timeouts before trust on `/hocuspocus` (issue 27, point 1): its token is a message after the
WebSocket handshake, so `--handshake-timeout` cannot bound it; a socket with no document
authorised `--hocuspocus-auth-timeout` seconds after it opened is closed with 4408 "Connection
Timeout" (as Hocuspocus), whatever it sent meanwhile, and gives back its place under
`--max-unauthenticated`. A socket that authorised a document is never closed by it."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator

import pytest
from pycrdt import Text
from websockets import ConnectionClosed
from websockets.asyncio.client import ClientConnection, connect

from crdt.hocuspocus import encode_permission_denied, prefix
from crdt.lib0 import write_var_bytes, write_var_string
from tests.support.hocuspocus_client import HocuspocusClient
from tests.support.rest import scrape
from tests.support.serve_flags import refused_at_start
from tests.support.server_process import ServerProcess
from tests.support.stored import stored_doc
from tests.support.waiting import eventually

TIMEOUT = 1.0  # the server's --hocuspocus-auth-timeout here
CONNECTION_TIMEOUT = 4408  # @hocuspocus/common CloseEvents.ConnectionTimeout


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(
        tmp_path_factory.mktemp("server"),
        "--hocuspocus-auth-timeout",
        str(TIMEOUT),
        "--room-grace",
        "0.3",
    )
    process.start()
    yield process
    process.stop()


def hocuspocus_url(server: ServerProcess) -> str:
    return f"ws://127.0.0.1:{server.port}/hocuspocus"


def new_draft() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def token_frame(address: str, token: str) -> bytes:
    out = bytearray(prefix(address) + bytes([2, 0]))
    write_var_string(out, token)
    write_var_string(out, "4.8.0")
    return bytes(out)


def step1_frame(address: str) -> bytes:
    out = bytearray(prefix(address) + bytes([0, 0]))
    write_var_bytes(out, b"\x00")  # an empty state vector
    return bytes(out)


async def frames_until_closed(socket: ClientConnection, timeout: float = 15) -> list[bytes]:
    """What the server sent until it closed the socket (bounded in time and count)."""
    frames: list[bytes] = []
    async with asyncio.timeout(timeout):
        with contextlib.suppress(ConnectionClosed):
            while len(frames) < 10_000:
                frame = await socket.recv()
                assert isinstance(frame, bytes), frame
                frames.append(frame)
    return frames


async def unauthenticated_sockets(server: ServerProcess) -> float:
    for line in (await scrape(server)).splitlines():
        if line.startswith("draftsync_websockets_unauthenticated "):
            return float(line.split()[1])
    raise AssertionError("no draftsync_websockets_unauthenticated gauge")


async def test_a_socket_that_never_authenticates_is_closed_with_4408(server: ServerProcess) -> None:
    async with (
        connect(hocuspocus_url(server), proxy=None) as silent,
        connect(hocuspocus_url(server), proxy=None) as chatty,
    ):
        # The chatty one keeps sending (a refused token, then frames queued for an address
        # it never authorises): traffic does not move the deadline, only an authorised document.
        draft = new_draft()
        await chatty.send(token_frame(draft, "not-a-token"))

        async def chatter() -> None:
            with contextlib.suppress(ConnectionClosed):
                for _ in range(300):
                    await chatty.send(step1_frame(f"{draft}-waiting"))
                    await asyncio.sleep(0.05)

        sender = asyncio.create_task(chatter())
        try:
            silent_frames, chatty_frames = await asyncio.gather(
                frames_until_closed(silent), frames_until_closed(chatty)
            )
        finally:
            sender.cancel()
    assert not silent_frames  # nothing asked, nothing answered
    assert chatty_frames[0].startswith(prefix(draft) + encode_permission_denied("")[:2])
    for socket in (silent, chatty):
        assert socket.close_code == CONNECTION_TIMEOUT, socket.close_reason
        assert socket.close_reason == "Connection Timeout"

    async def places_given_back() -> bool:  # under --max-unauthenticated
        return await unauthenticated_sockets(server) == 0

    await eventually(places_given_back)


async def test_an_authenticated_socket_keeps_editing_past_the_deadline(
    server: ServerProcess,
) -> None:
    """The stock provider, its documents over one socket: once one was authorised the socket is
    trusted for good, even with no document open for a while (as Hocuspocus)."""
    first, second = new_draft(), new_draft()
    token = server.token("alice")
    client = await HocuspocusClient.launch(hocuspocus_url(server), shared=True)
    try:
        await client.open("one", first, token)
        await client.wait_doc_event("one", "authenticated")
        await client.call("wait_synced", doc="one")
        await client.call("insert", doc="one", field="title", index=0, text="before")
        await client.call("wait_saved", doc="one")

        await asyncio.sleep(3 * TIMEOUT)  # long past the deadline: nothing may close it
        await client.call("insert", doc="one", field="title", index=6, text=" and after")
        await client.call("wait_saved", doc="one")

        await client.call("close_doc", doc="one")
        await asyncio.sleep(2 * TIMEOUT)  # no document open now, past the deadline again
        await client.open("two", second, token)
        await client.wait_doc_event("two", "authenticated")
        await client.call("wait_synced", doc="two")
        await client.call("insert", doc="two", field="title", index=0, text="later")
        await client.call("wait_saved", doc="two")

        assert not [e for e in client.events if e["event"] == "socket-disconnect"]
        assert len([e for e in client.events if e["event"] == "socket-open"]) == 1
    finally:
        await client.close()
    assert str(stored_doc(server.database, first).get("title", type=Text)) == "before and after"
    assert str(stored_doc(server.database, second).get("title", type=Text)) == "later"


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_an_auth_timeout_that_cannot_work_is_refused_at_start(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = refused_at_start(capsys, "--hocuspocus-auth-timeout", value)
    assert "number of seconds" in err, err
