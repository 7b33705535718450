"""Every connection the server ends carries a close code: an unexpected error in the endpoint
or in a connection's writer closes with 1011 and a reason, never with no close frame (uvicorn
drops the TCP connection of an app that raises after the accept). Each error is made once by
the fault-injection switch (`DRAFTSYNC_FAULTS`, server/faults.py): it is logged with its
traceback (no token, nothing typed), the server stays healthy and other connections carry on.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pycrdt import Text
from websockets import ConnectionClosed
from websockets.asyncio.client import connect
from websockets.frames import Close

from crdt.hocuspocus import encode_authenticated, prefix
from crdt.lib0 import write_var_string
from tests.support.hocuspocus_client import HocuspocusClient
from tests.support.pycrdt_client import PycrdtClient, connect_synced, type_into
from tests.support.server_process import ServerProcess
from tests.support.stored import stored_doc
from tests.support.waiting import eventually


def new_draft() -> str:
    return f"cc-{uuid.uuid4().hex[:8]}"


def faulty(tmp_path: Path, point: str) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path / "data", env={"DRAFTSYNC_FAULTS": point}).start()
    yield server
    server.stop()


@pytest.fixture
def join_fault(tmp_path: Path) -> Iterator[ServerProcess]:
    yield from faulty(tmp_path, "join")


@pytest.fixture
def session_fault(tmp_path: Path) -> Iterator[ServerProcess]:
    yield from faulty(tmp_path, "session")


@pytest.fixture
def socket_setup_fault(tmp_path: Path) -> Iterator[ServerProcess]:
    yield from faulty(tmp_path, "socket-setup")


@pytest.fixture
def send_fault(tmp_path: Path) -> Iterator[ServerProcess]:
    yield from faulty(tmp_path, "send")


async def edits_as_ever(server: ServerProcess, draft: str) -> None:
    """A fresh connection joins `draft`, edits, and its edit is stored (the fault fired once)."""
    alice = await connect_synced(server, draft, "alice")
    try:
        await alice.edit(type_into("after"))
        await alice.flush()
    finally:
        await alice.disconnect()


def healthy(server: ServerProcess) -> bool:
    return httpx.get(f"{server.http_url}/healthz", timeout=5).status_code == 200


def open_connections(server: ServerProcess) -> float:
    text = httpx.get(f"{server.http_url}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        if family.name == "draftsync_connections":
            return sum(sample.value for sample in family.samples)
    raise AssertionError("no draftsync_connections gauge")


def token_frame(address: str, token: str) -> bytes:
    """A Hocuspocus Auth frame: the provider's first frame for a document."""
    auth = bytearray(prefix(address) + bytes([2, 0]))
    write_var_string(auth, token)
    write_var_string(auth, "4.8.0")
    return bytes(auth)


async def hocuspocus_close(server: ServerProcess, *frames: bytes) -> Close | None:
    """Send `frames` on a fresh Hocuspocus socket, read until it closes; the close frame the
    server sent (None: it sent none, the TCP connection was dropped)."""
    async with connect(f"ws://127.0.0.1:{server.port}/hocuspocus") as socket:
        with pytest.raises(ConnectionClosed):  # whatever came before the close
            async with asyncio.timeout(10):
                for data in frames:  # the close may come first
                    await socket.send(data)
                while True:
                    await socket.recv()
        return socket.protocol.close_rcvd


async def closed_by_server(client: PycrdtClient) -> tuple[int | None, str | None]:
    """The code and reason of the close frame the server sent (None: it sent none)."""
    await asyncio.wait_for(client.closed.wait(), 10)
    return client.close_code, client.close_reason


def assert_logged_once_without_secrets(server: ServerProcess, *secrets: str) -> None:
    log = server.log()
    assert "InjectedFault" in log and "Traceback" in log
    assert "Exception in ASGI application" not in log  # ours to log, not uvicorn's
    assert "Task exception was never retrieved" not in log  # nor asyncio's
    for secret in secrets:
        assert secret not in log


async def test_an_error_in_the_join_closes_with_1011_not_a_dropped_connection(
    join_fault: ServerProcess,
) -> None:
    server, draft = join_fault, new_draft()
    token = server.token("alice")
    client = await PycrdtClient(server.ws_url, draft, token).connect()
    code, reason = await closed_by_server(client)
    assert code == 1011 and reason
    assert_logged_once_without_secrets(server, token)
    assert healthy(server)

    # The fault fired once: the next connection joins, syncs and edits as ever.
    alice = await connect_synced(server, draft, "alice")
    try:
        await alice.edit(type_into("after"))
        await alice.flush()
        bob = await connect_synced(server, draft, "alice")
        assert str(bob.doc.get("title", type=Text)) == "after"
        await bob.disconnect()
    finally:
        await alice.disconnect()


