"""The webhook outbox in PostgreSQL (tables: migration 2 of `server.store.postgres`); the same
tables and promises as `server.store.sqlite_webhooks`.

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
from server.store.outbox import Attempt, Delivery, OutboxEvent, PendingChange, outbox_rows

__all__ = ["INSERT_CURSOR", "MIGRATION", "PostgresWebhooks"]

MIGRATION = """
    CREATE TABLE webhook_outbox (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        event_id text NOT NULL,
        url text NOT NULL,
        draft_id text NOT NULL,
        type text NOT NULL,
        payload text NOT NULL,
        created_at double precision NOT NULL,
        next_attempt_at double precision NOT NULL,
        status text NOT NULL DEFAULT 'pending',
        attempts integer NOT NULL DEFAULT 0,
        last_error text
    );
    CREATE INDEX webhook_outbox_due ON webhook_outbox (status, next_attempt_at);
    CREATE INDEX webhook_outbox_by_draft ON webhook_outbox (draft_id, id);
    CREATE TABLE webhook_attempts (
        outbox_id bigint NOT NULL,
        attempt integer NOT NULL,
        at double precision NOT NULL,
        status_code integer,
        error text,
        seconds double precision NOT NULL,
        PRIMARY KEY (outbox_id, attempt)
    );
    CREATE TABLE webhook_cursors (
        draft_id text PRIMARY KEY,
        version bigint NOT NULL
    );
"""

_INSERT_OUTBOX = (
    "INSERT INTO webhook_outbox"
    " (event_id, url, draft_id, type, payload, created_at, next_attempt_at)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7)"
)
INSERT_CURSOR = (
    "INSERT INTO webhook_cursors (draft_id, version) VALUES ($1, $2) ON CONFLICT DO NOTHING"
)
_PENDING = """
    SELECT draft_id, announced, last_version, last_at, first_at FROM (
        SELECT c.draft_id AS draft_id, c.version AS announced,
            act.version AS last_version, act.last_modified AS last_at,
            (SELECT u.created_at FROM updates u WHERE u.draft_id = c.draft_id
             AND u.version > c.version ORDER BY u.version LIMIT 1) AS first_at
        FROM webhook_cursors c
        JOIN drafts d ON d.id = c.draft_id
        JOIN draft_activity act ON act.draft_id = c.draft_id
        WHERE d.deleted_at IS NULL AND act.version > c.version {only}
    ) pending WHERE first_at IS NOT NULL
"""
_ANY_DUE = "SELECT 1 FROM webhook_outbox WHERE status = 'pending' AND next_attempt_at <= $1 LIMIT 1"
_DELIVERY_COLUMNS = (
    "id, event_id, url, draft_id, type, payload, created_at, status, attempts,"
    " next_attempt_at, last_error"
)
_CLAIM = f"""
    UPDATE webhook_outbox SET next_attempt_at = $1
    WHERE id IN (SELECT id FROM webhook_outbox WHERE status = 'pending' AND next_attempt_at <= $2
                 ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)
    RETURNING {_DELIVERY_COLUMNS}
"""
_INSERT_ATTEMPT = (
    "INSERT INTO webhook_attempts (outbox_id, attempt, at, status_code, error, seconds)"
    " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING"
)
_SET_OUTCOME = (
    "UPDATE webhook_outbox SET status = $1, attempts = GREATEST(attempts, $2),"
    " next_attempt_at = $3, last_error = $4 WHERE id = $5"
)
_PAGE = (
    f"SELECT {_DELIVERY_COLUMNS} FROM webhook_outbox WHERE draft_id = $1 AND id > $2"
    " ORDER BY id LIMIT $3"
)
_PAGE_ATTEMPTS = """
    SELECT outbox_id, attempt, at, status_code, error, seconds FROM webhook_attempts
    WHERE outbox_id IN (SELECT id FROM webhook_outbox WHERE draft_id = $1 AND id > $2
                        ORDER BY id LIMIT $3)
    ORDER BY outbox_id, attempt
"""


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
                    rows = await db.fetch(_PENDING.format(only=""))
                else:
                    only = "AND c.draft_id = ANY($1::text[])"
                    rows = await db.fetch(_PENDING.format(only=only), list(draft_ids))
            return [PendingChange(*tuple(row)) for row in rows]

    async def webhook_record_change(
        self, draft_id: str, after: int, upto: int, event: OutboxEvent
    ) -> bool:
        """Announce versions `after < v <= upto`: the event's rows and the cursor moved, at
        once; False (nothing written) if the cursor is no longer at `after`."""
        with _translated("webhook outbox: record change"):
            async with self._pool.acquire() as db, db.transaction():
                status = await db.execute(
                    "UPDATE webhook_cursors SET version = $1 WHERE draft_id = $2 AND version = $3",
                    upto,
                    draft_id,
                    after,
                )
                if status != "UPDATE 1":
                    return False
                await self._write_outbox(db, [event])
            return True

    async def webhook_claim(self, *, now: float, lease_until: float, limit: int) -> list[Delivery]:
        """Take up to `limit` due deliveries, none another instance holds (see the module)."""
        with _translated("webhook outbox: claim"):
            async with self._pool.acquire() as db:
                if await db.fetchval(_ANY_DUE, now) is None:
                    return []
                rows = await db.fetch(_CLAIM, lease_until, now, limit)
            deliveries = [Delivery(*tuple(row)) for row in rows]
            return sorted(deliveries, key=lambda d: (d.next_attempt_at, d.id))

    async def webhook_attempted(
        self, delivery_id: int, attempt: Attempt | None, *, status: str, next_attempt_at: float
    ) -> None:
        """Record an attempt (None: given up without one) and the delivery's new state."""
        with _translated("webhook outbox: attempted"):
            async with self._pool.acquire() as db, db.transaction():
                if attempt is not None:
                    await db.execute(
                        _INSERT_ATTEMPT,
                        delivery_id,
                        attempt.attempt,
                        attempt.at,
                        attempt.status_code,
                        attempt.error,
                        attempt.seconds,
                    )
                error = attempt.error if attempt is not None else "endpoint no longer configured"
                count = attempt.attempt if attempt is not None else 0
                await db.execute(_SET_OUTCOME, status, count, next_attempt_at, error, delivery_id)

    async def webhook_deliveries(self, draft_id: str, *, after: int, limit: int) -> list[Delivery]:
        """A draft's deliveries after id `after`, oldest first, each with its attempts."""
        with _translated("webhook outbox: deliveries"):
            async with self._pool.acquire() as db:
                rows = await db.fetch(_PAGE, draft_id, after, limit)
                attempts = await db.fetch(_PAGE_ATTEMPTS, draft_id, after, limit)
            log: dict[int, list[Attempt]] = {}
            for row in attempts:
                log.setdefault(int(row[0]), []).append(Attempt(*tuple(row)[1:]))
            deliveries = [Delivery(*tuple(row)) for row in rows]
            return [dataclasses.replace(d, log=tuple(log.get(d.id, ()))) for d in deliveries]
