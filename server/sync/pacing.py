"""Awareness relays of one connection, at most `rate` a second: the rest coalesced, none lost.

Why: a client may send awareness as fast as it likes (a cursor moved on every key, or a flood),
and each relay is a frame to every other connection of the room and a Redis message. Paced,
a connection costs the room at most `rate` frames a second to each peer, whatever it sends.

How, cheaply: the first update after a quiet interval is relayed at once (a lone cursor move
is not delayed); the ones that follow within the interval are merged into one pending update,
the latest entry per client id, and a single timer (`loop.call_at`, no task) relays it when
the interval ends. The peers thus always end on the last state sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from crdt.awareness import AwarenessEntry, encode_awareness_update

__all__ = ["AwarenessPacer", "Spacer"]


class Spacer:
    """Calls `fire` at most once an interval, however often it is poked: at once when the last
    call was an interval ago or more (a lone poke is not delayed), else once when the interval
    ends, for every poke meanwhile. One loop timer (`loop.call_at`), no task. The one pacing
    rule of a connection's awareness relays (below) and QueryAwareness answers
    (server/sync/querypacing.py)."""

    def __init__(self, fire: Callable[[], None], interval: float) -> None:
        self._fire = fire
        self._interval = interval
        self._loop = asyncio.get_running_loop()
        self._next = 0.0  # loop time from which the next poke may fire at once
        self._timer: asyncio.TimerHandle | None = None

    @property
    def pending(self) -> bool:
        """A call waits for the interval's end."""
        return self._timer is not None

    def poke(self) -> None:
        """Fire now if the interval allows, else once when it ends."""
        if self._timer is not None:
            return  # the call due already covers this poke
        now = self._loop.time()
        if now >= self._next:
            self._next = now + self._interval
            self._fire()
            return
        self._timer = self._loop.call_at(self._next, self._due)

    def cancel(self) -> None:
        """Drop the call due (its connection left): a gone connection keeps no timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _due(self) -> None:
        self._timer = None
        self._next = self._loop.time() + self._interval
        self._fire()


class AwarenessPacer:
    """One connection's awareness relays, `rate` a second at most (a `Spacer`), the entries
    that wait merged to the latest per client id."""

    def __init__(self, rate: float, relay: Callable[[bytes], None]) -> None:
        """`relay` is given each awareness update (the payload, not the frame) to send on."""
        self._relay = relay
        self._pending: dict[int, AwarenessEntry] = {}
        self._spacer = Spacer(self._flush, 1.0 / rate)

    @property
    def pending(self) -> int:
        """Client ids whose latest entry waits for the next relay."""
        return len(self._pending)

    def push(self, entries: Iterable[AwarenessEntry]) -> None:
        """Relay these entries now if the interval allows, else with the next relay."""
        for entry in entries:
            self._pending[entry.client_id] = entry
        self._spacer.poke()

    def cancel(self) -> None:
        """Drop what is pending (its connection left: the removal of its ids supersedes it)."""
        self._spacer.cancel()
        self._pending.clear()

    def _flush(self) -> None:
        pending, self._pending = self._pending, {}
        if pending:
            self._relay(encode_awareness_update(pending.values()))
