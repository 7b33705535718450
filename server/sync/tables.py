"""Give back the hash tables that a burst of connections grew and that stay once it is gone.

A `set` or `dict` never shrinks as entries leave it: only a later insertion that makes it
resize does, and a table that held every connection of a storm keeps its size for good. Four
of the process's own did after `bench relay` N3000 (3,000 connections into one draft, all
gone): uvloop's transports by file descriptor (a `WeakValueDictionary`, 147 KB), asyncio's
set of all tasks (a `WeakSet`, 131 KB) and uvicorn's sets of connections and of tasks (131 KB
each), ~0.54 MB, all but empty (docs/performance-notes.md, "Memory after N3000: the tables
a storm grew"). Each table is one block of glibc's of 128 KB or more, mapped on its own
(server/sync/memory.py fixes the mmap threshold there): freed, it goes straight back.

`shrink` rebuilds such a table in place (the same object: whoever holds it keeps it) sized
for what it holds now, and only when it is mostly empty, so the work is a copy of a few
entries. Only the loop's thread may call it (the tables are the loop's).
"""

from __future__ import annotations

import asyncio
import gc
import sys
import weakref
from typing import Any

__all__ = ["MIN_BYTES", "loop_tables", "shrink", "unwatch", "watch", "watched"]

_Table = set[Any] | dict[Any, Any]

# A table smaller than this is left alone (a set's or dict's of ~1,000 entries or fewer);
# a larger one is rebuilt when it holds less than one entry per BYTES_PER_ENTRY of its size
# (full, a set's table holds one per ~16-27 bytes, a dict's one per ~30-45).
MIN_BYTES = 16 * 1024
_BYTES_PER_ENTRY = 128

_watched: list[_Table] = []


def watch(table: _Table) -> None:
    """Have every release shrink `table` (a process-wide one, such as uvicorn's sets of
    connections: the process that owns the server registers them, `draftsync serve`)."""
    if type(table) not in (set, dict):
        raise TypeError(f"not a set or dict: {type(table).__name__}")
    if not any(table is held for held in _watched):
        _watched.append(table)


def unwatch(table: _Table) -> None:
    """Stop shrinking `table` (a server that stops while its process goes on: a test)."""
    _watched[:] = [held for held in _watched if held is not table]


def watched() -> tuple[_Table, ...]:
    return tuple(_watched)


def loop_tables(loop: asyncio.AbstractEventLoop) -> list[_Table]:
    """The loop's own: its transports by file descriptor (uvloop's is no attribute: it is
    reached, like the store's cursor references, through the collector's view of the loop)
    and asyncio's set of all tasks. Absent ones (another loop, another Python) are skipped."""
    found: list[_Table] = []
    held = list(gc.get_referents(loop))
    held.extend(getattr(loop, "__dict__", {}).values())  # asyncio's own loop
    for each in held:
        if type(each) is weakref.WeakValueDictionary and not any(
            each.data is table for table in found
        ):  # asyncio's: seen both ways
            found.append(each.data)
    all_tasks = getattr(asyncio.tasks, "_all_tasks", None)
    if type(all_tasks) is weakref.WeakSet:
        found.append(all_tasks.data)
    return found


def shrink(table: _Table) -> bool:
    """Rebuild `table` in place at the size of what it holds, if it is mostly empty; whether
    it was rebuilt.

    A set is rebuilt in one call (`intersection_update` with itself swaps in a copy sized for
    its entries). A dict is copied, cleared and refilled from the copy: the copy holds every
    key and value meanwhile, so nothing dies (no weak reference's callback runs) in between."""
    if type(table) is set:
        if not _mostly_empty(table):
            return False
        table.intersection_update(table)
        return True
    if type(table) is dict:
        if not _mostly_empty(table):
            return False
        kept = dict(table)
        table.clear()
        table.update(kept)
        return True
    raise TypeError(f"not a set or dict: {type(table).__name__}")


def _mostly_empty(table: _Table) -> bool:
    size = sys.getsizeof(table)
    return size >= MIN_BYTES and len(table) * _BYTES_PER_ENTRY < size
