"""The group commit (server/store/commits.py) with a real SQLite store: a write that comes while the
pipeline is idle is committed inside `submit`, at most one an event-loop turn; the rest gather
into batches as before, in order; a store that cannot commit at once gets the write queued.
Writes that keep coming, turn after turn, soon after a commit are gathered into one
transaction, each released only once it is on disk; a failing batch fails every room in it.

"Idle" is `HOT_SECONDS` after the last commit ended: `cooled()` waits that out (twice over)
where a test needs a lone write committed at once; the gathering tests widen both windows, so
that a slow machine cannot split their batch."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from bench.harness import DRAFT_ID, open_room
from crdt.protocol import Update, decode_message
from server.errors import StoreError
from server.store import commits
from server.store.commits import HOT_SECONDS, CommitPipeline, PendingWrite
from server.store.records import UpdateRecord
from server.store.sqlite import SqliteStore
from tests.support.keystrokes import keystrokes
from tests.support.sqlite_lock import write_lock


class Recorder:
    """A room as the pipeline sees it: what was committed, in order, and what failed."""

    accepts_commits = True

    def __init__(self) -> None:
        self.committed: list[int] = []
        self.failures: list[StoreError] = []

    def on_committed(self, writes: Sequence[PendingWrite]) -> None:
        self.committed.extend(write.record.version for write in writes)

    def on_commit_failed(self, error: Exception, **_: object) -> None:
        self.failures.append(error)


def write(target: Recorder, version: int) -> PendingWrite:
    record = UpdateRecord("d", version, b"u", "alice", "s", 1, time.time())
    return PendingWrite(target=target, sender=None, record=record)


def batches() -> float:
    return REGISTRY.get_sample_value("draftsync_commit_batch_size_count") or 0.0


async def cooled() -> None:
    """Past the time after a commit in which the next write is gathered, not committed at once."""
    await asyncio.sleep(2 * HOT_SECONDS)


@asynccontextmanager
async def running(
    tmp_path: Path, *, fsync: bool = False
) -> AsyncIterator[tuple[SqliteStore, CommitPipeline]]:
    store = await SqliteStore.open(tmp_path / "draftsync.db", fsync=fsync)
    await store.create_draft("d", "alice", now=time.time())
    pipeline = CommitPipeline(store, max_queued=1000, max_batch=100)
    task = asyncio.create_task(pipeline.run())
    await asyncio.sleep(0)  # the pipeline waits for work
    try:
        yield store, pipeline
    finally:
        task.cancel()
        await store.close()


async def test_a_write_to_an_idle_pipeline_is_committed_inside_submit(tmp_path: Path) -> None:
    room = Recorder()
    async with running(tmp_path) as (store, pipeline):
        pipeline.submit(write(room, 1))
        assert room.committed == [1]  # no await since submit
        assert await store.updates_between("d", 0, 1) == [b"u"]


async def test_the_writes_after_the_first_of_a_turn_gather_into_one_batch(
    tmp_path: Path,
) -> None:
    room = Recorder()
    async with running(tmp_path) as (store, pipeline):
        before = batches()
        for version in range(1, 6):
            pipeline.submit(write(room, version))
        assert room.committed == [1]
        await pipeline.flush()
        assert room.committed == [1, 2, 3, 4, 5]
        assert batches() - before == 2  # one at once, then one batch of four
        await cooled()  # a later turn: the next lone write goes at once again
        pipeline.submit(write(room, 6))
        assert room.committed == [1, 2, 3, 4, 5, 6]
        assert len(await store.updates_between("d", 0, 6)) == 6


async def test_a_write_that_cannot_be_committed_at_once_is_queued(tmp_path: Path) -> None:
    room = Recorder()
    async with running(tmp_path, fsync=True) as (store, pipeline):
        pipeline.submit(write(room, 1))
        assert room.committed == []
        await pipeline.flush()
        assert room.committed == [1]
        assert await store.updates_between("d", 0, 1) == [b"u"]


async def test_a_failed_commit_inside_submit_fails_the_room_and_the_pipeline_goes_on(
    tmp_path: Path,
) -> None:
    room, other = Recorder(), Recorder()
    async with running(tmp_path) as (store, pipeline):
        pipeline.submit(write(room, 1))
        await cooled()
        pipeline.submit(write(room, 1))  # that version is taken: the commit fails
        assert room.committed == [1]
        assert len(room.failures) == 1
        await cooled()
        pipeline.submit(write(other, 2))
        await pipeline.flush()
        assert other.committed == [2]
        assert len(await store.updates_between("d", 0, 2)) == 2


def stored_versions(database: Path, draft_id: str = "d") -> list[int]:
    """The versions stored so far, read at once: an await would give the commit task the turns
    without a new write that end its gathering."""
    with contextlib.closing(sqlite3.connect(database)) as db:
        rows = db.execute(
            "SELECT version FROM updates WHERE draft_id = ? ORDER BY version", (draft_id,)
        )
        return [version for (version,) in rows]


class OnDisk(Recorder):
    """A room that checks, as each write is handed back, that it is in the store already (read
    through a connection of its own, as another process would)."""

    def __init__(self, database: Path) -> None:
        super().__init__()
        self._db = sqlite3.connect(database)

    def on_committed(self, writes: Sequence[PendingWrite]) -> None:
        for write in writes:
            [(stored,)] = self._db.execute(
                "SELECT count(*) FROM updates WHERE draft_id = ? AND version = ?",
                (write.record.draft_id, write.record.version),
            )
            assert stored == 1, f"version {write.record.version} released before it was stored"
        super().on_committed(writes)


@pytest.fixture
def wide_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every write after a commit is gathered, and a batch waits as long as writes keep coming."""
    monkeypatch.setattr(commits, "HOT_SECONDS", 60.0)
    monkeypatch.setattr(commits, "GATHER_SECONDS", 60.0)


