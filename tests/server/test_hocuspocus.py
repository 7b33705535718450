"""Stock Hocuspocus providers (Tiptap's) at `/hocuspocus`, next to y-websocket clients in the
same rooms (issue 23): auth per document, sync, awareness, SyncStatus only once an update is
on disk, many documents over one socket, bad input on one address."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, Map, Text
from websockets import ConnectionClosed
from websockets.asyncio.client import ClientConnection, connect

from crdt.awareness import decode_awareness_update
from crdt.hocuspocus import (
    PING,
    encode_authenticated,
    encode_sync_status,
    encode_token_request,
    prefix,
)
from crdt.lib0 import write_var_bytes, write_var_string
from crdt.protocol import (
    Auth,
    Awareness,
    SyncStep1,
    SyncStep2,
    Update,
    WriteAck,
    decode_message,
    encode_message,
)
from server.sync.hocuspocus import (
    MAX_PENDING_DOCUMENTS,
    MAX_PENDING_MESSAGES,
    MAX_STATELESS_BYTES,
    PING_SECONDS,
)
from tests.support.hocuspocus_client import HocuspocusClient
from tests.support.node_client import NodeClient
from tests.support.pycrdt_client import connect_synced
from tests.support.raw_client import connect_raw
from tests.support.rest import as_user, create_draft, scrape
from tests.support.server_process import ServerProcess
from tests.support.sqlite_lock import write_lock
from tests.support.stored import stored_doc, stored_rows


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("server"), "--room-grace", "0.3")
    process.start()
    yield process
    process.stop()


HELD = 0.8  # seconds the write lock is held while the test looks


def hocuspocus_url(server: ServerProcess) -> str:
    return f"ws://127.0.0.1:{server.port}/hocuspocus"


def new_draft() -> str:
    return f"h-{uuid.uuid4().hex[:12]}"


async def eventually(check, timeout: float = 10, interval: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll the coroutine function `check` until it returns something truthy; return that."""
    async with asyncio.timeout(timeout):
        while True:
            result = await check()
            if result:
                return result
            await asyncio.sleep(interval)


async def draft_shared_with(server: ServerProcess, user: str, role: str, *, title: str) -> str:
    """A draft alice creates with `title` and shares with `user` as `role`; its id."""
    async with as_user(server, "alice") as alice:
        draft = (await create_draft(alice, title=title))["id"]
        response = await alice.put(f"/api/drafts/{draft}/access", json={"user": user, "role": role})
        assert response.status_code == 200, response.text
    return str(draft)


async def one_title(
    y_clients: Sequence[NodeClient], hp: HocuspocusClient, docs: Sequence[str], *, marks: int
) -> str | None:
    """The title every client shows (y-websocket clients, then `hp`'s documents `docs`), once
    they all show the same one holding `marks` edits marked `[...]`; None until then."""
    texts = {await y.text("title") for y in y_clients}
    texts |= {await hp.doc_text(doc, "title") for doc in docs}
    text = texts.pop()
    return text if not texts and text.count("[") == marks else None


async def test_a_provider_authenticates_syncs_and_its_edit_is_acknowledged(
    server: ServerProcess,
) -> None:
    draft = new_draft()
    client = await HocuspocusClient.launch(hocuspocus_url(server))
    try:
        await client.open("a", draft, server.token("alice"))
        authenticated = await client.wait_doc_event("a", "authenticated")
        assert authenticated["scope"] == "read-write"
        await client.call("wait_synced", doc="a")
        await client.call("wait_saved", doc="a")
        await client.call("insert", doc="a", field="title", index=0, text="hello")
        await client.call("wait_saved", doc="a")
        state = await client.doc_state("a", "title")
        assert state["texts"]["title"] == "hello"
        assert state["isAuthenticated"] and state["authorizedScope"] == "read-write"
    finally:
        await client.close()


async def test_y_websocket_and_hocuspocus_clients_co_edit_one_room(server: ServerProcess) -> None:
    """Concurrent edits from both protocols converge, each exactly once; awareness crosses both
    ways; the store holds each client's edits under its own user."""
    draft = new_draft()
    token = server.token("alice")
    y_client = await NodeClient.start(server.ws_url, draft, token, name="yws")
    hp = await HocuspocusClient.launch(hocuspocus_url(server))
    try:
        await hp.open("a", draft, server.token("alice"), user="hp-a")
        await hp.open("b", draft, server.token("alice"), user="hp-b", session_awareness=True)
        await asyncio.gather(
            y_client.call("wait_synced"),
            hp.call("wait_synced", doc="a"),
            hp.call("wait_synced", doc="b"),
        )
        edits = []
        for round_ in range(5):
            edits.append(y_client.call("insert", field="title", index=0, text=f"[y{round_}]"))
            edits.append(hp.call("insert", doc="a", field="title", index=0, text=f"[a{round_}]"))
            edits.append(hp.call("insert", doc="b", field="title", index=0, text=f"[b{round_}]"))
            edits.append(hp.call("set", doc="a", key="ka", value=round_))
            edits.append(y_client.call("set", key="ky", value=round_))
        await asyncio.gather(*edits)

        text = await eventually(lambda: one_title([y_client], hp, ["a", "b"], marks=15))
        for mark in ("y", "a", "b"):
            for round_ in range(5):
                assert text.count(f"[{mark}{round_}]") == 1, text
        assert await y_client.fields() == {"ka": 4, "ky": 4}
        assert (await hp.doc_state("b"))["fields"] == {"ka": 4, "ky": 4}
        await asyncio.gather(hp.call("wait_saved", doc="a"), hp.call("wait_saved", doc="b"))

        # Awareness crosses the protocols (the two Hocuspocus documents see each other too).
        await y_client.call("awareness_set", field="cursor", value=7)

        async def hp_sees_y() -> bool:
            states = await hp.call("awareness_states", doc="a")
            return any(state.get("cursor") == 7 for _, state in states)

        async def y_sees_hp() -> bool:
            states = await y_client.call("awareness_states")
            names = {state.get("user", {}).get("name") for _, state in states}
            return {"hp-a", "hp-b"} <= names

        await eventually(hp_sees_y)
        await eventually(y_sees_hp)
        # A y-websocket client never gets a Hocuspocus frame: it would have failed to decode.
        assert not [e for e in y_client.events if e["event"] in ("error", "close")]
    finally:
        await asyncio.gather(y_client.close(), hp.close())
    doc = stored_doc(server.database, draft)
    assert str(doc.get("title", type=Text)) == text
    users = stored_rows(
        server.database, "SELECT DISTINCT user FROM updates WHERE draft_id = ?", draft
    )
    assert users == [("alice",)]


