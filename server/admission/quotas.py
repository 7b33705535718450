"""Per-user quotas on REST: requests per second (a token bucket) and requests under way.

The bucket holds `burst` tokens and refills at `rate` a second; each REST request of a user
takes one, and a request that finds none is answered 429 with Retry-After (the seconds until
one is back). Only callers with a valid token are counted (others are answered 401 before any
work), so one key per real user; the table of buckets and its pruning are
server/admission/buckets.py's, shared with the rate of opening drafts on a socket.
"""

from __future__ import annotations

import time

from server import metrics
from server.admission.buckets import TokenBuckets
from server.errors import CapReached, RateLimited

__all__ = ["RequestGate"]


class RequestGate:
    """REST admission: the per-user rate and the server-wide number of requests under way."""

    def __init__(self, *, rate: float, burst: int, max_in_flight: int) -> None:
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.buckets = TokenBuckets(rate=rate, burst=burst)
        metrics.REQUESTS_IN_FLIGHT.set_function(lambda: self.in_flight)

    def admit(self, user: str, *, now: float | None = None) -> None:
        """Take one of `user`'s tokens and a place among the requests under way, or raise
        `RateLimited` (429) / `CapReached` (503); `done()` gives the place back."""
        now = time.monotonic() if now is None else now
        wait = self.buckets.take(user, now)
        if wait:
            metrics.ADMISSION_REFUSED.labels(cap="rate").inc()
            raise RateLimited(
                f"over {self.buckets.rate:g} requests a second for this user, retry in {wait} s",
                retry_after=wait,
            )
        if self.in_flight >= self.max_in_flight:
            self.buckets.give_back(user)  # refused for the server's sake, not the user's rate
            metrics.ADMISSION_REFUSED.labels(cap="requests").inc()
            raise CapReached(
                f"server at its limit of {self.max_in_flight} requests under way, try again later"
            )
        self.in_flight += 1

    def done(self) -> None:
        self.in_flight -= 1
