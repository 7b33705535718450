"""The gate: the one place where a room's accepted state becomes visible.

Every message a room sends that reveals document content (a relay, a joiner's sync step 2, a
write acknowledgement) is handed to its room's gate tagged with the *ticket* it depends on:
the number of the room's last accepted change when the message was made. The gate releases
it once that ticket is committed, and not before. A joiner's sync step 2 is computed from
the doc at once (the doc may hold accepted changes not yet committed) and held until they are;
it then holds exactly committed state. REST reads and writes of a loaded draft wait for the
same tickets (`until_committed`), never for the whole commit pipeline.

Tickets are the room's own count of accepted changes, not store versions: with several
instances PostgreSQL numbers the versions, and a change another instance committed (fan-out)
is durable already, so it takes no ticket and waits for nothing.

The release rule is the only difference between the durability modes: `durable` releases at
commit, `relaxed` at acceptance ("send now, commit soon"). Messages that reveal no content
(awareness, our sync step 1, a refusal) are not gated at all.

Cost on the hot path: when the commit already happened (the group commit was idle and
committed the change inside `submit`), `send` finds nothing held and sends at once; otherwise
one append, and one pop at release. Held messages are released in the order they were given.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Collection
from typing import NamedTuple, Protocol

__all__ = ["Gate", "GateClosed", "Recipient"]


class Recipient(Protocol):
    """What the gate needs of a connection."""

    def send(self, frame: bytes, *, update: bytes | None = None) -> None: ...


class GateClosed(Exception):
    """The room failed or was dropped: what it held will never be committed by it."""


class _Held(NamedTuple):
    after: int
    to: Collection[Recipient]
    frame: bytes
    update: bytes | None


class Gate:
    def __init__(self, *, release_on_accept: bool = False) -> None:
        self.accepted = 0  # tickets handed out: the room's accepted changes
        self.committed = 0  # tickets committed, always a prefix (the pipeline commits in order)
        self._release_on_accept = release_on_accept
        self._held: deque[_Held] = deque()
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._closed: str | None = None

    @property
    def pending(self) -> int:
        """Accepted changes not committed yet."""
        return self.accepted - self.committed

    @property
    def is_closed(self) -> bool:
        return self._closed is not None

    def accept(self) -> int:
        """A ticket for a change the room just accepted."""
        self.accepted += 1
        return self.accepted

    def visible(self, after: int) -> bool:
        return after <= self.committed or self._release_on_accept

    def send(
        self,
        to: Collection[Recipient],
        frame: bytes,
        *,
        after: int,
        update: bytes | None = None,
        exclude: object = None,
    ) -> None:
        """Send `frame` to `to` but `exclude` once ticket `after` is committed (at once if
        it is).

        `to` is taken as it is now (copied only if the message is held): a connection that
        joins later gets this content in its own sync step 2, tagged with a later ticket."""
        if self._closed is not None:
            return
        if not self._held and (after <= self.committed or self._release_on_accept):
            for recipient in to:
                if recipient is not exclude:
                    recipient.send(frame, update=update)
            return
        recipients = [recipient for recipient in to if recipient is not exclude]
        self._held.append(_Held(after, recipients, frame, update))

    def commit(self, ticket: int) -> None:
        """Ticket `ticket` (and every earlier one) is committed: release what waited for it."""
        if ticket > self.committed:
            self.committed = ticket
        committed = self.committed
        held = self._held
        if held:  # `visible` inlined: this runs once a committed write
            every = self._release_on_accept
            while held and (held[0].after <= committed or every):
                _, to, frame, update = held.popleft()
                for recipient in to:
                    recipient.send(frame, update=update)
        waiters = self._waiters
        while waiters and waiters[0][0] <= committed:
            _, waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    async def until_committed(self, ticket: int | None = None) -> None:
        """Return once `ticket` (default: everything accepted so far) is committed; raise
        GateClosed if the room fails or is dropped first."""
        if ticket is None:
            ticket = self.accepted
        if self._closed is not None:
            raise GateClosed(self._closed)
        if ticket <= self.committed:
            return
        waiter = asyncio.get_running_loop().create_future()
        # Tickets are waited for in increasing order almost always; keep the deque sorted.
        if self._waiters and self._waiters[-1][0] > ticket:
            items = sorted([*self._waiters, (ticket, waiter)], key=lambda item: item[0])
            self._waiters = deque(items)
        else:
            self._waiters.append((ticket, waiter))
        await waiter

    def close(self, reason: str) -> None:
        """Drop what is held (its recipients are being closed) and fail every waiter."""
        if self._closed is not None:
            return
        self._closed = reason
        self._held.clear()
        while self._waiters:
            _, waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(GateClosed(reason))
