r"""The durable store: drafts, access, the append-only update log and snapshots, in SQLite.

One aiosqlite connection (one worker thread) does all reads and writes, in WAL mode with
`synchronous=NORMAL`: a committed transaction survives a crash of the process (`kill -9`);
`--fsync` (synchronous=FULL) also survives power loss at ~5x the commit cost.

Tables (their SQL, and every statement run on them, is written once for both backends in
server/store/statements.py; migrated by `_MIGRATIONS` and the `schema_version` table):

    drafts     one row a draft: id, owner, created_at
    access     draft_id, user, role   (the owner has the role "owner")
    updates    draft_id, version, data, user, session, client_id, created_at
               version counts a draft's stored updates: 1, 2, 3, ... (0 = the empty draft)
    snapshots  draft_id, version, data: the merged state right after `version`
    events     the journal: id (the paging cursor; no AUTOINCREMENT since schema 7), draft_id,
               version, type, who, at, data JSON
    journal_state  draft_id, text_watermark: text changes below it are all journaled
    draft_contributors  draft_id, user: added in the commit's transaction
    draft_meta  draft_id, version, fields_key, word_count, filled_fields, open_conflicts:
                what the content said at `version` (computed on read or unload, not per update)
    webhook_outbox, webhook_attempts, webhook_cursors: the webhook outbox
                (server/store/sqlite_webhooks.py), written in the transaction of what each
                event describes when webhooks are configured

A deleted draft keeps its `drafts` row with `deleted_at` set (a tombstone: the id is never
reused, so a client still holding the doc cannot re-create it by reconnecting); its access rows
go at once and its content with `purge_content`.

Every sqlite3 error leaves this module as `StoreError` (`_translated`); a write that meets a
full disk as `DiskFull`, which frees the disk reserve and refuses writes until space is back
(server/store/reserve.py), while reads go on (`_writing`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from crdt.journal import JournalEvent
from server.errors import DiskFull, QuotaExceeded, StoreError
from server.store import statements as sql
from server.store.dialect import SQLITE
from server.store.log_writer import LogWriter, Statements
from server.store.outbox import (
    DRAFT_CREATED,
    DRAFT_DELETED,
    OutboxEvent,
    journal_outbox,
    outbox_rows,
)
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
from server.store.reserve import DiskReserve
from server.store.role_memo import RoleMemo
from server.store.sqlite_webhooks import SqliteWebhooks

__all__ = ["SqliteStore"]

# -- SQLite's own: the schema's history ---------------------------------------------------
# Schemas 2-3 kept a draft's activity and contributors by a trigger; schema 4 dropped it: the
# trigger's upsert wrote one more page into every commit, which made a lone keystroke's commit
# ~30 % dearer. Activity is read from the log since, and the commit adds contributors.
_ACTIVITY_TRIGGER = """
    CREATE TABLE draft_activity (
        draft_id TEXT PRIMARY KEY,
        version INTEGER NOT NULL,
        last_modified REAL NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO draft_activity (draft_id, version, last_modified)
        SELECT draft_id, MAX(version), MAX(created_at) FROM updates GROUP BY draft_id;
    INSERT INTO draft_contributors (draft_id, user) SELECT DISTINCT draft_id, user FROM updates;
    CREATE TRIGGER updates_activity AFTER INSERT ON updates BEGIN
        INSERT INTO draft_activity (draft_id, version, last_modified)
            VALUES (NEW.draft_id, NEW.version, NEW.created_at)
            ON CONFLICT (draft_id) DO UPDATE SET
                version = MAX(version, excluded.version),
                last_modified = MAX(last_modified, excluded.last_modified);
        INSERT INTO draft_contributors (draft_id, user) VALUES (NEW.draft_id, NEW.user)
            ON CONFLICT DO NOTHING;
    END;
"""
_DROP_ACTIVITY_TRIGGER = """
    DROP TRIGGER updates_activity;
    DROP TABLE draft_activity;
"""

# Schema 7: the journal without AUTOINCREMENT. With it, every event row also rewrote the
# table's `sqlite_sequence` row: one more B-tree page in the WAL for each commit that journals,
# ~7 us of a row's ~30 (docs/performance-notes.md, "The journal row of a `fields` write").
# Without it an id is one past the largest in the table, which is what AUTOINCREMENT gives too
# as long as no row is ever deleted: the journal is the audit trail, kept after a draft is
# deleted, and no statement deletes from it (tests/server/test_journal_ids.py fails if one
# does). So ids still only grow, in commit order, and none is handed out twice. An `events`
# table cannot drop AUTOINCREMENT in place: it is copied with its ids into a new one.
# PostgreSQL's identity never had a sequence row per insert; its schema stays.
_EVENTS_WITHOUT_AUTOINCREMENT = """
    CREATE TABLE events_v7 (
        id INTEGER PRIMARY KEY,
        draft_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        type TEXT NOT NULL,
        "user" TEXT,
        session TEXT,
        client_id INTEGER,
        at REAL NOT NULL,
        data TEXT NOT NULL
    );
    INSERT INTO events_v7 (id, draft_id, version, type, "user", session, client_id, at, data)
        SELECT id, draft_id, version, type, "user", session, client_id, at, data FROM events
        ORDER BY id;
    DROP TABLE events;
    ALTER TABLE events_v7 RENAME TO events;
    CREATE INDEX events_by_draft ON events (draft_id, id);
"""

# The tables (server/store/statements.py) as each schema version added them.
_MIGRATIONS: tuple[str, ...] = (
    SQLITE.script(sql.DRAFTS_TABLE, sql.ACCESS_TABLE, sql.UPDATES_TABLE, sql.SNAPSHOTS_TABLE),
    # 2: tombstones, listing by user, and draft metadata (activity kept by a trigger)
    SQLITE.script(sql.DRAFTS_TOMBSTONES, sql.ACCESS_BY_USER, sql.CONTRIBUTORS_TABLE, sql.META_TABLE)
    + _ACTIVITY_TRIGGER,
    # 3: the journal (events derived from updates) and how far text bursts are journaled
    SQLITE.script(sql.EVENTS_TABLES),
    # 4: a draft's last version and its time are read from its log
    _DROP_ACTIVITY_TRIGGER,
    # 5: the webhook outbox (server/store/sqlite_webhooks.py)
    SQLITE.script(sql.WEBHOOK_TABLES),
    # 6: events of one type (named versions, sessions, conflicts) read without a journal scan
    SQLITE.script(sql.EVENTS_BY_TYPE),
    # 7: the journal's ids without AUTOINCREMENT (one page less per journaling commit)
    _EVENTS_WITHOUT_AUTOINCREMENT + SQLITE.script(sql.EVENTS_BY_TYPE),
)

# -- the shared statements, rendered for SQLite -------------------------------------------
_SCHEMA_VERSION_TABLE = SQLITE.render(sql.SCHEMA_VERSION_TABLE)
_SCHEMA_VERSION = SQLITE.render(sql.SCHEMA_VERSION)
_RECORD_SCHEMA_VERSION = SQLITE.render(sql.RECORD_SCHEMA_VERSION)
_INSERT_DRAFT = SQLITE.render(sql.INSERT_DRAFT)
_INSERT_OWNER = SQLITE.render(sql.INSERT_OWNER)
_DRAFT_EXISTS = SQLITE.render(sql.DRAFT_EXISTS)
_DRAFT_RECORD = SQLITE.render(sql.DRAFT_RECORD)
_REACHABLE_DRAFTS = SQLITE.render(sql.REACHABLE_DRAFTS)
_ROLE_OF = SQLITE.render(sql.ROLE_OF)
_DRAFTS_OWNED = SQLITE.render(sql.DRAFTS_OWNED)
_ACCESS_LIST = SQLITE.render(sql.ACCESS_LIST)
_SET_ROLE = SQLITE.render(sql.SET_ROLE)
_REMOVE_ROLE = SQLITE.render(sql.REMOVE_ROLE)
_OWNER_COUNT = SQLITE.render(sql.OWNER_COUNT)
_TOMBSTONE = SQLITE.render(sql.TOMBSTONE)
_DROP_ACCESS = SQLITE.render(sql.DROP_ACCESS)
_PURGE = tuple(SQLITE.render(statement) for statement in sql.PURGE)
_CONTRIBUTORS = SQLITE.render(sql.CONTRIBUTORS)
_ADD_CONTRIBUTOR = SQLITE.render(sql.ADD_CONTRIBUTOR)
_SAVE_META = SQLITE.render(sql.SAVE_META)
_INSERT_UPDATE = SQLITE.render(sql.INSERT_UPDATE)
_LAST_VERSION = SQLITE.render(sql.LAST_VERSION)
_UPDATES_BETWEEN = SQLITE.render(sql.UPDATES_BETWEEN)
_UPDATES_WITH_ORIGIN = SQLITE.render(sql.UPDATES_WITH_ORIGIN)
_USERS_BETWEEN = SQLITE.render(sql.USERS_BETWEEN)
_LOAD = SQLITE.render(sql.LOAD)
_LOAD_OPENING = SQLITE.render(sql.LOAD_OPENING)
_OPENING = SQLITE.render(sql.OPENING)
_SNAPSHOT_VERSIONS = SQLITE.render(sql.SNAPSHOT_VERSIONS)
_INSERT_SNAPSHOT = SQLITE.render(sql.INSERT_SNAPSHOT)
_DELETE_SNAPSHOT = SQLITE.render(sql.DELETE_SNAPSHOT)
_INSERT_EVENT = SQLITE.render(sql.INSERT_EVENT)
_SET_WATERMARK = SQLITE.render(sql.SET_WATERMARK)
_JOURNAL_WATERMARK = SQLITE.render(sql.JOURNAL_WATERMARK)
_EVENTS_PAGE = SQLITE.render(sql.EVENTS_PAGE)
_TEXT_EVENTS_SINCE = SQLITE.render(sql.TEXT_EVENTS_SINCE)
_EVENTS_OF_TYPE = SQLITE.render(sql.EVENTS_OF_TYPE)
_EVENT_COUNTS = SQLITE.render(sql.EVENT_COUNTS)
_REACHABLE_CONFLICT_FIELDS = SQLITE.render(sql.REACHABLE_CONFLICT_FIELDS)
_INSERT_OUTBOX = SQLITE.render(sql.INSERT_OUTBOX)
_INSERT_CURSOR = SQLITE.render(sql.INSERT_CURSOR)

_NO_LIMIT = 2**62
_INLINE_SNAPSHOT_BYTES = 1 << 20


def _statements(script: str) -> list[str]:
    """Split a migration into statements; a trigger body's `;` does not end its statement."""
    statements: list[str] = []
    pending = ""
    for part in script.split(";"):
        pending += part + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                statements.append(pending)
            pending = ""
    if pending.strip(" \n;"):
        raise RuntimeError(f"incomplete SQL statement in a migration: {pending!r}")
    return statements


def _update_statements(
    records: Sequence[UpdateRecord], events: Sequence[JournalEvent], urls: Sequence[str] = ()
) -> Statements:
    """The group commit's transaction; with webhook URLs, the outbox rows of its events.
    A statement without rows is left out (most commits at a steady trickle are one keystroke
    with no events: two statements, not four)."""
    contributors = ((r.draft_id, r.user) for r in records)
    statements: list[tuple[str, Sequence[tuple[object, ...]]]] = [
        (_INSERT_UPDATE, [r.as_row() for r in records]),
        (_ADD_CONTRIBUTOR, list(dict.fromkeys(contributors))),
    ]
    if events:
        statements.append((_INSERT_EVENT, [e.as_row() for e in events]))
        if urls:
            statements.append((_INSERT_OUTBOX, outbox_rows(journal_outbox(events), urls)))
    return statements


@contextlib.contextmanager
def _translated(action: str) -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"{action} failed: {exc}") from exc


