"""Per-user token buckets: the one rate-limiting rule of admission, for REST requests
(server/admission/quotas.py), for opening drafts on a socket (server/admission/connects.py) and,
keyed by client address rather than user, for failed sign-ins (server/admission/authfailures.py);
its refill rule (`refilled`, `seconds_until_one`) is also a connection's sync step 2 budget's
(server/sync/step2budget.py).

Each key (a user, named by a verified token, so that nobody spends another's budget) has a
bucket of `burst` tokens refilled at `rate` a second; `take` spends one or says how long until
one is back. A full bucket is what a new one would be, so full buckets are forgotten when the
table grows (past 10,000 keys, then each time it doubles): the table holds the users active in
the last `burst / rate` seconds, not every user ever seen. Pure arithmetic on `now`: no clock
of its own, no I/O, so it is tested without waiting.
"""

from __future__ import annotations

import math

__all__ = ["PRUNE_AT", "TokenBuckets", "refilled", "seconds_until_one"]

PRUNE_AT = 10_000  # keys with a bucket before full ones are dropped


def refilled(tokens: float, at: float, now: float, *, rate: float, burst: float) -> float:
    """The tokens of a bucket left with `tokens` at `at`, at `now`: refilled at `rate` a
    second, never above `burst`."""
    return min(burst, tokens + (now - at) * rate)


def seconds_until_one(tokens: float, rate: float) -> float:
    """How long a bucket holding `tokens` (< 1) waits for a whole token, at `rate` a second."""
    return (1.0 - tokens) / rate


def _retry_after(tokens: float, rate: float) -> int:
    """`seconds_until_one` in whole seconds, at least 1: a Retry-After."""
    return max(1, math.ceil(seconds_until_one(tokens, rate)))


class TokenBuckets:
    """One token bucket per key, `burst` deep and refilled at `rate` tokens a second."""

    def __init__(self, *, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._prune_at = PRUNE_AT  # the table's size that triggers the next scan

    def take(self, key: str, now: float) -> int:
        """Spend one of `key`'s tokens and return 0, or, with none left, spend nothing and
        return the whole seconds (at least 1) until one is back: the Retry-After."""
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        tokens = refilled(tokens, at, now, rate=self.rate, burst=self.burst)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return _retry_after(tokens, self.rate)
        self._buckets[key] = (tokens - 1.0, now)
        if len(self._buckets) > self._prune_at:
            self._prune(now)
            # Amortised: the next scan waits until the table has doubled. Were it due again at
            # once, a crowd of keys whose buckets all still refill (none to drop) would cost
            # a scan of the whole table on every take.
            self._prune_at = max(PRUNE_AT, 2 * len(self._buckets))
        return 0

    def wait(self, key: str, now: float) -> int:
        """0 if `key` has a token to spend, else the whole seconds (at least 1) until one is
        back; spends nothing. For a bucket spent by something else than what is refused:
        failed sign-ins take, and every sign-in from the key asks first."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0
        tokens = refilled(*bucket, now, rate=self.rate, burst=self.burst)
        return 0 if tokens >= 1.0 else _retry_after(tokens, self.rate)

    def give_back(self, key: str) -> None:
        """Return the token `take` just spent, when what it was spent on was refused by
        something else (REST: the server's cap on requests under way)."""
        bucket = self._buckets.get(key)
        if bucket is not None:
            tokens, at = bucket
            self._buckets[key] = (min(float(self.burst), tokens + 1.0), at)

    def __len__(self) -> int:
        return len(self._buckets)

    def __contains__(self, key: object) -> bool:
        return key in self._buckets

    def _prune(self, now: float) -> None:
        full = [
            key
            for key, (tokens, at) in self._buckets.items()
            if refilled(tokens, at, now, rate=self.rate, burst=self.burst) >= self.burst
        ]
        for key in full:
            del self._buckets[key]
