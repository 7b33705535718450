"""A cold join reads the joiner's role and the draft in one store call (issue 24 point 4):
`Store.read_opening` on both backends, the role memo kept exact beside it (SQLite reads it on
the event loop), the registry using what it read only while it is the newest, and a real server
answering joins of a draft it has not loaded as before: roles checked before anything of the
draft is sent."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from pathlib import Path

from pycrdt import Doc, Text

from crdt.protocol import Auth, SyncStep2, Update, encode_message
from server.config import Settings
from server.service import Service
from server.store.api import Store
from server.store.records import FIRST_WATERMARK, UpdateRecord
from server.store.sqlite import SqliteStore
from server.sync.connection import Connection
from tests.support.pycrdt_client import PycrdtClient, connect_synced, type_into
from tests.support.raw_client import connect_raw
from tests.support.rest import as_user
from tests.support.server_process import ServerProcess
from tests.support.waiting import eventually


def _record(draft: str, version: int, data: bytes) -> UpdateRecord:
    return UpdateRecord(draft, version, data, "alice", "s", 1, time.time())


async def test_the_opening_read_is_the_role_and_the_latest_load(store: Store) -> None:
    assert await store.create_draft("d", "alice", now=time.time())
    assert await store.set_role("d", "bob", "viewer")

    role, empty = await store.read_opening("d", "alice")
    assert role == "owner"
    assert empty is not None
    assert (empty.snapshot, empty.snapshot_version, empty.tail) == (None, 0, [])
    assert empty.journal_watermark == FIRST_WATERMARK

    await store.append_updates([_record("d", v, f"u{v}".encode()) for v in (1, 2, 3, 4)])
    await store.save_snapshot("d", 2, b"state at 2", now=time.time())
    await store.append_events([], watermark=("d", 4))
    role, state = await store.read_opening("d", "bob")
    assert role == "viewer"
    loaded = await store.load("d")
    assert state is not None
    assert (state.snapshot, state.snapshot_version) == (b"state at 2", 2)
    assert state.tail == [b"u3", b"u4"] == loaded.tail
    assert state.version == loaded.version == 4
    assert state.journal_watermark == await store.journal_watermark("d") == 4


async def test_without_a_stored_role_nothing_of_the_draft_is_read(store: Store) -> None:
    assert await store.create_draft("d", "alice", now=time.time())
    await store.append_updates([_record("d", 1, b"secret")])
    assert await store.read_opening("d", "mallory") == (None, None)
    assert await store.read_opening("unknown", "alice") == (None, None)
    assert await store.read_opening("", "") == (None, None)  # what the warm-up reads
    # Awkward ids are parameters like any other.
    assert await store.read_opening("d'; DROP TABLE access; --", "alice") == (None, None)
    assert await store.tombstone("d", now=time.time())  # its access rows go with it
    assert await store.read_opening("d", "alice") == (None, None)


async def test_an_opening_read_during_an_access_change_reads_what_it_left(
    tmp_path: Path,
) -> None:
    """SQLite reads the opening on the event loop only while no access change is half-way
    (the store's lock is free); one that is waits for it, reads the new role, and the memo
    keeps that one, not the role before the change."""
    store = await SqliteStore.open(tmp_path / "draftsync.db")
    try:
        assert await store.create_draft("d", "alice", now=1.0)
        assert await store.set_role("d", "bob", "editor")
        change = asyncio.create_task(store.set_role("d", "bob", "viewer"))
        await asyncio.sleep(0)  # the change holds the lock, its transaction under way
        assert not change.done()
        role, state = await store.read_opening("d", "bob")
        assert change.done()
        assert role == "viewer"
        assert state is not None
        assert await store.role_of("d", "bob") == "viewer"  # from the memo: the new role
    finally:
        await store.close()


async def test_opening_reads_racing_changes_never_return_an_older_role(tmp_path: Path) -> None:
    """As tests/server/test_role_memo.py checks `role_of`: opening reads beside a writer that
    changes bob's role 200 times; each sees the last change before it began, or a later one,
    and so does every `role_of` (the memo they both fill) at the end."""
    store = await SqliteStore.open(tmp_path / "draftsync.db")
    try:
        assert await store.create_draft("d", "alice", now=1.0)
        rng = random.Random(4)
        roles = ("viewer", "editor", "owner", None)
        done: list[str | None] = []
        stale: list[tuple[int, str | None]] = []

        async def writer() -> None:
            for _ in range(200):
                role = rng.choice(roles)
                assert await store.set_role("d", "bob", role)
                done.append(role)
                await asyncio.sleep(0)

        async def reader(read_opening: bool) -> None:
            for _ in range(300):
                changes = len(done)
                if read_opening:
                    role, _ = await store.read_opening("d", "bob")
                else:
                    role = await store.role_of("d", "bob")
                # The role when it began (None before any change), or one set since.
                allowed = {done[changes - 1] if changes else None, *done[changes:]}
                if role not in allowed:
                    stale.append((changes, role))
                await asyncio.sleep(0)

        async with asyncio.timeout(60):
            await asyncio.gather(writer(), reader(True), reader(True), reader(False))
        assert stale == []
        assert await store.role_of("d", "bob") == done[-1]
        assert (await store.read_opening("d", "bob"))[0] == done[-1]
    finally:
        await store.close()


class _Nowhere:
    """Where a test's connection sends: nowhere (what the room sends is not the point)."""

    def send_now(self, data: bytes) -> bool:
        return True

    async def send_bytes(self, data: bytes) -> None:
        pass

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        pass


def _connection(user: str) -> Connection:
    return Connection(
        _Nowhere(), user=user, session="s", can_write=True, max_messages=1000, max_bytes=1 << 24
    )


def _text_update(text: str, before: Doc | None = None) -> tuple[Doc, bytes]:
    doc = before or Doc()
    state = doc.get_state()
    field = doc.get("title", type=Text)
    field.insert(len(field), text)
    return doc, doc.get_update(state)


async def test_the_registry_opens_from_the_preload_only_while_it_is_the_newest(
    tmp_path: Path,
) -> None:
    """A preload opens the room without reading the draft again (an outside write made
    after it is not seen: proof that it was used); once a room of the draft came and went
    after it was read, the room is loaded from the store instead (what that room wrote is
    there); a preload for a draft whose room is open reads nothing."""
    settings = Settings(data_dir=tmp_path, secret="test", room_grace_seconds=0.05)
    store = await SqliteStore.open(settings.database_path)
    service = Service(settings, store)
    service.start()
    try:
        await store.create_draft("d", "alice", now=time.time())
        doc, first = _text_update("one")
        await store.append_updates([_record("d", 1, first)])

        async def unloaded() -> bool:
            return service.rooms.get("d") is None

        preload = await service.rooms.preload("d", "alice")
        assert preload is not None and preload.role == "owner"
        assert preload.state is not None and preload.state.version == 1
        # Written by another process after the read: never heard of by this one (the SQLite
        # store has one writer), so a room opened from the preload does not hold it.
        outside = sqlite3.connect(settings.database_path)
        with outside:
            outside.execute(
                "INSERT INTO updates (draft_id, version, data, user, session, client_id,"
                " created_at) VALUES ('d', 2, ?, 'x', 's', 1, 0)",
                (_text_update("two", doc)[1],),
            )
        outside.close()
        conn = _connection("alice")
        room = await service.rooms.join("d", conn, preload)
        assert room.version == 1
        assert await service.rooms.preload("d", "alice") is None  # loaded: nothing read
        service.rooms.leave(room, conn)
        await eventually(unloaded)

        # Read, then a room of the draft comes, writes and goes: the read is stale.
        stale = await service.rooms.preload("d", "alice")
        assert stale is not None and stale.state is not None and stale.state.version == 2
        writer = _connection("alice")
        room = await service.rooms.join("d", writer)
        assert room.version == 2
        await room.receive_run(writer, [_text_update("three", doc)[1]])
        async with asyncio.timeout(10):
            await room.gate.until_committed()
        assert room.version == 3
        service.rooms.leave(room, writer)
        await eventually(unloaded)
        room = await service.rooms.join("d", _connection("alice"), stale)
        assert room.version == 3  # loaded from the store, not from the stale read
        assert str(room.core.doc.get("title", type=Text)) == "onetwothree"
    finally:
        await service.shutdown()
        await service.stop()


async def test_joins_of_a_draft_not_loaded_check_roles_first(tmp_path: Path) -> None:
    """After a restart (nothing loaded): the owner's first join syncs the whole draft, a
    viewer's too but its writes are refused, a stranger is refused with 4403 before any
    frame of the draft, and an unknown id is created for whoever opens it, as ever."""
    server = ServerProcess(tmp_path, "--room-grace", "0.2").start()
    try:
        alice = await connect_synced(server, "d", "alice")
        await alice.edit(type_into("hello"))
        await alice.flush()
        await alice.disconnect()
        async with as_user(server, "alice") as http:
            shared = await http.put("/api/drafts/d/access", json={"user": "bob", "role": "viewer"})
            assert shared.status_code == 200, shared.text
        server.terminate()
        server.start()

        stranger = await connect_raw(server.ws_url, "d", server.token("mallory"))
        code, reason = await stranger.wait_closed()
        assert code == 4403, reason
        assert not any(isinstance(m, SyncStep2 | Update) and m.update for m in stranger.messages), (
            "a frame of the draft reached a caller with no access"
        )

        viewer = await connect_synced(server, "d", "bob")
        assert viewer.text("title") == "hello"
        await viewer.disconnect()
        server.terminate()
        server.start()
        viewer_raw = await connect_raw(server.ws_url, "d", server.token("bob"))
        await viewer_raw.send(encode_message(Update(_text_update("!")[1])))
        await viewer_raw.next_message(Auth)  # read-only: its update is dropped
        await viewer_raw.close()
        owner = await connect_synced(server, "d", "alice")
        assert owner.text("title") == "hello"

        newcomer = await connect_synced(server, "fresh", "carol")
        assert newcomer.text("title") == ""
        await newcomer.edit(type_into("mine"))
        await newcomer.flush()
        await newcomer.disconnect()
        await owner.disconnect()
    finally:
        server.stop()


async def test_a_pycrdt_client_syncs_each_time_a_restarted_server_loads_the_draft(
    tmp_path: Path,
) -> None:
    """Five restarts, a fresh client each time (`bench relay` C1's shape): the whole draft,
    every time, read in one store call and rebuilt from it."""
    server = ServerProcess(tmp_path).start()
    try:
        writer = await connect_synced(server, "c1", "alice")
        for index in range(300):
            await writer.edit(type_into(str(index % 10)))
        await writer.flush()
        expected = writer.text("title")
        await writer.disconnect()
        for _ in range(5):
            server.terminate()
            server.start()
            client = PycrdtClient(server.ws_url, "c1", server.token("alice"))
            await client.connect()
            async with asyncio.timeout(10):
                await client.synced.wait()
            assert client.text("title") == expected
            await client.disconnect()
    finally:
        server.stop()
