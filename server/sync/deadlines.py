"""Many far-off deadlines on one event-loop timer.

Every open socket has two: its token's expiry (`server/sync/expiry.py`) and the next keepalive
ping (`server/sync/wsprotocol.py`). A `loop.call_later` each is a `TimerHandle`, a libuv timer
and a copied context, about 550 bytes, a twentieth of an idle connection (`bench relay`
N3000). Here a deadline is one small object in a heap, and the loop holds a single timer for
the earliest. Cancelling only marks the entry; the heap is rebuilt without the cancelled ones
when they pass half of it, so a churn of short connections with day-long tokens does not grow
it.

Callbacks run in the order of their deadlines, in the context of whoever armed the loop's
timer (they need no context variable: a ping, a close). An exception a callback raises goes to
the loop's exception handler, as a `call_later` callback's would, and the others still run.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import weakref
from collections.abc import Callable

__all__ = ["Deadline", "Deadlines", "deadlines"]

# Cancelled entries tolerated before a rebuild is considered at all.
_MIN_REBUILD = 64


class Deadline:
    """A callback due at `when` (the loop's clock); `cancel()` it like a `TimerHandle`."""

    __slots__ = ("_owner", "callback", "when")

    def __init__(self, owner: Deadlines, when: float, callback: Callable[[], object]) -> None:
        self._owner = owner
        self.when = when
        self.callback: Callable[[], object] | None = callback

    def cancel(self) -> None:
        if self.callback is not None:
            self.callback = None
            self._owner.cancelled()

    def cancelled(self) -> bool:
        return self.callback is None


class Deadlines:
    """The deadlines of one event loop (`deadlines()` gives the running loop's)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0
        self._cancelled = 0

    def __len__(self) -> int:
        """Deadlines pending (cancelled ones not counted)."""
        return len(self._heap) - self._cancelled

    @property
    def held(self) -> int:
        """Entries in the heap, cancelled ones included: what it keeps alive."""
        return len(self._heap)

    def call_later(self, delay: float, callback: Callable[[], object]) -> Deadline:
        return self.call_at(self._loop.time() + delay, callback)

    def call_at(self, when: float, callback: Callable[[], object]) -> Deadline:
        deadline = Deadline(self, when, callback)
        heapq.heappush(self._heap, (when, next(self._order), deadline))
        if self._timer is None or when < self._timer_when:
            self._arm()
        return deadline

    def cancelled(self) -> None:
        self._cancelled += 1
        if self._cancelled == len(self._heap):
            # Nothing pending (the last connection left): drop the entries now, not at the
            # next rebuild. Made during a storm of connections, a few dozen of them would
            # otherwise stay, each keeping a pymalloc arena of the storm's (server/sync/memory.py).
            self._heap = []
            self._cancelled = 0
            self._arm()
            return
        if self._cancelled >= _MIN_REBUILD and self._cancelled * 2 > len(self._heap):
            self._heap = [entry for entry in self._heap if entry[2].callback is not None]
            heapq.heapify(self._heap)
            self._cancelled = 0
            self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        heap = self._heap
        while heap and heap[0][2].callback is None:  # cancelled ones at the top go now
            heapq.heappop(heap)
            self._cancelled -= 1
        if heap:
            self._timer_when = heap[0][0]
            self._timer = self._loop.call_at(self._timer_when, self._run)

    def _run(self) -> None:
        self._timer = None
        heap = self._heap
        now = self._loop.time()
        while heap and heap[0][0] <= now:
            deadline = heapq.heappop(heap)[2]
            callback = deadline.callback
            if callback is None:
                self._cancelled -= 1
                continue
            deadline.callback = None
            try:
                callback()
            except Exception as exc:
                self._loop.call_exception_handler(
                    {"message": "deadline callback failed", "exception": exc}
                )
        self._arm()


_OF_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Deadlines] = (
    weakref.WeakKeyDictionary()
)


# The last loop asked about and its deadlines: a server asks for the same loop's twice a
# connect, and the weak dictionary's lookup (a weak reference made per call) was ~1 % of a
# connect's CPU (`bench relay` N3000). Holds one loop at most, the one asked about last.
_last: tuple[asyncio.AbstractEventLoop, Deadlines] | None = None


def deadlines() -> Deadlines:
    """The running loop's deadlines (made on first use)."""
    global _last
    loop = asyncio.get_running_loop()
    last = _last
    if last is not None and last[0] is loop:
        return last[1]
    found = _OF_LOOP.get(loop)
    if found is None:
        found = _OF_LOOP[loop] = Deadlines(loop)
    _last = (loop, found)
    return found
