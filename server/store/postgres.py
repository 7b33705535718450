"""The durable store on PostgreSQL (asyncpg): the same methods and promises as SQLite's.

Why a second backend: several draftsync instances behind a load balancer need one store they
all reach (design.md, "Beyond one machine"). Everything that `SqliteStore` promises holds
here too, by PostgreSQL's own means:

    durable before visible   `append_updates` is one transaction per group-commit batch, with
                             its journal events; COMMIT returns after the WAL is flushed
    no duplication           (draft_id, version) is the primary key of `updates`
    activity, contributors   a row trigger on `updates`, in the commit's transaction (SQLite
                             reads activity from the log and its commit adds contributors:
                             there a trigger cost more; here each statement of the commit is
                             a round trip, a trigger none)
    schema                   created and migrated at start-up under an advisory lock, so that
                             two instances starting together do not race (`schema_version`)

The tables and statements are SQLite's, written once in `server.store.statements` and
rendered for PostgreSQL (`server.store.dialect`), plus `draft_activity`; `user` is quoted (a
reserved word), ids and user names compare bytewise (COLLATE "C", as SQLite does, so listing
pages agree), timestamps are `double precision` seconds, blobs `bytea`, the journal's data is
JSON text.
Every driver or connection error leaves this module as `StoreError` (`_translated`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Collection, Iterator, Sequence
from typing import Any

import asyncpg

from crdt.journal import JournalEvent
from server.errors import QuotaExceeded, StoreError
from server.store import statements as sql
from server.store.dialect import POSTGRES
from server.store.outbox import (
    DRAFT_CREATED,
    DRAFT_DELETED,
    OutboxEvent,
    journal_outbox,
)
from server.store.postgres_locks import lock_drafts
from server.store.postgres_webhooks import PostgresWebhooks
from server.store.records import (
    FIRST_WATERMARK,
    DraftRecord,
    DraftState,
    DraftSummary,
    LoggedUpdate,
    SavedMeta,
    StoredEvent,
    UpdateRecord,
    opening_from_rows,
)

__all__ = ["REVIEW_LOCK_CONNECTIONS", "REVIEW_LOCK_SECONDS", "PostgresStore"]

# -- PostgreSQL's own: activity kept by a trigger (SQLite reads it from the log) -----------
_ACTIVITY_TRIGGER = """
    CREATE TABLE draft_activity (
        draft_id text PRIMARY KEY,
        version bigint NOT NULL,
        last_modified double precision NOT NULL
    );
    CREATE FUNCTION updates_activity() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO draft_activity (draft_id, version, last_modified)
            VALUES (NEW.draft_id, NEW.version, NEW.created_at)
            ON CONFLICT (draft_id) DO UPDATE SET
                version = GREATEST(draft_activity.version, excluded.version),
                last_modified = GREATEST(draft_activity.last_modified, excluded.last_modified);
        INSERT INTO draft_contributors (draft_id, "user") VALUES (NEW.draft_id, NEW."user")
            ON CONFLICT DO NOTHING;
        RETURN NULL;
    END $$;
    CREATE TRIGGER updates_activity AFTER INSERT ON updates
        FOR EACH ROW EXECUTE FUNCTION updates_activity();