async def test_a_mixed_room_with_offline_clients_converges_and_fresh_clients_read_it(
    server: ServerProcess,
) -> None:
    """One client of each protocol goes offline and edits while one of each edits online;
    back online, all four converge with every edit exactly once, and a fresh client of each
    kind, joining afterwards, reads the same text and fields (as does the store)."""
    draft = new_draft()
    token = server.token("alice")
    y_on = await NodeClient.start(server.ws_url, draft, token, name="y-on")
    y_off = await NodeClient.start(server.ws_url, draft, token, name="y-off")
    hp = await HocuspocusClient.launch(hocuspocus_url(server))  # a socket per document
    try:
        await hp.open("on", draft, token)
        await hp.open("off", draft, token)
        await asyncio.gather(
            y_on.call("wait_synced"),
            y_off.call("wait_synced"),
            hp.call("wait_synced", doc="on"),
            hp.call("wait_synced", doc="off"),
        )
        await y_on.call("insert", field="title", index=0, text="shared")
        await hp.call("wait_saved", doc="on")  # acknowledged once the base is on disk

        async def everyone_has_base() -> bool:
            texts = {
                await y_off.text("title"),
                await hp.doc_text("on", "title"),
                await hp.doc_text("off", "title"),
            }
            return texts == {"shared"}

        await eventually(everyone_has_base)
        await asyncio.gather(y_off.call("disconnect"), hp.call("disconnect", doc="off"))
        for round_ in range(3):
            await y_off.call("insert", field="title", index=0, text=f"[yoff{round_}]")
            await hp.call("insert", doc="off", field="title", index=0, text=f"[hoff{round_}]")
            await y_on.call("insert", field="title", index=0, text=f"[yon{round_}]")
            await hp.call("insert", doc="on", field="title", index=0, text=f"[hon{round_}]")
        await y_off.call("set", key="from_y_offline", value=1)
        await hp.call("set", doc="off", key="from_hp_offline", value=2)
        await hp.call("wait_saved", doc="on")
        assert (await hp.doc_state("off"))["hasUnsyncedChanges"] is True  # offline: not saved
        await asyncio.gather(y_off.call("connect"), hp.call("connect", doc="off"))
        await asyncio.gather(y_off.call("wait_synced"), hp.call("wait_saved", doc="off"))

        text = await eventually(lambda: one_title([y_on, y_off], hp, ["on", "off"], marks=12))
        for mark in ("yoff", "hoff", "yon", "hon"):
            for round_ in range(3):
                assert text.count(f"[{mark}{round_}]") == 1, text
        assert text.endswith("shared") and text.count("shared") == 1, text
        fields = {"from_y_offline": 1, "from_hp_offline": 2}
        assert await y_on.fields() == fields
        assert (await hp.doc_state("on"))["fields"] == fields
    finally:
        await asyncio.gather(y_on.close(), y_off.close(), hp.close())

    fresh_y = await NodeClient.start(server.ws_url, draft, token, name="y-fresh")
    fresh_hp = await HocuspocusClient.launch(hocuspocus_url(server))
    try:
        await fresh_hp.open("fresh", draft, token)
        await asyncio.gather(fresh_y.call("wait_synced"), fresh_hp.call("wait_synced", doc="fresh"))
        assert await fresh_y.text("title") == text
        assert await fresh_y.fields() == fields
        fresh_state = await fresh_hp.doc_state("fresh", "title")
        assert fresh_state["texts"]["title"] == text and fresh_state["fields"] == fields
    finally:
        await asyncio.gather(fresh_y.close(), fresh_hp.close())
    assert str(stored_doc(server.database, draft).get("title", type=Text)) == text


async def test_auth_is_per_document_and_a_refusal_keeps_the_socket_open(
    server: ServerProcess,
) -> None:
    draft = new_draft()
    async with as_user(server, "olga") as olga:
        owned = (await create_draft(olga, title="Olga's"))["id"]
    hp = await HocuspocusClient.launch(hocuspocus_url(server), shared=True)
    try:
        await hp.open("bad", draft, "not-a-token")
        failed = await hp.wait_doc_event("bad", "authenticationFailed")
        assert "invalid token" in failed["reason"]
        await hp.open("stranger", owned, server.token("mallory"))
        failed = await hp.wait_doc_event("stranger", "authenticationFailed")
        assert failed["reason"] == "no access to this draft"
        await hp.open("badid", "no spaces allowed", server.token("alice"))
        failed = await hp.wait_doc_event("badid", "authenticationFailed")
        assert "draft id" in failed["reason"]
        # The same socket still serves a document the user may open.
        await hp.open("good", draft, server.token("alice"))
        assert (await hp.wait_doc_event("good", "authenticated"))["scope"] == "read-write"
        await hp.call("wait_synced", doc="good")
        await hp.call("insert", doc="good", field="title", index=0, text="fine")
        await hp.call("wait_saved", doc="good")
        assert not [e for e in hp.events if e["event"] == "socket-disconnect"]
        assert (await hp.doc_state("stranger"))["texts"] == {}
    finally:
        await hp.close()
    assert str(stored_doc(server.database, owned).get("title", type=Text)) == "Olga's"


