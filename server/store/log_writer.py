"""The store's writer connection: the group commit and the other writes of open drafts.

Why not through aiosqlite like every other statement: each trip to aiosqlite's thread waits for
the event loop to hand over the GIL, and under load those hand-overs cost more than the commit
itself (a WAL commit with `synchronous=NORMAL` is ~20 us; batches insert at 400k+ rows/s).
Committing inline is what docs/performance-notes.md measured fastest at every fixed rate
with `synchronous=NORMAL`; here it took `bench relay` S3 from 0.84/5.8 ms (p50/p99, with one trip
to aiosqlite's thread a batch; four trips before) to 0.76/4.6 ms, with less server CPU.

Snapshots, journal events and draft metadata are written here too, in turn with the group
commit. Through aiosqlite they held SQLite's write lock across trips to its thread, and a commit
that met the lock slept in SQLite's busy handler (1, 2, 5, 10 ms...): under `bench relay` S4r,
with a snapshot every 1,000 updates, that was the slowest 1 % of commits (6-9 ms).

Three things must never stall the event loop, so they go to a thread instead:

- a write lock held by another connection (a REST write, an outside process): the
  inline attempt does not wait (busy_timeout 0); the batch is committed on a worker thread that
  waits for the lock like any other writer (`BUSY_TIMEOUT_MS`), and fails as before after it;
- `synchronous=FULL` (`--fsync`): an fsync per commit is slow on slow disks; every batch goes to
  the worker thread;
- WAL checkpoints: automatic ones are off on this connection, because SQLite's own would run
  inside a commit and hold every relay behind it for the checkpoint's fsyncs (~4 ms here, every
  ~130 ms under `bench relay` S3: most of its p99). Every `CHECKPOINT_EVERY` commits, a passive
  checkpoint runs on a worker thread through a connection of its own, while commits go on. The
  WAL can only rewind after a checkpoint that no commit overtook, else it grows without bound,
  so once a round finds `WAL_FRAMES_LIMIT` frames in it, the next commit first waits for a
  catch-up checkpoint of what was added since, which also rewinds the WAL (`_catch_up`): a
  stall of ~2 ms every few rounds instead of ~4 ms every round. And a checkpoint that falls
  `CHECKPOINT_LAG` commits behind (its thread starved of CPU on a loaded machine) holds the
  next commit until it is done: without that back-pressure the WAL grew with the load (39 MB
  in the test below under a load average of 10, against 11-21 MB on an idle machine).

- a large payload (a snapshot), at the caller's request (`inline=False`).

When the disk fills, the store frees its reserve and asks for `reclaim`: a TRUNCATE
checkpoint that folds the WAL into the database in the reserve's room and gives the WAL's
space back (server/store/reserve.py).

One `LogWriter` per store; writes take turns (`_turn`), so that one on a worker thread never
shares the connection with another; the catch-up checkpoint takes a turn too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from server import metrics

__all__ = [
    "BUSY_TIMEOUT_MS",
    "CHECKPOINT_EVERY",
    "CHECKPOINT_LAG",
    "WAL_FRAMES_LIMIT",
    "LogWriter",
    "Statements",
]

logger = logging.getLogger("draftsync.log_writer")

# One transaction: each statement with the rows it is executed for (none: skipped).
Statements = Sequence[tuple[str, Sequence[tuple[object, ...]]]]

BUSY_TIMEOUT_MS = 5000
CHECKPOINT_EVERY = 128  # commits between checkpoints (each writes a few pages to the WAL)
CHECKPOINT_LAG = 2 * CHECKPOINT_EVERY  # commits one checkpoint may fall behind before they wait
# A WAL that a background checkpoint found this long (4 MB of 4 KB pages) has not rewound for
# a few rounds: the next commit waits for a catch-up checkpoint.
WAL_FRAMES_LIMIT = 1024


class LogWriter:
    def __init__(self, path: Path, *, fsync: bool) -> None:
        # check_same_thread off: the slow path hands this connection to a worker thread while
        # its batch awaits it; batches take turns, so uses never overlap.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        # Every statement of ours goes through this one cursor (and the checkpoints' through
        # theirs). `Connection.execute` makes a cursor per call, and sqlite3 keeps a weak
        # reference to each in a list it prunes only every 200 cursors: three a commit, made
        # between the objects of whatever else the event loop serves (a storm of connections),
        # they kept pymalloc arenas (1 MB each) from going back once it was over
        # (docs/performance-notes.md).
        self._cursor = self._db.cursor()
        self._cursor.execute("PRAGMA busy_timeout=0")
        self._cursor.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
        self._cursor.execute("PRAGMA wal_autocheckpoint=0")
        self._cursor.execute("PRAGMA foreign_keys=ON")
        self._inline = not fsync
        self._wal = path.with_name(path.name + "-wal")
        self._since_checkpoint = 0
        self._turn = asyncio.Lock()
        # Checkpoints have a connection and a thread of their own. Their futures are the
        # thread's, not the event loop's: done as soon as the checkpoint is, even while the
        # loop runs commits back to back.
        self._checkpointer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._checkpoints = self._checkpointer.cursor()  # used on the checkpoint thread only
        self._checkpoints.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
        self._checkpoint_thread = ThreadPoolExecutor(1, thread_name_prefix="wal-checkpoint")
        # Its thread started now, not by the first checkpoint (a storm's: the thread's objects
        # would keep pymalloc arenas of the storm's; server/sync/memory.py).
        self._checkpoint_thread.submit(int)
        self._checkpointing: Future[int] | None = None

    def connections(self) -> tuple[sqlite3.Connection, sqlite3.Connection]:
        """The writer's and the checkpointer's (for a memory release: server/sync/memory.py)."""
        return self._db, self._checkpointer

    async def write(self, statements: Statements, *, inline: bool = True) -> int:
        """Run the statements in one transaction; raises sqlite3.Error if that fails.
        `inline=False`: on a worker thread (a payload of megabytes). Returns the rows the
        last statement changed (0 if it was skipped), for a caller whose write is conditional
        (a webhook outcome recorded only by the holder of the claim)."""
        async with self._turn:  # uncontended for the group commit: it never yields there
            return await self._write(statements, inline=inline and self._inline)

    def write_now(self, statements: Statements) -> bool:
        """`write`, done at once on the event loop if it can be without waiting; False
        (nothing written) when it cannot: another write holds the turn, a finished checkpoint
        awaits its catch-up, every commit goes to the thread (`fsync`), or another connection
        holds the write lock. Raises sqlite3.Error like `write` for any other failure.

        Why: a write that `write` would commit inline anyway still waits for its task's turn
        on the event loop; for a lone keystroke on an idle server that hand-over is a good
        part of its latency (server/store/commits.py commits through here when it is idle)."""
        if (
            not self._inline
            or self._turn.locked()
            or self._checkpoint_finished()
            or self._checkpoint_lags()
        ):
            return False
        try:
            self._commit(statements)
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode == sqlite3.SQLITE_BUSY:
                return False
            raise
        self._since_checkpoint += 1
        self._start_checkpoint_if_due()
        return True

    async def _write(self, statements: Statements, *, inline: bool) -> int:
        if inline:
            try:
                changed = self._commit(statements)
            except sqlite3.OperationalError as error:
                if error.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                    raise
                metrics.COMMIT_LOCK_WAITS.inc()
                changed = await asyncio.to_thread(self._commit_waiting, statements)
        else:
            changed = await asyncio.to_thread(self._commit, statements)
        self._since_checkpoint += 1
        if self._checkpoint_lags():
            assert self._checkpointing is not None
            with contextlib.suppress(sqlite3.Error):  # `_finish_checkpoint` logs it
                await asyncio.wrap_future(self._checkpointing)
        if self._checkpoint_finished():
            await self._finish_checkpoint()
        else:
            self._start_checkpoint_if_due()
        return changed

    def _checkpoint_finished(self) -> bool:
        return self._checkpointing is not None and self._checkpointing.done()

    def _checkpoint_lags(self) -> bool:
        """A checkpoint still runs after `CHECKPOINT_LAG` commits: the next one waits for it."""
        return (
            self._checkpointing is not None
            and self._since_checkpoint >= CHECKPOINT_LAG
            and not self._checkpointing.done()
        )

    def _start_checkpoint_if_due(self) -> None:
        if self._checkpointing is None and self._since_checkpoint >= CHECKPOINT_EVERY:
            self._since_checkpoint = 0
            self._checkpointing = self._checkpoint_thread.submit(_checkpoint, self._checkpoints)

    async def _finish_checkpoint(self) -> None:
        assert self._checkpointing is not None
        finished, self._checkpointing = self._checkpointing, None
        if _frames_seen(finished) >= WAL_FRAMES_LIMIT:
            # Commits overtook the last rounds: copy what they added while none runs.
            try:
                await asyncio.wrap_future(
                    self._checkpoint_thread.submit(_catch_up, self._checkpoints)
                )
            except sqlite3.Error as error:  # the commit stands; the next round catches up
                logger.warning("wal checkpoint failed error=%s", error)

    async def reclaim(self) -> None:
        """Fold the whole WAL into the database and truncate it to nothing, while no commit of
        ours runs: the disk filled and its reserve was just freed for this
        (server/store/reserve.py). The WAL's space is given back to the disk, and what it
        held no longer waits for room to be checkpointed."""
        async with self._turn:
            if self._checkpointing is not None:
                running, self._checkpointing = self._checkpointing, None
                with contextlib.suppress(sqlite3.Error):
                    await asyncio.wrap_future(running)
            before = _size(self._wal)
            try:
                busy = await asyncio.wrap_future(
                    self._checkpoint_thread.submit(_truncate, self._checkpoints)
                )
            except sqlite3.Error as error:
                logger.warning("wal truncation failed error=%s", error)
                return
        self._since_checkpoint = 0
        logger.info("wal truncated busy=%d freed=%d", busy, before - _size(self._wal))

    @property
    def checkpointing(self) -> bool:
        """A background checkpoint is running (tests watch commits go on meanwhile)."""
        return self._checkpointing is not None and not self._checkpointing.done()

    async def close(self) -> None:
        async with self._turn:
            if self._checkpointing is not None:
                with contextlib.suppress(sqlite3.Error):  # the commits are in; only copying failed
                    await asyncio.wrap_future(self._checkpointing)
            self._checkpoint_thread.shutdown()
            self._checkpointer.close()
            self._db.close()

    def _commit(self, statements: Statements) -> int:
        """The statements in one transaction; the rows the last one changed (0: skipped)."""
        cursor = self._cursor
        changed = 0
        cursor.execute("BEGIN IMMEDIATE")
        try:
            for sql, rows in statements:
                changed = 0
                if rows:
                    cursor.executemany(sql, rows)
                    changed = cursor.rowcount
            cursor.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                cursor.execute("ROLLBACK")
            raise
        return changed

    def _commit_waiting(self, statements: Statements) -> int:
        """`_commit`, waiting for another writer's lock (on a worker thread)."""
        self._cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        try:
            return self._commit(statements)
        finally:
            self._cursor.execute("PRAGMA busy_timeout=0")


