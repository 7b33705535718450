"""Joiners share one encoded sync step 2 per state of the doc (server/sync/replies.py), and the
sharing changes nothing of what they see: a reply that holds an uncommitted edit still leaves
only at its commit, a kept reply is dropped when the doc changes, and many joiners arriving at
once while someone types all end with the writer's text.

The commit is held as in test_held_commit.py: a second SQLite connection holds the write lock.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pycrdt import Doc, Text

from crdt.origins import ClientOrigin
from crdt.protocol import SyncStep1, SyncStep2, decode_message
from crdt.schema import DEFAULT_SCHEMA
from server.config import Settings
from server.service import Service
from server.store.records import UpdateRecord
from server.store.sqlite import SqliteStore
from server.sync.connection import Connection
from server.sync.core import RoomCore
from server.sync.registry import EMPTY_STATE_VECTOR
from server.sync.replies import SyncReplies
from tests.support.pycrdt_client import PycrdtClient, connect_synced, type_into
from tests.support.server_process import ServerProcess
from tests.support.sqlite_lock import write_lock

HELD = 0.8  # seconds the lock is held while the test looks (under the 5 s busy timeout)
JOINERS = 20


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the module: each test uses drafts of its own, and the one that holds the
    write lock lets it go before it ends."""
    process = ServerProcess(tmp_path_factory.mktemp("shared-sync") / "data", "--room-grace", "0.3")
    process.start()
    yield process
    process.stop()


async def test_joiners_during_a_held_commit_never_see_it_before_it_is_committed(
    server: ServerProcess,
) -> None:
    draft = f"shared-held-{uuid.uuid4().hex[:8]}"
    alice = await connect_synced(server, draft, "alice")
    await alice.edit(type_into("committed "))
    await alice.flush()
    # An empty joiner now: its reply (the committed state) is kept for the next ones.
    first = await connect_synced(server, draft, "alice")
    assert first.text("title") == "committed "
    joiners = [PycrdtClient(server.ws_url, draft, server.token("alice")) for _ in range(3)]
    try:
        with write_lock(server.database):
            await alice.edit(type_into("PENDING"))
            await asyncio.sleep(0.2)  # applied; its commit waits for the lock
            for joiner in joiners:  # the same (empty) state vector as `first`
                await joiner.connect()
            await asyncio.sleep(HELD)
            for joiner in joiners:
                assert not joiner.synced.is_set(), "a sync step 2 left before the commit"
                assert "PENDING" not in joiner.text("title")
        for joiner in joiners:
            await asyncio.wait_for(joiner.synced.wait(), 10)
            assert joiner.text("title") == "committed PENDING"
        await first.wait_for(lambda: first.text("title") == "committed PENDING")
    finally:
        await asyncio.gather(alice.disconnect(), first.disconnect())
        await asyncio.gather(*(joiner.disconnect() for joiner in joiners))


async def test_a_kept_reply_is_dropped_when_an_edit_is_committed(server: ServerProcess) -> None:
    draft = f"shared-fresh-{uuid.uuid4().hex[:8]}"
    alice = await connect_synced(server, draft, "alice")
    clients = [alice]
    try:
        for n in range(5):
            await alice.edit(type_into(f"{n} "))
            await alice.flush()
            # Two joiners per version: the second is served the kept reply.
            for _ in range(2):
                joiner = await connect_synced(server, draft, "alice")
                clients.append(joiner)
                assert joiner.text("title") == alice.text("title")
    finally:
        await asyncio.gather(*(client.disconnect() for client in clients))


async def test_many_joiners_at_once_while_someone_types_all_converge(
    server: ServerProcess,
) -> None:
    draft = f"shared-storm-{uuid.uuid4().hex[:8]}"
    alice = await connect_synced(server, draft, "alice")
    await alice.edit(type_into("x" * 20_000))
    await alice.flush()
    joiners = [PycrdtClient(server.ws_url, draft, server.token("alice")) for _ in range(JOINERS)]

    async def type_while_they_join() -> None:
        for n in range(20):
            await alice.edit(type_into(f"<{n}>"))
            await asyncio.sleep(0.005)

    try:
        await asyncio.gather(type_while_they_join(), *(joiner.connect() for joiner in joiners))
        await alice.flush()
        expected = alice.text("title")
        for joiner in joiners:
            await asyncio.wait_for(joiner.synced.wait(), 20)
            await joiner.wait_for(lambda j=joiner: j.text("title") == expected, timeout=20)
    finally:
        await asyncio.gather(alice.disconnect(), *(joiner.disconnect() for joiner in joiners))


# -- the cache itself, on a real pycrdt doc ----------------------------------------------------


def _doc(text: str) -> Doc:
    doc: Doc = Doc()
    doc.get("title", type=Text).insert(0, text)
    return doc


def test_one_encode_is_shared_by_joiners_at_the_same_state_vector() -> None:
    doc = _doc("hello")
    replies = SyncReplies()
    empty = Doc().get_state()
    first = replies.frame(empty, doc.get_update)
    assert replies.frame(empty, doc.get_update) is first
    assert (replies.encoded, replies.shared) == (1, 1)
    message = decode_message(first)
    assert isinstance(message, SyncStep2)
    reader: Doc = Doc()
    reader.apply_update(message.update)
    assert str(reader.get("title", type=Text)) == "hello"


