"""The per-user rate of opening drafts on a socket: joins a second, as a token bucket.

A join is one draft opened on a socket: a y-websocket connection, or one Hocuspocus document's
authorisation. Each costs the event loop about a millisecond (handshake, token, role, join,
sync step 1: docs/performance-notes.md "Connect path"), so one user reconnecting in a tight loop
(a buggy client, or a hostile one) could take a core and slow every other draft; the caps of
server/admission/caps.py bound how many are open at once, not how fast they are opened.

A join is counted once its token is verified (the key is the user the token names, so nobody
spends another's budget) and before anything else is done for it: one refused costs no store
read. Every such attempt counts, admitted or refused by a later check, since each cost the
work of its verification. Over the rate the join is refused with `RateLimited` (1013 and
"opening drafts too fast, retry in N s"); nothing open is touched.
"""

from __future__ import annotations

import time

from server import metrics
from server.admission.buckets import TokenBuckets
from server.errors import RateLimited

__all__ = ["ConnectRate"]


class ConnectRate:
    """Joins per user: `burst` at once, `rate` a second after."""

    def __init__(self, *, rate: float, burst: int) -> None:
        self.buckets = TokenBuckets(rate=rate, burst=burst)

    def admit(self, user: str, *, now: float | None = None) -> None:
        """Count a join of `user`, or raise `RateLimited` (nothing counted)."""
        wait = self.buckets.take(user, time.monotonic() if now is None else now)
        if wait:
            metrics.ADMISSION_REFUSED.labels(cap="connect-rate").inc()
            raise RateLimited(
                f"opening drafts too fast, retry in {wait} s "
                f"(at most {self.buckets.rate:g} a second for this user)",
                retry_after=wait,
            )