"""
_PURGE_ACTIVITY = "DELETE FROM draft_activity WHERE draft_id = $1"

# The tables (server/store/statements.py) as each schema version added them.
_MIGRATIONS: tuple[str, ...] = (
    POSTGRES.script(
        sql.DRAFTS_TABLE,
        sql.DRAFTS_TOMBSTONES,
        sql.ACCESS_TABLE,
        sql.ACCESS_BY_USER,
        sql.UPDATES_TABLE,
        sql.SNAPSHOTS_TABLE,
        sql.CONTRIBUTORS_TABLE,
        sql.META_TABLE,
    )
    + _ACTIVITY_TRIGGER
    + POSTGRES.script(sql.EVENTS_TABLES),
    # 2: the webhook outbox (server/store/postgres_webhooks.py)
    POSTGRES.script(sql.WEBHOOK_TABLES),
    # 3: events of one type (named versions, sessions, conflicts) read without a journal scan
    POSTGRES.script(sql.EVENTS_BY_TYPE),
)

# -- PostgreSQL's own: locks and arrays ----------------------------------------------------
# Reviews of one draft take turns under this lock (`review_lock`); key 0 numbers versions.
_REVIEW_LOCK = "SELECT pg_advisory_lock(hashtextextended($1, 1))"
_REVIEW_UNLOCK = "SELECT pg_advisory_unlock(hashtextextended($1, 1))"
# Key 0, the versions lock, is `lock_drafts` (server/store/postgres_locks.py).
# Creations by one owner take turns under this lock, so the draft quota is counted exactly.
_OWNER_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended($1, 2))"
# Any constant: the lock that serialises migrations between instances starting together.
_MIGRATION_LOCK = 0x6472616674  # "draft"
_TAKE_MIGRATION_LOCK = "SELECT pg_advisory_xact_lock($1)"
# Two concurrent access changes of one draft take turns (SQLite has one writer at a time).
_LOCK_DRAFT_ROW = "SELECT 1 FROM drafts WHERE id = $1 FOR UPDATE"
# One max per draft through the primary key's index (a GROUP BY would read every row).
_LAST_VERSIONS = """
    SELECT d, (SELECT COALESCE(MAX(version), 0) FROM updates WHERE draft_id = d)
    FROM unnest($1::text[]) AS d
"""
# Events of some types stored with the versions after $3 up to $4 (the fan-out's catch-up of
# rule outcomes): one range of events_by_type per type, not a scan of the draft's journal.
_EVENTS_OF_TYPES_BETWEEN = """
    SELECT id, version, type, "user", session, client_id, at, data FROM events
    WHERE draft_id = $1 AND type = ANY($2::text[]) AND version > $3 AND version <= $4
    ORDER BY version, id
"""
REVIEW_LOCK_CONNECTIONS = 4
REVIEW_LOCK_SECONDS = 10.0

# -- the shared statements, rendered for PostgreSQL ---------------------------------------
_SCHEMA_VERSION_TABLE = POSTGRES.render(sql.SCHEMA_VERSION_TABLE)
_SCHEMA_VERSION = POSTGRES.render(sql.SCHEMA_VERSION)
_RECORD_SCHEMA_VERSION = POSTGRES.render(sql.RECORD_SCHEMA_VERSION)
_INSERT_DRAFT = POSTGRES.render(sql.INSERT_DRAFT)
_INSERT_OWNER = POSTGRES.render(sql.INSERT_OWNER)
_DRAFT_EXISTS = POSTGRES.render(sql.DRAFT_EXISTS)
_DRAFT_RECORD = POSTGRES.render(sql.DRAFT_RECORD)
_REACHABLE_DRAFTS = POSTGRES.render(sql.REACHABLE_DRAFTS)
_ROLE_OF = POSTGRES.render(sql.ROLE_OF)
_DRAFTS_OWNED = POSTGRES.render(sql.DRAFTS_OWNED)
_ACCESS_LIST = POSTGRES.render(sql.ACCESS_LIST)
_SET_ROLE = POSTGRES.render(sql.SET_ROLE)
_REMOVE_ROLE = POSTGRES.render(sql.REMOVE_ROLE)
_OWNER_COUNT = POSTGRES.render(sql.OWNER_COUNT)
_TOMBSTONE = POSTGRES.render(sql.TOMBSTONE)
_DROP_ACCESS = POSTGRES.render(sql.DROP_ACCESS)
_PURGE = (*(POSTGRES.render(statement) for statement in sql.PURGE), _PURGE_ACTIVITY)
_CONTRIBUTORS = POSTGRES.render(sql.CONTRIBUTORS)
_SAVE_META = POSTGRES.render(sql.SAVE_META)
_INSERT_UPDATE = POSTGRES.render(sql.INSERT_LIVE_UPDATE)
_LAST_VERSION = POSTGRES.render(sql.LAST_VERSION)
_UPDATES_BETWEEN = POSTGRES.render(sql.UPDATES_BETWEEN)
_UPDATES_WITH_ORIGIN = POSTGRES.render(sql.UPDATES_WITH_ORIGIN)
_USERS_BETWEEN = POSTGRES.render(sql.USERS_BETWEEN)
_LOAD = POSTGRES.render(sql.LOAD)
_OPENING = POSTGRES.render(sql.OPENING)
_SNAPSHOT_VERSIONS = POSTGRES.render(sql.SNAPSHOT_VERSIONS)
_INSERT_SNAPSHOT = POSTGRES.render(sql.INSERT_SNAPSHOT)
_DELETE_SNAPSHOT = POSTGRES.render(sql.DELETE_SNAPSHOT)
_INSERT_EVENT = POSTGRES.render(sql.INSERT_EVENT)
_SET_WATERMARK = POSTGRES.render(sql.SET_WATERMARK)
_JOURNAL_WATERMARK = POSTGRES.render(sql.JOURNAL_WATERMARK)
_EVENTS_PAGE = POSTGRES.render(sql.EVENTS_PAGE)
_TEXT_EVENTS_SINCE = POSTGRES.render(sql.TEXT_EVENTS_SINCE)
_EVENTS_OF_TYPE = POSTGRES.render(sql.EVENTS_OF_TYPE)
_EVENT_COUNTS = POSTGRES.render(sql.EVENT_COUNTS)
_REACHABLE_CONFLICT_FIELDS = POSTGRES.render(sql.REACHABLE_CONFLICT_FIELDS)
_INSERT_CURSOR = POSTGRES.render(sql.INSERT_CURSOR)

_NO_LIMIT = 2**62


async def _sequence(
    db: asyncpg.Connection, records: Sequence[UpdateRecord]
) -> tuple[list[UpdateRecord], dict[tuple[str, int], int]]:
    """Give each draft's records the next stored versions; return them and what moved."""
    stored = list(records)
    moved: dict[tuple[str, int], int] = {}
    # Locks in draft order: two batches touching the same drafts cannot deadlock.
    for draft_id in sorted({r.draft_id for r in records}):
        await lock_drafts(db, [draft_id])
        version = int(await db.fetchval(_LAST_VERSION, draft_id))
        for i, record in enumerate(records):
            if record.draft_id != draft_id:
                continue
            version += 1
            if record.version != version:
                stored[i] = record._replace(version=version)
                moved[(draft_id, record.version)] = version
    return stored, moved


