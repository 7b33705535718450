"""How many sync step 2 replies one connection may cause to be encoded: a small burst, refilled
slowly; past it, its latest state vector is answered when a token is back.

Why: a reply that is not kept (server/sync/replies.py) is one `Doc.get_update` on the event
loop with the GIL held: 10-22 ms for a 5 MB draft (docs/performance-notes.md, "Sync step 1
from a hostile client"). Normalizing the state vector (server/sync/statevector.py) answers
every bogus vector from the kept frame, but a client may still send vectors *within* the doc's
clocks, a different one each frame (`{a: 1}`, `{a: 2}`, ...): each is a real diff, none is
kept for long. Unpaced, ~45 such frames a second stalled every draft of the server.

Each connection (a y-websocket socket, or one document of a Hocuspocus socket) holds `BURST`
tokens, one back every `REFILL_SECONDS`; an encode takes one, and so does decoding a state
vector longer than `statevector.FREE_ENTRIES` (Python, linear in its size), and so does a
kept reply of `replies.LARGE_REPLY_BYTES` or more (no encode, but megabytes sent for the four
bytes that asked). A small reply served from the kept frames for a short vector costs nothing
and takes none.

Over the budget the reply is *answered later*, not refused (1013): the connection's latest
state vector is kept (one per connection: a newer one replaces it, and any reply sent to the
connection meanwhile drops it) and answered when its token is back, through the gate with the
ticket the doc is at then, as any reply. Why later and not a close: an honest client is never
broken by it, whatever it sends; one that is closed with 1013 reconnects and sends its step 1
again on a fresh connection (a fresh budget), so a close would pace nothing and cost a
handshake more. The stock clients stay far inside the budget: y-websocket sends one SyncStep1
per connect, and one per `resyncInterval` when set (typically 5 s or more); HocuspocusProvider
one per connect and per `forceSync`. What a hostile client gets is at most one encode per
`REFILL_SECONDS` after its burst, and its backlog is one state vector.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from server.admission.buckets import refilled, seconds_until_one

__all__ = ["BURST", "REFILL_SECONDS", "Step2Budget"]

# Encodes a connection may cause at once: a stock client needs one per connect (y-websocket)
# or per document (Hocuspocus), a few more if it resyncs or reloads right away.
BURST = 4
# One more encode every this many seconds: y-websocket's `resyncInterval`, when set, is
# typically 5 s or more, so a client that resyncs on that timer never waits.
REFILL_SECONDS = 5.0
_RATE = 1.0 / REFILL_SECONDS  # tokens a second (server/admission/buckets.py's refill rule)


class Step2Budget:
    """One connection's tokens (a token bucket), and its state vector waiting for one."""

    __slots__ = ("_answer", "_loop", "_stamp", "_timer", "_tokens", "pending")

    def __init__(self, answer: Callable[[bytes], None]) -> None:
        """`answer` is called with the pending state vector once a token is back."""
        self._answer = answer
        self._loop = asyncio.get_running_loop()
        self._tokens = float(BURST)
        self._stamp = self._loop.time()
        self._timer: asyncio.TimerHandle | None = None
        self.pending: bytes | None = None  # the latest state vector waiting for a token

    def take(self) -> bool:
        """Take a token for an encode if one is there."""
        now = self._loop.time()
        tokens = refilled(self._tokens, self._stamp, now, rate=_RATE, burst=BURST)
        self._stamp = now
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return True
        self._tokens = tokens
        return False

    def defer(self, state_vector: bytes) -> None:
        """Answer `state_vector` once a token is back (replacing one that waited)."""
        self.pending = state_vector
        if self._timer is None:
            wait = seconds_until_one(self._tokens, _RATE)
            self._timer = self._loop.call_at(self._stamp + wait, self._due)

    def cancel(self) -> None:
        """The connection left: nothing is answered any more."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.pending = None

    def _due(self) -> None:
        self._timer = None
        pending, self.pending = self.pending, None
        if pending is not None:
            self._answer(pending)