def test_another_state_vector_gets_its_own_diff_and_a_clear_drops_every_reply() -> None:
    doc = _doc("hello")
    behind = Doc()
    behind.apply_update(doc.get_update())
    doc.get("title", type=Text).insert(5, " world")
    replies = SyncReplies()
    full = replies.frame(Doc().get_state(), doc.get_update)
    diff = replies.frame(behind.get_state(), doc.get_update)
    assert len(diff) < len(full) and len(replies) == 2
    replies.clear()
    assert len(replies) == 0
    assert replies.frame(Doc().get_state(), doc.get_update) is not full


def test_the_replies_kept_are_bounded() -> None:
    doc = _doc("a")
    replies = SyncReplies(max_entries=2, max_frame_bytes=10_000)
    states = []
    for n in range(4):
        other: Doc = Doc(client_id=1000 + n)
        other.get("title", type=Text).insert(0, "b")
        states.append(other.get_state())
        replies.frame(states[-1], doc.get_update)
    assert len(replies) == 2
    big = _doc("y" * 20_000)
    replies.clear()
    replies.frame(Doc().get_state(), big.get_update)
    assert len(replies) == 0  # larger than max_frame_bytes: sent, not kept


def test_an_undecodable_state_vector_raises_and_is_not_kept() -> None:
    doc = _doc("a")
    replies = SyncReplies()
    with pytest.raises(ValueError):
        replies.frame(b"\xff\xff\xff", doc.get_update)
    assert len(replies) == 0


# -- the room's own sync step 1, kept while the doc is unchanged -------------------------------


def _step1_state(frame: bytes) -> bytes:
    message = decode_message(frame)
    assert isinstance(message, SyncStep1)
    return message.state_vector


def test_joiners_share_the_rooms_sync_step_1_until_the_doc_changes() -> None:
    core = RoomCore(DEFAULT_SCHEMA)
    core.open(_doc("hello"), 0, semantic_fields=False, journal=None)
    (first,) = [m.frame for m in core.join(sync_on_join=True)]
    (again,) = [m.frame for m in core.join(sync_on_join=True)]
    assert again is first  # one encode for both joiners
    assert _step1_state(first) == core.doc.get_state()
    writer: Doc = Doc(client_id=77)
    writer.apply_update(core.doc.get_update())
    before = writer.get_state()
    writer.get("title", type=Text).insert(5, "!")
    core.apply_run(ClientOrigin("alice", "s-a"), [writer.get_update(before)])
    (after,) = [m.frame for m in core.join(sync_on_join=True)]
    # A kept step 1 past an edit would tell the joiner the room lacks the edit's items.
    assert _step1_state(after) == core.doc.get_state() != _step1_state(first)


def test_a_reopened_doc_gets_its_own_sync_step_1() -> None:
    core = RoomCore(DEFAULT_SCHEMA)
    core.open(_doc("a"), 0, semantic_fields=False, journal=None)
    (first,) = [m.frame for m in core.join(sync_on_join=True)]
    core.close()
    core.open(_doc("a longer text"), 3, semantic_fields=False, journal=None)
    (second,) = [m.frame for m in core.join(sync_on_join=True)]
    assert _step1_state(second) == core.doc.get_state() != _step1_state(first)


# -- a room loaded from a snapshot alone keeps it as the empty joiner's reply --------------------


def _refuse_to_encode(state_vector: bytes) -> bytes:
    raise AssertionError("encoded from the doc: the kept snapshot was not used")


async def test_a_room_loaded_from_a_snapshot_alone_answers_an_empty_joiner_with_it(
    tmp_path: Path,
) -> None:
    """After a restart, a draft whose stored state is one snapshot (a clean stop leaves one,
    server/sync/room.py `snapshot_before_unload`) opens with that snapshot kept as the reply
    to a joiner that starts empty: no encode of the doc on that joiner's way (`bench relay`
    C1). A draft with a tail past its snapshot keeps nothing (its doc is more than the
    snapshot), and an edit drops the kept reply like any other."""
    settings = Settings(data_dir=tmp_path, secret="test")
    store = await SqliteStore.open(settings.database_path)
    service = Service(settings, store)
    service.start()
    try:
        now = time.time()
        snapshot = _doc("hello").get_update()
        for draft in ("kept", "tailed"):
            await store.create_draft(draft, "alice", now=now)
            await store.append_updates([UpdateRecord(draft, 1, snapshot, "alice", "s", 1, now)])
            await store.save_snapshot(draft, 1, snapshot, now=now)
        tail = _doc("hello").get_update(Doc().get_state())  # redundant, still a tail update
        await store.append_updates([UpdateRecord("tailed", 2, tail, "alice", "s", 1, now)])

        room = await service.rooms.open("kept")
        frame = room.replies.frame(EMPTY_STATE_VECTOR, _refuse_to_encode)
        message = decode_message(frame)
        assert isinstance(message, SyncStep2) and message.update == snapshot
        assert (room.replies.encoded, room.replies.shared) == (0, 1)
        reader: Doc = Doc()
        reader.apply_update(message.update)
        assert str(reader.get("title", type=Text)) == "hello"
        writer: Doc = Doc(client_id=77)
        writer.apply_update(room.doc.get_update())
        before = writer.get_state()
        writer.get("title", type=Text).insert(5, "!")
        author = Connection(
            _Nowhere(), user="alice", session="s", can_write=True, max_messages=9, max_bytes=1 << 20
        )
        await room.receive_run(author, [writer.get_update(before)])
        assert len(room.replies) == 0  # the doc changed: the snapshot is no longer all of it
        service.rooms.release(room)

        tailed = await service.rooms.open("tailed")
        assert len(tailed.replies) == 0
        service.rooms.release(tailed)
    finally:
        await service.shutdown()
        await service.stop()


class _Nowhere:
    async def send_bytes(self, data: bytes) -> None:
        pass

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        pass