@pytest.fixture
def room_add_fault(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(
        tmp_path / "data", "--room-grace", "0.2", env={"DRAFTSYNC_FAULTS": "room-add"}
    ).start()
    yield server
    server.stop()


async def test_a_join_that_fails_inside_the_room_leaves_it_and_the_room_unloads(
    room_add_fault: ServerProcess,
) -> None:
    """The connection was in the room's set when its join failed: it must leave it, or the
    room would hold a dead connection and never unload (nor the server forget it)."""
    server, draft = room_add_fault, new_draft()
    token = server.token("alice")
    client = await PycrdtClient(server.ws_url, draft, token).connect()
    code, reason = await closed_by_server(client)
    assert code == 1011 and reason
    assert_logged_once_without_secrets(server, token)

    async def unloaded() -> bool:
        return f"room unloaded draft={draft}" in server.log()

    await eventually(unloaded, timeout=10)
    assert healthy(server)

    # The fault fired once: the draft loads again for the next connection.
    await edits_as_ever(server, draft)


async def test_an_error_storing_the_session_is_logged_and_the_connection_is_counted_closed(
    session_fault: ServerProcess,
) -> None:
    server, draft = session_fault, new_draft()
    alice = await connect_synced(server, draft, "alice")
    bob = await connect_synced(server, draft, "alice")
    try:
        await alice.edit(type_into("typed-secret"))
        await alice.flush()
        assert open_connections(server) == 2
        await alice.disconnect()  # its SESSION event fails to be stored

        async def counted_closed() -> bool:
            return open_connections(server) == 1

        async def logged() -> bool:
            return "Traceback" in server.log()

        await eventually(counted_closed, timeout=10)
        await eventually(logged, timeout=10)
        assert_logged_once_without_secrets(server, "typed-secret")
        assert healthy(server)

        # The other connection carries on.
        await bob.edit(type_into(" more"))
        await bob.flush()
        assert not bob.closed.is_set()
    finally:
        await bob.disconnect()


async def test_a_send_that_fails_while_the_socket_is_up_closes_with_1011(
    send_fault: ServerProcess,
) -> None:
    server, draft = send_fault, new_draft()
    token = server.token("alice")
    client = await PycrdtClient(server.ws_url, draft, token).connect()
    code, reason = await closed_by_server(client)  # its first frame, the sync step 1, failed
    assert code == 1011 and reason
    log = server.log()
    assert "InjectedFault" in log and "Traceback" in log and token not in log
    assert healthy(server)

    async def counted_closed() -> bool:
        return open_connections(server) == 0

    await eventually(counted_closed, timeout=10)
    await edits_as_ever(server, draft)


async def test_a_hocuspocus_send_that_fails_closes_its_socket_with_1011(
    send_fault: ServerProcess,
) -> None:
    server, draft = send_fault, new_draft()
    token = server.token("alice")
    received = await hocuspocus_close(server, token_frame(draft, token))  # its first answer fails
    assert received is not None and received.code == 1011 and received.reason
    log = server.log()
    assert "InjectedFault" in log and "Traceback" in log and token not in log
    assert healthy(server)


async def test_an_error_in_a_hocuspocus_sockets_setup_closes_it_with_1011(
    socket_setup_fault: ServerProcess,
) -> None:
    server, draft = socket_setup_fault, new_draft()
    token = server.token("alice")
    received = await hocuspocus_close(server, token_frame(draft, token))
    assert received is not None and received.code == 1011 and received.reason
    assert_logged_once_without_secrets(server, token)
    assert healthy(server)

    # The fault fired once: the next socket authenticates and is answered.
    async with connect(f"ws://127.0.0.1:{server.port}/hocuspocus") as socket:
        await socket.send(token_frame(draft, token))
        answer = await asyncio.wait_for(socket.recv(), 10)
        assert answer == prefix(draft) + encode_authenticated("read-write")


async def test_an_error_in_a_hocuspocus_documents_join_closes_1011_and_the_server_stays_healthy(
    join_fault: ServerProcess,
) -> None:
    """One connection's join that fails is that connection's 1011, as on y-websocket: not a
    component's crash that turns /healthz to 503 (and would stop the server at the fifth)."""
    server, draft = join_fault, new_draft()
    token = server.token("alice")
    received = await hocuspocus_close(server, token_frame(draft, token))
    assert received is not None and received.code == 1011 and received.reason
    assert_logged_once_without_secrets(server, token)
    assert healthy(server)


async def test_an_error_storing_a_hocuspocus_session_is_logged_and_the_document_counted_closed(
    session_fault: ServerProcess,
) -> None:
    server, draft = session_fault, new_draft()
    token = server.token("alice")
    async with connect(f"ws://127.0.0.1:{server.port}/hocuspocus") as socket:
        await socket.send(token_frame(draft, token))
        answer = await asyncio.wait_for(socket.recv(), 10)
        assert answer == prefix(draft) + encode_authenticated("read-write")

        async def counted_open() -> bool:
            return open_connections(server) == 1

        await eventually(counted_open, timeout=10)
    # The socket closed: its document's SESSION event fails to be stored.

    async def counted_closed() -> bool:
        return open_connections(server) == 0

    async def logged() -> bool:
        return "session not journaled" in server.log()

    await eventually(counted_closed, timeout=10)
    await eventually(logged, timeout=10)
    assert_logged_once_without_secrets(server, token)
    assert healthy(server)


@pytest.mark.parametrize("point", ["join", "room-add"])
async def test_a_hocuspocus_document_whose_join_fails_leaves_its_room_and_its_socket_open(
    tmp_path: Path, point: str
) -> None:
    """One socket, two documents: the first joins (the fault point passes once), the second's
    join fails (before its room, or once in the room's set). That document alone is refused
    for now: the socket's other document carries on (closing the socket would disturb it, as a
    cap's refusal does not), and the failed one is in no room, so its draft's room unloads (a
    connection left in the set kept it loaded for ever). The provider is told why (not as a
    failed authentication) and asked for the document's token again: it opens by itself, and
    what was typed meanwhile is stored and acknowledged."""
    server = ServerProcess(
        tmp_path / "data", "--room-grace", "0.2", env={"DRAFTSYNC_FAULTS": f"{point}:1:1"}
    ).start()
    first, second = new_draft(), new_draft()
    token = server.token("alice")
    hp = await HocuspocusClient.launch(f"ws://127.0.0.1:{server.port}/hocuspocus", shared=True)
    try:
        await hp.open("one", first, token)
        await hp.call("wait_synced", doc="one")
        await hp.open("two", second, token)
        notice = json.loads((await hp.wait_doc_event("two", "stateless"))["payload"])
        assert notice["type"] == "draftsync.refused" and notice["code"] == 1011, notice
        await hp.call("insert", doc="two", field="title", index=0, text="typed meanwhile")
        assert_logged_once_without_secrets(server, token)
        if point == "room-add":

            async def unloaded() -> bool:
                return f"room unloaded draft={second}" in server.log()

            await eventually(unloaded, timeout=10)

        await hp.call("insert", doc="one", field="title", index=0, text="still here")
        await hp.call("wait_saved", doc="one")
        assert await hp.doc_text("one", "title") == "still here"
        # Asked again after its pause, the second opens and its edit is stored.
        assert (await hp.wait_doc_event("two", "authenticated", timeout=20))["scope"]
        await hp.call("wait_saved", doc="two")
        assert stored_doc(server.database, second).get("title", type=Text).to_py() == (
            "typed meanwhile"
        )
        assert not [e for e in hp.events if e["event"] == "authenticationFailed"], hp.events
        assert not [e for e in hp.events if e["event"] == "socket-disconnect"], hp.events
        assert open_connections(server) == 2
        assert healthy(server)
    finally:
        await hp.close()
    try:
        await edits_as_ever(server, second)  # the draft loads again for the next connection
    finally:
        server.stop()


async def test_a_hocuspocus_socket_whose_only_join_fails_in_the_room_closes_1011_and_it_unloads(
    room_add_fault: ServerProcess,
) -> None:
    """Its only document failed once in the room's set: the socket closes with 1011, as
    before, and the document leaves the room, which unloads (it kept the dead connection)."""
    server, draft = room_add_fault, new_draft()
    token = server.token("alice")
    received = await hocuspocus_close(server, token_frame(draft, token))
    assert received is not None and received.code == 1011 and received.reason
    assert_logged_once_without_secrets(server, token)

    async def unloaded() -> bool:
        return f"room unloaded draft={draft}" in server.log()

    await eventually(unloaded, timeout=10)
    assert healthy(server)
    await edits_as_ever(server, draft)
