"""The webhook outbox in PostgreSQL (tables: migration 2 of `server.store.postgres`); the same
tables, statements (`server.store.statements`) and promises as `server.store.sqlite_webhooks`.

Several instances share the outbox: a claim is one `UPDATE ... WHERE id IN (SELECT ... FOR
UPDATE SKIP LOCKED) RETURNING`, so each due delivery goes to one instance, and its lease
(`next_attempt_at` moved past the timeout) keeps the others off it until the outcome is
recorded or the lease ends (the instance died: delivered again, at least once). A draft's
`draft.changed` is recorded with a compare-and-set of its cursor, so two instances that scan
the same draft announce each range once.

A mixin of `PostgresStore`: the outbox rows join the transaction of what they describe.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence

import asyncpg

from server.errors import StoreError
from server.store import statements as sql
from server.store.dialect import POSTGRES
from server.store.outbox import Attempt, Delivery, OutboxEvent, PendingChange, outbox_rows
from server.store.postgres_locks import lock_drafts

__all__ = ["PostgresWebhooks"]

# The shared statements (server/store/statements.py), rendered for PostgreSQL.
_INSERT_OUTBOX = POSTGRES.render(sql.INSERT_OUTBOX)
_MOVE_CURSOR = POSTGRES.render(sql.MOVE_CURSOR)
_PENDING_CHANGES = POSTGRES.render(sql.PENDING_CHANGES)
_ANY_DUE = POSTGRES.render(sql.ANY_DUE)
_CLAIM = POSTGRES.render(sql.CLAIM)
_INSERT_ATTEMPT = POSTGRES.render(sql.INSERT_ATTEMPT)
_SET_OUTCOME = POSTGRES.render(sql.SET_OUTCOME)
_DELIVERIES_PAGE = POSTGRES.render(sql.DELIVERIES_PAGE)
_ATTEMPTS_PAGE = POSTGRES.render(sql.ATTEMPTS_PAGE)
_FORGET_DELIVERIES = POSTGRES.render(sql.FORGET_DELIVERIES)
_FORGET_ATTEMPTS = POSTGRES.render(sql.FORGET_ATTEMPTS)
_CHUNK = 500  # draft ids a query


@contextlib.contextmanager
def _translated(action: str) -> Iterator[None]:
    """Driver errors leave the store as `StoreError`, as its other methods' do."""
    try:
        yield
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        raise StoreError(f"{action} failed: {exc}") from exc


