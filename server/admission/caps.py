"""Connection caps: how many WebSockets the server, a user and a draft may hold at once.

Counted here, asked by both WebSocket endpoints (`/ws/...` and `/hocuspocus`):

* a **socket** is one WebSocket (a y-websocket connection, or a Hocuspocus socket that may
  carry many documents); `max_connections` bounds them server-wide, and `max_unauthenticated`
  bounds those whose token has not been accepted yet: a Hocuspocus socket before its first
  document is authorised, which may wait for its Auth message for up to a minute (a
  y-websocket socket's token is in its URL, checked before it is counted);
* a **connection** is one draft open on one socket (what a room holds): `max_per_user` and
  `max_per_draft` bound them.

A new socket or connection over a cap is refused with `CapReached` (1013, "try again later";
REST 503 with Retry-After); what is already open is never touched. Everything runs on the
event loop, so the counts need no lock.
"""

from __future__ import annotations

from collections import Counter

from server import metrics
from server.errors import CapReached

__all__ = ["ConnectionCaps", "SocketLease"]


class SocketLease:
    """One admitted WebSocket: untrusted until `trust()`, counted until `release()`."""

    def __init__(self, caps: ConnectionCaps) -> None:
        self._caps = caps
        self.trusted = False
        self.released = False

    def trust(self) -> None:
        if not self.trusted and not self.released:
            self.trusted = True
            self._caps.unauthenticated -= 1

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        self._caps.sockets -= 1
        if not self.trusted:
            self._caps.unauthenticated -= 1


class ConnectionCaps:
    def __init__(
        self,
        *,
        max_connections: int,
        max_unauthenticated: int,
        max_per_user: int,
        max_per_draft: int,
    ) -> None:
        self.max_connections = max_connections
        self.max_unauthenticated = max_unauthenticated
        self.max_per_user = max_per_user
        self.max_per_draft = max_per_draft
        self.sockets = 0
        self.unauthenticated = 0
        self._per_user: Counter[str] = Counter()
        self._per_draft: Counter[str] = Counter()
        metrics.WEBSOCKETS.set_function(lambda: self.sockets)
        metrics.WEBSOCKETS_UNAUTHENTICATED.set_function(lambda: self.unauthenticated)

    def open_socket(self, *, trusted: bool = False) -> SocketLease:
        """Admit a new WebSocket, or raise `CapReached`; `trusted`: its token is accepted
        already (y-websocket's is in its URL), so the unauthenticated cap does not apply."""
        if self.sockets >= self.max_connections:
            _refuse("server", f"server at its limit of {self.max_connections} connections")
        if not trusted and self.unauthenticated >= self.max_unauthenticated:
            _refuse(
                "unauthenticated",
                f"server at its limit of {self.max_unauthenticated} unauthenticated connections",
            )
        self.sockets += 1
        self.unauthenticated += 1
        lease = SocketLease(self)
        if trusted:
            lease.trust()
        return lease

    def join(self, user: str, draft_id: str) -> None:
        """Count a connection of `user` to `draft_id`, or raise `CapReached`; `leave` undoes."""
        if self._per_user[user] >= self.max_per_user:
            _refuse("user", f"user at the limit of {self.max_per_user} connections")
        if self._per_draft[draft_id] >= self.max_per_draft:
            _refuse("draft", f"draft at the limit of {self.max_per_draft} connections")
        self._per_user[user] += 1
        self._per_draft[draft_id] += 1

    def leave(self, user: str, draft_id: str) -> None:
        for counter, key in ((self._per_user, user), (self._per_draft, draft_id)):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]  # no entry left behind per user or draft ever seen


def _refuse(cap: str, why: str) -> None:
    metrics.ADMISSION_REFUSED.labels(cap=cap).inc()
    raise CapReached(f"{why}, try again later")
