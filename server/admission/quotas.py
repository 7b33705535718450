"""Per-user quotas on REST: requests per second (a token bucket) and requests under way.

The bucket holds `burst` tokens and refills at `rate` a second; each REST request of a user
takes one, and a request that finds none is answered 429 with Retry-After (the seconds until
one is back). Only callers with a valid token are counted (others are answered 401 before any
work), so one key per real user; full buckets are forgotten when the table grows (past 10,000 users,
then each time it doubles), since a full bucket is what a new one would be.
"""

from __future__ import annotations

import math
import time

from server import metrics
from server.errors import CapReached, RateLimited

__all__ = ["RequestGate"]

_PRUNE_AT = 10_000  # users with a bucket before full ones are dropped


class RequestGate:
    """REST admission: the per-user rate and the server-wide number of requests under way."""

    def __init__(self, *, rate: float, burst: int, max_in_flight: int) -> None:
        self.rate = rate
        self.burst = burst
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self._buckets: dict[str, tuple[float, float]] = {}  # user -> (tokens, at)
        self._prune_at = _PRUNE_AT  # the table's size that triggers the next scan
        metrics.REQUESTS_IN_FLIGHT.set_function(lambda: self.in_flight)

    def admit(self, user: str, *, now: float | None = None) -> None:
        """Take one of `user`'s tokens and a place among the requests under way, or raise
        `RateLimited` (429) / `CapReached` (503); `done()` gives the place back."""
        now = time.monotonic() if now is None else now
        tokens, at = self._buckets.get(user, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens < 1.0:
            self._buckets[user] = (tokens, now)
            metrics.ADMISSION_REFUSED.labels(cap="rate").inc()
            wait = max(1, math.ceil((1.0 - tokens) / self.rate))
            raise RateLimited(
                f"over {self.rate:g} requests a second for this user, retry in {wait} s",
                retry_after=wait,
            )
        if self.in_flight >= self.max_in_flight:
            metrics.ADMISSION_REFUSED.labels(cap="requests").inc()
            raise CapReached(
                f"server at its limit of {self.max_in_flight} requests under way, try again later"
            )
        self._buckets[user] = (tokens - 1.0, now)
        if len(self._buckets) > self._prune_at:
            self._prune(now)
            # Amortised: the next scan waits until the table has doubled. Were it due again at
            # once, a crowd of users whose buckets all still refill (none to drop) would cost
            # a scan of the whole table on every request.
            self._prune_at = max(_PRUNE_AT, 2 * len(self._buckets))
        self.in_flight += 1

    def done(self) -> None:
        self.in_flight -= 1

    def _prune(self, now: float) -> None:
        full = [
            user
            for user, (tokens, at) in self._buckets.items()
            if tokens + (now - at) * self.rate >= self.burst
        ]
        for user in full:
            del self._buckets[user]
