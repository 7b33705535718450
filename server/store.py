"""The durable store: drafts, access, the append-only update log and snapshots, in SQLite.

One aiosqlite connection (one worker thread) does all reads and writes, in WAL mode with
`synchronous=NORMAL`: a committed transaction survives a crash of the process (`kill -9`);
`--fsync` (synchronous=FULL) also survives power loss at ~5x the commit cost.

Tables (SQL below, migrated by `_MIGRATIONS` and the `schema_version` table):

    drafts     one row a draft: id, owner, created_at
    access     draft_id, user, role   (the owner has the role "owner")
    updates    draft_id, version, data, user, session, client_id, created_at
               version counts a draft's stored updates: 1, 2, 3, ... (0 = the empty draft)
    snapshots  draft_id, version, data: the merged state right after `version`

Every sqlite3 error leaves this module as `StoreError` (`_translated`).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from server.errors import StoreError

__all__ = ["DraftState", "Store", "UpdateRecord"]

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
)

_INSERT_UPDATE = (
    "INSERT INTO updates (draft_id, version, data, user, session, client_id, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_SNAPSHOT = (
    "INSERT OR REPLACE INTO snapshots (draft_id, version, data, created_at) VALUES (?, ?, ?, ?)"
)
_LATEST_SNAPSHOT = (
    "SELECT version, data FROM snapshots WHERE draft_id = ? AND version <= ?"
    " ORDER BY version DESC LIMIT 1"
)
_UPDATES_BETWEEN = (
    "SELECT data FROM updates WHERE draft_id = ? AND version > ? AND version <= ? ORDER BY version"
)
_LAST_VERSION = "SELECT COALESCE(MAX(version), 0) FROM updates WHERE draft_id = ?"
_NO_LIMIT = 2**62


@dataclass(frozen=True, slots=True)
class UpdateRecord:
    draft_id: str
    version: int
    data: bytes
    user: str
    session: str
    client_id: int | None
    created_at: float

    def as_row(self) -> tuple[object, ...]:
        return (
            self.draft_id,
            self.version,
            self.data,
            self.user,
            self.session,
            self.client_id,
            self.created_at,
        )


@dataclass(frozen=True, slots=True)
class DraftState:
    """What it takes to rebuild a draft: a snapshot (or nothing) and the updates after it."""

    snapshot: bytes | None
    snapshot_version: int
    tail: list[bytes]

    @property
    def version(self) -> int:
        return self.snapshot_version + len(self.tail)


@contextlib.contextmanager
def _translated(action: str) -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"{action} failed: {exc}") from exc


class Store:
    def __init__(self, connection: aiosqlite.Connection, *, path: Path) -> None:
        self._db = connection
        self.path = path
        # One lock around every statement group: a read never sees a transaction half-way.
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path, *, fsync: bool = False) -> Store:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _translated("opening the database"):
            connection = await aiosqlite.connect(path, isolation_level=None)
            await connection.execute("PRAGMA journal_mode=WAL")
            await connection.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
            await connection.execute("PRAGMA busy_timeout=5000")
            await connection.execute("PRAGMA foreign_keys=ON")
        store = cls(connection, path=path)
        await store._migrate()
        return store

    async def close(self) -> None:
        await self._db.close()

    async def _migrate(self) -> None:
        with _translated("migrating the schema"):
            await self._db.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
            )
            async with self._db.execute("SELECT MAX(version) FROM schema_version") as cursor:
                row = await cursor.fetchone()
            current = row[0] if row and row[0] is not None else 0
            for version, script in enumerate(_MIGRATIONS[current:], start=current + 1):
                statements = [s for s in script.split(";") if s.strip()]
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
        async with self._lock, self._db.execute(sql, params) as cursor:
            row = await cursor.fetchone()
        return tuple(row) if row is not None else None

    async def _fetch_all(self, sql: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
        async with self._lock, self._db.execute(sql, params) as cursor:
            return [tuple(row) for row in await cursor.fetchall()]

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

    async def create_draft(self, draft_id: str, owner: str, *, now: float) -> bool:
        """Create the draft owned by `owner`; False if it already existed (first writer wins)."""
        with _translated("creating a draft"):
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
        return created

    # -- the update log -----------------------------------------------------------------------

    async def append_updates(self, records: Sequence[UpdateRecord]) -> None:
        """Append many updates, of any drafts, in one transaction (the group commit)."""
        with _translated("committing updates"):
            async with self._transaction():
                await self._db.executemany(_INSERT_UPDATE, [r.as_row() for r in records])

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
            row = await self._fetch_one(_LATEST_SNAPSHOT, (draft_id, upto))
        snapshot_version, snapshot = (int(row[0]), bytes(row[1])) if row else (0, None)  # type: ignore[call-overload, arg-type]
        tail = await self.updates_between(draft_id, snapshot_version, upto)
        return DraftState(snapshot=snapshot, snapshot_version=snapshot_version, tail=tail)

    async def save_snapshot(self, draft_id: str, version: int, data: bytes, *, now: float) -> None:
        with _translated("saving a snapshot"):
            async with self._transaction():
                await self._db.execute(_INSERT_SNAPSHOT, (draft_id, version, data, now))
