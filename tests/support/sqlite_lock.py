"""Holding SQLite's write lock from a second connection, as another writer would: the server's
commit then waits on a worker thread (up to its busy timeout, 5 s) while a test looks."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["write_lock"]


@contextmanager
def write_lock(database: Path) -> Iterator[None]:
    """Hold the write lock of `database` (BEGIN IMMEDIATE) until the block ends."""
    lock = sqlite3.connect(database, timeout=1)
    lock.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        lock.rollback()
        lock.close()
