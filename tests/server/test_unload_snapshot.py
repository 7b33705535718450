"""A doc that goes away with a long tail leaves a snapshot (issue 24, point 4): a room that
unloads, or a server that stops, with at least `UNLOAD_TAIL` updates since the draft's last
snapshot stores one of its committed state, so the next cold load applies that snapshot and
replays nothing. A short tail is left to be replayed, and a `kill -9` (no goodbye) still loads
through its tail as before."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from pycrdt import Doc, Text

from server.store.snapshots import UNLOAD_TAIL
from tests.support.postgres import BACKENDS, store_flags
from tests.support.pycrdt_client import connect_synced
from tests.support.rest import as_user, create_draft, new_id
from tests.support.server_process import ServerProcess
from tests.support.stored_any import snapshot_versions, stored_rows, update_count
from tests.support.waiting import eventually


def append(doc: Doc, text: str) -> None:
    title = doc.get("title", type=Text)
    title.insert(len(title), text)


def newest_version(server: ServerProcess, draft: str) -> int:
    [(version,)] = stored_rows(server, "SELECT max(version) FROM updates WHERE draft_id = ?", draft)
    return int(version)  # type: ignore[call-overload]


def loaded_tails(server: ServerProcess, draft: str) -> list[int]:
    """The tail each load of `draft` replayed, from the server's log, oldest first."""
    pattern = rf"room loaded draft={re.escape(draft)} version=\d+ snapshot=\d+ tail=(\d+)"
    return [int(tail) for tail in re.findall(pattern, server.log())]


async def type_edits(server: ServerProcess, draft: str, count: int) -> str:
    """`count` committed versions, one keystroke each; returns the text."""
    writer = await connect_synced(server, draft)
    for i in range(count):
        await writer.edit(lambda doc, i=i: append(doc, "xy"[i % 2]))
        await writer.flush()
    text = writer.text("title")
    await writer.disconnect()
    return text


async def reopened_text(server: ServerProcess, draft: str) -> str:
    reader = await connect_synced(server, draft)
    text = reader.text("title")
    await reader.disconnect()
    return text


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_server_that_stops_leaves_a_snapshot_and_the_next_load_replays_nothing(
    tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    server = ServerProcess(tmp_path / "data", *store_flags(request, backend)).start()
    draft = new_id("stop")
    try:
        text = await type_edits(server, draft, UNLOAD_TAIL + 16)
        newest = newest_version(server, draft)
        assert snapshot_versions(server, draft) == []  # 80 of 1,000: none due while live
        assert server.terminate() == 0  # SIGTERM: the room is still loaded (grace)
        assert snapshot_versions(server, draft) == [newest]
        server.start()
        assert await reopened_text(server, draft) == text
        assert loaded_tails(server, draft)[-1] == 0
    finally:
        server.stop()


async def test_a_room_that_unloads_with_a_long_tail_leaves_a_snapshot(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", "--room-grace", "0.2").start()
    long_tail, short_tail = new_id("long"), new_id("short")
    try:
        text = await type_edits(server, long_tail, UNLOAD_TAIL)
        await type_edits(server, short_tail, UNLOAD_TAIL - 1)
        newest = newest_version(server, long_tail)

        async def unloaded() -> bool:
            return server.log().count("room unloaded draft=") >= 2

        await eventually(unloaded, timeout=15)
        assert snapshot_versions(server, long_tail) == [newest]
        assert snapshot_versions(server, short_tail) == []  # cheaper to replay: left
        assert await reopened_text(server, long_tail) == text
        assert loaded_tails(server, long_tail)[-1] == 0
        await reopened_text(server, short_tail)
        assert loaded_tails(server, short_tail)[-1] == UNLOAD_TAIL - 1
    finally:
        server.stop()


async def test_after_kill_9_the_tail_is_replayed_as_before(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    draft = new_id("kill")
    try:
        text = await type_edits(server, draft, UNLOAD_TAIL + 1)
        server.kill()  # no goodbye: no snapshot, nothing lost
        assert snapshot_versions(server, draft) == []
        server.start()
        assert await reopened_text(server, draft) == text
        assert loaded_tails(server, draft)[-1] == UNLOAD_TAIL + 1
    finally:
        server.stop()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_deleted_draft_leaves_no_snapshot_when_its_room_unloads(
    tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    """Deleting a draft removes its content while its room is still loaded (the grace
    period): the room that then unloads with a long tail must not store a snapshot of the
    deleted content after the purge."""
    server = ServerProcess(
        tmp_path / "data", "--room-grace", "0.2", *store_flags(request, backend)
    ).start()
    draft = new_id("deleted")
    try:
        async with as_user(server, "alice") as alice:
            await create_draft(alice, id=draft, title="to be removed")
            writer = await connect_synced(server, draft)
            for i in range(UNLOAD_TAIL + 1):
                await writer.edit(lambda doc, i=i: append(doc, "xy"[i % 2]))
                await writer.flush()
            response = await alice.delete(f"/api/drafts/{draft}")
            assert response.status_code == 204
            await asyncio.wait_for(writer.closed.wait(), 10)
            assert writer.close_code == 4404

        async def unloaded() -> bool:
            return f"room unloaded draft={draft}" in server.log()

        await eventually(unloaded, timeout=15)
        assert snapshot_versions(server, draft) == []
        assert update_count(server, draft) == 0
    finally:
        server.stop()
