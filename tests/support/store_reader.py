"""Look into a running server's SQLite file, read-only, to see what it really stored.

The `updates` table is the append-only log (snapshots only speed up loading), so replaying it
into a fresh pycrdt `Doc` gives everything the store holds for a draft.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from pycrdt import Doc

__all__ = ["draft_rows", "stored_doc", "stored_log", "stored_update_count"]


@contextlib.contextmanager
def _read_only(database: Path) -> Iterator[sqlite3.Connection]:
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        yield db


def draft_rows(database: Path, draft_id: str) -> int:
    with _read_only(database) as db:
        (count,) = db.execute("SELECT count(*) FROM drafts WHERE id = ?", (draft_id,)).fetchone()
    return int(count)


def stored_update_count(database: Path, draft_id: str) -> int:
    with _read_only(database) as db:
        query = "SELECT count(*) FROM updates WHERE draft_id = ?"
        (count,) = db.execute(query, (draft_id,)).fetchone()
    return int(count)


def stored_log(database: Path, draft_id: str) -> list[bytes]:
    """The draft's stored updates, version 1 first."""
    with _read_only(database) as db:
        rows = db.execute(
            "SELECT data FROM updates WHERE draft_id = ? ORDER BY version", (draft_id,)
        ).fetchall()
    return [bytes(data) for (data,) in rows]


def stored_doc(database: Path, draft_id: str) -> Doc:
    """The draft as its stored update log rebuilds it."""
    doc: Doc = Doc()
    for data in stored_log(database, draft_id):
        doc.apply_update(data)
    return doc