class PostgresWebhooks:
    """Outbox reads and writes of `PostgresStore` (see the module's docstring)."""

    webhook_urls: tuple[str, ...] = ()  # none: no outbox rows are written
    _pool: asyncpg.Pool  # PostgresStore's

    async def _write_outbox(self, db: asyncpg.Connection, events: Sequence[OutboxEvent]) -> None:
        """Inside the caller's transaction on `db`: the events' rows."""
        rows = outbox_rows(events, self.webhook_urls)
        if rows:
            await db.executemany(_INSERT_OUTBOX, rows)

    async def webhook_pending_changes(
        self, draft_ids: Sequence[str] | None = None
    ) -> list[PendingChange]:
        """Drafts whose committed versions pass their cursor (of `draft_ids`; None: all)."""
        with _translated("webhook outbox: pending changes"):
            async with self._pool.acquire() as db:
                if draft_ids is None:
                    rows = await db.fetch(_PENDING_CHANGES)
                else:
                    ids = list(draft_ids)
                    rows = []
                    for start in range(0, len(ids), _CHUNK):
                        chunk = ids[start : start + _CHUNK]
                        statement = POSTGRES.render(sql.pending_changes_of(len(chunk)))
                        rows += await db.fetch(statement, *chunk)
            return [PendingChange(*tuple(row)) for row in rows]

    async def webhook_record_change(
        self, draft_id: str, after: int, upto: int, event: OutboxEvent
    ) -> bool:
        """Announce versions `after < v <= upto`: the event's rows and the cursor moved, at
        once; False (nothing written) if the cursor is no longer at `after`."""
        with _translated("webhook outbox: record change"):
            async with self._pool.acquire() as db, db.transaction():
                await lock_drafts(db, [draft_id])
                status = await db.execute(_MOVE_CURSOR, upto, draft_id, after)
                if status != "UPDATE 1":
                    return False
                await self._write_outbox(db, [event])
            return True

    async def webhook_claim(
        self,
        *,
        now: float,
        lease_until: float,
        limit: int,
        url: str | None = None,
        other_than: Sequence[str] = (),
    ) -> list[Delivery]:
        """Take up to `limit` due deliveries (to `url` only, or to none of `other_than`), none
        another instance holds (see the module)."""
        any_due, claim = _ANY_DUE, _CLAIM
        urls: tuple[str, ...] = ()
        if url is not None or other_than:
            narrowed = sql.claim_of(url, len(other_than))
            any_due, claim = POSTGRES.render(narrowed[0]), POSTGRES.render(narrowed[1])
            urls = (url,) if url is not None else tuple(other_than)
        with _translated("webhook outbox: claim"):
            async with self._pool.acquire() as db:
                if await db.fetchval(any_due, now, *urls) is None:
                    return []
                rows = await db.fetch(claim, lease_until, now, *urls, limit)
            deliveries = [Delivery(*tuple(row)) for row in rows]
            return sorted(deliveries, key=lambda d: (d.next_attempt_at, d.id))

    async def webhook_attempted(
        self,
        delivery_id: int,
        attempt: Attempt | None,
        *,
        status: str,
        next_attempt_at: float,
        lease_until: float,
    ) -> bool:
        """Record an attempt (None: given up without one) and the delivery's new state,
        together and only while `lease_until` (the claim's) is still the row's; False if
        neither was recorded: the lease ran out and the delivery was claimed again, or
        removed. The attempt is numbered after the delivery's recorded ones (its `attempt`,
        the claimer's count, is not stored: `server.store.statements.INSERT_ATTEMPT`)."""
        error = attempt.error if attempt is not None else "endpoint no longer configured"
        with _translated("webhook outbox: attempted"):
            async with self._pool.acquire() as db, db.transaction():
                # The attempt first: it locks the outbox row while its lease holds, so no
                # claim (nor retention) changes it before the outcome, which then finds the
                # same lease; no row (the lease ran out): neither is written.
                if attempt is not None:
                    await db.execute(
                        _INSERT_ATTEMPT,
                        attempt.at,
                        attempt.status_code,
                        attempt.error,
                        attempt.seconds,
                        delivery_id,
                        lease_until,
                    )
                recorded = await db.execute(
                    _SET_OUTCOME, status, next_attempt_at, error, delivery_id, lease_until
                )
            return recorded == "UPDATE 1"

    async def webhook_deliveries(self, draft_id: str, *, after: int, limit: int) -> list[Delivery]:
        """A draft's deliveries after id `after`, oldest first, each with its attempts: both
        read from one snapshot, so an outcome recorded meanwhile is in both or in neither."""
        with _translated("webhook outbox: deliveries"):
            async with (
                self._pool.acquire() as db,
                db.transaction(isolation="repeatable_read", readonly=True),
            ):
                rows = await db.fetch(_DELIVERIES_PAGE, draft_id, after, limit)
                attempts = await db.fetch(_ATTEMPTS_PAGE, draft_id, after, limit)
            log: dict[int, list[Attempt]] = {}
            for row in attempts:
                log.setdefault(int(row[0]), []).append(Attempt(*tuple(row)[1:]))
            deliveries = [Delivery(*tuple(row)) for row in rows]
            return [dataclasses.replace(d, log=tuple(log.get(d.id, ()))) for d in deliveries]

    async def webhook_forget(self, *, before: float, limit: int) -> int:
        """Remove up to `limit` finished deliveries (delivered, failed) whose last attempt
        began before `before`, with their attempts, in one transaction; how many. Rows another
        instance's retention holds are passed over (SKIP LOCKED), so two never wait on each
        other."""
        with _translated("webhook outbox: forget"):
            async with self._pool.acquire() as db, db.transaction():
                gone = await db.fetch(_FORGET_DELIVERIES, before, limit)
                await db.executemany(_FORGET_ATTEMPTS, [(row[0],) for row in gone])
            return len(gone)
