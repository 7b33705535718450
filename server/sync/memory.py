"""Give the memory of unloaded rooms back to the system (glibc's allocator).

What a process kept after its rooms had unloaded (`bench relay` J1: 100 clients join a 5 MB
draft, then leave; S3: 200 rooms; N3000: 3,000 connections; read with tracemalloc, `gc` and
/proc/self/smaps against the idle process):

- Cyclic garbage: a closed connection's exception and the frames it holds, a room's bound
  handlers. Only a full collection frees it, and the collector may not run one for a long
  time on a quiet server: 5 MB of J1's after-load RSS. `release` collects first.
- glibc's dynamic thresholds: once a block of 128 KB or more that glibc had mapped on its own
  is freed, it raises its mmap threshold to that block's size and its trim threshold to twice
  that (up to 32 and 64 MB). After one 5 MB frame, later 5 MB blocks come from the heaps, and
  each heap may keep ~10 MB free on its top; `malloc_trim` trims the top of the main heap
  only, so a worker thread's heap (the store's, a snapshot's) kept its 10 MB. `configure`
  fixes both thresholds at glibc's starting values, which turns the adjustment off: a large
  block is mapped and unmapped on its own, and a heap's top is trimmed as it frees.
- Freed pages inside the heaps: `malloc_trim(0)` gives back every whole free page. It must
  run after the frees, not with them: once per burst of unloads (a room unloading re-arms a
  short timer), after the collection, on a worker thread (ctypes lets go of the GIL).

- The interpreter's type attribute cache (4,096 entries, indexed by the *address* of the
  attribute's name): each entry holds a strong reference to its name. A name built at run
  time rather than interned (`PyObject_CallMethod(tzinfo, "dst")` in the `Date` header of
  every handshake, via `email.utils.formatdate`) is a new string at a new address each time,
  so a storm of handshakes leaves hundreds of them held by the cache, spread over the
  pymalloc arenas the connections used: an arena (1 MB) goes back only when every block in
  it is free. `release` clears the cache first (`sys._clear_type_cache`; it refills on the
  next lookups): `bench relay` N3000, 59 -> 53 arenas, ~6 MB of RSS.

Kept from elsewhere, so that a release can give their arenas back: the store's writer runs
every statement through one cursor (server/store/log_writer.py: sqlite3 keeps a weak reference
to each cursor a connection makes and prunes them only every 200 cursors), its checkpoint
thread starts with it, the journal closer's loop no longer keeps the last room it looked at (a
closed `Room`, its journal), and the service's set of connections is emptied in place.

- What the storm's last objects pin (server/sync/arenas.py): before the collection, a release
  swaps spares made at start into uvloop's and _asyncio's free lists (whose last objects were
  the storm's: handles, timer handles, future iterators) and drops the store's dead cursor
  references and cached statements (docs/performance-notes.md, "Memory after N3000: the free
  lists and SQLite's leftovers").
- The periodic tasks' objects (uvicorn's 0.1 s tick, the journal closer's sleep): what they
  hold across the release was made during the storm, and a free list hands the object freed
  last out first, so each would be handed back to its task at every turn, for good. The
  release leaves the spares in the (full) free lists, so that such an object freed after it
  goes back to pymalloc, and settles SETTLE_AFTER_SECONDS later: a second full collection
  (it empties the builtin free lists, floats, tuples, contexts, of what was freed into them
  since), then the spares taken again (docs/performance-notes.md, "Memory after N3000: the
  timer handles and the periodic tasks").

- The hash tables a storm grew (server/sync/tables.py): uvloop's transports by descriptor,
  asyncio's set of tasks, uvicorn's sets of connections and of tasks (`draftsync serve`
  registers those) keep the size they reached until rebuilt; a release rebuilds the mostly
  empty ones after the collection (~0.5 MB after N3000).

Not given back: the rest of pymalloc's arenas kept by objects that outlive a burst of
connections (the `_abc` caches' entries, what the periodic tasks keep making in the storm's
pools: a pool is reused for as long as it has a live block), and the bounded caches
themselves (SQLite's page cache of each connection, the summaries' headings, the token
cache). On a libc without `malloc_trim` and `mallopt` (musl, macOS) this does nothing but the
collection, the cache clear and the above.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable

from server.sync.arenas import Spares, drop_cached_statements, drop_dead_cursor_references
from server.sync.tables import loop_tables, shrink, watched

__all__ = [
    "MMAP_THRESHOLD",
    "QUIET_SECONDS",
    "SETTLE_AFTER_SECONDS",
    "TRIM_THRESHOLD",
    "WAIT_AT_MOST_SECONDS",
    "MemoryTrimmer",
    "configure",
    "release_now",
]

logger = logging.getLogger("draftsync.memory")

# glibc's own starting values (malloc/malloc.c: DEFAULT_MMAP_THRESHOLD_MIN, DEFAULT_TRIM_
# THRESHOLD), fixed: a block of 128 KB or more gets a mapping of its own, returned when freed,
# and a heap keeps at most 128 KB free on its top.
MMAP_THRESHOLD = 128 * 1024
TRIM_THRESHOLD = 128 * 1024
_M_TRIM_THRESHOLD = -1  # mallopt's parameters (malloc.h)
_M_MMAP_THRESHOLD = -3

# A release runs once no room has unloaded for QUIET_SECONDS (a burst of unloads: one
# release), but at most WAIT_AT_MOST_SECONDS after the first unload it covers.
QUIET_SECONDS = 0.5
WAIT_AT_MOST_SECONDS = 5.0
# The release settles (a second collection, the spares taken again) this long after it ran:
# past a period of each periodic task (uvicorn's 0.1 s tick, the journal closer's 0.5 s).
SETTLE_AFTER_SECONDS = 1.0


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 - glibc's, absent from musl and macOS
        libc.mallopt  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def configure() -> bool:
    """Fix glibc's mmap and trim thresholds for this process (see the module's docstring);
    False if this libc has no `mallopt`. For the process that owns the allocator (`draftsync
    serve`): an application embedding the server decides its own."""
    libc = _libc()
    if libc is None:
        return False
    return bool(
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


def _nothing() -> None:
    pass


def _collect() -> None:
    """Let go of what the load left for the collector and the type cache (module docstring)."""
    sys._clear_type_cache()  # its names made during the load pin pymalloc arenas
    gc.collect()


def release_now() -> None:
    """What a release does, at once and on this thread: the type cache cleared, a full
    collection, then `malloc_trim(0)` where glibc has it (for a process measuring itself,
    `bench persistence`)."""
    _collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


class MemoryTrimmer:
    """Once rooms have unloaded: the free lists swapped and the store's SQLite leftovers
    dropped, the type cache cleared, a full collection, the tables a storm grew shrunk, then
    `malloc_trim(0)` on a worker thread; a second later, a second collection and the spares
    taken again (`_settle`)."""

    def __init__(
        self,
        *,
        quiet: float = QUIET_SECONDS,
        wait_at_most: float = WAIT_AT_MOST_SECONDS,
        settle_after: float = SETTLE_AFTER_SECONDS,
    ) -> None:
        libc = _libc()
        self._trim: Callable[[int], int] | None = None if libc is None else libc.malloc_trim
        self._quiet = quiet
        self._wait_at_most = wait_at_most
        self._settle_after = settle_after
        self._first_unload: float | None = None  # of the unloads the next release covers
        self._last_unload = 0.0
        self._running: asyncio.Task[None] | None = None
        self.releases = 0  # collections (and trims, where glibc is) run so far
        self.trims = 0
        self.settles = 0  # releases settled (`_settle`)
        self.tables_shrunk = 0  # hash tables rebuilt at their size (server/sync/tables.py)
        # What keeps a storm's last objects out of its arenas (server/sync/arenas.py), made now:
        # the trimmer is made with the service, before any client.
        self.spares: Spares | None = None
        # The store's SQLite connections, whose cursor references and cached statements a
        # release drops (none for PostgreSQL's).
        self.sqlite_connections: Callable[[], Iterable[sqlite3.Connection]] = tuple
        with contextlib.suppress(RuntimeError):  # no loop running (a test): no spares
            loop = asyncio.get_running_loop()
            self.spares = Spares(loop)
            # The default executor's first thread, started now rather than by the first
            # release's `to_thread` (its objects would be made among the storm's).
            loop.run_in_executor(None, _nothing)

    def room_unloaded(self) -> None:
        """A room's doc was dropped: a release follows once the unloads pause."""
        now = time.monotonic()
        self._last_unload = now
        if self._first_unload is None:
            self._first_unload = now
        if self._running is None:
            self._running = asyncio.create_task(self._run())

    def _due_in(self) -> float:
        assert self._first_unload is not None
        quiet = self._last_unload + self._quiet
        return max(0.0, min(quiet, self._first_unload + self._wait_at_most) - time.monotonic())

    async def _run(self) -> None:
        try:
            while self._first_unload is not None:
                delay = self._due_in()
                if delay > 0:
                    await asyncio.sleep(delay)
                    continue  # another unload may have pushed it
                self._first_unload = None  # unloads from now on: the next release
                await self._release()
        finally:
            self._running = None

    def _settle(self) -> None:
        """A while after a release: the builtin free lists (floats, tuples, contexts, ...)
        emptied again by a second full collection (what the release and the periodic tasks
        freed into them since sat there below the objects in use, each in one of the storm's
        arenas), then the spares taken for the next swap, their timer handles' floats from the
        emptied float free list (server/sync/arenas.py)."""
        try:
            gc.collect()
            if self.spares is not None:
                self.spares.take()
        except Exception:  # never fatal: memory stays as it was
            logger.exception("memory release failed to settle")
        self.settles += 1

    async def _release(self) -> None:
        try:
            # What the storm left in the free lists and SQLite's connections goes with the rest
            # of its garbage (server/sync/arenas.py); the spares are taken again after it.
            if self.spares is not None:
                await self.spares.swap()
            for connection in self.sqlite_connections():
                drop_dead_cursor_references(connection)
                drop_cached_statements(connection)
            _collect()  # the unloaded rooms' cycles, before their pages can be given back
            # The spares are taken again only once the periodic tasks (uvicorn's tick, the
            # journal closer's) have each freed what they held across the swap (a future
            # iterator, a handle: the storm's): freed into full free lists, those go back to
            # pymalloc instead of being handed out again for good.
            if self.spares is not None:
                asyncio.get_running_loop().call_later(self._settle_after, self._settle)
            # The tables the storm grew, emptied now (server/sync/tables.py): each one mapped
            # on its own, unmapped as it is freed.
            for table in (*loop_tables(asyncio.get_running_loop()), *watched()):
                self.tables_shrunk += shrink(table)
            if self._trim is not None:
                await asyncio.to_thread(self._trim, 0)
                self.trims += 1
        except Exception:  # never fatal: memory stays as it was
            logger.exception("memory release failed")
        self.releases += 1
