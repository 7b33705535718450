"""A room loaded afresh keeps its journal watch: its text bursts close after their pause.

`JournalCloser` watches the rooms with open bursts by draft id. A room of the same draft that
left (unloaded, discarded) must not take the watch of the room that replaced it: the new room's
bursts would then stay open, unjournaled, until it unloads (or until another burst opens in it).

In-process, with the real service, rooms and PostgreSQL store; the closer's pass is driven by
the test (`_close_idle` at a time past every pause) instead of its timer, and held in its store
write by a row lock the test's own connection takes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from pycrdt import Doc, Text

from bench.harness import StubSocket
from bench.services import PostgresCluster
from server.config import Settings
from server.service import Service
from server.store.postgres import PostgresStore
from server.sync.connection import Connection
from server.sync.room import Room
from tests.support.waiting import eventually

LATER = 60.0  # seconds past now: every burst is idle by then


def _typing(text: str) -> bytes:
    doc = Doc()
    doc.get("title", type=Text).insert(0, text)
    return doc.get_update()


@pytest.fixture
def database(postgres: PostgresCluster) -> str:
    return postgres.new_database()


@pytest.fixture
async def service(tmp_path: Path, database: str) -> AsyncIterator[Service]:
    store = await PostgresStore.open(database)
    settings = Settings(data_dir=tmp_path, secret="test", room_grace_seconds=0.0)
    service = Service(settings, store)
    # The group commit runs; the journal closer's timer does not: the test drives its passes.
    pipeline = service.pipeline
    service.supervisor.start("group-commit", pipeline.run, on_crash=pipeline.crashed)
    for draft_id in ("x", "d"):
        await store.create_draft(draft_id, "owner", now=time.time())
    try:
        yield service
    finally:
        await service.stop()


async def _join(service: Service, draft_id: str, user: str) -> tuple[Room, Connection]:
    settings = service.settings
    conn = Connection(
        StubSocket(keep_frames=False),  # type: ignore[arg-type]
        user=user,
        session=user,
        can_write=True,
        max_messages=settings.send_queue_messages,
        max_bytes=settings.send_queue_bytes,
    )
    service.track(conn)
    room = await service.rooms.join(draft_id, conn)
    service.spawn_writer(conn)
    return room, conn


async def _type(service: Service, room: Room, conn: Connection, text: str) -> None:
    await room.receive_run(conn, [_typing(text)])
    await service.pipeline.flush()
    assert room.journal is not None and room.journal.bursts  # a burst is open


async def _a_store_write_waits(db: asyncpg.Connection) -> bool:
    count = await db.fetchval(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return int(count) > 0


async def test_a_room_that_replaced_an_unloaded_one_has_its_bursts_closed(
    service: Service, database: str
) -> None:
    closer = service.journal_closer
    other, carol = await _join(service, "x", "carol")
    await _type(service, other, carol, "x")  # watched first: the closer's pass starts with it
    old, alice = await _join(service, "d", "alice")
    await _type(service, old, alice, "alice ")

    db = await asyncpg.connect(database)
    try:
        holding = db.transaction()
        await holding.start()
        await db.execute(  # the closer's write of draft x waits for this row
            "INSERT INTO journal_state (draft_id, text_watermark) VALUES ('x', 1)"
            " ON CONFLICT (draft_id) DO UPDATE SET text_watermark = 1"
        )
        closing = asyncio.create_task(closer._close_idle(time.time() + LATER))
        await eventually(lambda: _a_store_write_waits(db))

        # Meanwhile the old room of d unloads (its bursts flushed) and d is loaded afresh.
        new = await _replaced(service, old, alice)
        await holding.rollback()
        await closing  # its pass went on to the old room of d, listed when it began
    finally:
        await db.close()

    await closer._close_idle(time.time() + LATER)
    assert new.journal is not None and not new.journal.bursts  # closed after its pause
    users = {user for user, _ in await service.store.text_events_since("d", 1)}
    assert users == {"alice", "bob"}


async def test_flushing_a_room_that_was_replaced_keeps_the_new_rooms_watch(
    service: Service,
) -> None:
    """`flush` of a room that left leaves the watch of the room that replaced it. The closer's
    own contract: the registry does not flush a replaced room today (opening the new room
    cancels the old one's unload task, `RoomRegistry.open`), so this pins it, no more."""
    closer = service.journal_closer
    old, alice = await _join(service, "d", "alice")
    await _type(service, old, alice, "alice ")
    new = await _replaced(service, old, alice)
    await closer.flush(old)

    await closer._close_idle(time.time() + LATER)
    assert new.journal is not None and not new.journal.bursts


async def _replaced(service: Service, old: Room, alice: Connection) -> Room:
    """`old` (draft d) left by its one client `alice` and unloaded, then d loaded afresh by
    bob, who types into it: the room that replaced `old`."""
    service.rooms.leave(old, alice)
    alice.close(1000, "bye")

    async def unloaded() -> bool:
        return service.rooms.get("d") is None

    await eventually(unloaded)
    new, bob = await _join(service, "d", "bob")
    assert new is not old
    await _type(service, new, bob, "bob ")
    return new
