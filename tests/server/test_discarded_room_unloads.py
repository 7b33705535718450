"""A discarded room whose accepted writes were still committing goes once they are stored,
even if nobody opens its draft again.

A room is discarded when its doc took what the store must never hold (a refused update, a
server error inside the room): its connections close, and what it had accepted still
commits (server/sync/registry.py keeps it "draining" meanwhile, so that the next load sees
every one of those versions). Its doc was let go only by the next `open` of its draft; a draft
nobody came back to kept the discarded room, its doc and everything it held, for the life of
the process: a doc never unloaded.

A real server in this process (uvicorn, SQLite) so that its rooms can be read, real WebSocket
clients on loopback; the commit is held with SQLite's write lock from a second connection, and
the server error is the test-only `update` fault point. Waits are bounded in count and time.
"""

from __future__ import annotations

import gc
import time
import weakref
from pathlib import Path

from pycrdt import Doc, Text

from bench.services import PostgresCluster, RedisServer
from crdt.protocol import Update, encode_message
from server import faults
from server.auth import TokenSigner
from server.service import Service
from server.sync.room import Room, RoomState
from tests.support.in_process_server import serving_in_process, synced_client, until
from tests.support.phantom import PHANTOM, client_11_typing
from tests.support.server_process import SECRET
from tests.support.sqlite_lock import write_lock
from tests.support.stored import stored_doc

DRAFT = "discarded-while-committing"


async def test_a_discarded_room_is_closed_once_its_writes_commit_with_no_one_coming_back(
    tmp_path: Path,
) -> None:
    token = TokenSigner(SECRET).issue("alice", ttl_seconds=3600, now=time.time())
    async with serving_in_process(tmp_path) as served:
        service = served.service
        client = await synced_client(served.ws_url, DRAFT, token)
        room = service.rooms.get(DRAFT)
        assert room is not None
        edit = Doc()
        title = edit.get("title", type=Text)
        try:
            with write_lock(service.settings.database_path):
                before = edit.get_state()
                title.insert(0, "kept")
                await client.send(encode_message(Update(edit.get_update(before))))
                await until(lambda: room.gate.pending == 1, "the write waits for its commit")
                faults.arm("update")  # the next update: a server error inside the room
                before = edit.get_state()
                title.insert(4, "!")
                await client.send(encode_message(Update(edit.get_update(before))))
                await until(lambda: room.state is RoomState.DISCARDED, "the room discarded")
            code, _ = await client.wait_closed()
            assert code == 1011
        finally:
            faults.ARMED.pop("update", None)
            await client.close()
        await until(lambda: room.gate.pending == 0, "the accepted write committed")
        # Nobody opens the draft again: the discarded room still goes, its doc with it.
        await until(lambda: room.state is RoomState.CLOSED, "the discarded room closed")
        assert service.rooms.get(DRAFT) is None
    # What it accepted before the error was stored, and nothing of the refused one.
    assert str(stored_doc(tmp_path / "draftsync.db", DRAFT).get("title", type=Text)) == "kept"


async def discard_an_idle_room(ws_url: str, service: Service, draft: str) -> weakref.ref[Room]:
    """Open `draft` with one client, send a run that leaves a gap in the doc's clocks (the
    room discards its doc with nothing pending, and no exception whose traceback a log
    record would keep) and let the client go: the discarded room, weakly."""
    token = TokenSigner(SECRET).issue("alice", ttl_seconds=3600, now=time.time())
    client = await synced_client(ws_url, draft, token)
    room = service.rooms.get(draft)
    assert room is not None
    hel, l3 = client_11_typing()
    try:
        client.send_together([encode_message(Update(u)) for u in (hel, PHANTOM, l3)])
        code, _ = await client.wait_closed()
        assert code == 1013
    finally:
        await client.close()
    assert room.state in (RoomState.DISCARDED, RoomState.CLOSED)  # closed once let go
    return weakref.ref(room)


def collected(room: weakref.ref[Room]) -> bool:
    gc.collect()
    return room() is None


async def test_a_discarded_room_no_one_comes_back_to_is_let_go(tmp_path: Path) -> None:
    async with serving_in_process(tmp_path) as served:
        room = await discard_an_idle_room(served.ws_url, served.service, "discarded-idle")
        await until(lambda: collected(room), "the discarded room let go", tries=100)


async def test_a_discarded_room_of_several_instances_is_let_go(
    tmp_path: Path, postgres: PostgresCluster, redis_server: RedisServer
) -> None:
    """With several instances the fan-out follows each loaded room (which versions its doc
    holds): a discarded one must not stay followed, its doc with it, until its draft is
    opened again."""
    store = postgres.new_database()
    async with serving_in_process(tmp_path, store_url=store, redis_url=redis_server.url) as served:
        room = await discard_an_idle_room(served.ws_url, served.service, "discarded-shared")
        await until(lambda: collected(room), "the discarded room let go", tries=100)
