"""Look into a store's webhook outbox beside the server (SQLite read-only, or PostgreSQL through
psql), to see what it really keeps: retention tests check rows and attempts are gone."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from bench.services import PostgresCluster

__all__ = ["OutboxRow", "stored_outbox"]

OutboxRow = tuple[int, str, str, int]  # id, url, status, attempt rows

_ROWS = (
    "SELECT id, url, status,"
    " (SELECT COUNT(*) FROM webhook_attempts a WHERE a.outbox_id = o.id)"
    " FROM webhook_outbox o ORDER BY id"
)
_ORPHANS = (
    "SELECT COUNT(*) FROM webhook_attempts WHERE outbox_id NOT IN (SELECT id FROM webhook_outbox)"
)


def stored_outbox(
    database: Path | str, postgres: PostgresCluster | None = None
) -> tuple[list[OutboxRow], int]:
    """Each outbox row, and how many attempt rows belong to no row (there must be none).
    `database`: the SQLite file, or with `postgres` the URL of one of its databases."""
    if postgres is not None:
        found = postgres.query(str(database), _ROWS)
        ((orphans,),) = postgres.query(str(database), _ORPHANS)
    else:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
            found = db.execute(_ROWS).fetchall()
            ((orphans,),) = db.execute(_ORPHANS).fetchall()
    rows = [(int(i), str(url), str(status), int(n)) for i, url, status, n in found]
    return rows, int(orphans)