async def test_a_viewer_gets_sync_status_0_and_its_write_is_not_applied(
    server: ServerProcess,
) -> None:
    draft = await draft_shared_with(server, "victor", "viewer", title="Read me")
    hp = await HocuspocusClient.launch(hocuspocus_url(server))
    owner = await NodeClient.start(server.ws_url, draft, server.token("alice"))
    try:
        await hp.open("v", draft, server.token("victor"))
        assert (await hp.wait_doc_event("v", "authenticated"))["scope"] == "readonly"
        await asyncio.gather(hp.call("wait_synced", doc="v"), owner.call("wait_synced"))
        await hp.call("wait_saved", doc="v")  # its empty step 2 is acknowledged: synced
        assert await hp.doc_text("v", "title") == "Read me"
        await hp.call("insert", doc="v", field="title", index=0, text="VANDAL ")
        await hp.wait_doc_event("v", "sync-status", applied=False)
        state = await hp.doc_state("v", "title")
        assert state["hasUnsyncedChanges"] is True  # never acknowledged
        # It still sees the owner's edits; the owner never sees its.
        await owner.call("insert", field="title", index=7, text=" carefully")

        async def viewer_sees() -> bool:
            return "carefully" in await hp.doc_text("v", "title")

        await eventually(viewer_sees)
        assert "VANDAL" not in await owner.text("title")
    finally:
        await asyncio.gather(hp.close(), owner.close())
    assert str(stored_doc(server.database, draft).get("title", type=Text)) == "Read me carefully"


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of the test's own: it is killed and restarted."""
    process = ServerProcess(tmp_path / "data", "--room-grace", "0.3").start()
    yield process
    process.stop()


async def test_has_unsynced_changes_turns_false_only_once_the_edit_is_on_disk(
    own_server: ServerProcess,
) -> None:
    server = own_server
    draft = new_draft()
    hp = await HocuspocusClient.launch(hocuspocus_url(server))
    try:
        await hp.open("a", draft, server.token("alice"))
        await hp.call("wait_synced", doc="a")
        await hp.call("insert", doc="a", field="title", index=0, text="committed ")
        await hp.call("wait_saved", doc="a")
        with write_lock(server.database):
            await hp.call("insert", doc="a", field="title", index=10, text="PENDING")
            await asyncio.sleep(HELD)  # the server applied it; its commit waits for the lock
            state = await hp.doc_state("a")
            assert state["hasUnsyncedChanges"] is True, "acknowledged before the commit"
            stored = stored_doc(server.database, draft)
            assert str(stored.get("title", type=Text)) == "committed "
        await hp.call("wait_saved", doc="a")  # released by the commit
        server.kill()  # kill -9 right after the acknowledgement: the edit must be on disk
    finally:
        await hp.close()
    assert str(stored_doc(server.database, draft).get("title", type=Text)) == "committed PENDING"
    server.start()
    y_client = await NodeClient.start(server.ws_url, draft, server.token("alice"))
    try:
        await y_client.call("wait_synced")
        assert await y_client.text("title") == "committed PENDING"
    finally:
        await y_client.close()


async def open_connections(server: ServerProcess) -> float:
    for line in (await scrape(server)).splitlines():
        if line.startswith("draftsync_connections "):
            return float(line.split()[1])
    raise AssertionError("no draftsync_connections gauge")


async def test_documents_share_one_socket_and_closing_one_leaves_the_other(
    server: ServerProcess,
) -> None:
    first, second = new_draft(), new_draft()
    token = server.token("alice")
    hp = await HocuspocusClient.launch(hocuspocus_url(server), shared=True)
    peer = await NodeClient.start(server.ws_url, second, token)
    try:
        await hp.open("one", first, token)
        await hp.open("two", second, token)
        await asyncio.gather(
            hp.call("wait_synced", doc="one"),
            hp.call("wait_synced", doc="two"),
            peer.call("wait_synced"),
        )
        await hp.call("insert", doc="one", field="title", index=0, text="first")
        await hp.call("insert", doc="two", field="title", index=0, text="second")
        await asyncio.gather(hp.call("wait_saved", doc="one"), hp.call("wait_saved", doc="two"))
        before = await open_connections(server)

        await hp.call("close_doc", doc="one")

        async def one_left() -> bool:
            return await open_connections(server) == before - 1

        await eventually(one_left)
        await peer.call("insert", field="title", index=6, text=" from peer")
        await hp.call("insert", doc="two", field="title", index=0, text="still ")

        async def both_see() -> bool:
            texts = {await peer.text("title"), await hp.doc_text("two", "title")}
            return texts == {"still second from peer"}

        await eventually(both_see)
        await hp.call("wait_saved", doc="two")
        assert not [e for e in hp.events if e["event"] == "socket-disconnect"]
    finally:
        await asyncio.gather(hp.close(), peer.close())
    assert str(stored_doc(server.database, first).get("title", type=Text)) == "first"
    assert str(stored_doc(server.database, second).get("title", type=Text)) == (
        "still second from peer"
    )


