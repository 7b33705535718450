"""The group commit (server/store/commits.py) with a real SQLite store: a write that comes while the
pipeline is idle is committed inside `submit`, at most one an event-loop turn; the rest gather
into batches as before, in order; a store that cannot commit at once gets the write queued."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from prometheus_client import REGISTRY

from server.errors import StoreError
from server.store.commits import CommitPipeline, PendingWrite
from server.store.records import UpdateRecord
from server.store.sqlite import SqliteStore


class Recorder:
    """A room as the pipeline sees it: what was committed, in order, and what failed."""

    accepts_commits = True

    def __init__(self) -> None:
        self.committed: list[int] = []
        self.failures: list[StoreError] = []

    def on_committed(self, write: PendingWrite) -> None:
        self.committed.append(write.record.version)

    def on_commit_failed(self, error: Exception, **_: object) -> None:
        self.failures.append(error)


def write(target: Recorder, version: int) -> PendingWrite:
    record = UpdateRecord("d", version, b"u", "alice", "s", 1, time.time())
    return PendingWrite(target=target, sender=None, record=record)


def batches() -> float:
    return REGISTRY.get_sample_value("draftsync_commit_batch_size_count") or 0.0


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
        await asyncio.sleep(0)  # a new turn: the next lone write goes at once again
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
        await asyncio.sleep(0)
        pipeline.submit(write(room, 1))  # that version is taken: the commit fails
        assert room.committed == [1]
        assert len(room.failures) == 1
        await asyncio.sleep(0)
        pipeline.submit(write(other, 2))
        await pipeline.flush()
        assert other.committed == [2]
        assert len(await store.updates_between("d", 0, 2)) == 2
