r"""The durable store: drafts, access, the append-only update log and snapshots, in SQLite.

One aiosqlite connection (one worker thread) does all reads and writes, in WAL mode with
`synchronous=NORMAL`: a committed transaction survives a crash of the process (`kill -9`);
`--fsync` (synchronous=FULL) also survives power loss at ~5x the commit cost.

Tables (SQL below, migrated by `_MIGRATIONS` and the `schema_version` table):

    drafts     one row a draft: id, owner, created_at
    access     draft_id, user, role   (the owner has the role "owner")
    updates    draft_id, version, data, user, session, client_id, created_at
               version counts a draft's stored updates: 1, 2, 3, ... (0 = the empty draft)
    snapshots  draft_id, version, data: the merged state right after `version`
    events     the journal: id (the paging cursor), draft_id, version, type, who, at, data JSON
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
from server.errors import DiskFull, StoreError
from server.store import sqlite_webhooks
from server.store.log_writer import LogWriter, Statements
from server.store.outbox import (
    DRAFT_CREATED,
    DRAFT_DELETED,
    OutboxEvent,
    journal_outbox,
    outbox_rows,
)
from server.store.records import (
    DraftRecord,
    DraftState,
    DraftSummary,
    LoggedUpdate,
    SavedMeta,
    StoredEvent,
    UpdateRecord,
)
from server.store.reserve import DiskReserve
from server.store.sqlite_webhooks import SqliteWebhooks

__all__ = ["SqliteStore"]

_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE drafts (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE access (
        draft_id TEXT NOT NULL REFERENCES drafts(id),
        user TEXT NOT NULL,
        role TEXT NOT NULL,
        PRIMARY KEY (draft_id, user)
    ) WITHOUT ROWID;
    CREATE TABLE updates (
        draft_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        data BLOB NOT NULL,
        user TEXT NOT NULL,
        session TEXT NOT NULL,
        client_id INTEGER,
        created_at REAL NOT NULL,
        PRIMARY KEY (draft_id, version)
    ) WITHOUT ROWID;
    CREATE TABLE snapshots (
        draft_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        data BLOB NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (draft_id, version)
    ) WITHOUT ROWID;
    """,
    # 2: tombstones, listing by user, and draft metadata (activity kept by a trigger)
    """
    ALTER TABLE drafts ADD COLUMN deleted_at REAL;
    CREATE INDEX access_by_user ON access (user, draft_id);
    CREATE TABLE draft_activity (
        draft_id TEXT PRIMARY KEY,
        version INTEGER NOT NULL,
        last_modified REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE draft_contributors (
        draft_id TEXT NOT NULL,
        user TEXT NOT NULL,
        PRIMARY KEY (draft_id, user)
    ) WITHOUT ROWID;
    CREATE TABLE draft_meta (
        draft_id TEXT PRIMARY KEY,
        version INTEGER NOT NULL,
        fields_key TEXT NOT NULL,
        word_count INTEGER NOT NULL,
        filled_fields INTEGER NOT NULL,
        open_conflicts INTEGER NOT NULL
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
    """,
    # 3: the journal (events derived from updates) and how far text bursts are journaled
    """
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        draft_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        type TEXT NOT NULL,
        user TEXT,
        session TEXT,
        client_id INTEGER,
        at REAL NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX events_by_draft ON events (draft_id, id);
    CREATE TABLE journal_state (
        draft_id TEXT PRIMARY KEY,
        text_watermark INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
    # 4: a draft's last version and its time are read from its log (the newest row under the
    # updates' primary key) instead of kept by a trigger: the trigger's upsert wrote one more
    # page into every commit, which made a lone keystroke's commit ~30 % dearer.
    """
    DROP TRIGGER updates_activity;
    DROP TABLE draft_activity;
    """,
    # 5: the webhook outbox
    sqlite_webhooks.MIGRATION,
    # 6: events of one type (named versions, sessions, conflicts) read without a journal scan
    """
    CREATE INDEX events_by_type ON events (draft_id, type, id);
    """,
)

_INSERT_EVENT = (
    "INSERT INTO events (draft_id, version, type, user, session, client_id, at, data)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_SET_WATERMARK = (
    "INSERT INTO journal_state (draft_id, text_watermark) VALUES (?, ?)"
    " ON CONFLICT (draft_id) DO UPDATE SET text_watermark = excluded.text_watermark"
)
_EVENTS_PAGE = (
    "SELECT id, version, type, user, session, client_id, at, data FROM events"
    " WHERE draft_id = ? AND id > ? ORDER BY id LIMIT ?"
)
_TEXT_EVENTS_SINCE = (
    "SELECT user, data FROM events WHERE draft_id = ? AND type = 'FIELD_UPDATED'"
    " AND version >= ? AND json_extract(data, '$.kind') = 'text'"
)
_EVENTS_OF_TYPE = (
    "SELECT id, version, type, user, session, client_id, at, data FROM events"
    " WHERE draft_id = ? AND type = ? ORDER BY id DESC LIMIT ?"
)
_EVENT_COUNTS = "SELECT type, COUNT(*) FROM events WHERE draft_id = ? GROUP BY type"
_CONFLICT_FIELDS = (
    "SELECT json_extract(data, '$.field'), COUNT(*) FROM events"
    " WHERE draft_id = ? AND type = 'CONFLICT_OPENED' GROUP BY 1"
)
_UPDATES_WITH_ORIGIN = (
    "SELECT version, data, user, session, client_id, created_at FROM updates"
    " WHERE draft_id = ? AND version > ? AND version <= ? ORDER BY version"
)

_INSERT_UPDATE = (
    "INSERT INTO updates (draft_id, version, data, user, session, client_id, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_ADD_CONTRIBUTOR = (
    "INSERT INTO draft_contributors (draft_id, user) VALUES (?, ?) ON CONFLICT DO NOTHING"
)
_INSERT_SNAPSHOT = (
    "INSERT OR REPLACE INTO snapshots (draft_id, version, data, created_at) VALUES (?, ?, ?, ?)"
)
_DELETE_SNAPSHOT = "DELETE FROM snapshots WHERE draft_id = ? AND version = ?"
_UPDATES_BETWEEN = (
    "SELECT data FROM updates WHERE draft_id = ? AND version > ? AND version <= ? ORDER BY version"
)
# A draft's latest snapshot (at or before ?2) and the log after it, in one trip to aiosqlite's
# thread (a cold load waits for every trip): the snapshot row (kind 0), then the tail (kind 1),
# by version: the tail starts after the snapshot, so the snapshot comes first.
_LOAD = """
    WITH snap AS (
        SELECT version, data FROM snapshots WHERE draft_id = ?1 AND version <= ?2
        ORDER BY version DESC LIMIT 1
    )
    SELECT 0, version, data FROM snap
    UNION ALL
    SELECT 1, version, data FROM updates
    WHERE draft_id = ?1 AND version > COALESCE((SELECT version FROM snap), 0) AND version <= ?2
    ORDER BY 2
