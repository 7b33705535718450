"""A committed batch is handed back once a stretch of one room's writes, not once a write.

The group commit hands each room the writes of a batch that are its, consecutive, in one call
(`CommitTarget.on_committed`); the room releases what its gate held up to the stretch's last
ticket in one call and tells each commit listener of the stretch's records in one call
(server/sync/room.py). These tests fail if that shortcut changes what a client or a listener
sees: a relay before its write is on disk, a record heard twice or never, out of order, a
journal event told before its own relay or after a later one, a snapshot not taken.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from pycrdt import Text

from bench.harness import DRAFT_ID, open_room
from crdt.journal import EventType, JournalEvent
from crdt.protocol import Update, decode_message
from server.store import commits
from server.store.commits import PendingWrite
from server.store.records import UpdateRecord
from tests.server.test_commit_pipeline import Recorder, running, stored_versions, write
from tests.support.keystrokes import keystrokes


@pytest.fixture
def wide_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every write after a commit is gathered, and a batch waits as long as writes keep coming."""
    monkeypatch.setattr(commits, "HOT_SECONDS", 60.0)
    monkeypatch.setattr(commits, "GATHER_SECONDS", 60.0)


class Stretches(Recorder):
    """A room that notes each hand-back as the versions it carried, each checked on disk."""

    def __init__(self, database: Path) -> None:
        super().__init__()
        self.calls: list[list[int]] = []
        self._db = sqlite3.connect(database)

    def on_committed(self, writes: Sequence[PendingWrite]) -> None:
        versions = [w.record.version for w in writes]
        placeholders = ",".join("?" * len(versions))
        [(stored,)] = self._db.execute(
            f"SELECT count(*) FROM updates WHERE draft_id = 'd' AND version IN ({placeholders})",
            versions,
        )
        assert stored == len(versions), f"{versions} handed back before they were stored"
        self.calls.append(versions)
        super().on_committed(writes)


@pytest.mark.usefixtures("wide_windows")
async def test_a_batch_is_handed_back_in_stretches_of_one_room_in_order(tmp_path: Path) -> None:
    first, second = Stretches(tmp_path / "draftsync.db"), Stretches(tmp_path / "draftsync.db")
    async with running(tmp_path) as (_, pipeline):
        pipeline.submit(write(first, 1))  # idle: at once, alone
        for target, version in ((first, 2), (first, 3), (second, 4), (first, 5), (second, 6)):
            await asyncio.sleep(0)
            pipeline.submit(write(target, version))
        assert first.calls == [[1]]
        await pipeline.flush()
        assert first.calls == [[1], [2, 3], [5]]
        assert second.calls == [[4], [6]]
        assert stored_versions(tmp_path / "draftsync.db") == [1, 2, 3, 4, 5, 6]


def _event(version: int) -> list[JournalEvent]:
    return [
        JournalEvent(
            EventType.VERSION_NAMED, DRAFT_ID, version, "server", "test", None, time.time(), {}
        )
    ]


@pytest.mark.usefixtures("wide_windows")
async def test_a_gathered_batch_is_released_once_on_disk_and_heard_once_in_order(
    tmp_path: Path,
) -> None:
    """Runs gathered into one batch, with a server write carrying journal events among them:
    every relay goes out only once the batch is on disk; the listener hears each record once,
    in version order, in one call per stretch; the events' write ends its stretch, so its
    relay and every one before it go out, and the listener hears of it, before its events
    are told, and the next write's relay after them."""
    seen: list[tuple[str, object]] = []  # what the observer was sent and told, in order
    updates = keystrokes(5)
    async with open_room(tmp_path) as harness:
        writer, _ = await harness.connect("alice")
        observer, socket = await harness.connect("observer", keep_frames=True)
        room = harness.room
        assert room is not None
        database = harness.settings.database_path

        def relayed() -> int:
            return sum(type(decode_message(frame)) is Update for frame in socket.frames)

        def listener(_room: object, records: Sequence[UpdateRecord]) -> None:
            versions = [r.version for r in records]
            assert stored_versions(database, DRAFT_ID)[-1] >= versions[-1]
            seen.append(("heard", versions))

        def told(events: Sequence[JournalEvent]) -> None:
            seen.append(("relayed", relayed()))
            seen.append(("told", [e.version for e in events]))

        room.commit_listeners.append(listener)
        observer.tell_events = told  # type: ignore[method-assign]

        await room.receive_run(writer, updates[:1])  # idle: committed at once
        assert seen == [("heard", [1])]
        await asyncio.sleep(0)
        await room.receive_run(writer, updates[1:2])
        await asyncio.sleep(0)
        written = room.write_as_server(
            "test", lambda doc: doc.get("description", type=Text).insert(0, "s"), events=_event
        )
        assert written is not None and written.version == 3
        for update in updates[2:4]:
            await asyncio.sleep(0)
            await room.receive_run(writer, [update])
        assert relayed() == 1, "a gathered write was relayed before its batch committed"
        assert stored_versions(database, DRAFT_ID) == [1]
        await harness.committed()
        assert seen == [
            ("heard", [1]),
            ("heard", [2, 3]),
            ("relayed", 3),  # versions 1-3 out before version 3's events, 4 not yet
            ("told", [3]),
            ("heard", [4, 5]),
        ]
        assert relayed() == 5
        assert writer.committed == 4  # the sender's own count, one a run (not the server's)
        assert room.gate.pending == 0


@pytest.mark.usefixtures("wide_windows")
async def test_a_snapshot_due_inside_a_gathered_batch_is_taken(tmp_path: Path) -> None:
    """Snapshots are counted per write still: one due at the third write of a gathered batch
    is taken (of the doc as it is then, at version 5, stored once 5 is committed), and the
    counting goes on from the third."""
    updates = keystrokes(6)
    async with open_room(tmp_path, snapshot_every_updates=3) as harness:
        writer, _ = await harness.connect("alice")
        room = harness.room
        assert room is not None
        await room.receive_run(writer, updates[:1])
        for update in updates[1:5]:
            await asyncio.sleep(0)
            await room.receive_run(writer, [update])
        await harness.committed()
        await harness.service.snapshotter.wait()
        assert await harness.service.store.snapshot_versions(DRAFT_ID) == [5]
        assert room._since_snapshot == 2  # versions 4 and 5 count towards the next