@pytest.mark.usefixtures("wide_windows")
async def test_writes_that_keep_coming_after_a_commit_gather_into_one_transaction(
    tmp_path: Path,
) -> None:
    room = OnDisk(tmp_path / "draftsync.db")
    async with running(tmp_path) as (store, pipeline):
        before = batches()
        pipeline.submit(write(room, 1))
        assert room.committed == [1]  # the pipeline was idle: at once
        for version in range(2, 7):  # one write a turn, as a busy reader hands them over
            await asyncio.sleep(0)
            pipeline.submit(write(room, version))
            assert room.committed == [1], "a gathered write was released before its batch"
        assert stored_versions(tmp_path / "draftsync.db") == [1]  # read without an await
        await pipeline.flush()  # a turn without a new write: the batch commits
        assert room.committed == [1, 2, 3, 4, 5, 6]  # each checked on disk as it was released
        assert batches() - before == 2  # the first alone, then the five in one transaction
        assert len(await store.updates_between("d", 0, 6)) == 6


@pytest.mark.usefixtures("wide_windows")
async def test_a_gathered_batch_that_fails_fails_every_room_in_it_and_stores_none_of_it(
    tmp_path: Path,
) -> None:
    first, second = Recorder(), Recorder()
    async with running(tmp_path) as (store, pipeline):
        pipeline.submit(write(first, 1))
        for target, version in ((second, 2), (first, 1), (second, 3)):  # version 1 is taken
            await asyncio.sleep(0)
            pipeline.submit(write(target, version))
        await pipeline.flush()
        assert first.committed == [1]
        assert second.committed == []  # nothing of the failed batch is released
        assert len(first.failures) == 1
        assert len(second.failures) == 1
        assert await store.updates_between("d", 0, 3) == [b"u"]
        await cooled()
        pipeline.submit(write(second, 2))  # the pipeline goes on
        await pipeline.flush()
        assert second.committed == [2]


@pytest.mark.usefixtures("wide_windows")
async def test_a_gather_ends_with_the_first_turn_that_brings_no_write(tmp_path: Path) -> None:
    room = Recorder()
    async with running(tmp_path) as (_, pipeline):
        pipeline.submit(write(room, 1))
        await asyncio.sleep(0)
        pipeline.submit(write(room, 2))  # soon after a commit: gathered
        for _ in range(5):  # bounded: a few turns, no write among them
            if room.committed == [1, 2]:
                break
            await asyncio.sleep(0)
        assert room.committed == [1, 2]