async def test_a_room_reload_reopens_its_document_and_leaves_the_socket_open(
    server: ServerProcess,
) -> None:
    """A refused update (a shared type in `fields`: refused after pycrdt applied it) makes the
    room of draft A discard its doc and reload. The provider socket that also carries draft B
    is not closed: A alone gets CLOSE with the reason, is authorised again and re-synced on the
    same socket, and what it typed while A reloaded reaches the store and its peers; B edits on
    throughout."""
    first, second = new_draft(), new_draft()
    token = server.token("alice")
    hp = await HocuspocusClient.launch(hocuspocus_url(server), shared=True)
    peer_a = await connect_synced(server, first)
    peer_b = await NodeClient.start(server.ws_url, second, token)
    try:
        await hp.open("a", first, token)
        await hp.open("b", second, token)
        await asyncio.gather(
            hp.call("wait_synced", doc="a"),
            hp.call("wait_synced", doc="b"),
            peer_b.call("wait_synced"),
        )
        await hp.call("insert", doc="a", field="title", index=0, text="before")
        await hp.call("insert", doc="b", field="title", index=0, text="b1")
        await asyncio.gather(hp.call("wait_saved", doc="a"), hp.call("wait_saved", doc="b"))
        await hp.wait_doc_event("a", "authenticated")  # the first authorisation of each
        await hp.wait_doc_event("b", "authenticated")
        mallory = await connect_synced(server, first)

        def nest(doc: Doc) -> None:
            doc.get("fields", type=Map)["k"] = Map({"inner": 1})

        await mallory.edit(nest)
        await asyncio.wait_for(mallory.closed.wait(), 10)
        assert mallory.close_code == 4400
        await asyncio.wait_for(peer_a.closed.wait(), 10)  # the room's other clients reconnect
        assert peer_a.close_code == 1013
        closed = await hp.wait_doc_event("a", "close")
        assert "reloading" in closed["reason"], closed
        # Typed right after the CLOSE, while the draft reloads: kept and acknowledged.
        await hp.call("insert", doc="a", field="title", index=6, text=" during")
        assert (await hp.wait_doc_event("a", "authenticated"))["scope"] == "read-write"
        await hp.call("wait_synced", doc="a")
        await hp.call("wait_saved", doc="a")

        # B went on over the same socket, never closed.
        await hp.call("insert", doc="b", field="title", index=2, text=" b2")
        await peer_b.call("insert", field="title", index=0, text="peer ")

        async def b_converged() -> bool:
            texts = {await peer_b.text("title"), await hp.doc_text("b", "title")}
            return texts == {"peer b1 b2"}

        await eventually(b_converged)
        await hp.call("wait_saved", doc="b")

        # A converges with a fresh y-websocket client on the reloaded room.
        joiner = await connect_synced(server, first)
        await joiner.wait_for(lambda: joiner.text("title") == "before during", 10)
        await hp.call("insert", doc="a", field="title", index=0, text="after ")
        await joiner.wait_for(lambda: joiner.text("title") == "after before during", 10)
        await hp.call("wait_saved", doc="a")
        await joiner.disconnect()

        opens = [e for e in hp.events if e["event"] == "socket-open"]
        assert len(opens) == 1, opens  # no reconnect
        assert not [e for e in hp.events if e["event"] == "socket-disconnect"]
        assert not [e for e in hp.events if e["event"] == "close" and e["doc"] == "b"]
        assert not [e for e in hp.events if e["event"] == "authenticated" and e["doc"] == "b"]
    finally:
        await asyncio.gather(hp.close(), peer_b.close(), peer_a.disconnect())
    assert str(stored_doc(server.database, first).get("title", type=Text)) == (
        "after before during"
    )
    assert "k" not in stored_doc(server.database, first).get("fields", type=Map).to_py()
    assert str(stored_doc(server.database, second).get("title", type=Text)) == "peer b1 b2"


def frame(address: str, body: bytes) -> str:
    """A Hocuspocus frame for `address`, base64 for the client's `raw` op."""
    return base64.b64encode(prefix(address) + body).decode()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (bytes([0, 2, 4, 0xFF, 0xFF, 0xFF, 0xFF]), "update"),  # an undecodable Yjs update
        (bytes([0x63]), "unknown"),  # no such message type
        (bytes([6, 1, 0x78]), "broadcast stateless"),  # server-internal type
        (bytes([0, 2, 9, 1]), "past the end"),  # a length past the end of the frame
    ],
)
async def test_bad_input_on_one_address_closes_only_that_document(
    server: ServerProcess, body: bytes, reason: str
) -> None:
    bad, good = new_draft(), new_draft()
    token = server.token("alice")
    hp = await HocuspocusClient.launch(hocuspocus_url(server), shared=True)
    try:
        await hp.open("bad", bad, token)
        await hp.open("good", good, token)
        await asyncio.gather(hp.call("wait_synced", doc="bad"), hp.call("wait_synced", doc="good"))
        await hp.call("insert", doc="bad", field="title", index=0, text="kept")
        await hp.call("wait_saved", doc="bad")
        rows = stored_rows(server.database, "SELECT COUNT(*) FROM updates WHERE draft_id = ?", bad)

        await hp.call("raw", data=frame(bad, body))
        closed = await hp.wait_doc_event("bad", "close")
        assert reason in closed["reason"].lower(), closed

        await hp.call("insert", doc="good", field="title", index=0, text="unharmed")
        await hp.call("wait_saved", doc="good")
        assert not [e for e in hp.events if e["event"] == "socket-disconnect"]
        assert not [e for e in hp.events if e["event"] == "close" and e["doc"] == "good"]
    finally:
        await hp.close()
    after = stored_rows(server.database, "SELECT COUNT(*) FROM updates WHERE draft_id = ?", bad)
    assert after == rows
    assert str(stored_doc(server.database, bad).get("title", type=Text)) == "kept"
    assert str(stored_doc(server.database, good).get("title", type=Text)) == "unharmed"


# -- frame level: what no stock provider sends ------------------------------------------------


def token_frame(address: str, token: str) -> bytes:
    out = bytearray(prefix(address) + bytes([2, 0]))
    write_var_string(out, token)
    write_var_string(out, "4.8.0")
    return bytes(out)


def sync_frame(address: str, subtype: int, payload: bytes) -> bytes:
    out = bytearray(prefix(address) + bytes([0, subtype]))
    write_var_bytes(out, payload)
    return bytes(out)


async def receive(socket: ClientConnection, timeout: float = 10) -> bytes:
    data = await asyncio.wait_for(socket.recv(), timeout)
    assert isinstance(data, bytes), data
    return data


