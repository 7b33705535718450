"""A connection's token expiry, enforced on the open socket, not only at connect (issue 27).

A token is checked when a socket opens, and a socket may stay open for days: without this, a
connection whose token had expired kept writing. Two guards, since a timer alone is late when
the event loop is busy: `lapsed()` is asked before anything a client sent reaches the room (a
frame handled at or after expiry is dropped and the connection closed with 4401 "token
expired"), and a timer closes a quiet connection at expiry.

Renewal: a y-websocket client renews by reconnecting with a fresh token (the editor calls
`POST /api/token/renew` and reconnects before expiry), so its old socket is simply closed. A
Hocuspocus document is asked for a fresh token (`ask_refresh`: the protocol's token sync
request, answered by the provider with its current token) `REFRESH_LEAD_SECONDS` before
expiry, or half its remaining life for a short token; `renew()` moves the deadline when the
endpoint gets a valid token of the same user, asked for or not.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from server.errors import CloseCode
from server.sync.connection import Connection
from server.sync.deadlines import Deadline, deadlines

__all__ = ["EXPIRED_REASON", "REFRESH_LEAD_SECONDS", "TokenExpiry"]

logger = logging.getLogger("draftsync.expiry")

EXPIRED_REASON = "token expired"
REFRESH_LEAD_SECONDS = 60.0


class TokenExpiry:
    """The deadline of one connection's token (seconds since the epoch, as the JWT's `exp`)."""

    __slots__ = ("_ask_refresh", "_conn", "_timer", "expires_at")

    def __init__(
        self,
        conn: Connection,
        expires_at: float,
        *,
        ask_refresh: Callable[[], None] | None = None,
    ) -> None:
        self._conn = conn
        self.expires_at = expires_at
        self._ask_refresh = ask_refresh
        self._timer: Deadline | None = None  # one of the loop's shared deadlines
        self._schedule(ask=True)

    def lapsed(self) -> bool:
        """True once the token has expired (PyJWT's rule: expired at `exp`); the connection is
        then closed with 4401 and what it sent must not be applied. One clock read."""
        if time.time() < self.expires_at:
            return False
        if self._conn.is_open:
            logger.info("token expired user=%s session=%s", self._conn.user, self._conn.session)
            self._conn.close(CloseCode.UNAUTHORIZED, EXPIRED_REASON)
        self.cancel()
        return True

    def renew(self, expires_at: float) -> bool:
        """A fresh token of the connection's user: the later deadline holds. False when it
        brings no later one (a provider answering with the token it had)."""
        if expires_at <= self.expires_at or self.lapsed():
            return False
        self.expires_at = expires_at
        self._schedule(ask=True)
        return True

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self, *, ask: bool) -> None:
        self.cancel()
        if math.isinf(self.expires_at):  # a caller the host app signed in: no token to expire
            return
        timers = deadlines()
        remaining = self.expires_at - time.time()
        if ask and self._ask_refresh is not None and remaining > 0:
            lead = min(REFRESH_LEAD_SECONDS, remaining / 2)
            self._timer = timers.call_later(remaining - lead, self._refresh)
        else:
            self._timer = timers.call_later(max(0.0, remaining), self._deadline)

    def _refresh(self) -> None:
        self._schedule(ask=False)
        if self._conn.is_open and self._ask_refresh is not None:
            self._ask_refresh()

    def _deadline(self) -> None:
        self._timer = None
        if not self.lapsed():  # the timer ran a little early on the wall clock
            self._schedule(ask=False)
