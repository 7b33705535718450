"""Background snapshots: fold a draft's log into one merged state every N updates or bytes.

The snapshot is built from the store (latest snapshot + the log after it, applied to a fresh Doc
on a worker thread), never from the live room doc, so it only ever contains committed updates
and costs the event loop nothing but two queries. The log itself is kept: history needs it.
"""

from __future__ import annotations

import asyncio
import logging
import time

from crdt.history import compact
from server.errors import StoreError
from server.store import Store

__all__ = ["Snapshotter"]

logger = logging.getLogger("draftsync.snapshots")


class Snapshotter:
    def __init__(self, store: Store, *, every_updates: int, every_bytes: int) -> None:
        self._store = store
        self.every_updates = every_updates
        self.every_bytes = every_bytes
        self._running: dict[str, asyncio.Task[None]] = {}
        self._wanted: dict[str, int] = {}  # newest version asked for while one was running

    def due(self, updates: int, size: int) -> bool:
        return updates >= self.every_updates or size >= self.every_bytes

    def request(self, draft_id: str, version: int) -> None:
        """Snapshot `draft_id` at `version`; if one is running, at the newest version asked
        for once it is done (so a burst that ends while a snapshot runs is not left behind)."""
        if draft_id in self._running:
            self._wanted[draft_id] = version
            return
        task = asyncio.create_task(self._run(draft_id, version))
        self._running[draft_id] = task
        task.add_done_callback(lambda _: self._running.pop(draft_id, None))

    async def _run(self, draft_id: str, version: int) -> None:
        while True:
            await self._take(draft_id, version)
            wanted = self._wanted.pop(draft_id, None)
            if wanted is None or wanted <= version:
                return
            version = wanted

    async def wait(self) -> None:
        """Let running snapshots finish (shutdown, tests)."""
        if self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def _take(self, draft_id: str, version: int) -> None:
        started = time.perf_counter()
        try:
            state = await self._store.load(draft_id, at_version=version)
            if state.version != version or not state.tail:
                return  # nothing new since the last snapshot, or the log is not there yet
            merged = await asyncio.to_thread(compact, state.snapshot, state.tail)
            await self._store.save_snapshot(draft_id, version, merged, now=time.time())
        except StoreError as error:
            logger.warning("snapshot failed draft=%s version=%d error=%s", draft_id, version, error)
            return
        logger.info(
            "snapshot draft=%s version=%d folded=%d bytes=%d ms=%.1f",
            draft_id,
            version,
            len(state.tail),
            len(merged),
            (time.perf_counter() - started) * 1000,
        )