def _checkpoint(db: sqlite3.Cursor) -> int:
    """Copy what no reader needs from the WAL into the database (never waits for anyone);
    returns how many frames the WAL held. If no commit ran meanwhile, the next one rewinds it.
    All rows are read: a statement left unfinished would hold a read mark, and then the WAL
    could never rewind."""
    [(_busy, frames, _copied)] = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    return int(frames)


def _truncate(db: sqlite3.Cursor) -> int:
    """A TRUNCATE checkpoint (it waits for readers, up to the connection's timeout); 1 if a
    reader kept it from finishing, else 0."""
    [(busy, _frames, _copied)] = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    return int(busy)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _catch_up(db: sqlite3.Cursor) -> None:
    """Checkpoint while no commit of ours runs, then rewind the WAL from here.

    The first commit into a rewound WAL writes and syncs the WAL header: an fsync (1-6 ms
    under load here) that, left to the next commit, would stall the event loop. A write on
    this thread takes it instead: the database header's user_version, rewritten unchanged
    (draftsync keeps its schema version in a table)."""
    _checkpoint(db)
    [(user_version,)] = db.execute("PRAGMA user_version").fetchall()
    db.execute(f"PRAGMA user_version = {int(user_version)}")


def _frames_seen(checkpoint: Future[int]) -> int:
    """How many frames a background checkpoint found in the WAL; a failed one counts as a
    full WAL, so that the catch-up checkpoint tries again at once."""
    error = checkpoint.exception()
    if error is None:
        return checkpoint.result()
    logger.warning("wal checkpoint failed error=%s", error)
    return WAL_FRAMES_LIMIT
