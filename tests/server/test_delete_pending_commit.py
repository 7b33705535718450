"""Deleting a draft whose accepted writes are still in the group commit, their room gone.

A discarded room leaves the registry at once, but what it accepted before still commits
(`Room.discard`). If its commit is held (another SQLite connection holds the write lock) when
the owner deletes the draft, the delete finds no room to wait for; its purge must still come
after those writes, or they are stored after it and the deleted draft's content stays for good.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from pycrdt import Map

from server.store.statements import CONTENT_TABLES
from tests.support.pycrdt_client import connect_synced, type_into
from tests.support.rest import as_user, create_draft, new_id
from tests.support.server_process import ServerProcess
from tests.support.sqlite_lock import write_lock
from tests.support.stored import stored_rows

# Long enough for the held commit to sit in SQLite's busy handler's longest sleeps, so that the
# delete's own writes usually take the lock first when it is released (the order that lost
# content); the outcome must not depend on which goes first.
HELD = 1.0


async def test_a_deleted_draft_keeps_no_content_its_discarded_room_committed_late(
    tmp_path: Path,
) -> None:
    server = ServerProcess(tmp_path / "data", "--room-grace", "30").start()
    draft = new_id("pending")
    try:
        async with as_user(server, "alice") as alice:
            await create_draft(alice, id=draft, title="kept until deleted")
            writer = await connect_synced(server, draft)
            await writer.edit(type_into("committed "))
            await writer.flush()
            breaker = await connect_synced(server, draft, "alice")
            with write_lock(server.database):
                await writer.edit(type_into("PENDING"))
                await asyncio.sleep(0.2)  # accepted; its commit waits for the lock
                # A shared type in `fields`: the room discards its doc (a real refusal path).
                await breaker.edit(lambda doc: doc.get("fields", type=Map).__setitem__("k", Map()))
                await asyncio.wait_for(writer.closed.wait(), 10)  # the room was discarded
                await asyncio.sleep(HELD)
                deleting = asyncio.create_task(alice.delete(f"/api/drafts/{draft}"))
                await asyncio.sleep(0.1)  # its tombstone waits for the lock too
            response = await asyncio.wait_for(deleting, 30)
            assert response.status_code == 204, response.text

            # The pipeline commits in order: once a later write of another draft is
            # acknowledged, the discarded room's held write has been committed (or dropped).
            other = await connect_synced(server, new_id("later"))
            await other.edit(type_into("later"))
            await other.flush()
            await asyncio.gather(other.disconnect(), writer.disconnect(), breaker.disconnect())

        # Its journal (`events`) is the audit trail, kept after a delete by design.
        for table in CONTENT_TABLES:
            rows = stored_rows(server.database, f"SELECT 1 FROM {table} WHERE draft_id = ?", draft)
            assert rows == [], f"the deleted draft's {table} were stored after its purge"
    finally:
        server.stop()
