"""Group commit: the one place where an accepted update becomes durable, then visible.

Rooms apply an update, give it a version and `submit` it here. One task takes everything that
is waiting (across all rooms) as one batch, commits it in one transaction, and only then hands
each write back to its room in order (`on_committed`: relay, acknowledge). While a commit runs
the next batch gathers, so a burst of keystrokes pays one commit, not one fsync each.

When the pipeline is idle, the first write of an event-loop turn is committed at once, inside
`submit` (`Store.append_updates_now`): handing it to the commit task would cost a task switch
before the commit and another to the writer after it, most of a lone keystroke's time on the
server. Only one a turn: the writes that follow it in the same turn gather into one batch as
before, so a burst still pays one commit, not one each.

Under load the pipeline gathers instead (measured in `bench merge` and `bench relay`,
docs/performance-notes.md, "Group commit under load"). A write that comes less than
`HOT_SECONDS` after the last commit ended is not committed at once: writes are arriving faster
than one commit each can serve them well, and committing each alone pays SQLite's transaction
(BEGIN, inserts, COMMIT: 25-35 us) and the commit's bookkeeping per write, most of a short
run's cost. It is queued, and the commit task waits while each loop turn brings another write,
up to `GATHER_SECONDS` after the first and `max_batch` writes, then commits them all in one
transaction. A turn that brings none (the writers paused) ends the wait at once, so a write
that merely follows another closely waits one loop turn more. Nothing is visible or
acknowledged before its batch commits (the rooms' gates release on `on_committed`), so
durability is the same; only the first write of a batch waits up to `GATHER_SECONDS` longer.
When the commit task is parked, the same gather runs from loop callbacks and commits on the
loop (`_gather_inline`): at a steady trickle it mostly ends with one write, and the task's
wake-up cost more than that write's commit (docs/performance-notes.md, "The group commit's
gather on the loop").

The queue is bounded: a room waits for room (`wait_for_space`) *before* applying an update, so
that applying, numbering and queueing happen with no await in between and versions enter the
queue in order.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from crdt.journal import JournalEvent
from server import faults, metrics
from server.errors import CloseCode, StoreError
from server.store.api import Store
from server.store.records import UpdateRecord

__all__ = ["GATHER_SECONDS", "HOT_SECONDS", "CommitPipeline", "CommitTarget", "PendingWrite"]

logger = logging.getLogger("draftsync.commits")

# A write this soon after the last commit ended is gathered with those that follow it.
HOT_SECONDS = 0.0005
# How long the first write of a batch may wait while writes keep coming, turn after turn.
GATHER_SECONDS = 0.0005


class CommitTarget(Protocol):
    """The room side of the pipeline."""

    @property
    def accepts_commits(self) -> bool: ...

    def on_committed(self, writes: Sequence[PendingWrite]) -> None:
        """`writes`, consecutive writes of this target in one batch, are committed, in order."""
        ...

    # The defaults are the room's: a compiled build (mypyc) checks them, so not `...`.
    def on_commit_failed(
        self,
        error: BaseException,
        *,
        code: int = CloseCode.TRY_AGAIN_LATER,
        reason: str = "store unavailable, retry",
    ) -> None: ...


@dataclass(slots=True)
class PendingWrite:
    target: CommitTarget
    sender: Any  # the Connection that sent it, handed back to the target untouched (not
    # `object`: a compiled build (mypyc) cannot resolve a builtin in a dataclass annotation)
    record: UpdateRecord
    events: Sequence[JournalEvent] = ()  # stored in the same transaction
    ticket: int = 0  # the target's gate ticket (server/sync/gate.py), handed back at commit


class CommitPipeline:
    def __init__(self, store: Store, *, max_queued: int, max_batch: int) -> None:
        self._store = store
        self._max_queued = max_queued
        self._max_batch = max_batch
        self._queue: deque[PendingWrite] = deque()
        self._ready = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._parked = False  # `run` waits for work: nothing is queued or being committed
        self._in_flight: list[PendingWrite] = []  # the batch `_commit` is committing
        # Told of an unexpected error inside `submit`, where no task can crash (supervisor).
        self.on_crash: Callable[[BaseException], None] | None = None
        self._eager_spent = False  # this loop turn's write was committed inside `submit`
        self._last_commit = -math.inf  # when the last commit ended (perf_counter)
        self._gather = False  # a write was queued soon after a commit: the task gathers first
        self._first_queued = 0.0  # when the queue's oldest write was queued
        self._gathering = False  # a gather runs from loop callbacks, the task parked
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop `submit` runs on
        # Told of each committed batch's drafts (webhooks: server/webhooks/changes.py).
        self.on_drafts_committed: Callable[[Iterable[str]], None] | None = None
        # `until_draft_done` callers, woken (to look again) each time a batch is done with.
        self._batch_waiters: list[asyncio.Future[None]] = []

    def __len__(self) -> int:
        return len(self._queue)

    def writes_refused(self) -> StoreError | None:
        """Why the store takes no write now (its disk is full), None when it does: a room
        asks before applying, so that a refused write closes its sender alone, where a
        failed commit resets the whole room."""
        return self._store.writes_refused()

    async def wait_for_space(self) -> None:
        while len(self._queue) >= self._max_queued:
            self._space.clear()
            await self._space.wait()

    def submit(self, write: PendingWrite) -> None:
        queue = self._queue
        if not queue:
            now = time.perf_counter()
            if now - self._last_commit < HOT_SECONDS:
                if self._parked:
                    self._gather_inline(write, now)
                    return
                self._gather = True
            elif self._parked and not self._eager_spent and self._commit_now(write):
                return
            self._first_queued = now
        queue.append(write)
        self._idle.clear()
        if not self._gathering:
            self._ready.set()

    def _gather_inline(self, write: PendingWrite, now: float) -> None:
        """Gather from a callback while the commit task is parked, then commit on the loop.

        Why: at a steady trickle (a keystroke a millisecond across many rooms) the gather
        mostly ends after one turn with the write alone, and waking the task for it cost
        more than the batch: the task's wake-up and re-park (an `Event`'s future each), the
        writer's turn (an `asyncio.Lock`) and four coroutines around one commit. The turns
        waited and the bounds are the task's (`_gathered`); a store that cannot commit at once
        gets the batch back at the head of the queue and the task commits it as before."""
        self._gathering = True
        self._first_queued = now
        self._queue.append(write)
        self._idle.clear()
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self._loop.call_soon(self._gather_turn, 0)  # this turn stands for the task's wake-up

    def _gather_turn(self, seen: int) -> None:
        queue = self._queue
        count = len(queue)
        if (
            count != seen
            and count < self._max_batch
            and time.perf_counter() < self._first_queued + GATHER_SECONDS
        ):
            self._loop.call_soon(self._gather_turn, count)  # type: ignore[union-attr]
            return
        self._gathering = False
        batch = self._take_batch()
        try:
            if batch and not self._commit_batch_now(batch):
                queue.extendleft(reversed(batch))  # the task commits it (it waits for the store)
        except Exception as error:  # from a commit listener: as the task's crash
            self._crash(error, batch)
        finally:
            if queue:
                self._ready.set()
            else:
                self._idle.set()
            if self._batch_waiters:
                self._batch_done()

    def _commit_batch_now(self, batch: list[PendingWrite]) -> bool:
        """`_commit` done at once on the loop; False if the store cannot (nothing written).
        An unexpected error is handled as the task's crash: the batch's rooms reset."""
        started = time.perf_counter()
        try:
            if faults.ARMED:
                faults.trip("commit")
            if not self._store.append_updates_now(
                [write.record for write in batch], [e for write in batch for e in write.events]
            ):
                return False
        except StoreError as error:
            self._failed(batch, error)
            return True
        except Exception as error:
            self._crash(error, batch)
            return True
        self._committed(batch, started, stored=None)
        return True

    def _crash(self, error: Exception, batch: list[PendingWrite]) -> None:
        """An unexpected error in a commit done on the loop, as the task's: the batch's rooms
        reset (`crashed`) and the supervisor hears of it (`on_crash`)."""
        self.crashed(error, batch)
        if self.on_crash is not None:
            self.on_crash(error)

    def _commit_now(self, write: PendingWrite) -> bool:
        """Commit one write inside `submit`, at most once an event-loop turn; False if the
        store cannot do it without waiting (the write is then queued as usual)."""
        self._eager_spent = True
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self._loop.call_soon(self._allow_eager)
        return self._commit_batch_now([write])

    def _allow_eager(self) -> None:
        self._eager_spent = False

    async def _gathered(self) -> None:
        """Wait while each loop turn brings another write (see the module's docstring)."""
        self._gather = False
        queue = self._queue
        seen = len(queue)
        deadline = self._first_queued + GATHER_SECONDS
        while seen < self._max_batch and time.perf_counter() < deadline:
            await asyncio.sleep(0)
            if len(queue) == seen:
                return  # a turn without a new write: the writers paused
            seen = len(queue)

    async def flush(self) -> None:
        """Return once everything submitted so far is committed (or failed)."""
        await self._idle.wait()

    async def until_draft_done(self, draft_id: str) -> None:
        """Return once no write of `draft_id` is queued or being committed: each one was
        committed, failed or dropped, whichever room submitted it.

        Why: a deleted draft's content is purged after the writes its rooms accepted before
        the tombstone, or those are stored after the purge and stay for good. A discarded
        room's accepted writes still commit (`Room.discard`), but the registry no longer
        holds it, so the delete cannot wait on its gate; it waits here, for that draft only
        (a global `flush` may never come under load). The queue is scanned here, at the
        delete; the hot path pays one check per batch (`_batch_done`)."""
        loop = asyncio.get_running_loop()
        while self._holds(draft_id):
            waiter = loop.create_future()
            self._batch_waiters.append(waiter)
            await waiter

    def _holds(self, draft_id: str) -> bool:
        return any(w.record.draft_id == draft_id for w in self._in_flight) or any(
            w.record.draft_id == draft_id for w in self._queue
        )

    def _batch_done(self) -> None:
        """Wake `until_draft_done`'s waiters to look again (a batch was committed, failed,
        dropped or put back)."""
        waiters, self._batch_waiters = self._batch_waiters, []
        for waiter in waiters:
            if not waiter.done():  # a waiter whose delete timed out is cancelled
                waiter.set_result(None)

    async def run(self) -> None:
        while True:
            if not self._queue:
                self._idle.set()
                self._ready.clear()
                self._parked = True
                try:
                    await self._ready.wait()
                finally:
                    self._parked = False
                continue
            if self._gather:
                await self._gathered()
            batch = self._take_batch()
            if batch:
                await self._commit(batch)
            if self._batch_waiters:
                self._batch_done()
            # Parked, this frame would keep the last batch (its rooms, senders and update
            # bytes) until the next write: an unloaded room's memory would not come back.
            del batch

    def _take_batch(self) -> list[PendingWrite]:
        batch: list[PendingWrite] = []
        while self._queue and len(batch) < self._max_batch:
            write = self._queue.popleft()
            if write.target.accepts_commits:  # a room that failed drops what it had queued
                batch.append(write)
            else:
                metrics.UPDATES_DROPPED.inc()
        self._space.set()
        return batch

    async def _commit(self, batch: list[PendingWrite]) -> None:
        started = time.perf_counter()
        self._in_flight = batch  # an unexpected error leaves it to `crashed`
        try:
            if faults.ARMED:
                faults.trip("commit")
            stored = await self._store.append_updates(
                [write.record for write in batch], [e for write in batch for e in write.events]
            )
        except StoreError as error:
            self._in_flight = []
            self._failed(batch, error)
            return
        self._committed(batch, started, stored)
        self._in_flight = []

    def crashed(self, error: BaseException, batch: list[PendingWrite] | None = None) -> None:
        """An unexpected error while committing `batch` (default: the one in flight): whether
        it reached the store is unknown, so its rooms reset with 1011 and their clients
        resend; the pipeline itself carries on with the next batch (the supervisor restarts
        `run`)."""
        batch, self._in_flight = (self._in_flight if batch is None else batch), []
        metrics.COMMIT_FAILURES.inc()
        for target in {id(w.target): w.target for w in batch}.values():
            target.on_commit_failed(
                error, code=CloseCode.INTERNAL_ERROR, reason="server error, reconnect"
            )
        if self._batch_waiters:
            self._batch_done()

    def _failed(self, batch: list[PendingWrite], error: StoreError) -> None:
        metrics.COMMIT_FAILURES.inc()
        logger.error("group commit failed updates=%d error=%s", len(batch), error)
        for target in {id(w.target): w.target for w in batch}.values():
            target.on_commit_failed(error)

    def _committed(
        self, batch: list[PendingWrite], started: float, stored: list[UpdateRecord] | None
    ) -> None:
        self._last_commit = now = time.perf_counter()
        metrics.COMMITS.record(len(batch), now - started)
        # PostgreSQL gives versions of its own (several instances on one draft) and returns
        # the records as stored; SQLite returns None (the room's numbering stands).
        if stored is not None:
            for write, record in zip(batch, stored, strict=True):
                if write.events and record.version != write.record.version:
                    write.events = _renumbered(write.events, write.record.version, record.version)
                write.record = record
        # One call per stretch of one room's writes, not one per write: the room releases
        # and tells its listeners once a stretch (server/sync/room.py `on_committed`).
        first, end = 0, len(batch)
        while first < end:
            target = batch[first].target
            last = first + 1
            while last < end and batch[last].target is target:
                last += 1
            target.on_committed(batch if last - first == end else batch[first:last])
            first = last
        if self.on_drafts_committed is not None:
            self.on_drafts_committed(write.record.draft_id for write in batch)


def _renumbered(events: Sequence[JournalEvent], numbered: int, stored: int) -> list[JournalEvent]:
    """A write's journal events as the store holds them: it moved the write from the version
    its room gave (`numbered`) to `stored` (another instance stored one first), and its events
    with it (`PostgresStore.append_updates`). Rooms tell them, and the fan-out publishes them,
    from here: with the room's number they would name another instance's update."""
    return [
        dataclasses.replace(event, version=stored) if event.version == numbered else event
        for event in events
    ]
