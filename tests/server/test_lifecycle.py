"""Rooms come and go, the server stops cleanly, and nothing acknowledged is lost on the way.

- a room is unloaded once the grace period after its last client has passed (the module's
  server runs with `--room-grace 0.3`), and a client coming back gets the whole draft from the
  store;
- SIGTERM closes every connection with 1001 and a reason, the process exits, and a server
  restarted on the same data directory has everything a client wrote and saw acknowledged.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

from pycrdt import Doc, Map, Text

from crdt.protocol import SyncStep1, Update, WriteAck, encode_message
from tests.support.pycrdt_client import connect_synced
from tests.support.raw_client import RawClient, connect_raw
from tests.support.rest import as_user, create_draft, rooms_loaded
from tests.support.server_process import ServerProcess
from tests.support.sqlite_lock import write_lock
from tests.support.stored import stored_doc

GRACE = 0.3  # the `server` fixture's --room-grace
TIMEOUT = 10


def new_draft() -> str:
    return f"d-{uuid.uuid4().hex[:12]}"


async def wait_rooms_loaded(server: ServerProcess, count: int, timeout: float = TIMEOUT) -> None:
    async with asyncio.timeout(timeout):
        while True:
            if await rooms_loaded(server) == count:
                return
            await asyncio.sleep(0.02)  # poll interval of a metric, bounded by the timeout


async def test_an_idle_room_unloads_after_the_grace_period_and_reloads_from_the_store(
    server: ServerProcess,
) -> None:
    draft = new_draft()
    await wait_rooms_loaded(server, 0)
    editor = await connect_synced(server, draft)
    await wait_rooms_loaded(server, 1)
    for word in ("kept", " across", " unloads"):
        await editor.edit(lambda doc, w=word: doc.get("title", type=Text).insert(0, w))
    await editor.edit(lambda doc: doc.get("fields", type=Map).__setitem__("current_step", 3))
    expected = editor.text("title")

    await editor.disconnect()
    left = time.monotonic()
    await wait_rooms_loaded(server, 0)
    assert time.monotonic() - left >= GRACE, "unloaded before the grace period was over"

    back = await connect_synced(server, draft)
    try:
        assert back.text("title") == expected
        assert back.fields() == {"current_step": 3}
        await wait_rooms_loaded(server, 1)
    finally:
        await back.disconnect()
    await wait_rooms_loaded(server, 0)


async def write_acknowledged(client: RawClient, count: int) -> str:
    """Send `count` edits of `title`, then wait for their write ack; return the title."""
    local: Doc = Doc()
    title = local.get("title", type=Text)
    for i in range(count):
        before = local.get_state()
        title.insert(len(title), f"[{i}]")
        await client.send(encode_message(Update(local.get_update(before))))
    await client.send(encode_message(WriteAck(b"all")))
    await client.next_message(WriteAck, where=lambda m: m.payload == b"all", timeout=TIMEOUT)
    return str(title)


async def joined(server: ServerProcess, draft: str) -> RawClient:
    client = await connect_raw(server.ws_url, draft, server.token("alice"))
    await client.next_message(SyncStep1, timeout=TIMEOUT)
    return client


async def test_sigterm_closes_connections_with_1001_and_a_reason(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    try:
        client = await joined(server, new_draft())
        await write_acknowledged(client, 5)
        exit_code = await asyncio.to_thread(server.terminate)
        code, reason = await client.wait_closed(TIMEOUT)
        assert exit_code == 0, server.log()
        assert code == 1001, f"closed with {code} ({reason!r})"
        assert reason
    finally:
        server.stop()


async def test_after_sigterm_a_restart_has_everything_acknowledged(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    draft = new_draft()
    first = ServerProcess(data_dir).start()
    try:
        client = await joined(first, draft)
        title = await write_acknowledged(client, 50)
        exit_code = await asyncio.to_thread(first.terminate)
        await client.wait_closed(TIMEOUT)
        assert exit_code == 0, first.log()
    finally:
        first.stop()

    second = ServerProcess(data_dir).start()
    try:
        reader = await connect_synced(second, draft)
        try:
            assert reader.text("title") == title
        finally:
            await reader.disconnect()
    finally:
        second.stop()


async def test_a_rest_write_while_the_room_stores_its_bursts_to_unload_is_committed(
    tmp_path: Path,
) -> None:
    """The grace period has passed and the unloading room is storing its journal (it awaits
    the store) when a REST write opens it and writes: the room must not then unload with that
    write still queued behind another draft's commit, which would drop it (the REST call
    answered 503 after waiting for a commit that never came)."""
    server = ServerProcess(tmp_path / "data", "--room-grace", str(GRACE)).start()
    draft, other = new_draft(), new_draft()
    try:
        async with as_user(server, "alice") as api:
            await create_draft(api, id=draft, title="first")
            alice = await connect_synced(server, draft)
            await alice.edit(lambda doc: doc.get("title", type=Text).insert(5, " second"))
            await alice.flush()
            carol = await connect_synced(server, other)
            await alice.disconnect()
            with write_lock(server.database):
                # The grace passes: the unload stores the room's journal, waiting for the lock.
                await asyncio.sleep(GRACE + 0.5)
                # Another draft's commit waits its turn behind it...
                await carol.edit(lambda doc: doc.get("title", type=Text).insert(0, "other"))
                await asyncio.sleep(0.1)
                # ...and the REST write, queued behind that one, to the room being unloaded.
                restoring = asyncio.create_task(
                    api.post(f"/api/drafts/{draft}/restore", json={"version": 1})
                )
                await asyncio.sleep(0.5)
            answer = await asyncio.wait_for(restoring, TIMEOUT)
            await carol.disconnect()
        assert answer.status_code == 200, answer.text
        version = answer.json()["version"]
        assert version == 3
        assert str(stored_doc(server.database, draft).get("title", type=Text)) == "first"
    finally:
        server.stop()
