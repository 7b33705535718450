"""Rebuild slots: how many past versions the server, and one user, may rebuild at once.

A past version (`GET .../versions/{v}`, `GET .../diff`, `POST .../restore`) is rebuilt from
the nearest snapshot plus the log after it, read into a fresh doc, compared or encoded: for a
5 MB draft megabytes of memory and tens of milliseconds of CPU a request, on worker threads
that still hold the GIL inside pycrdt (docs/performance-notes.md). The requests gate
(`quotas.py`) counts a rebuild as one request among 256; here they are counted on their own,
so that a few users asking for big versions at once cannot take every core and gigabytes:

* over `max_running` rebuilds under way server-wide: `CapReached` (503, Retry-After);
* over `max_per_user` under way for one user: `RateLimited` (429, Retry-After), as a user over
  their request rate is.

What is under way is never touched. Everything runs on the event loop: the counts need no lock.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator

from server import metrics
from server.errors import CapReached, RateLimited

__all__ = ["RebuildSlots"]


class RebuildSlots:
    """Rebuilds under way, server-wide and per user; `slot(user)` takes one or refuses."""

    def __init__(self, *, max_running: int, max_per_user: int) -> None:
        self.max_running = max_running
        self.max_per_user = max_per_user
        self.running = 0
        self._per_user: Counter[str] = Counter()

    @contextlib.contextmanager
    def slot(self, user: str) -> Iterator[None]:
        """Hold one rebuild slot for `user` while the block runs, or raise before it runs."""
        if self._per_user[user] >= self.max_per_user:
            metrics.ADMISSION_REFUSED.labels(cap="user-rebuilds").inc()
            raise RateLimited(
                f"user at the limit of {self.max_per_user} versions rebuilt at once, retry in 1 s",
                retry_after=1,
            )
        if self.running >= self.max_running:
            metrics.ADMISSION_REFUSED.labels(cap="rebuilds").inc()
            raise CapReached(
                f"server at its limit of {self.max_running} versions rebuilt at once, "
                "try again later"
            )
        self.running += 1
        self._per_user[user] += 1
        try:
            yield
        finally:
            self.running -= 1
            self._per_user[user] -= 1
            if self._per_user[user] <= 0:
                del self._per_user[user]  # no entry left behind per user ever seen