"""
_LAST_VERSION = "SELECT COALESCE(MAX(version), 0) FROM updates WHERE draft_id = ?"
_NO_LIMIT = 2**62
_INLINE_SNAPSHOT_BYTES = 1 << 20
_LAST_UPDATE = "FROM updates u WHERE u.draft_id = d.id ORDER BY u.version DESC LIMIT 1"
_DRAFT_RECORD = f"""
    SELECT d.id, d.owner, d.created_at, d.deleted_at, (SELECT u.created_at {_LAST_UPDATE})
    FROM drafts d WHERE d.id = ?
"""
_REACHABLE_DRAFTS = f"""
    SELECT d.id, a.role, d.owner, d.created_at,
           COALESCE((SELECT u.version {_LAST_UPDATE}), 0),
           COALESCE((SELECT u.created_at {_LAST_UPDATE}), d.created_at),
           m.version, m.fields_key, m.word_count, m.filled_fields, m.open_conflicts
    FROM access a
    JOIN drafts d ON d.id = a.draft_id
    LEFT JOIN draft_meta m ON m.draft_id = a.draft_id
    WHERE a.user = ? AND a.draft_id > ? AND d.deleted_at IS NULL
    ORDER BY a.draft_id LIMIT ?
"""
_SET_ROLE = """
    INSERT INTO access (draft_id, user, role)
    SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM drafts WHERE id = ? AND deleted_at IS NULL)
    ON CONFLICT (draft_id, user) DO UPDATE SET role = excluded.role
"""
_SAVE_META = """
    INSERT INTO draft_meta
        (draft_id, version, fields_key, word_count, filled_fields, open_conflicts)
    SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM drafts WHERE id = ? AND deleted_at IS NULL)
    ON CONFLICT (draft_id) DO UPDATE SET
        version = excluded.version, fields_key = excluded.fields_key,
        word_count = excluded.word_count, filled_fields = excluded.filled_fields,
        open_conflicts = excluded.open_conflicts
    WHERE excluded.version >= draft_meta.version
