"""The journal's ids: SQLite's schema 7 dropped AUTOINCREMENT from `events` (one page less
per journaling commit). Ids must still only grow and never be handed out twice, since clients
page the journal by them (`GET /api/drafts/{id}/events?after=`); the migration keeps every
row, its id and every read."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from bench.services import PostgresCluster
from crdt.journal import EventType, JournalEvent
from server.store import statements
from server.store.dialect import SQLITE
from server.store.postgres import PostgresStore
from server.store.records import UpdateRecord
from server.store.sqlite import SqliteStore
from tests.server.test_store_schema import before_migration
from tests.support.postgres import BACKENDS

SERVER = Path(statements.__file__).parents[1]

# What schema 3 created (rendered from `{serial}`), written out: the database to migrate.
_OLD_EVENTS_SQL = "id INTEGER PRIMARY KEY AUTOINCREMENT"


def event(draft: str, version: int, type: EventType, **data: object) -> JournalEvent:
    return JournalEvent(type, draft, version, "alice", "s1", 7, float(version), dict(data))


# Rows as a draftsync at schema 6 wrote them: ids with a gap (a rolled-back insert's), two
# drafts interleaved, every type the reads pick out.
_OLD_ROWS = [
    (1, event("a", 1, EventType.FIELD_UPDATED, field="category", kind="value", old=None, new="x")),
    (2, event("b", 1, EventType.SESSION, device="other")),
    (3, event("a", 2, EventType.CONFLICT_OPENED, field="status", conflict_id="c1")),
    (5, event("a", 3, EventType.FIELD_UPDATED, field="title", kind="text", from_version=2)),
    (6, event("a", 3, EventType.VERSION_NAMED, label="v1")),
    (9, event("a", 4, EventType.SESSION, device="other")),
]


def _old_database(path: Path) -> None:
    db = before_migration(path, 6)
    try:
        [(ddl,)] = db.execute("SELECT sql FROM sqlite_master WHERE name = 'events'").fetchall()
        assert _OLD_EVENTS_SQL in ddl  # the schema this test migrates from
        db.execute("INSERT INTO drafts (id, owner, created_at) VALUES ('a', 'alice', 0)")
        db.execute("INSERT INTO drafts (id, owner, created_at) VALUES ('b', 'alice', 0)")
        db.execute("INSERT INTO access (draft_id, \"user\", role) VALUES ('a', 'alice', 'owner')")
        db.executemany(
            'INSERT INTO events (id, draft_id, version, type, "user", session, client_id, at, data)'
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(i, *e.as_row()) for i, e in _OLD_ROWS],
        )
        # AUTOINCREMENT's high-water mark: the largest id handed out, as it keeps it.
        assert db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchall() == [
            (9,)
        ]
    finally:
        db.close()


def _table(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT * FROM events ORDER BY id").fetchall()


async def test_a_journal_with_autoincrement_is_rebuilt_without_it_keeping_rows_ids_and_reads(
    tmp_path: Path,
) -> None:
    path = tmp_path / "draftsync.db"
    _old_database(path)
    before = _table(path)

    store = await SqliteStore.open(path)
    try:
        page = await store.events_page("a", after=0, limit=10)
        assert [e.id for e in page] == [1, 3, 5, 6, 9]
        assert [(e.version, e.type, e.data) for e in page] == [
            (e.version, str(e.type), e.data) for i, e in _OLD_ROWS if e.draft_id == "a"
        ]
        assert [e.id for e in await store.events_page("a", after=3, limit=2)] == [5, 6]
        assert [e.id for e in await store.events_page("b", after=0, limit=10)] == [2]
        named = await store.events_of_type("a", str(EventType.VERSION_NAMED), limit=5)
        assert [(e.id, e.data) for e in named] == [(6, {"label": "v1"})]
        assert await store.event_counts("a") == {
            "FIELD_UPDATED": 2,
            "CONFLICT_OPENED": 1,
            "VERSION_NAMED": 1,
            "SESSION": 1,
        }
        assert await store.reachable_conflict_fields("alice") == {"status": 1}
        assert await store.text_events_since("a", 3) == [
            ("alice", {"field": "title", "kind": "text", "from_version": 2})
        ]

        # The next id is past every id the old table handed out, and so on from there.
        await store.append_updates(
            [UpdateRecord("a", 5, b"u", "alice", "s1", 7, 5.0)],
            [event("a", 5, EventType.FIELD_UPDATED, field="category", kind="value", new="y")],
        )
        await store.append_events([event("b", 1, EventType.SESSION, device="other")])
        assert [e.id for e in await store.events_page("a", after=9, limit=10)] == [10]
        assert [e.id for e in await store.events_page("b", after=2, limit=10)] == [11]
    finally:
        await store.close()

    assert _table(path)[: len(before)] == before  # every old row, byte for byte
    with sqlite3.connect(path) as db:
        [(ddl,)] = db.execute("SELECT sql FROM sqlite_master WHERE name = 'events'").fetchall()
        assert "AUTOINCREMENT" not in ddl.upper()
        assert db.execute("SELECT name FROM sqlite_sequence").fetchall() == []
        indexes = db.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'"
        ).fetchall()
        assert sorted(indexes) == [
            ("events_by_draft", "CREATE INDEX events_by_draft ON events (draft_id, id)"),
            ("events_by_type", "CREATE INDEX events_by_type ON events (draft_id, type, id)"),
        ]
        assert db.execute("SELECT MAX(version) FROM schema_version").fetchone() == (7,)


@pytest.mark.parametrize(
    ("name", "index"),
    [
        ("EVENTS_PAGE", "events_by_draft"),
        ("EVENTS_OF_TYPE", "events_by_type"),
        ("TEXT_EVENTS_SINCE", "events_by_type"),
        ("EVENT_COUNTS", "events_by_type"),
        ("REACHABLE_CONFLICT_FIELDS", "events_by_type"),  # and the user's drafts by access
    ],
)
async def test_every_journal_read_still_uses_its_index(
    tmp_path: Path, name: str, index: str
) -> None:
    """The rebuilt table has the indexes the reads were written for: no read of a draft's
    journal scans the table (EXPLAIN QUERY PLAN, on a store migrated from schema 6)."""
    path = tmp_path / "draftsync.db"
    _old_database(path)
    await (await SqliteStore.open(path)).close()
    statement = getattr(statements, name)
    with sqlite3.connect(path) as db:
        plan = db.execute(
            "EXPLAIN QUERY PLAN " + SQLITE.render(statement),
            (None,) * len(statement.parameters),
        ).fetchall()
    [detail] = [str(row[-1]) for row in plan if str(row[-1]).startswith(("SEARCH e", "SCAN e"))]
    assert re.fullmatch(rf"SEARCH events USING (COVERING )?INDEX {index} \(draft_id=\?.*\)", detail)


async def _open(backend: str, where: str) -> SqliteStore | PostgresStore:
    if backend == "postgresql":
        return await PostgresStore.open(where, max_size=2)
    return await SqliteStore.open(Path(where))


@pytest.mark.parametrize("backend", BACKENDS)
async def test_event_ids_only_grow_across_drafts_a_deleted_draft_and_a_restart(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Both stores: an id is never handed out twice, whatever was deleted before it; the
    newest event belongs to a draft that is then deleted and purged (its journal stays)."""
    if backend == "postgresql":
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        where = cluster.new_database()
    else:
        where = str(tmp_path / "draftsync.db")
    store = await _open(backend, where)
    try:
        for draft in ("a", "b"):
            await store.create_draft(draft, "alice", now=1.0)
        await store.append_events(
            [event("a", 1, EventType.SESSION), event("b", 1, EventType.SESSION)]
        )
        await store.append_events([event("a", 2, EventType.VERSION_NAMED, label="x")])
        assert await store.tombstone("a", now=2.0)
        await store.purge_content("a")
        kept = await store.events_page("a", after=0, limit=10)
        [first_b] = await store.events_page("b", after=0, limit=10)
        assert [e.version for e in kept] == [1, 2]
        before = [e.id for e in kept] + [first_b.id]
        await store.append_events([event("b", 2, EventType.SESSION)])
    finally:
        await store.close()
    store = await _open(backend, where)
    try:
        await store.append_events([event("b", 3, EventType.SESSION)])
        after = [e.id for e in await store.events_page("b", after=first_b.id, limit=10)]
    finally:
        await store.close()
    assert len(after) == 2 and after == sorted(after), after
    assert min(after) > max(before), (before, after)


def test_no_statement_deletes_journal_rows() -> None:
    """The ids' promise rests on this: without AUTOINCREMENT, SQLite hands out one past the
    largest id in the table, so deleting the newest rows would hand their ids out again to a
    client that already paged past them. A retention of the journal must keep a high-water
    mark of its own (e.g. AUTOINCREMENT back) before it deletes anything."""
    deleting = re.compile(r"DELETE\s+FROM\s+events\b|TRUNCATE\s+(TABLE\s+)?events\b", re.I)
    found = [
        f"{path.relative_to(SERVER.parent)}: {match[0]}"
        for path in sorted(SERVER.rglob("*.py"))
        for match in deleting.finditer(path.read_text())
    ]
    assert found == []
    assert "events" not in statements.CONTENT_TABLES  # a purge keeps the journal
    assert deleting.search('x = "DELETE FROM events WHERE draft_id = ?"')  # the scan works
