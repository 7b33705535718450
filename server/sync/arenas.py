"""Keep a storm's few survivors out of its pymalloc arenas, so that a release gives them back.

pymalloc (CPython's allocator for objects of up to 512 bytes) carves 16 KB pools of one size
class out of 1 MB arenas, and gives an arena back to the system only once every block in it is
free. After a storm of connections (`bench relay` N3000: 3,000 connect, all leave) ~15-20
arenas stayed resident, each kept by a handful of objects made during the storm and kept after
it (docs/performance-notes.md, "Memory after N3000: the free lists and SQLite's leftovers").
What a release (server/sync/memory.py) lets go of, from here:

- `Spares`: uvloop's free lists of `Handle`s and of `TimerHandle`s and _asyncio's of future
  iterators (250, 250 and 255 objects kept for reuse) held the storm's last ones. A swap puts
  objects made at start in their place and frees the storm's.
- `drop_dead_cursor_references`: sqlite3 keeps a weak reference to each cursor a connection
  made and prunes the dead ones only every 200 cursors.
- `drop_cached_statements`: a statement first run during the storm (the first edit's inserts,
  the opening read) is compiled and cached among the storm's objects, for good.

Each is an ordinary allocation or free of Python objects: where an implementation keeps no
such list (another event loop, another Python), a release frees nothing more and no harm done.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import sqlite3
import weakref

__all__ = [
    "FREE_LIST_FUTURE_ITERS",
    "FREE_LIST_HANDLES",
    "FREE_LIST_TIMER_HANDLES",
    "Spares",
    "drop_cached_statements",
    "drop_dead_cursor_references",
]

# uvloop's `@cython.freelist(DEFAULT_FREELIST_SIZE)` on `Handle` and on `TimerHandle`
# (uvloop/includes/consts.pxi); _asyncio's FI_FREELIST_MAXLEN (Modules/_asynciomodule.c, 3.11).
FREE_LIST_HANDLES = 250
FREE_LIST_TIMER_HANDLES = 250
FREE_LIST_FUTURE_ITERS = 255
# A spare timer handle is cancelled as soon as it is made: its delay is never reached.
_SPARE_DELAY = 3600.0


def drop_dead_cursor_references(connection: sqlite3.Connection) -> int:
    """Drop the weak references to cursors that are gone from `connection`'s list of them;
    how many were dropped.

    sqlite3 keeps a weak reference to every cursor a connection makes (each `execute` makes
    one) and prunes the dead ones only every 200 cursors. The list is reached through the
    collector's view of the connection (it is no attribute); one slice assignment replaces the
    references seen, a single step under the GIL: one that the connection's own thread
    appends meanwhile stays."""
    if not isinstance(connection, sqlite3.Connection):
        raise TypeError(f"not a sqlite3 connection: {type(connection).__name__}")
    dropped = 0
    for held in gc.get_referents(connection):
        if type(held) is not list or not all(type(ref) is weakref.ref for ref in held):
            continue  # its statement cache, its factories
        seen = len(held)
        alive = [ref for ref in held[:seen] if ref() is not None]
        dropped += seen - len(alive)
        held[:seen] = alive
    return dropped


def drop_cached_statements(connection: sqlite3.Connection) -> None:
    """Empty `connection`'s cache of compiled statements (reached, like the cursor references,
    through the collector's view). A statement first run during a storm was cached among the
    storm's objects; its next run compiles it again (once: tens of microseconds). A cursor
    running one meanwhile keeps its own reference to it."""
    if not isinstance(connection, sqlite3.Connection):
        raise TypeError(f"not a sqlite3 connection: {type(connection).__name__}")
    if sqlite3.threadsafety != 3:  # a statement may be finalized from this thread
        return
    for held in gc.get_referents(connection):
        clear = getattr(held, "cache_clear", None)  # its functools.lru_cache
        if callable(clear):
            clear()


def _nothing() -> None:
    pass


class Spares:
    """Objects of the three free-listed types a connection storm churns through, made while the
    process is idle and kept, so that a release can put them in the free lists in place of
    the storm's.

    A free list keeps the last objects freed, up to its size, for the next allocation: after a
    storm, uvloop's lists of `Handle`s (a `call_soon` each) and of `TimerHandle`s (a
    `call_later`/`call_at` each: the connections' deadlines, every `asyncio.sleep`) and
    _asyncio's list of future iterators (an `await` of a future each) hold objects made during
    the storm, spread over its arenas: `bench relay` N3000 left up to 2 arenas kept by nothing but
    free-listed timer handles. No list can be emptied from Python, but each can be swapped:
    take as many objects as the list holds (it is empty now), free the spares into it (it is
    full of objects made at start), free the storm's (the list is full: they go back to
    pymalloc). `take` then makes the spares for the next swap: from the free lists, which hold
    the spares again by then.

    A timer handle holds one more object, its `when()` (a float made with it): spares made
    anew would hold new floats, 250 of them wherever the next floats land (a storm's pool, an
    arena kept for them alone). So a swap keeps the old spares' floats, and `take` frees each
    one just before the timer handle that reuses it (the float free list hands out the float
    freed last): run after a full collection, which empties that list."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        # One context for all: a handle made without one copies the current context, a new
        # object each time.
        self._context = contextvars.Context()
        self._future: asyncio.Future[None] = loop.create_future()  # never done, never awaited
        self._handles: list[asyncio.Handle] = []
        self._timer_handles: list[asyncio.TimerHandle] = []
        self._iterators: list[object] = []
        self._whens: list[float] = []  # the last spares' timer handles' floats, for the next
        self.swaps = 0
        self.take()

    def _made(
        self, whens: list[float]
    ) -> tuple[list[asyncio.Handle], list[asyncio.TimerHandle], list[object]]:
        """A free list's worth of each, cancelled at once (the loop lets go of a cancelled
        handle at its next pass, uncalled; of a timer handle as it is cancelled). Each timer
        handle is made just after one of `whens` is freed, for it to reuse."""
        handles = [
            self._loop.call_soon(_nothing, context=self._context) for _ in range(FREE_LIST_HANDLES)
        ]
        timer_handles = []
        for _ in range(FREE_LIST_TIMER_HANDLES):
            if whens:
                whens.pop()  # freed: the float free list's next
            timer_handles.append(
                self._loop.call_later(_SPARE_DELAY, _nothing, context=self._context)
            )
        for handle in (*handles, *timer_handles):
            handle.cancel()
        iterators = [self._future.__await__() for _ in range(FREE_LIST_FUTURE_ITERS)]
        return handles, timer_handles, iterators

    def take(self) -> None:
        """Hold a free list's worth of each (from the lists first, while they have any)."""
        if self._handles:
            return
        self._handles, self._timer_handles, self._iterators = self._made(self._whens)

    async def swap(self) -> None:
        """Free the spares into the free lists, and what the lists held back to pymalloc."""
        if not self._handles:
            return
        handles, timer_handles, iterators = self._made([])
        # The loop passes the cancelled handles and lets go of them; a cancelled timer
        # handle's libuv timer (which holds it) is closed at the end of that pass.
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        self._whens = [handle.when() for handle in self._timer_handles]  # kept for `take`
        self._handles.clear()  # the spares fill the lists again
        self._timer_handles.clear()
        self._iterators.clear()
        handles.clear()  # the lists are full: these are freed
        timer_handles.clear()
        iterators.clear()
        self.swaps += 1
