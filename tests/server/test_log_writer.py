"""The store's inline SQLite writer (server/store/log_writer.py): it never stalls the event loop on
another writer's lock, its own writes take turns instead of meeting the lock, checkpoints run
beside the commits, and the WAL stays bounded."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from server.errors import StoreError
from server.store import log_writer
from server.store.records import UpdateRecord
from server.store.sqlite import SqliteStore


def record(draft_id: str, version: int, size: int = 64) -> UpdateRecord:
    return UpdateRecord(draft_id, version, b"u" * size, "alice", "s", 1, time.time())


def lock_waits() -> float:
    return REGISTRY.get_sample_value("draftsync_commit_lock_waits_total") or 0.0


async def open_store(tmp_path: Path, draft_id: str) -> SqliteStore:
    store = await SqliteStore.open(tmp_path / "draftsync.db")
    await store.create_draft(draft_id, "alice", now=time.time())
    return store


async def test_commits_wait_for_another_writers_lock_off_the_event_loop(
    tmp_path: Path,
) -> None:
    store = await open_store(tmp_path, "d")
    other = sqlite3.connect(tmp_path / "draftsync.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        commit = asyncio.gather(
            store.append_updates([record("d", 1)]), store.append_updates([record("d", 2)])
        )
        started = time.perf_counter()
        ticks = 0
        while time.perf_counter() - started < 0.3:
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks >= 15, "the event loop stalled while the commit waited for the lock"
        assert not commit.done(), "the commit did not wait for the lock"
        other.execute("COMMIT")
        await asyncio.wait_for(commit, timeout=5)
        assert await store.updates_between("d", 0, 2) == [b"u" * 64] * 2
    finally:
        other.close()
        await store.close()


async def test_snapshots_and_journal_writes_take_turns_with_commits(tmp_path: Path) -> None:
    """Through aiosqlite a snapshot held SQLite's write lock across trips to its thread, and
    commits that met the lock slept in SQLite's busy handler (1, 2, 5 ms...). Written by the
    same writer, in turn, no commit ever finds the lock taken."""
    store = await open_store(tmp_path, "d")
    waits = lock_waits()
    try:
        for round_ in range(10):
            base = 100 * round_
            others = asyncio.gather(
                store.save_snapshot("d", base + 1, b"s" * 200_000, now=time.time()),
                store.append_events([], watermark=("d", base + 1)),
            )
            await asyncio.sleep(0)  # their writes have begun
            for v in range(base + 1, base + 51):
                await store.append_updates([record("d", v)])
            await others
        assert lock_waits() == waits
        assert len(await store.updates_between("d", 0, 951)) == 500
    finally:
        await store.close()


async def test_the_wal_stays_bounded_under_a_long_stream_of_commits(tmp_path: Path) -> None:
    """2,048 small commits (8 MB of updates; each commit writes ~32 KB of pages to the WAL):
    without checkpoints, or with checkpoints that commits overtake, the WAL grew to 66 MB here;
    with a catch-up checkpoint once the WAL holds WAL_FRAMES_LIMIT frames (4 MB) it stays under
    that plus what commits add while one checkpoint copies: 11-21 MB in this flood of 32 KB
    commits, whatever the number of commits."""
    batches = 2048  # a fixed bound: the test must stay short whatever the interval
    assert batches >= log_writer.CHECKPOINT_EVERY * 4
    store = await open_store(tmp_path, "d")
    try:
        version = 0
        for _ in range(batches):
            await store.append_updates([record("d", version + i, 2048) for i in (1, 2)])
            version += 2
        await asyncio.sleep(0.5)  # the last checkpoint, if one is running
        await store.append_updates([record("d", version + 1)])  # a new write rewinds the WAL
        wal = (tmp_path / "draftsync.db-wal").stat().st_size  # (closing removes it)
    finally:
        await store.close()
    assert wal < 32_000_000, f"WAL of {wal:,} bytes after {batches * 4096:,} bytes of updates"


async def test_a_starved_checkpoint_holds_commits_back_so_the_wal_stays_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loaded machine starves the checkpoint's thread of CPU while commits go on: a
    checkpoint made to take 0.3 s (fault injection) stands for that. Commits past
    `CHECKPOINT_LAG` wait for it, so the WAL stays bounded (without the wait: 66 MB here)."""
    checkpoint = log_writer._checkpoint

    def starved(db: sqlite3.Connection) -> int:
        time.sleep(0.3)
        return checkpoint(db)

    monkeypatch.setattr(log_writer, "_checkpoint", starved)
    batches = 2048
    store = await open_store(tmp_path, "d")
    try:
        for version in range(1, 2 * batches, 2):
            await store.append_updates([record("d", version + i, 2048) for i in (0, 1)])
        wal = (tmp_path / "draftsync.db-wal").stat().st_size
    finally:
        await store.close()
    assert wal < 32_000_000, f"WAL of {wal:,} bytes after {batches * 4096:,} bytes of updates"


