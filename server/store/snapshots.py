"""Snapshots: a draft's merged state every N updates or bytes, so that loads stay fast.

A snapshot only ever contains committed updates. With one instance the room hands over its own
doc's state (`save`), encoded when the snapshot is due and stored once the room's version at
that moment is committed (`Room._snapshot`). That is one encode on the event loop (~2 ms for a
20,000-item draft). Folding the log from the store instead, on a worker thread, held the GIL
about six times longer (pycrdt keeps it for the whole of each call; applying the previous
snapshot of that draft alone takes 11 ms), stalling the loop and every relay with it: `bench
relay` S4r went from 12 ms p50 with folding to 5 ms with no snapshots.

With several instances (`request`), the doc may lack versions another instance stored, so the
snapshot is folded from the store: latest snapshot + the log after it, applied to a fresh Doc
on a worker thread. The log itself is kept either way: history needs it.

A draft's snapshots are stored one at a time. One asked for meanwhile waits, and a newer one
replaces it: at most one state per draft waits in memory, and a burst of updates that ends
while a snapshot is being stored still gets its own. Storing one also deletes those that take
the draft beyond `keep` (server/store/retention.py), in the same transaction.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable

from crdt.history import compact
from server import faults
from server.errors import StoreError
from server.store.api import Store
from server.store.retention import snapshots_to_drop

__all__ = ["UNLOAD_TAIL", "Snapshotter"]

logger = logging.getLogger("draftsync.snapshots")

# A draft whose doc goes away (its room unloads, the server stops) with at least this many
# updates since its last snapshot gets one then: its next cold load applies one snapshot
# instead of replaying up to `every_updates` - 1 updates (a 20,000-update draft's tail of
# ~400 cost 0.4-5 ms of a C1 join; bench relay C1). Below it the tail is cheaper to replay
# than a snapshot is to encode and store.
UNLOAD_TAIL = 64


class Snapshotter:
    def __init__(self, store: Store, *, every_updates: int, every_bytes: int, keep: int) -> None:
        self._store = store
        self.every_updates = every_updates
        self.every_bytes = every_bytes
        self.keep = keep
        self._running: dict[str, asyncio.Task[None]] = {}
        self._waiting: dict[str, Callable[[], Awaitable[None]]] = {}  # the newest, per draft
        # Told of an unexpected error in a snapshot job (the supervisor: logged, /healthz 503);
        # the draft's next snapshot is taken as usual.
        self.on_crash: Callable[[BaseException], None] | None = None

    def due(self, updates: int, size: int) -> bool:
        return updates >= self.every_updates or size >= self.every_bytes

    def due_at_unload(self, updates: int) -> bool:
        """Whether a doc about to go, `updates` after its last snapshot, should leave one."""
        return updates >= UNLOAD_TAIL

    def save(self, draft_id: str, version: int, state: bytes) -> None:
        """Store `state`, the draft's whole state at `version` (committed), as its snapshot."""
        self._submit(draft_id, functools.partial(self._save, draft_id, version, state))

    def request(self, draft_id: str, version: int) -> None:
        """Fold the store's log of `draft_id` up to `version` into a snapshot."""
        self._submit(draft_id, functools.partial(self._fold, draft_id, version))

    async def wait(self) -> None:
        """Let running snapshots finish (shutdown, tests)."""
        if self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    def _submit(self, draft_id: str, job: Callable[[], Awaitable[None]]) -> None:
        if draft_id in self._running:
            self._waiting[draft_id] = job
            return
        self._running[draft_id] = asyncio.create_task(self._run(draft_id, job))

    async def _run(self, draft_id: str, job: Callable[[], Awaitable[None]] | None) -> None:
        # The draft stops being `_running` in the same step that found nothing waiting: a
        # done callback would run a step later, and a job submitted in between would wait
        # for a task that is gone (the draft's last snapshot of a burst, lost).
        try:
            while job is not None:
                try:
                    if faults.ARMED:
                        faults.trip("snapshot")
                    await job()
                except Exception as error:
                    if self.on_crash is None:
                        raise
                    self.on_crash(error)
                job = self._waiting.pop(draft_id, None)
        finally:
            del self._running[draft_id]

    async def _save(self, draft_id: str, version: int, state: bytes) -> None:
        try:
            dropped = await self._store_thinned(draft_id, version, state)
        except StoreError as error:
            logger.warning("snapshot failed draft=%s version=%d error=%s", draft_id, version, error)
            return
        logger.info(
            "snapshot draft=%s version=%d bytes=%d dropped=%s",
            draft_id,
            version,
            len(state),
            dropped,
        )

    async def _store_thinned(self, draft_id: str, version: int, state: bytes) -> list[int]:
        """Store the snapshot and drop the ones beyond `keep`; returns their versions. Only
        this draft's own job runs meanwhile, so the versions read stay current (another
        instance's snapshot of the draft may slip in: the next one thins it)."""
        versions = await self._store.snapshot_versions(draft_id)
        dropped = snapshots_to_drop(sorted({*versions, version}), self.keep)
        await self._store.save_snapshot(draft_id, version, state, now=time.time(), drop=dropped)
        return dropped

    async def _fold(self, draft_id: str, version: int) -> None:
        started = time.perf_counter()
        try:
            state = await self._store.load(draft_id, at_version=version)
            if state.version != version or not state.tail:
                return  # nothing new since the last snapshot, or the log is not there yet
            merged = await asyncio.to_thread(compact, state.snapshot, state.tail)
            dropped = await self._store_thinned(draft_id, version, merged)
        except StoreError as error:
            logger.warning("snapshot failed draft=%s version=%d error=%s", draft_id, version, error)
            return
        logger.info(
            "snapshot draft=%s version=%d folded=%d bytes=%d ms=%.1f dropped=%s",
            draft_id,
            version,
            len(state.tail),
            len(merged),
            (time.perf_counter() - started) * 1000,
            dropped,
        )