async def test_frames_before_auth_are_queued_then_answered_in_order_and_pings_come(
    server: ServerProcess,
) -> None:
    draft = new_draft()
    doc = Doc(client_id=4242)
    doc["title"] = Text("raw")
    async with connect(hocuspocus_url(server)) as socket:
        await socket.send(sync_frame(draft, 0, b"\x00"))  # step 1: an empty state vector
        await socket.send(sync_frame(draft, 2, doc.get_update()))
        await socket.send(token_frame(draft, server.token("alice")))
        assert await receive(socket) == prefix(draft) + encode_authenticated("read-write")
        assert (await receive(socket)).startswith(prefix(draft) + bytes([0, 0]))  # our step 1
        assert (await receive(socket)).startswith(prefix(draft) + bytes([0, 1]))  # step 2
        assert await receive(socket) == prefix(draft) + encode_sync_status(True)
        assert str(stored_doc(server.database, draft).get("title", type=Text)) == "raw"
        # Nothing else is due: the next frame is the server's Ping, well within 30 s.
        assert await receive(socket, timeout=PING_SECONDS + 3) == PING


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([sync_frame("queued", 2, b"\x00\x00")] * (MAX_PENDING_MESSAGES + 1), 4205),
        ([sync_frame(f"doc{i}", 2, b"\x00\x00") for i in range(MAX_PENDING_DOCUMENTS + 1)], 4205),
        (["a text frame"], 4205),
        ([bytes([5, 0x61])], 4401),  # an address longer than the frame
    ],
    ids=["messages", "documents", "text", "address"],
)
async def test_socket_level_bad_input_closes_the_socket(
    server: ServerProcess, frames: list[bytes | str], code: int
) -> None:
    async with connect(hocuspocus_url(server)) as socket:
        for data in frames:
            with contextlib.suppress(ConnectionClosed):
                await socket.send(data)
        with pytest.raises(ConnectionClosed):
            while True:
                await receive(socket)
        assert socket.close_code == code, socket.close_reason


async def test_query_awareness_is_answered_with_the_rooms_awareness(server: ServerProcess) -> None:
    draft = new_draft()
    token = server.token("alice")
    peer = await NodeClient.start(server.ws_url, draft, token, name="yws")
    try:
        await peer.call("wait_synced")
        await peer.call("awareness_set", field="cursor", value=7)
        peer_id = (await peer.state())["clientID"]
        async with connect(hocuspocus_url(server)) as socket:
            await authenticate(socket, draft, token, "read-write")
            with contextlib.suppress(TimeoutError):  # what joining brings, read first
                while True:
                    await receive(socket, timeout=0.5)
            await socket.send(prefix(draft) + bytes([3]))  # QueryAwareness
            async with asyncio.timeout(10):
                while not (data := await receive(socket)).startswith(prefix(draft) + bytes([1])):
                    pass
        message = decode_message(data[len(prefix(draft)) :])
        assert isinstance(message, Awareness)
        states = {
            entry.client_id: json.loads(entry.state_json)
            for entry in decode_awareness_update(message.update)
            if not entry.removed
        }
        assert states[peer_id]["cursor"] == 7
    finally:
        await peer.close()


@pytest.fixture(scope="module")
def small_frames_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("small"), "--max-message-bytes", "65536")
    process.start()
    yield process
    process.stop()


async def test_a_frame_over_the_size_limit_closes_the_socket_with_1009_and_stores_nothing(
    small_frames_server: ServerProcess,
) -> None:
    server = small_frames_server
    draft = new_draft()
    big = Doc(client_id=4242)
    big["title"] = Text("x" * 100_000)
    frame = sync_frame(draft, 2, big.get_update())
    assert len(frame) > 65536
    async with connect(hocuspocus_url(server), max_size=None) as socket:
        await authenticate(socket, draft, server.token("alice"), "read-write")
        with contextlib.suppress(ConnectionClosed):
            await socket.send(frame)
        with pytest.raises(ConnectionClosed):
            while True:
                await receive(socket)
        assert socket.close_code == 1009, socket.close_reason
    count = "SELECT COUNT(*) FROM updates WHERE draft_id = ?"
    assert stored_rows(server.database, count, draft) == [(0,)]


async def notice_and_close(hp: HocuspocusClient, doc: str) -> tuple[dict[str, Any], str]:
    """Once `doc` is closed: the Stateless JSON that came just before its CLOSE, and the CLOSE's
    reason (the close event is consumed)."""

    async def closed() -> bool:
        return any(e["event"] == "close" and e.get("doc") == doc for e in hp.events)

    await eventually(closed)
    events = [e for e in hp.events if e.get("doc") == doc]
    kinds = [e["event"] for e in events]
    at = kinds.index("close")
    assert at > 0 and kinds[at - 1] == "stateless", kinds
    close = await hp.wait_doc_event(doc, "close")
    return json.loads(events[at - 1]["payload"]), str(close["reason"])


async def test_a_deleted_draft_closes_its_document_with_a_stateless_notice(
    server: ServerProcess,
) -> None:
    async with as_user(server, "alice") as alice:
        doomed = (await create_draft(alice, title="Doomed"))["id"]
        kept = (await create_draft(alice, title="Kept"))["id"]
        token = server.token("alice")
        hp = await HocuspocusClient.launch(hocuspocus_url(server), shared=True)
        try:
            await hp.open("d", doomed, token)
            await hp.open("k", kept, token)
            await asyncio.gather(hp.call("wait_synced", doc="d"), hp.call("wait_synced", doc="k"))
            assert (await alice.delete(f"/api/drafts/{doomed}")).status_code == 204
            notice, reason = await notice_and_close(hp, "d")
            assert reason == "draft deleted"
            assert notice == {"type": "draftsync.closed", "code": 4404, "reason": "draft deleted"}
            await hp.call("insert", doc="k", field="title", index=0, text="still ")
            await hp.call("wait_saved", doc="k")
            assert not [e for e in hp.events if e.get("doc") == "k" and e["event"] == "stateless"]
            assert not [e for e in hp.events if e["event"] == "socket-disconnect"]
        finally:
            await hp.close()
    assert str(stored_doc(server.database, kept).get("title", type=Text)) == "still Kept"


