"""Retention of the outbox: finished deliveries are removed `keep_seconds` after their outcome.

Why: the outbox has one row per event and URL (every `draft.changed`, `conflict.*`,
`access.changed`, ...) and one more per attempt, so a busy server's database would otherwise
grow without bound. As GitHub (3 days; 7 on Enterprise Server) and Stripe (30 days) do, the
delivery log is kept for a bounded time: long enough to look into a receiver's failure the
next working day, through `GET /api/drafts/{id}/webhooks`.

What goes: a delivery that is `delivered` or `failed` and whose last attempt began more than
`keep_seconds` ago (`next_attempt_at` of a finished row), with its attempts, in the same
transaction. A `pending` delivery is never removed, however old: it is still owed.

How: a task of its own under the `Supervisor` (`webhook-retention`), never on the commit path
nor in the delivery loop (a long backlog must not delay deliveries). Each pass removes what
was older than the window when it began, in transactions of at most `BATCH_ROWS` rows with a
pause between them, so that a backlog (the first start after an upgrade) never holds SQLite's
writer for long; a commit that meets the lock waits for it on its worker thread. Measured here
(SQLite, 20,000 delivered rows of 3 attempts, load average ~6, 5 rounds alternating sizes):
250 rows a transaction took 2-9 ms (medians, 1.5 and 4 KB payloads), 1,000 rows 33-52 ms,
as their pages no longer fit SQLite's page cache; so 250, about 4,500 rows a second with the
pauses. Passes run every `keep_seconds / 2`, between 1 s and `MAX_PAUSE_SECONDS`: a row
outlives its window by at most that.
"""

from __future__ import annotations

import asyncio
import logging
import time

from server import metrics
from server.errors import StoreError
from server.store.api import Store

__all__ = ["BATCH_PAUSE_SECONDS", "BATCH_ROWS", "MAX_PAUSE_SECONDS", "OutboxRetention"]

logger = logging.getLogger("draftsync.webhooks")

BATCH_ROWS = 250  # deliveries a transaction (each with its attempts: 12 at most by default)
BATCH_PAUSE_SECONDS = 0.05  # between two full batches: commits and claims get the writer
MAX_PAUSE_SECONDS = 600.0  # between passes, at most


class OutboxRetention:
    def __init__(self, store: Store, keep_seconds: float) -> None:
        self._store = store
        self._keep = keep_seconds
        self._pause = min(MAX_PAUSE_SECONDS, max(1.0, keep_seconds / 2))

    async def run(self) -> None:
        while True:
            await self.sweep()
            await asyncio.sleep(self._pause)

    async def sweep(self) -> int:
        """One pass: remove what finished before the window began; how many deliveries.
        The cut-off is fixed when the pass begins, so the pass ends even while new rows
        finish; a store error ends it early, and the next pass goes on from there."""
        before = time.time() - self._keep
        removed = 0
        while True:
            try:
                count = await self._store.webhook_forget(before=before, limit=BATCH_ROWS)
            except StoreError as error:
                logger.warning("webhook retention failed error=%s", error)
                break
            removed += count
            metrics.WEBHOOK_DELIVERIES_FORGOTTEN.inc(count)
            if count < BATCH_ROWS:
                break
            await asyncio.sleep(BATCH_PAUSE_SECONDS)
        metrics.WEBHOOK_RETENTION_PASSES.inc()
        if removed:
            logger.info("webhook retention removed=%d kept_seconds=%g", removed, self._keep)
        return removed