def _is_disk_full(error: sqlite3.Error) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == sqlite3.SQLITE_FULL


def _is_busy(error: sqlite3.Error) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == sqlite3.SQLITE_BUSY


def _open_reader(path: Path) -> sqlite3.Connection:
    """The connection `read_opening` reads through on the event loop: read-only, and never
    waiting for a lock (timeout 0: SQLite's busy handler would sleep on the loop)."""
    reader = sqlite3.connect(path, timeout=0, isolation_level=None)
    reader.execute("PRAGMA query_only=ON")
    return reader


class SqliteStore(SqliteWebhooks):
    def __init__(
        self,
        connection: aiosqlite.Connection,
        log: LogWriter,
        *,
        path: Path,
        reserve_bytes: int = 0,
    ) -> None:
        self._db = connection
        self._log = log  # commits, snapshots, journal, metadata (server/store/log_writer.py)
        self.path = path
        # One lock around every statement group: a read never sees a transaction half-way.
        self._lock = asyncio.Lock()
        self._reserve = DiskReserve(path.parent, reserve_bytes, on_release=self._reclaim)
        self._reclaiming: asyncio.Task[None] | None = None
        # Roles read lately, exact: each `access` change forgets first (server/store/role_memo.py).
        self._roles = RoleMemo()
        # A cold room's opening is read through this one on the event loop (`read_opening`).
        self._reader = _open_reader(path)
        self._reading = self._reader.cursor()

    @classmethod
    async def open(cls, path: Path, *, fsync: bool = False, reserve_bytes: int = 0) -> SqliteStore:
        """`reserve_bytes`: the disk reserve kept next to the database (0: none)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        DiskReserve(path.parent, reserve_bytes).make_room()
        with _translated("opening the database"):
            connection = await aiosqlite.connect(path, isolation_level=None)
            await connection.execute("PRAGMA journal_mode=WAL")
            await connection.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
            await connection.execute("PRAGMA busy_timeout=5000")
            await connection.execute("PRAGMA foreign_keys=ON")
            log = LogWriter(path, fsync=fsync)
        store = cls(connection, log, path=path, reserve_bytes=reserve_bytes)
        await store._migrate()
        store._reserve.start()
        return store

    async def close(self) -> None:
        if self._reclaiming is not None:
            await self._reclaiming
        await self._log.close()
        self._reader.close()
        await self._db.close()

    def sqlite_connections(self) -> list[sqlite3.Connection]:
        """The connections whose dead cursor references and cached statements a memory
        release drops (server/sync/memory.py): the reader's, the writer's two and aiosqlite's
        (which makes a cursor per read)."""
        connection = getattr(self._db, "_connection", None)  # aiosqlite's own sqlite3 one
        more = [connection] if isinstance(connection, sqlite3.Connection) else []
        return [self._reader, *self._log.connections(), *more]

    def writes_refused(self) -> DiskFull | None:
        """Why no write may start now (the disk filled), None when writes go ahead: a room
        asks before it applies an update, so that a refused write disturbs no one else."""
        return self._reserve.refusal()

    @contextlib.contextmanager
    def _writing(self, action: str) -> Iterator[None]:
        """`_translated` for a write: refused at once while the disk is full, and one that
        meets a full disk frees the reserve and starts the refusing."""
        refusal = self._reserve.refusal()
        if refusal is not None:
            raise refusal
        try:
            yield
        except sqlite3.Error as exc:
            raise self._write_failed(action, exc) from exc

    def _write_failed(self, action: str, exc: sqlite3.Error) -> StoreError:
        """The error a failed write raises; one that met a full disk frees the reserve."""
        if _is_disk_full(exc):
            self._reserve.disk_full()
            return DiskFull(f"{action} failed: the disk is full")
        return StoreError(f"{action} failed: {exc}")

    def _reclaim(self) -> None:
        """The reserve was freed: fold the WAL into the database and truncate it, in its room."""
        if self._reclaiming is None or self._reclaiming.done():
            self._reclaiming = asyncio.get_running_loop().create_task(self._log.reclaim())

    async def _migrate(self) -> None:
        with _translated("migrating the schema"):
            await self._db.execute(_SCHEMA_VERSION_TABLE)
            async with self._db.execute(_SCHEMA_VERSION) as cursor:
                row = await cursor.fetchone()
            current = row[0] if row else 0
            for version, script in enumerate(_MIGRATIONS[current:], start=current + 1):
                statements = _statements(script)
                async with self._transaction():
                    for statement in statements:
                        await self._db.execute(statement)
                    await self._db.execute(_RECORD_SCHEMA_VERSION, (version,))

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        async with self._lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    await self._db.execute("ROLLBACK")
                raise
            await self._db.execute("COMMIT")

    async def _fetch_one(self, sql: str, params: tuple[object, ...]) -> tuple[object, ...] | None:
        """The first row of a query that has at most one (one trip to the thread)."""
        rows = await self._fetch_all(sql, params)
        return rows[0] if rows else None

    async def _fetch_all(self, sql: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
        async with self._lock:
            rows = await self._db.execute_fetchall(sql, params)
        return [tuple(row) for row in rows]

    # -- drafts and access ------------------------------------------------------------------

    async def role_of(self, draft_id: str, user: str) -> str | None:
        """From memory when read lately and unchanged since (no query, no thread hop)."""
        role = self._roles.get(draft_id, user)
        if role is not None:
            return role
        with _translated("reading access"):
            async with self._lock:
                rows = list(await self._db.execute_fetchall(_ROLE_OF, (draft_id, user)))
                if not rows:
                    return None
                role = str(rows[0][0])
                self._roles.remember(draft_id, user, role)  # under the lock: no change between
        return role

    async def draft_exists(self, draft_id: str) -> bool:
        with _translated("reading drafts"):
            return await self._fetch_one(_DRAFT_EXISTS, (draft_id,)) is not None

    async def drafts_owned(self, user: str) -> int:
        """Live drafts `user` is an owner of (a deleted draft has no access rows left)."""
        with _translated("reading access"):
            row = await self._fetch_one(_DRAFTS_OWNED, (user,))
        return int(row[0]) if row else 0

    async def create_draft(
        self, draft_id: str, owner: str, *, now: float, max_owned: int | None = None
    ) -> bool:
        """Create the draft owned by `owner`; False if it already existed (first writer wins)."""
        return await self.create_draft_with(
            draft_id, owner, now=now, first=None, max_owned=max_owned
        )

    async def _draft_created(self, draft_id: str, owner: str, *, now: float, version: int) -> None:
        """Inside the creating transaction: `draft.created`, and the cursor that later
        `draft.changed` events start from (only while webhooks are configured)."""
        if self.webhook_urls:
            data = {"draftId": draft_id, "owner": owner, "version": version}
            await self._write_outbox([OutboxEvent(DRAFT_CREATED, draft_id, now, data)])
            await self._db.execute(_INSERT_CURSOR, (draft_id, version))

    # -- the update log -----------------------------------------------------------------------

    async def append_updates(
        self, records: Sequence[UpdateRecord], events: Sequence[JournalEvent] = ()
    ) -> None:
        """Append many updates, of any drafts, in one transaction (the group commit), with
        the journal events derived from them: an update and its events land together."""
        with self._writing("committing updates"):
            await self._log.write(_update_statements(records, events, self.webhook_urls))

    def append_updates_now(
        self, records: Sequence[UpdateRecord], events: Sequence[JournalEvent] = ()
    ) -> bool:
        """`append_updates` at once, if that needs no waiting (`LogWriter.write_now`); False
        when it does, and nothing was written."""
        # `_writing`'s checks written out: this runs once per keystroke on an idle server.
        refusal = self._reserve.refusal()
        if refusal is not None:
            raise refusal
        try:
            return self._log.write_now(_update_statements(records, events, self.webhook_urls))
        except sqlite3.Error as exc:
            raise self._write_failed("committing updates", exc) from exc

    async def last_version(self, draft_id: str) -> int:
        with _translated("reading the update log"):
            row = await self._fetch_one(_LAST_VERSION, (draft_id,))
        return int(row[0]) if row else 0  # type: ignore[call-overload]

    async def updates_between(self, draft_id: str, after: int, upto: int) -> list[bytes]:
        """The updates with `after < version <= upto`, oldest first."""
        with _translated("reading the update log"):
            rows = await self._fetch_all(_UPDATES_BETWEEN, (draft_id, after, upto))
        return [row[0] for row in rows]  # type: ignore[misc]

    async def load(self, draft_id: str, *, at_version: int | None = None) -> DraftState:
        """The nearest snapshot at or before `at_version` (default: latest) and the log after it.
        At the latest version, the journal's watermark comes in the same statement (a room
        that opens needs both: one trip to aiosqlite's thread instead of two)."""
        with _translated("loading a draft"):
            if at_version is None:
                rows = await self._fetch_all(_LOAD_OPENING, (draft_id,))
            else:
                rows = await self._fetch_all(_LOAD, (draft_id, at_version))
        watermark = None
        if at_version is None:
            last = rows[-1] if rows else None
            recorded = last is not None and last[0] == 2
            watermark = int(last[1]) if recorded else FIRST_WATERMARK  # type: ignore[call-overload, index]
        snapshot_version, snapshot = 0, None
        if rows and rows[0][0] == 0:
            snapshot_version, snapshot = int(rows[0][1]), bytes(rows[0][2])  # type: ignore[call-overload, arg-type]
        tail = [row[2] for row in rows if row[0] == 1]
        return DraftState(
            snapshot=snapshot,
            snapshot_version=snapshot_version,
            tail=tail,  # type: ignore[arg-type]
            journal_watermark=watermark,
        )

    async def read_opening(self, draft_id: str, user: str) -> tuple[str | None, DraftState | None]:
        """The user's stored role and, when they have one, the latest draft with its journal
        watermark, in one statement (`statements.OPENING`): a cold room's opening.

        Read on the event loop, through a read-only connection of the store's own, not on
        aiosqlite's thread: a trip there waits for the thread to be scheduled and for the GIL
        to be handed over and back (server/store/log_writer.py), 0.3 to several ms each on a
        busy machine, most of a cold join's time. A WAL reader needs no lock, and this one never
        waits for one. Through the thread instead (one trip, as `role_of` reads) while the
        store's lock is held (an access change may be half-way through: it is read after it,
        and remembered only then) or if SQLite answers busy (another connection recovering
        the WAL). The role is remembered as `role_of` remembers it: no access change can be
        under way when the lock is free, since every one holds it from its first forget."""
        with _translated("loading a draft"):
            if not self._lock.locked():
                try:
                    rows = self._reading.execute(_OPENING, (draft_id, user)).fetchall()
                except sqlite3.OperationalError as error:
                    if not _is_busy(error):
                        raise
                else:
                    return self._opening(draft_id, user, rows)
            async with self._lock:
                rows = list(await self._db.execute_fetchall(_OPENING, (draft_id, user)))
                return self._opening(draft_id, user, rows)

    def _opening(
        self, draft_id: str, user: str, rows: list[Any]
    ) -> tuple[str | None, DraftState | None]:
        """Under the lock, or with it free and no await since (`read_opening`)."""
        role, state = opening_from_rows(rows)
        if role is not None:
            self._roles.remember(draft_id, user, role)
        return role, state

    async def snapshot_versions(self, draft_id: str) -> list[int]:
        with _translated("reading snapshots"):
            rows = await self._fetch_all(_SNAPSHOT_VERSIONS, (draft_id,))
        return [int(version) for (version,) in rows]  # type: ignore[call-overload]

    async def save_snapshot(
        self, draft_id: str, version: int, data: bytes, *, now: float, drop: Sequence[int] = ()
    ) -> None:
        """Store the draft's state at `version` and delete its snapshots at `drop`, at once."""
        with self._writing("saving a snapshot"):
            # Written on the event loop like a commit (~1 ms for 500 KB; a worker thread
            # would wait for the GIL, and commits for it), unless it is megabytes.
            await self._log.write(
                [
                    (_INSERT_SNAPSHOT, [(draft_id, version, data, now)]),
                    (_DELETE_SNAPSHOT, [(draft_id, dropped) for dropped in drop]),
                ],
                inline=len(data) <= _INLINE_SNAPSHOT_BYTES,
            )

    # -- the journal --------------------------------------------------------------------------

    async def append_events(
        self, events: Sequence[JournalEvent], *, watermark: tuple[str, int] | None = None
    ) -> None:
        """Store events that belong to no single update (closed text bursts, access changes)
        and, with `watermark`, how far the draft's text is journaled."""
        with self._writing("storing journal events"):
            await self._log.write(
                [
                    (_INSERT_EVENT, [e.as_row() for e in events]),
                    (_SET_WATERMARK, [watermark] if watermark is not None else []),
                    (_INSERT_OUTBOX, outbox_rows(journal_outbox(events), self.webhook_urls)),
                ]
            )

    async def journal_watermark(self, draft_id: str) -> int:
        """Every text change below this version is journaled (1 when nothing is recorded)."""
        with _translated("reading the journal"):
            row = await self._fetch_one(_JOURNAL_WATERMARK, (draft_id,))
        return int(row[0]) if row else FIRST_WATERMARK  # type: ignore[call-overload]

    async def events_page(self, draft_id: str, *, after: int, limit: int) -> list[StoredEvent]:
        with _translated("reading the journal"):
            rows = await self._fetch_all(_EVENTS_PAGE, (draft_id, after, limit))
        return [StoredEvent(*row[:7], data=json.loads(row[7])) for row in rows]  # type: ignore[arg-type]

    async def text_events_since(
        self, draft_id: str, version: int
    ) -> list[tuple[str, dict[str, Any]]]:
        with _translated("reading the journal"):
            rows = await self._fetch_all(_TEXT_EVENTS_SINCE, (draft_id, version))
        return [(str(row[0]), json.loads(row[1])) for row in rows]  # type: ignore[arg-type]

    async def events_of_type(self, draft_id: str, type: str, *, limit: int) -> list[StoredEvent]:
        with _translated("reading the journal"):
            rows = await self._fetch_all(_EVENTS_OF_TYPE, (draft_id, type, limit))
        return [StoredEvent(*row[:7], data=json.loads(row[7])) for row in rows]  # type: ignore[arg-type]

    async def event_counts(self, draft_id: str) -> dict[str, int]:
        with _translated("reading the journal"):
            rows = await self._fetch_all(_EVENT_COUNTS, (draft_id,))
        return {str(row[0]): int(row[1]) for row in rows}  # type: ignore[call-overload]

    async def updates_with_origin(self, draft_id: str, after: int, upto: int) -> list[LoggedUpdate]:
        with _translated("reading the update log"):
            rows = await self._fetch_all(_UPDATES_WITH_ORIGIN, (draft_id, after, upto))
        return [LoggedUpdate(*row) for row in rows]  # type: ignore[arg-type]

    async def users_between(self, draft_id: str, after: int, upto: int) -> list[str]:
        """Who wrote the versions after `after` up to `upto`, sorted; no update is read."""
        with _translated("reading the update log"):
            rows = await self._fetch_all(_USERS_BETWEEN, (draft_id, after, upto))
        return sorted(str(row[0]) for row in rows)  # by code point, whatever the collation

    # -- drafts as the REST API sees them: records, listing, sharing, tombstones, metadata --

    async def draft_record(self, draft_id: str) -> DraftRecord | None:
        with _translated("reading drafts"):
            row = await self._fetch_one(_DRAFT_RECORD, (draft_id,))
        return DraftRecord(*row) if row else None  # type: ignore[arg-type]

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
        same transaction: writers take turns (BEGIN IMMEDIATE), so creations racing in from
        several connections cannot pass the quota together."""
        with self._writing("creating a draft"):
            async with self._transaction():
                cursor = await self._db.execute(_INSERT_DRAFT, (draft_id, owner, now))
                if cursor.rowcount != 1:
                    return False
                if max_owned is not None:
                    rows = await self._db.execute_fetchall(_DRAFTS_OWNED, (owner,))
                    if int(next(iter(rows))[0]) >= max_owned:
                        raise QuotaExceeded.of_drafts(max_owned)  # rolls the insert back
                await self._db.execute(_INSERT_OWNER, (draft_id, owner))
                if first is not None:
                    for sql, rows in _update_statements([first], ()):
                        if rows:
                            await self._db.executemany(sql, rows)
                version = 0 if first is None else first.version
                await self._draft_created(draft_id, owner, now=now, version=version)
        return True

    async def reachable_drafts(
        self, user: str, *, after: str = "", limit: int = _NO_LIMIT
    ) -> list[DraftSummary]:
        """The live drafts `user` has a role on, by id, those after `after`."""
        with _translated("listing drafts"):
            rows = await self._fetch_all(_REACHABLE_DRAFTS, (user, after, limit))
        return [
            DraftSummary(
                *row[:6],  # type: ignore[arg-type]
                meta=SavedMeta(*row[6:]) if row[6] is not None else None,  # type: ignore[arg-type]
            )
            for row in rows
        ]

    async def reachable_conflict_fields(self, user: str) -> dict[str, int]:
        """Conflicts opened per field over the live drafts `user` has a role on."""
        with _translated("reading the journal"):
            rows = await self._fetch_all(_REACHABLE_CONFLICT_FIELDS, (user,))
        return {str(row[0]): int(row[1]) for row in rows if row[0] is not None}  # type: ignore[call-overload]

    async def access_list(self, draft_id: str) -> dict[str, str]:
        with _translated("reading access"):
            rows = await self._fetch_all(_ACCESS_LIST, (draft_id,))
        return {str(user): str(role) for user, role in rows}

    async def set_role(self, draft_id: str, user: str, role: str | None) -> bool:
        """Give `user` the role (None: remove it); False, changing nothing, if that would leave
        the draft without an owner. A tombstoned draft gets no new access."""
        with self._writing("changing access"):
            try:
                async with self._transaction():
                    self._roles.forget(draft_id, user)
                    if role is None:
                        await self._db.execute(_REMOVE_ROLE, (draft_id, user))
                    else:
                        await self._db.execute(_SET_ROLE, (draft_id, user, role))
                    await self._write_outbox(
                        [OutboxEvent.access_changed(draft_id, user, role, time.time())]
                    )
                    async with self._db.execute(_OWNER_COUNT, (draft_id,)) as cursor:
                        row = await cursor.fetchone()
                    if row is None or row[0] == 0:
                        raise _NoOwnerLeft
            except _NoOwnerLeft:
                return False
        return True

    async def tombstone(self, draft_id: str, *, now: float) -> bool:
        """Mark the draft deleted and drop its access; False if it already was."""
        with self._writing("deleting a draft"):
            async with self._transaction():
                self._roles.forget_draft(draft_id)
                cursor = await self._db.execute(_TOMBSTONE, (now, draft_id))
                if cursor.rowcount != 1:
                    return False
                await self._db.execute(_DROP_ACCESS, (draft_id,))
                data = {"draftId": draft_id}
                await self._write_outbox([OutboxEvent(DRAFT_DELETED, draft_id, now, data)])
        return True

    async def purge_content(self, draft_id: str) -> None:
        """Remove a tombstoned draft's updates, snapshots and metadata (the id stays taken)."""
        with self._writing("removing a draft's content"):
            async with self._transaction():
                for statement in _PURGE:
                    await self._db.execute(statement, (draft_id,))

    async def contributors(self, draft_id: str) -> list[str]:
        with _translated("reading contributors"):
            rows = await self._fetch_all(_CONTRIBUTORS, (draft_id,))
        return [str(row[0]) for row in rows]

    async def save_meta(self, draft_id: str, meta: SavedMeta) -> None:
        """Keep what the content said at `meta.version` (an older version never overwrites)."""
        row = (
            draft_id,
            meta.version,
            meta.fields_key,
            meta.word_count,
            meta.filled_fields,
            meta.open_conflicts,
        )
        with self._writing("saving draft metadata"):
            await self._log.write([(_SAVE_META, [row])])


class _NoOwnerLeft(Exception):
    """Rolls back an access change that would leave a draft with no owner (never escapes)."""
