"""What a running server's store holds, whichever backend it uses (SQLite file or PostgreSQL).

Tests that run against both backends read through here: `ServerProcess.store_url` says which.
Reads are synchronous like `stored.py`'s, so a test reads the same way on either backend; the
PostgreSQL ones run asyncpg on a private event loop in a worker thread (the test's own loop
keeps running untouched).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import asyncpg
from pycrdt import Doc

from crdt.history import rebuild
from tests.support import stored
from tests.support.server_process import ServerProcess

__all__ = ["max_version", "snapshot_versions", "stored_doc", "stored_rows", "update_count"]


async def _fetch(url: str, sql: str, params: Sequence[object]) -> list[tuple[object, ...]]:
    db = await asyncpg.connect(url)
    try:
        return [tuple(row) for row in await db.fetch(sql, *params)]
    finally:
        await db.close()


def _pg_rows(url: str, sql: str, params: Sequence[object]) -> list[tuple[object, ...]]:
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _fetch(url, sql, params)).result(timeout=60)


def _numbered(sql: str) -> str:
    """SQLite's `?` placeholders as PostgreSQL's `$1, $2, ...`; `user` quoted (a keyword)."""
    counter = iter(range(1, 1000))
    sql = re.sub(r"\?", lambda _: f"${next(counter)}", sql)
    return re.sub(r"(?<![\"\w])user(?![\"\w])", '"user"', sql)


def stored_rows(server: ServerProcess, sql: str, *params: object) -> list[tuple[object, ...]]:
    """Rows of `sql` written for SQLite (`?` placeholders), run on the server's backend."""
    if server.store_url is None:
        return stored.stored_rows(server.database, sql, *params)
    rows = _pg_rows(server.store_url, _numbered(sql), params)
    return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in rows]


def stored_doc(server: ServerProcess, draft_id: str) -> Doc:
    """Latest snapshot + the log after it, as a restarted server would load the draft."""
    if server.store_url is None:
        return stored.stored_doc(server.database, draft_id)
    last = stored_rows(
        server,
        "SELECT version, data FROM snapshots WHERE draft_id = ? ORDER BY version DESC LIMIT 1",
        draft_id,
    )
    since, snapshot = (int(last[0][0]), bytes(last[0][1])) if last else (0, None)  # type: ignore[call-overload, arg-type]
    tail = stored_rows(
        server,
        "SELECT data FROM updates WHERE draft_id = ? AND version > ? ORDER BY version",
        draft_id,
        since,
    )
    return rebuild(snapshot, [bytes(row[0]) for row in tail])  # type: ignore[arg-type]


def update_count(server: ServerProcess, draft_id: str) -> int:
    [(count,)] = stored_rows(server, "SELECT count(*) FROM updates WHERE draft_id = ?", draft_id)
    return int(count)  # type: ignore[call-overload]


def max_version(server: ServerProcess) -> int | None:
    """The highest stored version over all drafts (None: no update stored)."""
    [(value,)] = stored_rows(server, "SELECT max(version) FROM updates")
    return None if value is None else int(value)  # type: ignore[call-overload]


def snapshot_versions(server: ServerProcess, draft_id: str) -> list[int]:
    """The versions the draft's stored snapshots are at, oldest first."""
    sql = "SELECT version FROM snapshots WHERE draft_id = ? ORDER BY version"
    return [int(version) for (version,) in stored_rows(server, sql, draft_id)]  # type: ignore[call-overload]
