"""The webhook outbox in SQLite (tables: migration 5 of `server.store.sqlite`; its statements,
written once for both backends, in `server.store.statements`).

    webhook_outbox    one row an event and URL: event_id (webhook-id), url, draft_id, type,
                      payload (the body), created_at, status (pending | delivered | failed),
                      attempts, next_attempt_at (also the claim's lease), last_error
    webhook_attempts  outbox_id, attempt, at, status_code, error, seconds
    webhook_cursors   draft_id, version: the last version a `draft.changed` event announced

A mixin of `SqliteStore`: it shares its connection, lock and transactions, so that the rows of
`server.store.outbox` join the transaction of what they describe.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import TYPE_CHECKING

from server.errors import StoreError
from server.store import statements as sql
from server.store.dialect import SQLITE
from server.store.outbox import Attempt, Delivery, OutboxEvent, PendingChange, outbox_rows

if TYPE_CHECKING:
    import aiosqlite

    from server.store.log_writer import LogWriter

__all__ = ["SqliteWebhooks"]

# The shared statements (server/store/statements.py), rendered for SQLite.
_INSERT_OUTBOX = SQLITE.render(sql.INSERT_OUTBOX)
_MOVE_CURSOR = SQLITE.render(sql.MOVE_CURSOR)
_PENDING_CHANGES = SQLITE.render(sql.PENDING_CHANGES)
_ANY_DUE = SQLITE.render(sql.ANY_DUE)
_CLAIM = SQLITE.render(sql.CLAIM)
_INSERT_ATTEMPT = SQLITE.render(sql.INSERT_ATTEMPT)
_SET_OUTCOME = SQLITE.render(sql.SET_OUTCOME)
_DELIVERIES_PAGE = SQLITE.render(sql.DELIVERIES_PAGE)
_ATTEMPTS_PAGE = SQLITE.render(sql.ATTEMPTS_PAGE)
_FORGET_DELIVERIES = SQLITE.render(sql.FORGET_DELIVERIES)
_FORGET_ATTEMPTS = SQLITE.render(sql.FORGET_ATTEMPTS)
_CHUNK = 500  # draft ids a query (SQLite allows 32,766 variables)


@contextlib.contextmanager
def _translated(action: str) -> Iterator[None]:
    """Driver errors leave the store as `StoreError`, as its other methods' do."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"{action} failed: {exc}") from exc


