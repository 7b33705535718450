"""QueryAwareness answers of one connection, at most one an interval: the rest coalesced.

Why: a QueryAwareness (y-protocols message type 3) is one byte of body, and its answer is the
room's whole awareness table: kept between changes (server/sync/presence.py), so no encode,
but still ~143 KB at 1,500 cursors written into the asker's socket for four bytes on the wire.
A client that sends it in a loop made the server write megabytes a second for nothing
(memory in the send buffers, CPU for the writes), without ever overflowing its send queue if
it reads. Paced, a connection (a `/ws` socket, or one Hocuspocus document) gets at most one
answer an interval, whatever it asks.

How, as the awareness relays are paced (server/sync/pacing.py): the first query after a quiet
interval is answered at once (an honest client asks once, after it joins, and is not delayed);
the ones that follow within the interval are coalesced into one answer, sent by a single
timer (`loop.call_at`, no task) when the interval ends. That answer is made when it is sent,
so it is the table as it is then: no asker ever loses an answer nor gets a stale one.

Why 1 s (`QUERY_INTERVAL`): stock clients never ask over a socket (y-websocket asks only on
its BroadcastChannel, the Hocuspocus provider not at all; both get the table when they join),
and a state lives 30 s without renewal (y-protocols' `outdatedTimeout`), so an answer up to a
second late changes nothing anyone sees; while a flood costs at most one table a second per
connection (143 KB/s at 1,500 cursors), the order of what a peer's paced cursor moves cost.
"""

from __future__ import annotations

from collections.abc import Callable

from server.sync.pacing import Spacer

__all__ = ["QUERY_INTERVAL", "QueryPacer"]

QUERY_INTERVAL = 1.0  # seconds between two answers to one connection's queries


class QueryPacer(Spacer):
    """One connection's QueryAwareness answers: a `Spacer` whose call is the answer."""

    def __init__(self, answer: Callable[[], None], interval: float = QUERY_INTERVAL) -> None:
        """`answer` sends the room's awareness, as it is when called, to the asker."""
        super().__init__(answer, interval)

    def ask(self) -> None:
        """A query: answered now if the interval allows, else once when it ends."""
        self.poke()