async def test_role_changes_reach_a_hocuspocus_document_at_once(server: ServerProcess) -> None:
    """Downgrade: Authenticated "readonly", later writes get SyncStatus(0); upgrade: back to
    "read-write"; revoke: that document is closed with the reason, the socket stays open."""
    async with as_user(server, "alice") as alice:
        draft = (await create_draft(alice, title="Shared"))["id"]
        other = (await create_draft(alice, title="Other"))["id"]
        for draft_id in (draft, other):
            response = await alice.put(
                f"/api/drafts/{draft_id}/access", json={"user": "carol", "role": "editor"}
            )
            assert response.status_code == 200, response.text
        hp = await HocuspocusClient.launch(hocuspocus_url(server), shared=True)
        try:
            await hp.open("c", draft, server.token("carol"))
            await hp.open("o", other, server.token("carol"))
            await asyncio.gather(hp.call("wait_synced", doc="c"), hp.call("wait_synced", doc="o"))
            await hp.wait_doc_event("c", "authenticated", scope="read-write")

            response = await alice.put(
                f"/api/drafts/{draft}/access", json={"user": "carol", "role": "viewer"}
            )
            assert response.json()["liveConnections"] == 1
            await hp.wait_doc_event("c", "authenticated", scope="readonly")
            await hp.call("insert", doc="c", field="title", index=0, text="NOPE ")
            await hp.wait_doc_event("c", "sync-status", applied=False)

            response = await alice.put(
                f"/api/drafts/{draft}/access", json={"user": "carol", "role": "editor"}
            )
            await hp.wait_doc_event("c", "authenticated", scope="read-write")

            response = await alice.put(
                f"/api/drafts/{draft}/access", json={"user": "carol", "role": "none"}
            )
            assert response.status_code == 200, response.text
            notice, reason = await notice_and_close(hp, "c")
            assert reason == "access revoked"
            assert notice == {"type": "draftsync.closed", "code": 4403, "reason": "access revoked"}
            await hp.call("insert", doc="o", field="title", index=0, text="still ")
            await hp.call("wait_saved", doc="o")
            assert not [e for e in hp.events if e["event"] == "socket-disconnect"]
        finally:
            await hp.close()
    assert str(stored_doc(server.database, draft).get("title", type=Text)) == "Shared"
    assert str(stored_doc(server.database, other).get("title", type=Text)) == "still Other"


async def test_stateless_is_accepted_within_its_bound_and_never_relayed(
    server: ServerProcess,
) -> None:
    draft = new_draft()
    token = server.token("alice")
    hp = await HocuspocusClient.launch(hocuspocus_url(server), shared=True)
    watcher = await HocuspocusClient.launch(hocuspocus_url(server))
    peer = await NodeClient.start(server.ws_url, draft, token)
    try:
        await hp.open("s", draft, token)
        await watcher.open("w", draft, token)
        await asyncio.gather(
            hp.call("wait_synced", doc="s"),
            watcher.call("wait_synced", doc="w"),
            peer.call("wait_synced"),
        )
        await hp.call("stateless", doc="s", payload='{"hello": "world"}')
        await hp.call("insert", doc="s", field="title", index=0, text="after stateless")
        await hp.call("wait_saved", doc="s")  # the document is still served

        async def watcher_has_edit() -> bool:
            return await watcher.doc_text("w", "title") == "after stateless"

        await eventually(watcher_has_edit)
        assert not [e for e in watcher.events if e["event"] == "stateless"]
        assert not [e for e in peer.events if e["event"] in ("error", "close")]

        await hp.call("stateless", doc="s", payload="x" * (MAX_STATELESS_BYTES + 1))
        closed = await hp.wait_doc_event("s", "close")
        assert "stateless" in closed["reason"]
    finally:
        await asyncio.gather(hp.close(), watcher.close(), peer.close())


async def test_shutdown_flushes_and_closes_the_socket_with_1001(own_server: ServerProcess) -> None:
    server = own_server
    first, second = new_draft(), new_draft()
    token = server.token("alice")
    hp = await HocuspocusClient.launch(hocuspocus_url(server), shared=True)
    try:
        await hp.open("one", first, token)
        await hp.open("two", second, token)
        await asyncio.gather(hp.call("wait_synced", doc="one"), hp.call("wait_synced", doc="two"))
        await hp.call("insert", doc="one", field="title", index=0, text="one")
        await hp.call("insert", doc="two", field="title", index=0, text="two")
        await asyncio.gather(hp.call("wait_saved", doc="one"), hp.call("wait_saved", doc="two"))
        assert await asyncio.to_thread(server.terminate) == 0
        disconnect = await hp.wait_event("socket-disconnect")
        assert disconnect["code"] == 1001, disconnect
    finally:
        await hp.close()
    assert str(stored_doc(server.database, first).get("title", type=Text)) == "one"
    assert str(stored_doc(server.database, second).get("title", type=Text)) == "two"


async def authenticate(socket: ClientConnection, address: str, token: str, scope: str) -> None:
    await socket.send(token_frame(address, token))
    assert await receive(socket) == prefix(address) + encode_authenticated(scope)


