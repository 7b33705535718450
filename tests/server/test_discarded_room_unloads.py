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

import time
from pathlib import Path

from pycrdt import Doc, Text

from crdt.protocol import Update, encode_message
from server import faults
from server.auth import TokenSigner
from server.sync.room import RoomState
from tests.support.in_process_server import serving_in_process, synced_client, until
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