@contextlib.contextmanager
def _translated(action: str) -> Iterator[None]:
    # InterfaceError: the pool or connection is closed; OSError: the server is unreachable.
    try:
        yield
    except (
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        asyncpg.InternalClientError,
        OSError,
    ) as exc:
        raise StoreError(f"{action} failed: {exc}") from exc


class PostgresStore(PostgresWebhooks):
    """`SqliteStore`'s interface over a pool of asyncpg connections."""

    def __init__(self, pool: asyncpg.Pool, lock_pool: asyncpg.Pool, *, url: str) -> None:
        self._pool = pool
        # Review locks are held while a commit runs on `_pool`: with connections of their
        # own, reviews in progress can never take the connections their commits need.
        self._lock_pool = lock_pool
        self.url = url

    @classmethod
    async def open(cls, url: str, *, min_size: int = 1, max_size: int = 8) -> PostgresStore:
        with _translated("connecting to PostgreSQL"):
            pool = await asyncpg.create_pool(url, min_size=min_size, max_size=max_size)
            lock_pool = await asyncpg.create_pool(url, min_size=0, max_size=REVIEW_LOCK_CONNECTIONS)
        store = cls(pool, lock_pool, url=url)
        try:
            await store._migrate()
        except BaseException:
            await store.close()
            raise
        return store

    async def close(self) -> None:
        await self._lock_pool.close()
        await self._pool.close()

    def writes_refused(self) -> None:
        """Never refused in advance: the database server owns its disk (no disk reserve
        here, server/store/reserve.py); a write it cannot store fails with 1013 / 503."""
        return None

    async def _migrate(self) -> None:
        with _translated("migrating the schema"):
            async with self._pool.acquire() as db, db.transaction():
                await db.execute(_TAKE_MIGRATION_LOCK, _MIGRATION_LOCK)
                await db.execute(_SCHEMA_VERSION_TABLE)
                current = await db.fetchval(_SCHEMA_VERSION)
                for version, script in enumerate(_MIGRATIONS[current:], start=current + 1):
                    await db.execute(script)
                    await db.execute(_RECORD_SCHEMA_VERSION, version)

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with self._pool.acquire() as db, db.transaction():
            yield db

    async def _fetch_one(self, sql: str, *params: object) -> asyncpg.Record | None:
        async with self._pool.acquire() as db:
            return await db.fetchrow(sql, *params)

    async def _fetch_all(self, sql: str, *params: object) -> list[asyncpg.Record]:
        async with self._pool.acquire() as db:
            return list(await db.fetch(sql, *params))

    # -- drafts and access ------------------------------------------------------------------

    async def role_of(self, draft_id: str, user: str) -> str | None:
        with _translated("reading access"):
            row = await self._fetch_one(_ROLE_OF, draft_id, user)
        return str(row[0]) if row else None

    async def draft_exists(self, draft_id: str) -> bool:
        with _translated("reading drafts"):
            row = await self._fetch_one(_DRAFT_EXISTS, draft_id)
        return row is not None

    async def drafts_owned(self, user: str) -> int:
        """Live drafts `user` is an owner of (a deleted draft has no access rows left)."""
        with _translated("reading access"):
            row = await self._fetch_one(_DRAFTS_OWNED, user)
        return int(row[0]) if row else 0

    async def create_draft(
        self, draft_id: str, owner: str, *, now: float, max_owned: int | None = None
    ) -> bool:
        """Create the draft owned by `owner`; False if it already existed (first writer wins)."""
        return await self.create_draft_with(
            draft_id, owner, now=now, first=None, max_owned=max_owned
        )

    # -- the update log -----------------------------------------------------------------------

    async def append_updates(
        self, records: Sequence[UpdateRecord], events: Sequence[JournalEvent] = ()
    ) -> list[UpdateRecord]:
        """Append many updates, of any drafts, in one transaction (the group commit), with
        the journal events derived from them: an update and its events land together.

        The store, not the room, has the last word on versions: several instances may host
        one draft, each numbering from what it last saw. Under a per-draft advisory lock each
        draft's records get the versions right after the stored ones (in the order given, so
        one instance's order is kept) and their events follow. Returns the records as stored;
        with one instance they are the records given, unchanged."""
        with _translated("committing updates"):
            async with self._transaction() as db:
                stored, moved = await _sequence(db, records)
                if moved:
                    events = [
                        dataclasses.replace(e, version=moved[(e.draft_id, e.version)])
                        if (e.draft_id, e.version) in moved
                        else e
                        for e in events
                    ]
                await db.executemany(_INSERT_UPDATE, [r.as_row() for r in stored])
                if events:
                    await db.executemany(_INSERT_EVENT, [e.as_row() for e in events])
                    if self.webhook_urls:
                        await self._write_outbox(db, journal_outbox(events))
        return stored

    @contextlib.asynccontextmanager
    async def review_lock(self, draft_id: str) -> AsyncIterator[None]:
        """Hold the draft's review lock (a session advisory lock, apart from the xact lock
        that numbers versions): reviews of one draft's semantic writes take turns across
        instances. PostgreSQL drops it with the session if the instance dies."""
        with _translated("taking the review lock"):
            db = await self._lock_pool.acquire(timeout=REVIEW_LOCK_SECONDS)
        try:
            with _translated("taking the review lock"):
                await db.execute(_REVIEW_LOCK, draft_id, timeout=REVIEW_LOCK_SECONDS)
            try:
                yield
            finally:
                with _translated("releasing the review lock"):
                    await db.execute(_REVIEW_UNLOCK, draft_id)
        finally:
            await self._lock_pool.release(db)

    def append_updates_now(
        self, records: Sequence[UpdateRecord], events: Sequence[JournalEvent] = ()
    ) -> bool:
        """Always False: a PostgreSQL commit is a round trip, never done without waiting."""
        return False

    async def last_version(self, draft_id: str) -> int:
        with _translated("reading the update log"):
            row = await self._fetch_one(_LAST_VERSION, draft_id)
        return int(row[0]) if row else 0

    async def last_versions(self, draft_ids: Sequence[str]) -> dict[str, int]:
        """The last stored version of each draft, in one round trip."""
        with _translated("reading the update log"):
            rows = await self._fetch_all(_LAST_VERSIONS, list(draft_ids))
        return {str(row[0]): int(row[1]) for row in rows}

    async def updates_between(self, draft_id: str, after: int, upto: int) -> list[bytes]:
        """The updates with `after < version <= upto`, oldest first."""
        with _translated("reading the update log"):
            rows = await self._fetch_all(_UPDATES_BETWEEN, draft_id, after, upto)
        return [bytes(row[0]) for row in rows]

    async def load(self, draft_id: str, *, at_version: int | None = None) -> DraftState:
        """The nearest snapshot at or before `at_version` (default: latest) and the log after it,
        read by one statement so that the two parts agree."""
        upto = _NO_LIMIT if at_version is None else at_version
        with _translated("loading a draft"):
            rows = await self._fetch_all(_LOAD, draft_id, upto)
        snapshot_version, snapshot = 0, None
        if rows and rows[0][0] == 0:
            snapshot_version, snapshot = int(rows[0][1]), bytes(rows[0][2])
            rows = rows[1:]
        tail = [bytes(row[2]) for row in rows]
        return DraftState(snapshot=snapshot, snapshot_version=snapshot_version, tail=tail)

    async def read_opening(self, draft_id: str, user: str) -> tuple[str | None, DraftState | None]:
        """The user's stored role and, when they have one, the latest draft with its journal
        watermark: one query (`statements.OPENING`), where the role, the load and the
        watermark were three."""
        with _translated("loading a draft"):
            rows = await self._fetch_all(_OPENING, draft_id, user)
        return opening_from_rows(rows)

    async def snapshot_versions(self, draft_id: str) -> list[int]:
        with _translated("reading snapshots"):
            rows = await self._fetch_all(_SNAPSHOT_VERSIONS, draft_id)
        return [int(row[0]) for row in rows]

    async def save_snapshot(
        self, draft_id: str, version: int, data: bytes, *, now: float, drop: Sequence[int] = ()
    ) -> None:
        """Store the draft's state at `version` and delete its snapshots at `drop`, at once."""
        with _translated("saving a snapshot"):
            async with self._transaction() as db:
                await db.execute(_INSERT_SNAPSHOT, draft_id, version, data, now)
                if drop:
                    await db.executemany(_DELETE_SNAPSHOT, [(draft_id, v) for v in drop])

    # -- the journal --------------------------------------------------------------------------

    async def append_events(
        self, events: Sequence[JournalEvent], *, watermark: tuple[str, int] | None = None
    ) -> None:
        """Store events that belong to no single update (closed text bursts, access changes)
        and, with `watermark`, how far the draft's text is journaled."""
        with _translated("storing journal events"):
            async with self._transaction() as db:
                # The watermark's row first: a write that waits for it (another instance's
                # recovery of the draft) must not hold the versions lock meanwhile, which a
                # delete's purge needs (tests/server/test_join_delete_race.py).
                if watermark is not None:
                    await db.execute(_SET_WATERMARK, *watermark)
                if events:
                    # Ids of a draft commit in id order (see `lock_drafts`): the group commit
                    # of the same draft, on this instance or another, takes turns with this.
                    await lock_drafts(db, (e.draft_id for e in events))
                    await db.executemany(_INSERT_EVENT, [e.as_row() for e in events])
                    await self._write_outbox(db, journal_outbox(events))

    async def journal_watermark(self, draft_id: str) -> int:
        """Every text change below this version is journaled (1 when nothing is recorded)."""
        with _translated("reading the journal"):
            row = await self._fetch_one(_JOURNAL_WATERMARK, draft_id)
        return int(row[0]) if row else FIRST_WATERMARK

    async def events_page(self, draft_id: str, *, after: int, limit: int) -> list[StoredEvent]:
        with _translated("reading the journal"):
            rows = await self._fetch_all(_EVENTS_PAGE, draft_id, after, limit)
        return [StoredEvent(*tuple(row)[:7], data=json.loads(row[7])) for row in rows]

    async def text_events_since(
        self, draft_id: str, version: int
    ) -> list[tuple[str, dict[str, Any]]]:
        with _translated("reading the journal"):
            rows = await self._fetch_all(_TEXT_EVENTS_SINCE, draft_id, version)
        return [(str(row[0]), json.loads(row[1])) for row in rows]

    async def events_of_type(self, draft_id: str, type: str, *, limit: int) -> list[StoredEvent]:
        with _translated("reading the journal"):
            rows = await self._fetch_all(_EVENTS_OF_TYPE, draft_id, type, limit)
        return [StoredEvent(*tuple(row)[:7], data=json.loads(row[7])) for row in rows]

    async def event_counts(self, draft_id: str) -> dict[str, int]:
        with _translated("reading the journal"):
            rows = await self._fetch_all(_EVENT_COUNTS, draft_id)
        return {str(row[0]): int(row[1]) for row in rows}

    async def events_between(
        self, draft_id: str, after: int, upto: int, types: Collection[str]
    ) -> list[StoredEvent]:
        """The events of `types` stored with the versions after `after` up to `upto`, in
        version order (then as stored). A write's events are stored in its update's
        transaction (`append_updates`), so a version read from the log has its events here."""
        with _translated("reading the journal"):
            rows = await self._fetch_all(
                _EVENTS_OF_TYPES_BETWEEN, draft_id, sorted(map(str, types)), after, upto
            )
        return [StoredEvent(*tuple(row)[:7], data=json.loads(row[7])) for row in rows]

    async def updates_with_origin(self, draft_id: str, after: int, upto: int) -> list[LoggedUpdate]:
        with _translated("reading the update log"):
            rows = await self._fetch_all(_UPDATES_WITH_ORIGIN, draft_id, after, upto)
        return [LoggedUpdate(row[0], bytes(row[1]), row[2], row[3], row[4], row[5]) for row in rows]

    async def users_between(self, draft_id: str, after: int, upto: int) -> list[str]:
        """Who wrote the versions after `after` up to `upto`, sorted; no update is read."""
        with _translated("reading the update log"):
            rows = await self._fetch_all(_USERS_BETWEEN, draft_id, after, upto)
        return sorted(row[0] for row in rows)  # by code point, whatever the collation

    # -- drafts as the REST API sees them: records, listing, sharing, tombstones, metadata --

    async def draft_record(self, draft_id: str) -> DraftRecord | None:
        with _translated("reading drafts"):
            row = await self._fetch_one(_DRAFT_RECORD, draft_id)
        return DraftRecord(*row) if row else None

    async def create_draft_with(
        self,
        draft_id: str,
        owner: str,
        *,
        now: float,
        first: UpdateRecord | None,
        max_owned: int | None = None,
    ) -> bool:
        """Create the draft and store its first update (version 1) in one transaction, so no
        room can load it in between; False if the id is taken (also by a tombstone).

        `QuotaExceeded` if `owner` owns `max_owned` live drafts already, counted inside the
        same transaction under a per-owner lock: creations racing in on several connections
        or instances take turns, so they cannot pass the quota together."""
        with _translated("creating a draft"):
            async with self._transaction() as db:
                if max_owned is not None:
                    await db.execute(_OWNER_LOCK, owner)
                    if await db.fetchval(_DRAFTS_OWNED, owner) >= max_owned:
                        raise QuotaExceeded.of_drafts(max_owned)
                if self.webhook_urls:  # its outbox row, below (see `lock_drafts`)
                    await lock_drafts(db, [draft_id])
                if await db.execute(_INSERT_DRAFT, draft_id, owner, now) != "INSERT 0 1":
                    return False
                await db.execute(_INSERT_OWNER, draft_id, owner)
                if first is not None:
                    await db.execute(_INSERT_UPDATE, *first.as_row())
                if self.webhook_urls:  # and the cursor later draft.changed events start from
                    version = 0 if first is None else first.version
                    data = {"draftId": draft_id, "owner": owner, "version": version}
                    await self._write_outbox(db, [OutboxEvent(DRAFT_CREATED, draft_id, now, data)])
                    await db.execute(_INSERT_CURSOR, draft_id, version)
        return True

    async def reachable_drafts(
        self, user: str, *, after: str = "", limit: int = _NO_LIMIT
    ) -> list[DraftSummary]:
        """The live drafts `user` has a role on, by id (byte order, as SQLite), after `after`."""
        with _translated("listing drafts"):
            rows = await self._fetch_all(_REACHABLE_DRAFTS, user, after, limit)
        return [
            DraftSummary(
                *tuple(row)[:6],
                meta=SavedMeta(*tuple(row)[6:]) if row[6] is not None else None,
            )
            for row in rows
        ]

    async def reachable_conflict_fields(self, user: str) -> dict[str, int]:
        """Conflicts opened per field over the live drafts `user` has a role on."""
        with _translated("reading the journal"):
            rows = await self._fetch_all(_REACHABLE_CONFLICT_FIELDS, user)
        return {str(row[0]): int(row[1]) for row in rows if row[0] is not None}

    async def access_list(self, draft_id: str) -> dict[str, str]:
        with _translated("reading access"):
            rows = await self._fetch_all(_ACCESS_LIST, draft_id)
        return {str(row[0]): str(row[1]) for row in rows}

    async def set_role(self, draft_id: str, user: str, role: str | None) -> bool:
        """Give `user` the role (None: remove it); False, changing nothing, if that would leave
        the draft without an owner. A tombstoned draft gets no new access."""
        with _translated("changing access"):
            try:
                async with self._transaction() as db:
                    if self.webhook_urls:  # its outbox row: before the row lock, as everywhere
                        await lock_drafts(db, [draft_id])
                    # Lock the draft row: two concurrent demotions cannot both see an owner left.
                    await db.execute(_LOCK_DRAFT_ROW, draft_id)
                    if role is None:
                        await db.execute(_REMOVE_ROLE, draft_id, user)
                    else:
                        await db.execute(_SET_ROLE, draft_id, user, role)
                    event = OutboxEvent.access_changed(draft_id, user, role, time.time())
                    await self._write_outbox(db, [event])
                    owners = await db.fetchval(_OWNER_COUNT, draft_id)
                    if not owners:
                        raise _NoOwnerLeft
            except _NoOwnerLeft:
                return False
        return True

    async def tombstone(self, draft_id: str, *, now: float) -> bool:
        """Mark the draft deleted and drop its access; False if it already was."""
        with _translated("deleting a draft"):
            async with self._transaction() as db:
                if self.webhook_urls:  # its outbox row (see `lock_drafts`)
                    await lock_drafts(db, [draft_id])
                status = await db.execute(_TOMBSTONE, now, draft_id)
                if status != "UPDATE 1":
                    return False
                await db.execute(_DROP_ACCESS, draft_id)
                data = {"draftId": draft_id}
                await self._write_outbox(db, [OutboxEvent(DRAFT_DELETED, draft_id, now, data)])
        return True

    async def purge_content(self, draft_id: str) -> None:
        """Remove a tombstoned draft's updates, snapshots and metadata (the id stays taken).

        Under the draft's versions lock: a commit of another instance's room that holds it
        is purged with the rest once it is done, and one that takes it after stores nothing
        (`INSERT_LIVE_UPDATE` sees the tombstone)."""
        with _translated("removing a draft's content"):
            async with self._transaction() as db:
                await lock_drafts(db, [draft_id])
                for statement in _PURGE:
                    await db.execute(statement, draft_id)

    async def contributors(self, draft_id: str) -> list[str]:
        with _translated("reading contributors"):
            rows = await self._fetch_all(_CONTRIBUTORS, draft_id)
        return [str(row[0]) for row in rows]

    async def save_meta(self, draft_id: str, meta: SavedMeta) -> None:
        """Keep what the content said at `meta.version` (an older version never overwrites)."""
        with _translated("saving draft metadata"):
            async with self._transaction() as db:
                await db.execute(
                    _SAVE_META,
                    draft_id,
                    meta.version,
                    meta.fields_key,
                    meta.word_count,
                    meta.filled_fields,
                    meta.open_conflicts,
                )


class _NoOwnerLeft(Exception):
    """Rolls back an access change that would leave a draft with no owner (never escapes)."""
