"""The SQLite schema's migrations: a store written by an older draftsync opens with what it
held, and goes on from there."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from server.store.records import UpdateRecord
from server.store.sqlite import _MIGRATIONS, SqliteStore, _statements


def before_migration(path: Path, version: int) -> sqlite3.Connection:
    """A database as a draftsync at schema `version` left it."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for number, script in enumerate(_MIGRATIONS[:version], start=1):
        for statement in _statements(script):
            db.execute(statement)
        db.execute("INSERT INTO schema_version (version) VALUES (?)", (number,))
    return db


def update(version: int, user: str, at: float) -> UpdateRecord:
    return UpdateRecord("d", version, b"u%d" % version, user, "s", 1, at)


async def test_activity_and_contributors_survive_the_move_from_a_trigger_to_the_log(
    tmp_path: Path,
) -> None:
    """Schema 4 dropped the trigger that kept `draft_activity`: a draft's last version and
    time are read from its log, contributors are added by the commit itself."""
    path = tmp_path / "draftsync.db"
    db = before_migration(path, 3)
    db.execute("INSERT INTO drafts (id, owner, created_at) VALUES ('d', 'alice', 1.0)")
    db.execute("INSERT INTO access (draft_id, user, role) VALUES ('d', 'alice', 'owner')")
    db.executemany(
        "INSERT INTO updates (draft_id, version, data, user, session, client_id, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        [update(1, "alice", 10.0).as_row(), update(2, "bob", 20.0).as_row()],
    )
    db.close()

    store = await SqliteStore.open(path)
    try:
        [summary] = await store.reachable_drafts("alice")
        assert (summary.version, summary.last_modified) == (2, 20.0)
        record = await store.draft_record("d")
        assert record is not None and record.last_modified == 20.0
        assert await store.contributors("d") == ["alice", "bob"]

        now = time.time()
        await store.append_updates([update(3, "carol", now), update(4, "carol", now + 1)])
        assert store.append_updates_now([update(5, "dave", now + 2)])
        [summary] = await store.reachable_drafts("alice")
        assert (summary.version, summary.last_modified) == (5, now + 2)
        assert await store.contributors("d") == ["alice", "bob", "carol", "dave"]
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        triggers = db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall()
    assert triggers == [], "a commit still runs a trigger"


async def test_a_draft_without_updates_reports_version_0_and_its_creation_time(
    tmp_path: Path,
) -> None:
    store = await SqliteStore.open(tmp_path / "draftsync.db")
    try:
        await store.create_draft("d", "alice", now=5.0)
        [summary] = await store.reachable_drafts("alice")
        assert (summary.version, summary.last_modified) == (0, 5.0)
        record = await store.draft_record("d")
        assert record is not None and record.last_modified is None
    finally:
        await store.close()