class SqliteWebhooks:
    """Outbox reads and writes of `SqliteStore` (see the module's docstring)."""

    webhook_urls: tuple[str, ...] = ()  # none: no outbox rows are written
    # SqliteStore's: its connection, its lock, its writer (the group commit's),
    # `_transaction()` and `_fetch_all(sql, params)`.
    _db: aiosqlite.Connection
    _lock: asyncio.Lock
    _log: LogWriter

    async def _write_outbox(self, events: Sequence[OutboxEvent]) -> None:
        """Inside a transaction of the caller's: the events' rows."""
        rows = outbox_rows(events, self.webhook_urls)
        if rows:
            await self._db.executemany(_INSERT_OUTBOX, rows)

    async def webhook_pending_changes(
        self, draft_ids: Sequence[str] | None = None
    ) -> list[PendingChange]:
        """Drafts whose committed versions pass their cursor (of `draft_ids`; None: all)."""
        with _translated("webhook outbox: pending changes"):
            found: list[PendingChange] = []
            async for rows in self._pending_rows(draft_ids):
                found += [PendingChange(*row) for row in rows]  # type: ignore[arg-type]
            return found

    async def _pending_rows(
        self, draft_ids: Sequence[str] | None
    ) -> AsyncIterator[list[tuple[object, ...]]]:
        if draft_ids is None:
            yield await self._fetch_all(_PENDING_CHANGES, ())
            return
        ids = list(draft_ids)
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            statement = SQLITE.render(sql.pending_changes_of(len(chunk)))
            yield await self._fetch_all(statement, tuple(chunk))

    async def webhook_record_change(
        self, draft_id: str, after: int, upto: int, event: OutboxEvent
    ) -> bool:
        """Announce versions `after < v <= upto`: the event's rows and the cursor moved, at
        once; False (nothing written) if the cursor is no longer at `after`."""
        with _translated("webhook outbox: record change"):
            async with self._transaction():
                cursor = await self._db.execute(_MOVE_CURSOR, (upto, draft_id, after))
                if cursor.rowcount != 1:
                    return False
                await self._write_outbox([event])
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
        """Take up to `limit` due deliveries (to `url` only, or to none of `other_than`): each
        is not due again before `lease_until`, so that a delivery cut short by a crash is
        tried again after it (at least once)."""
        any_due, claim = _ANY_DUE, _CLAIM
        urls: tuple[str, ...] = ()
        if url is not None or other_than:
            narrowed = sql.claim_of(url, len(other_than))
            any_due, claim = SQLITE.render(narrowed[0]), SQLITE.render(narrowed[1])
            urls = (url,) if url is not None else tuple(other_than)
        with _translated("webhook outbox: claim"):
            async with self._lock:
                due = await self._db.execute_fetchall(any_due, (now, *urls))
            if not due:  # no write transaction (and no write lock) when nothing is due
                return []
            async with self._transaction():
                rows = await self._db.execute_fetchall(claim, (lease_until, now, *urls, limit))
            return sorted((Delivery(*row) for row in rows), key=lambda d: (d.next_attempt_at, d.id))

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
        the claimer's count, is not stored: `server.store.statements.INSERT_ATTEMPT`).
        Through the commit's own writer, so it never holds the write lock against a commit."""
        error = attempt.error if attempt is not None else "endpoint no longer configured"
        attempts = []
        if attempt is not None:
            attempts = [
                (
                    attempt.at,
                    attempt.status_code,
                    attempt.error,
                    attempt.seconds,
                    delivery_id,
                    lease_until,
                )
            ]
        outcome = (status, next_attempt_at, error, delivery_id, lease_until)
        with _translated("webhook outbox: attempted"):
            # The attempt first: it reads the lease as the outcome will (one write transaction,
            # BEGIN IMMEDIATE), and the outcome's count is then the history's.
            changed = await self._log.write(
                [(_INSERT_ATTEMPT, attempts), (_SET_OUTCOME, [outcome])]
            )
        return changed == 1

    async def webhook_deliveries(self, draft_id: str, *, after: int, limit: int) -> list[Delivery]:
        """A draft's deliveries after id `after`, oldest first, each with its attempts: both
        read in one transaction, so an outcome recorded meanwhile is in both or in neither."""
        with _translated("webhook outbox: deliveries"):
            async with self._lock:
                await self._db.execute("BEGIN")
                try:
                    rows = await self._db.execute_fetchall(
                        _DELIVERIES_PAGE, (draft_id, after, limit)
                    )
                    attempts = await self._db.execute_fetchall(
                        _ATTEMPTS_PAGE, (draft_id, after, limit)
                    )
                finally:
                    with contextlib.suppress(sqlite3.Error):
                        await self._db.execute("COMMIT")
            log: dict[int, list[Attempt]] = {}
            for row in attempts:
                log.setdefault(int(row[0]), []).append(Attempt(*row[1:]))  # type: ignore[call-overload, arg-type]
            deliveries = [Delivery(*row) for row in rows]  # type: ignore[arg-type]
            return [dataclasses.replace(d, log=tuple(log.get(d.id, ()))) for d in deliveries]

    async def webhook_forget(self, *, before: float, limit: int) -> int:
        """Remove up to `limit` finished deliveries (delivered, failed) whose last attempt
        began before `before`, with their attempts, in one short transaction; how many.
        Through aiosqlite's thread, not the commit's writer: a commit that meets the lock
        waits for it on its own worker thread, never on the event loop."""
        with _translated("webhook outbox: forget"):
            async with self._transaction():
                gone = await self._db.execute_fetchall(_FORGET_DELIVERIES, (before, limit))
                await self._db.executemany(_FORGET_ATTEMPTS, [(row[0],) for row in gone])
            return len(gone)
