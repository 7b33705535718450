"""Failed authentications per client address: a token bucket each failure spends, and while an
address has none left every sign-in from it is refused before any token work.

The other rates (server/admission/connects.py, quotas.py) count only callers whose token
verified, keyed by the user it names. A loop of connects with bad tokens (an app retrying an
expired token at full speed, or someone guessing) names no user, yet each costs the event loop a
WebSocket handshake and a verification (~0.5-1 ms): one address looping could take a core from
every user. So a failure (a token that does not verify or has expired, or none where one is
required) spends one of its address's tokens, and an address with none left is answered
`RateLimited` (1013 on a socket, 429 on REST, with "too many failed sign-ins from this address,
retry in N s") before its token is even read: a good token from it is refused too, but only
while the bucket is empty, and a sign-in that succeeds never spends anything.

The address is the ASGI scope's `client[0]`: behind a trusted proxy uvicorn has put the real
client there already (its proxy headers, trusted from `FORWARDED_ALLOW_IPS`, 127.0.0.1 and ::1
by default). Loopback is not exempt. Refusals are counted in
`draftsync_admission_refused_total{cap="auth-failures"}` and logged as one warning a minute at
most (the address, never a token), since a flood would flood the log.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from server import metrics
from server.admission.buckets import TokenBuckets
from server.errors import RateLimited

__all__ = ["WARN_EVERY_SECONDS", "AuthFailures", "client_address"]

logger = logging.getLogger("draftsync.admission")

WARN_EVERY_SECONDS = 60.0  # at most one warning about refused addresses this often


def client_address(scope: Any) -> str:
    """The caller's address from an ASGI scope (`client[0]`); "" when the server has none (a
    Unix socket without proxy headers): all such callers then share one bucket."""
    client = scope.get("client") if scope is not None else None
    return str(client[0]) if client else ""


class AuthFailures:
    """Failed sign-ins per client address: `burst` at once, `rate` a second after."""

    def __init__(self, *, rate: float, burst: int) -> None:
        self.buckets = TokenBuckets(rate=rate, burst=burst)
        self._warned_at = -math.inf
        self._refused_unwarned = 0

    def check(self, address: str, *, now: float | None = None) -> None:
        """Raise `RateLimited` if `address` has no failure left to spend; spends nothing."""
        now = time.monotonic() if now is None else now
        wait = self.buckets.wait(address, now)
        if not wait:
            return
        metrics.ADMISSION_REFUSED.labels(cap="auth-failures").inc()
        self._refused_unwarned += 1
        if now - self._warned_at >= WARN_EVERY_SECONDS:
            logger.warning(
                "sign-ins refused address=%s: over %g failed sign-ins a second from it "
                "(--address-auth-failures-per-second; a proxy's address: set "
                "FORWARDED_ALLOW_IPS to it); %d refused since the last warning",
                address,
                self.buckets.rate,
                self._refused_unwarned,
            )
            self._warned_at = now
            self._refused_unwarned = 0
        raise RateLimited(
            f"too many failed sign-ins from this address, retry in {wait} s", retry_after=wait
        )

    def failed(self, address: str, *, now: float | None = None) -> None:
        """Count one failed sign-in of `address` (nothing more once its bucket is empty)."""
        self.buckets.take(address, time.monotonic() if now is None else now)