"""
_CONTENT_TABLES = ("updates", "snapshots", "draft_meta", "draft_contributors", "webhook_cursors")


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
    """The group commit's transaction; with webhook URLs, the outbox rows of its events."""
    return [
        (_INSERT_UPDATE, [r.as_row() for r in records]),
        (_ADD_CONTRIBUTOR, list(dict.fromkeys((r.draft_id, r.user) for r in records))),
        (_INSERT_EVENT, [e.as_row() for e in events]),
        (sqlite_webhooks.INSERT_OUTBOX, outbox_rows(journal_outbox(events), urls) if urls else []),
    ]


@contextlib.contextmanager
def _translated(action: str) -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"{action} failed: {exc}") from exc


def _is_disk_full(error: sqlite3.Error) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == sqlite3.SQLITE_FULL


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
        await self._db.close()

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
            if _is_disk_full(exc):
                self._reserve.disk_full()
                raise DiskFull(f"{action} failed: the disk is full") from exc
            raise StoreError(f"{action} failed: {exc}") from exc

    def _reclaim(self) -> None:
        """The reserve was freed: fold the WAL into the database and truncate it, in its room."""
        if self._reclaiming is None or self._reclaiming.done():
            self._reclaiming = asyncio.get_running_loop().create_task(self._log.reclaim())

    async def _migrate(self) -> None:
        with _translated("migrating the schema"):
            await self._db.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
            )
            async with self._db.execute("SELECT MAX(version) FROM schema_version") as cursor:
                row = await cursor.fetchone()
            current = row[0] if row and row[0] is not None else 0
            for version, script in enumerate(_MIGRATIONS[current:], start=current + 1):
                statements = _statements(script)
                async with self._transaction():
                    for statement in statements:
                        await self._db.execute(statement)
                    await self._db.execute(
                        "INSERT INTO schema_version (version) VALUES (?)", (version,)
                    )

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
        with _translated("reading access"):
            row = await self._fetch_one(
                "SELECT role FROM access WHERE draft_id = ? AND user = ?", (draft_id, user)
            )
        return str(row[0]) if row else None

    async def draft_exists(self, draft_id: str) -> bool:
        with _translated("reading drafts"):
            return (
                await self._fetch_one("SELECT 1 FROM drafts WHERE id = ?", (draft_id,)) is not None
            )

    async def drafts_owned(self, user: str) -> int:
        """Live drafts `user` is an owner of (a deleted draft has no access rows left)."""
        with _translated("reading access"):
            row = await self._fetch_one(
                "SELECT COUNT(*) FROM access WHERE user = ? AND role = 'owner'", (user,)
            )
        return int(row[0]) if row else 0

    async def create_draft(self, draft_id: str, owner: str, *, now: float) -> bool:
        """Create the draft owned by `owner`; False if it already existed (first writer wins)."""
        with self._writing("creating a draft"):
            async with self._transaction():
                cursor = await self._db.execute(
                    "INSERT OR IGNORE INTO drafts (id, owner, created_at) VALUES (?, ?, ?)",
                    (draft_id, owner, now),
                )
                created = cursor.rowcount == 1
                if created:
                    await self._db.execute(
                        "INSERT INTO access (draft_id, user, role) VALUES (?, ?, 'owner')",
                        (draft_id, owner),
                    )
                    await self._draft_created(draft_id, owner, now=now, version=0)
        return created

    async def _draft_created(self, draft_id: str, owner: str, *, now: float, version: int) -> None:
        """Inside the creating transaction: `draft.created`, and the cursor that later
        `draft.changed` events start from (only while webhooks are configured)."""
        if self.webhook_urls:
            data = {"draftId": draft_id, "owner": owner, "version": version}
            await self._write_outbox([OutboxEvent(DRAFT_CREATED, draft_id, now, data)])
            await self._db.execute(sqlite_webhooks.INSERT_CURSOR, (draft_id, version))

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
        with self._writing("committing updates"):
            return self._log.write_now(_update_statements(records, events, self.webhook_urls))

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
        """The nearest snapshot at or before `at_version` (default: latest) and the log after it."""
        upto = _NO_LIMIT if at_version is None else at_version
        with _translated("loading a draft"):
            rows = await self._fetch_all(_LOAD, (draft_id, upto))
        snapshot_version, snapshot = 0, None
        if rows and rows[0][0] == 0:
            snapshot_version, snapshot = int(rows[0][1]), bytes(rows[0][2])  # type: ignore[call-overload, arg-type]
            rows = rows[1:]
        tail = [row[2] for row in rows]
        return DraftState(snapshot=snapshot, snapshot_version=snapshot_version, tail=tail)  # type: ignore[arg-type]

    async def snapshot_versions(self, draft_id: str) -> list[int]:
        with _translated("reading snapshots"):
            rows = await self._fetch_all(
                "SELECT version FROM snapshots WHERE draft_id = ? ORDER BY version", (draft_id,)
            )
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
                    (
                        sqlite_webhooks.INSERT_OUTBOX,
                        outbox_rows(journal_outbox(events), self.webhook_urls),
                    ),
                ]
            )

    async def journal_watermark(self, draft_id: str) -> int:
        """Every text change below this version is journaled (1 when nothing is recorded)."""
        with _translated("reading the journal"):
            row = await self._fetch_one(
                "SELECT text_watermark FROM journal_state WHERE draft_id = ?", (draft_id,)
            )
        return int(row[0]) if row else 1  # type: ignore[call-overload]

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

    async def conflict_fields(self, draft_id: str) -> dict[str, int]:
        with _translated("reading the journal"):
            rows = await self._fetch_all(_CONFLICT_FIELDS, (draft_id,))
        return {str(row[0]): int(row[1]) for row in rows if row[0] is not None}  # type: ignore[call-overload]

    async def updates_with_origin(self, draft_id: str, after: int, upto: int) -> list[LoggedUpdate]:
        with _translated("reading the update log"):
            rows = await self._fetch_all(_UPDATES_WITH_ORIGIN, (draft_id, after, upto))
        return [LoggedUpdate(*row) for row in rows]  # type: ignore[arg-type]

    # -- drafts as the REST API sees them: records, listing, sharing, tombstones, metadata --

    async def draft_record(self, draft_id: str) -> DraftRecord | None:
        with _translated("reading drafts"):
            row = await self._fetch_one(_DRAFT_RECORD, (draft_id,))
        return DraftRecord(*row) if row else None  # type: ignore[arg-type]

    async def create_draft_with(
        self, draft_id: str, owner: str, *, now: float, first: UpdateRecord | None
    ) -> bool:
        """Create the draft and store its first update (version 1) in one transaction, so no
        room can load it in between; False if the id is taken (also by a tombstone)."""
        with self._writing("creating a draft"):
            async with self._transaction():
                cursor = await self._db.execute(
                    "INSERT OR IGNORE INTO drafts (id, owner, created_at) VALUES (?, ?, ?)",
                    (draft_id, owner, now),
                )
                if cursor.rowcount != 1:
                    return False
                await self._db.execute(
                    "INSERT INTO access (draft_id, user, role) VALUES (?, ?, 'owner')",
                    (draft_id, owner),
                )
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

    async def access_list(self, draft_id: str) -> dict[str, str]:
        with _translated("reading access"):
            rows = await self._fetch_all(
                "SELECT user, role FROM access WHERE draft_id = ? ORDER BY user", (draft_id,)
            )
        return {str(user): str(role) for user, role in rows}

    async def set_role(self, draft_id: str, user: str, role: str | None) -> bool:
        """Give `user` the role (None: remove it); False, changing nothing, if that would leave
        the draft without an owner. A tombstoned draft gets no new access."""
        with self._writing("changing access"):
            try:
                async with self._transaction():
                    if role is None:
                        await self._db.execute(
                            "DELETE FROM access WHERE draft_id = ? AND user = ?", (draft_id, user)
                        )
                    else:
                        await self._db.execute(_SET_ROLE, (draft_id, user, role, draft_id))
                    await self._write_outbox(
                        [OutboxEvent.access_changed(draft_id, user, role, time.time())]
                    )
                    async with self._db.execute(
                        "SELECT count(*) FROM access WHERE draft_id = ? AND role = 'owner'",
                        (draft_id,),
                    ) as cursor:
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
                cursor = await self._db.execute(
                    "UPDATE drafts SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL",
                    (now, draft_id),
                )
                if cursor.rowcount != 1:
                    return False
                await self._db.execute("DELETE FROM access WHERE draft_id = ?", (draft_id,))
                data = {"draftId": draft_id}
                await self._write_outbox([OutboxEvent(DRAFT_DELETED, draft_id, now, data)])
        return True

    async def purge_content(self, draft_id: str) -> None:
        """Remove a tombstoned draft's updates, snapshots and metadata (the id stays taken)."""
        with self._writing("removing a draft's content"):
            async with self._transaction():
                for table in _CONTENT_TABLES:
                    await self._db.execute(f"DELETE FROM {table} WHERE draft_id = ?", (draft_id,))

    async def contributors(self, draft_id: str) -> list[str]:
        with _translated("reading contributors"):
            rows = await self._fetch_all(
                "SELECT user FROM draft_contributors WHERE draft_id = ? ORDER BY user", (draft_id,)
            )
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
            draft_id,
        )
        with self._writing("saving draft metadata"):
            await self._log.write([(_SAVE_META, [row])])


class _NoOwnerLeft(Exception):
    """Rolls back an access change that would leave a draft with no owner (never escapes)."""