async def test_a_reopened_document_gets_the_sync_status_its_old_room_owed(
    server: ServerProcess,
) -> None:
    """Frame by frame: an update accepted but not committed when its room is discarded lost
    its SyncStatus with the old room; the reopened document's step 2 (its reply to the
    server's step 1) is answered with exactly that one SyncStatus(1), after the update is on
    disk, and nothing else of the socket is disturbed."""
    draft = new_draft()
    token = server.token("alice")
    doc = Doc(client_id=4242)
    doc.get("title", type=Text).insert(0, "held")
    async with connect(hocuspocus_url(server)) as socket:
        await authenticate(socket, draft, token, "read-write")
        mallory = await connect_synced(server, draft)
        try:
            with write_lock(server.database):
                await socket.send(sync_frame(draft, 2, doc.get_update()))
                await asyncio.sleep(HELD)  # applied; its commit waits for the lock

                def nest(doc: Doc) -> None:
                    doc.get("fields", type=Map)["k"] = Map({"inner": 1})

                await mallory.edit(nest)  # refused after pycrdt applied it: the room reloads
                await asyncio.wait_for(mallory.closed.wait(), 10)
                frames = []
                for _ in range(20):
                    frames.append(await receive(socket))
                    if frames[-1][len(prefix(draft)) :][:1] == bytes([7]):
                        break
                close = frames[-1]
                assert close.startswith(prefix(draft) + bytes([7])), frames
                assert b"reloading" in close
                assert encode_sync_status(True) not in [f[len(prefix(draft)) :] for f in frames]
                assert await receive(socket) == prefix(draft) + encode_token_request()
                await socket.send(token_frame(draft, token))
            # The lock is gone: the held update commits, the draft reloads, the document opens.
            assert await receive(socket) == prefix(draft) + encode_authenticated("read-write")
            step1 = await receive(socket)
            assert step1.startswith(prefix(draft) + bytes([0, 0])), step1
            step2 = await receive(socket)
            assert step2.startswith(prefix(draft) + bytes([0, 1])), step2
            await socket.send(sync_frame(draft, 1, b"\x00\x00"))  # nothing the server lacks
            await socket.send(sync_frame(draft, 0, b"\x00"))  # then a step 1 of its own
            assert await receive(socket) == prefix(draft) + encode_sync_status(True)
            # Exactly one: the next frames are the answer to the step 1.
            assert (await receive(socket)).startswith(prefix(draft) + bytes([0, 0]))
            assert (await receive(socket)).startswith(prefix(draft) + bytes([0, 1]))
        finally:
            await mallory.disconnect()
    assert str(stored_doc(server.database, draft).get("title", type=Text)) == "held"
    assert "k" not in stored_doc(server.database, draft).get("fields", type=Map).to_py()


async def test_updates_sent_together_are_acknowledged_one_each_per_address(
    server: ServerProcess,
) -> None:
    first, second = new_draft(), new_draft()
    token = server.token("alice")
    doc = Doc(client_id=777)
    text = doc.get("title", type=Text)
    updates = []
    for word in ("a", "b", "c", "d"):
        before = doc.get_state()
        text += word
        updates.append(doc.get_update(before))
    async with connect(hocuspocus_url(server)) as socket:
        await authenticate(socket, first, token, "read-write")
        await authenticate(socket, second, token, "read-write")
        frames = [
            sync_frame(first, 2, updates[0]),
            sync_frame(first, 2, updates[1]),
            sync_frame(second, 2, updates[0]),
            sync_frame(first, 2, updates[2]),
            sync_frame(first, 2, updates[3]),
        ]
        for data in frames:  # one TCP write: the server reads them at once
            socket.protocol.send_binary(data)
        socket.transport.write(b"".join(socket.protocol.data_to_send()))
        acks = {first: 0, second: 0}
        async with asyncio.timeout(10):
            while acks != {first: 4, second: 1}:
                data = await receive(socket)
                for address in acks:
                    if data == prefix(address) + encode_sync_status(True):
                        acks[address] += 1
    assert str(stored_doc(server.database, first).get("title", type=Text)) == "abcd"
    assert str(stored_doc(server.database, second).get("title", type=Text)) == "a"


async def test_a_viewers_step_2_is_acknowledged_only_when_it_holds_nothing_new(
    server: ServerProcess,
) -> None:
    draft = await draft_shared_with(server, "victor", "viewer", title="Read me twice")
    owner = await NodeClient.start(server.ws_url, draft, server.token("alice"))
    try:
        await owner.call("wait_synced")
        await owner.call("delete", field="title", index=0, length=5)  # a delete set to hold
        await owner.call("wait_synced")

        async def deleted() -> bool:
            doc = stored_doc(server.database, draft)
            return str(doc.get("title", type=Text)) == "me twice"

        await eventually(deleted)
    finally:
        await owner.close()
    known = stored_doc(server.database, draft).get_update()  # everything, deletions included
    novel = Doc(client_id=99)
    novel["body"] = Text("VANDAL")
    async with connect(hocuspocus_url(server)) as socket:
        await authenticate(socket, draft, server.token("victor"), "readonly")
        await socket.send(sync_frame(draft, 1, known))
        assert await receive(socket) == prefix(draft) + encode_sync_status(True)
        await socket.send(sync_frame(draft, 1, novel.get_update()))
        assert await receive(socket) == prefix(draft) + encode_sync_status(False)
        await socket.send(sync_frame(draft, 2, novel.get_update()))
        assert await receive(socket) == prefix(draft) + encode_sync_status(False)
    assert str(stored_doc(server.database, draft).get("body", type=Text)) == ""