async def test_commits_go_on_while_a_checkpoint_runs(tmp_path: Path) -> None:
    """A checkpoint's fsyncs (~4 ms here) must not hold back the relays of every draft: the
    commits that come while it runs land at once. Its connection is slowed to 0.5 s a
    statement to make it last."""
    store = await open_store(tmp_path, "d")
    writer = store._log
    writer._checkpointer.set_trace_callback(lambda _statement: time.sleep(0.5))
    try:
        version = 0
        while not writer.checkpointing:  # the round starts after CHECKPOINT_EVERY commits
            version += 1
            await store.append_updates([record("d", version)])
            assert version <= log_writer.CHECKPOINT_EVERY, "no checkpoint started"
        started = time.perf_counter()
        for _ in range(20):
            version += 1
            await store.append_updates([record("d", version)])
        assert writer.checkpointing, "the commits waited for the checkpoint"
        assert time.perf_counter() - started < 0.5
        assert len(await store.updates_between("d", 0, version)) == version
    finally:
        await store.close()


async def test_with_fsync_every_batch_commits_on_a_worker_thread(tmp_path: Path) -> None:
    """`--fsync` (synchronous=FULL): commits still land, in order, when they come at once."""
    store = await SqliteStore.open(tmp_path / "draftsync.db", fsync=True)
    try:
        await store.create_draft("d", "alice", now=time.time())
        await asyncio.gather(*(store.append_updates([record("d", v)]) for v in (1, 2, 3)))
        assert await store.updates_between("d", 0, 3) == [b"u" * 64] * 3
    finally:
        await store.close()
    db = sqlite3.connect(tmp_path / "draftsync.db")
    try:
        assert db.execute("SELECT count(*) FROM updates").fetchone() == (3,)
    finally:
        db.close()


async def test_append_updates_now_commits_at_once_when_nothing_waits(tmp_path: Path) -> None:
    store = await open_store(tmp_path, "d")
    try:
        assert store.append_updates_now([record("d", 1)])
        assert await store.updates_between("d", 0, 1) == [b"u" * 64]
    finally:
        await store.close()


async def test_append_updates_now_declines_another_writers_lock_and_writes_nothing(
    tmp_path: Path,
) -> None:
    """busy_timeout 0 on the event loop: a locked database is a False at once, not a stall."""
    store = await open_store(tmp_path, "d")
    other = sqlite3.connect(tmp_path / "draftsync.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        started = time.perf_counter()
        assert not store.append_updates_now([record("d", 1)])
        assert time.perf_counter() - started < 0.1
        other.execute("COMMIT")
        assert await store.updates_between("d", 0, 1) == []
        assert store.append_updates_now([record("d", 1)])
    finally:
        other.close()
        await store.close()


async def test_append_updates_now_declines_while_another_write_has_the_turn(
    tmp_path: Path,
) -> None:
    store = await open_store(tmp_path, "d")
    try:
        snapshot = asyncio.create_task(
            store.save_snapshot("d", 1, b"s" * 2_000_000, now=time.time())
        )
        await asyncio.sleep(0)  # the snapshot holds the turn, on a worker thread
        assert not store.append_updates_now([record("d", 1)])
        await snapshot
        assert store.append_updates_now([record("d", 1)])
    finally:
        await store.close()


async def test_append_updates_now_leaves_a_finished_checkpoint_to_append_updates(
    tmp_path: Path,
) -> None:
    """A finished checkpoint may call for a catch-up, which is awaited: only `write` can."""
    store = await open_store(tmp_path, "d")
    writer = store._log
    try:
        version = 0
        while not writer.checkpointing:
            version += 1
            assert store.append_updates_now([record("d", version)])
            assert version <= log_writer.CHECKPOINT_EVERY, "no checkpoint started"
        for _ in range(500):
            if not writer.checkpointing:
                break
            await asyncio.sleep(0.01)
        assert not store.append_updates_now([record("d", version + 1)])
        await store.append_updates([record("d", version + 1)])
        assert store.append_updates_now([record("d", version + 2)])
        assert len(await store.updates_between("d", 0, version + 2)) == version + 2
    finally:
        await store.close()


async def test_append_updates_now_declines_with_fsync(tmp_path: Path) -> None:
    """`--fsync`: every commit goes to the worker thread, so none is done at once."""
    store = await SqliteStore.open(tmp_path / "draftsync.db", fsync=True)
    try:
        await store.create_draft("d", "alice", now=time.time())
        assert not store.append_updates_now([record("d", 1)])
        assert await store.updates_between("d", 0, 1) == []
    finally:
        await store.close()


async def test_append_updates_now_raises_a_store_error_for_a_failed_write(
    tmp_path: Path,
) -> None:
    store = await open_store(tmp_path, "d")
    try:
        assert store.append_updates_now([record("d", 1)])
        with pytest.raises(StoreError, match="committing updates failed"):
            store.append_updates_now([record("d", 1)])  # that version is taken
        assert store.append_updates_now([record("d", 2)])
    finally:
        await store.close()