@pytest.mark.usefixtures("wide_windows")
async def test_gathered_runs_reach_other_clients_only_once_their_batch_is_on_disk(
    tmp_path: Path,
) -> None:
    def relayed() -> int:
        return sum(type(decode_message(frame)) is Update for frame in observer.frames)

    updates = keystrokes(6)
    async with open_room(tmp_path) as harness:
        writer, _ = await harness.connect("alice")
        _, observer = await harness.connect("observer", keep_frames=True)
        room = harness.room
        assert room is not None
        await room.receive_run(writer, updates[:1])
        assert relayed() == 1  # idle: committed inside submit, relayed at once
        for update in updates[1:]:  # one run a turn, as a reader hands a burst over
            await asyncio.sleep(0)
            await room.receive_run(writer, [update])
            assert relayed() == 1, "a gathered run was relayed before its batch committed"
        assert room.gate.pending == 5
        assert stored_versions(harness.settings.database_path, DRAFT_ID) == [1]
        await harness.committed()
        assert room.gate.pending == 0
        assert len(await harness.service.store.updates_between(DRAFT_ID, 0, 6)) == 6
        for _ in range(5):  # the writer task sends what the gate released (bounded)
            if relayed() == 6:
                break
            await asyncio.sleep(0)
        assert relayed() == 6


class Where(Recorder):
    """A room that notes which task each stretch was handed back in (None: a loop callback)."""

    def __init__(self) -> None:
        super().__init__()
        self.tasks: list[asyncio.Task[object] | None] = []

    def on_committed(self, writes: Sequence[PendingWrite]) -> None:
        self.tasks.append(asyncio.current_task())
        super().on_committed(writes)


@pytest.mark.usefixtures("wide_windows")
async def test_a_gather_while_the_commit_task_waits_commits_on_the_loop(tmp_path: Path) -> None:
    """The commit task parked (nothing queued or committing): the gather's turns run as loop
    callbacks and the batch is committed there, the task never woken (waking it, and parking
    it again, cost more than a lone keystroke's commit at a steady trickle)."""
    room = Where()
    async with running(tmp_path) as (_, pipeline):
        pipeline.submit(write(room, 1))  # idle: inside submit, in this task
        for version in (2, 3, 4):
            await asyncio.sleep(0)
            pipeline.submit(write(room, version))
        assert room.committed == [1]
        await pipeline.flush()
        assert room.committed == [1, 2, 3, 4]
        assert room.tasks == [asyncio.current_task(), None]  # the batch: in a loop callback
        assert stored_versions(tmp_path / "draftsync.db") == [1, 2, 3, 4]


@pytest.mark.usefixtures("wide_windows")
async def test_a_gathered_batch_the_store_cannot_take_at_once_goes_to_the_task_in_order(
    tmp_path: Path,
) -> None:
    """Another write holds the writer's turn when the gather ends: nothing is written on the
    loop, the batch goes back to the head of the queue and the commit task commits it in
    order once the turn is free, then what came meanwhile; nothing is released before."""
    room = OnDisk(tmp_path / "draftsync.db")
    async with running(tmp_path) as (store, pipeline):
        before = batches()
        pipeline.submit(write(room, 1))
        async with store._log._turn:  # a snapshot's write, say
            for version in (2, 3):
                await asyncio.sleep(0)
                pipeline.submit(write(room, version))
            for _ in range(5):  # bounded: turns without a new write end the gather
                await asyncio.sleep(0)
            pipeline.submit(write(room, 4))
            for _ in range(5):
                await asyncio.sleep(0)
            assert room.committed == [1]
            assert stored_versions(tmp_path / "draftsync.db") == [1]
        await pipeline.flush()
        assert room.committed == [1, 2, 3, 4]
        assert batches() - before == 3  # the first alone, 2 and 3 together, then 4
        assert room.failures == []


class Gone(Recorder):
    """A room that failed: the pipeline drops what it had queued."""

    accepts_commits = False


async def test_waiting_for_a_drafts_writes_returns_once_they_are_committed_or_dropped(
    tmp_path: Path,
) -> None:
    """A delete waits here for the draft's writes, whatever room submitted them (one that was
    discarded is no longer registered): not for another draft's, held up as long as they are."""
    room, gone = Recorder(), Gone()
    async with running(tmp_path) as (store, pipeline):
        with write_lock(store.path):
            pipeline.submit(write(room, 1))  # the lock is held: queued, then held in its commit
            pipeline.submit(write(gone, 2))
            await asyncio.wait_for(pipeline.until_draft_done("other"), 10)
            waiting = asyncio.create_task(pipeline.until_draft_done("d"))
            await asyncio.sleep(0.2)
            assert not waiting.done(), "returned while a write of the draft was being committed"
        await asyncio.wait_for(waiting, 10)
        assert room.committed == [1]
        assert await store.updates_between("d", 0, 2) == [b"u"]  # the failed room's was dropped