async def test_rule_outcomes_are_told_as_stateless_json_once_committed(
    server: ServerProcess,
) -> None:
    """A write the rules reject: its Hocuspocus sender and other Hocuspocus clients hear of it
    as Stateless JSON; a y-websocket client gets no such frame."""
    async with as_user(server, "alice") as alice:
        draft = (await create_draft(alice, title="Plan", fields={"status": "DRAFT"}))["id"]
    token = server.token("alice")
    hp = await HocuspocusClient.launch(hocuspocus_url(server))
    other = await HocuspocusClient.launch(hocuspocus_url(server))
    peer = await NodeClient.start(server.ws_url, draft, token)
    try:
        await hp.open("w", draft, token)
        await other.open("o", draft, token)
        await asyncio.gather(
            hp.call("wait_synced", doc="w"),
            other.call("wait_synced", doc="o"),
            peer.call("wait_synced"),
        )
        await hp.call("set", doc="w", key="status", value="PUBLISHED")  # DRAFT -> PUBLISHED: no
        told = json.loads((await hp.wait_doc_event("w", "stateless"))["payload"])
        assert told["type"] == "draftsync.event" and told["event"] == "VALUE_REJECTED"
        assert told["data"]["field"] == "status" and told["data"]["value"] == "PUBLISHED"
        assert told["yours"] is True and told["user"] == "alice"
        heard = json.loads((await other.wait_doc_event("o", "stateless"))["payload"])
        assert heard["event"] == "VALUE_REJECTED" and heard["yours"] is False

        async def reverted() -> bool:
            return (await hp.doc_state("w"))["fields"].get("status") == "DRAFT"

        await eventually(reverted)
        assert not [e for e in peer.events if e["event"] in ("error", "close")]
    finally:
        await asyncio.gather(hp.close(), other.close(), peer.close())


async def test_a_conflict_opened_and_resolved_is_told_as_stateless_json(
    server: ServerProcess,
) -> None:
    """Concurrent writes to a `manual` field (a Hocuspocus provider offline, a y-websocket
    client online) open a conflict: the provider hears CONFLICT_OPENED as Stateless JSON; its
    resolution over REST is told as CONFLICT_RESOLVED."""
    token = server.token("alice")
    async with as_user(server, "alice") as alice:
        draft = (await create_draft(alice, title="Budget", fields={"goal_amount": 500}))["id"]
        hp = await HocuspocusClient.launch(hocuspocus_url(server))
        peer = await NodeClient.start(server.ws_url, draft, token)
        try:
            await hp.open("h", draft, token)
            await asyncio.gather(hp.call("wait_synced", doc="h"), peer.call("wait_synced"))
            await hp.call("disconnect", doc="h")
            await hp.call("set", doc="h", key="goal_amount", value=1000)
            await peer.call("set", key="goal_amount", value=2000)

            async def peer_stored() -> bool:
                state = (await alice.get(f"/api/drafts/{draft}")).json()["state"]
                return bool(state["fields"]["goal_amount"] == 2000)

            await eventually(peer_stored)
            await hp.call("connect", doc="h")  # its offline write meets the committed one
            opened = json.loads((await hp.wait_doc_event("h", "stateless", 15))["payload"])
            assert opened["type"] == "draftsync.event" and opened["event"] == "CONFLICT_OPENED"
            conflict = opened["data"]
            assert conflict["field"] == "goal_amount"
            assert sorted(c["value"] for c in conflict["candidates"]) == [1000, 2000]

            url = f"/api/drafts/{draft}/conflicts/{conflict['conflict_id']}/resolve"
            assert (await alice.post(url, json={"value": 1000})).status_code == 200
            resolved = json.loads((await hp.wait_doc_event("h", "stateless"))["payload"])
            assert resolved["event"] == "CONFLICT_RESOLVED" and resolved["yours"] is False
            assert resolved["data"] == {
                "conflict_id": conflict["conflict_id"],
                "field": "goal_amount",
                "value": 1000,
            }
            assert not [e for e in peer.events if e["event"] in ("error", "close")]
        finally:
            await asyncio.gather(hp.close(), peer.close())


async def test_frames_of_one_protocol_never_reach_the_others_sockets(server: ServerProcess) -> None:
    """A raw y-websocket socket decodes every frame it gets as y-protocols (a Hocuspocus frame
    would not decode: its first byte is the address length), and a raw Hocuspocus socket gets
    only frames prefixed with its address (or Ping), while both protocols edit, set awareness,
    send Stateless and cause a rule outcome."""
    async with as_user(server, "alice") as alice:
        draft = (await create_draft(alice, title="Mixed", fields={"status": "DRAFT"}))["id"]
    token = server.token("alice")
    y_raw = await connect_raw(server.ws_url, draft, token)
    await y_raw.send(encode_message(SyncStep1(b"\x00")))  # to get the draft's state
    hp = await HocuspocusClient.launch(hocuspocus_url(server))
    peer = await NodeClient.start(server.ws_url, draft, token, name="yws")
    try:
        async with connect(hocuspocus_url(server)) as hp_raw:
            await authenticate(hp_raw, draft, token, "read-write")
            await hp.open("h", draft, token, user="hp")
            await asyncio.gather(hp.call("wait_synced", doc="h"), peer.call("wait_synced"))
            await hp.call("insert", doc="h", field="title", index=0, text="hp ")
            await hp.call("stateless", doc="h", payload="ping?")
            await hp.call("set", doc="h", key="status", value="PUBLISHED")  # rejected
            await hp.wait_doc_event("h", "stateless")
            await peer.call("insert", field="title", index=0, text="y ")
            await hp.call("wait_saved", doc="h")

            async def raw_has_both_edits() -> bool:
                doc = Doc()
                for message in y_raw.messages:
                    if isinstance(message, (SyncStep2, Update)):
                        doc.apply_update(message.update)
                return str(doc.get("title", type=Text)) == "y hp Mixed"

            await eventually(raw_has_both_edits)
            assert not y_raw.closed.is_set()
            binary = [f for f in y_raw.frames if isinstance(f, bytes)]
            assert len(y_raw.messages) == len(binary)  # every frame decoded
            assert not [m for m in y_raw.messages if isinstance(m, (Auth, WriteAck))]

            got = []
            with contextlib.suppress(TimeoutError):
                while True:
                    got.append(await receive(hp_raw, timeout=0.5))
            assert got, "the raw Hocuspocus socket heard nothing of the room"
            assert all(f == PING or f.startswith(prefix(draft)) for f in got)
    finally:
        await asyncio.gather(hp.close(), peer.close(), y_raw.close())
