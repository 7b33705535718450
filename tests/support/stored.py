"""Read what the store holds straight from the SQLite file, as a restarted server would load it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from pycrdt import Doc

from crdt.history import rebuild

__all__ = ["stored_doc", "stored_rows"]


def _connect(database: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{database}?mode=ro", uri=True)


def stored_doc(database: Path, draft_id: str) -> Doc:
    """Latest snapshot + the log after it, applied to a fresh doc."""
    with _connect(database) as db:
        row = db.execute(
            "SELECT version, data FROM snapshots WHERE draft_id = ? ORDER BY version DESC LIMIT 1",
            (draft_id,),
        ).fetchone()
        since, snapshot = (row[0], row[1]) if row else (0, None)
        tail = [
            r[0]
            for r in db.execute(
                "SELECT data FROM updates WHERE draft_id = ? AND version > ? ORDER BY version",
                (draft_id, since),
            )
        ]
    return rebuild(snapshot, tail)


def stored_rows(database: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    with _connect(database) as db:
        return db.execute(sql, params).fetchall()
