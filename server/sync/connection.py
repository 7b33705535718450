"""One client's WebSocket as the room sees it: a bounded send queue drained by one writer task.

Why a queue and a writer, not `await socket.send()` in the room: a client that stops reading
fills its TCP buffers and an inline send would block the whole room. Here the room only appends
to the queue (never waits); when the queue passes its bounds (messages or bytes) the client is
closed with 4408 and the room flows on. The writer merges runs of pending updates into one
message (at most `MAX_MERGE` a merge: pycrdt's `merge_updates` grows superlinearly), which is
what keeps a flooded room's latency in milliseconds. While the writer is idle, `send` sends
at once itself (`_send_now`); the writer finishes any such send that has to wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator, Sequence
from enum import Enum
from typing import Any, NamedTuple, Protocol

from pycrdt import merge_updates

from crdt.journal import JournalEvent
from crdt.origins import ClientOrigin
from crdt.protocol import Auth, Update, encode_message
from server import faults, metrics
from server.access import Role
from server.errors import CloseCode
from server.sync.flag import Flag
from server.sync.resume import Started

__all__ = [
    "MAX_CLOSE_REASON_BYTES",
    "MAX_MERGE",
    "Connection",
    "ConnectionState",
    "Socket",
    "fit_close_reason",
]

logger = logging.getLogger("draftsync.connection")

MAX_MERGE = 128

# RFC 6455 5.5: a control frame's payload is at most 125 bytes, 2 of them the close code. A longer
# reason cannot be sent at all (the websockets layer raises), and the client would get no close
# frame, hence no code either.
MAX_CLOSE_REASON_BYTES = 123


def fit_close_reason(reason: str) -> str:
    """`reason`, cut (on a character boundary, marked with an ellipsis) to fit a close frame."""
    data = reason.encode()
    if len(data) <= MAX_CLOSE_REASON_BYTES:
        return reason
    ellipsis = "\u2026"
    keep = MAX_CLOSE_REASON_BYTES - len(ellipsis.encode())
    return data[:keep].decode(errors="ignore") + ellipsis


class Socket(Protocol):
    """What a connection needs of a WebSocket (Starlette's `WebSocket` has exactly this).
    A socket may also have `send_now(data) -> bool`: send on the caller's turn if it can
    without waiting (True), else send nothing (False) and leave it to `send_bytes`."""

    async def send_bytes(self, data: bytes) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


class ConnectionState(Enum):
    OPEN = "open"
    CLOSING = "closing"  # a close was requested; the writer sends it after any flush
    CLOSED = "closed"


class _Outgoing(NamedTuple):
    frame: bytes
    update: bytes | None  # the raw Yjs update when the frame is a sync update (mergeable)


# The queue of a connection that never queued (most of them: `send` sends at once while the
# writer is idle): shared, always empty (cleared, never appended to). A deque's first block is
# about 760 bytes, a fifth of what an idle connection's own objects weighed.
_NO_FRAMES: deque[_Outgoing] = deque()


# How a connection that writes lazily starts its writer (`asyncio.create_task`).
_Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]


class Connection:
    # The room sends its sync step 1 when the connection joins (y-websocket); a Hocuspocus
    # client's connection sends it in reply to the client's step 1 instead.
    sync_on_join = True

    def __init__(
        self,
        socket: Socket,
        *,
        user: str,
        session: str,
        can_write: bool,
        max_messages: int,
        max_bytes: int,
    ) -> None:
        self._socket = socket
        self.user = user
        self.session = session
        self.origin = ClientOrigin(user=user, session=session)
        self.can_write = can_write
        # A role the caller's token grants on this draft (server/access.py): a live change of
        # the stored role never takes the connection below it (server/sync/sharing.py).
        self.granted: Role | None = None
        self.state = ConnectionState.OPEN
        self.close_code: int | None = None
        self.close_reason = ""
        # This connection's updates handed to the group commit, and those committed.
        self.submitted = 0
        self.committed = 0
        self._told_read_only = False
        self._queue = _NO_FRAMES
        self._queued_bytes = 0
        self._max_messages = max_messages
        self._max_bytes = max_bytes
        self._flush_before_close = False
        # The parked writer's wake-up (a future, not an Event: no deque per connection).
        self._wakeup: asyncio.Future[None] | None = None
        # The writer waits for work: `send` may send at once. True before the writer starts
        # too, so that the frames a join sends go out on the joiner's turn (with the
        # handshake's 101 response, server/sync/wsprotocol.py); a send that has to wait is
        # left in flight for the writer, which finishes it first.
        self._writer_parked = True
        self._in_flight: Awaitable[None] | None = None  # a send `send` started, for the writer
        self.finished = Flag()
        # `write_lazily`: how to start the writer when it is first needed, and that writer.
        self._spawn: _Spawn | None = None
        self._writer: asyncio.Task[None] | None = None
        # Told once when a close is asked (its room, while the connection is in one): the
        # socket may linger long after (a client that stopped reading, closed 4408, gets no
        # close frame through and is dropped only by the keepalive, 20 s ping + 20 s), and
        # what the connection shows others (its cursors) must not (server/sync/room.py).
        self.on_close: Callable[[Connection], None] | None = None

    @property
    def is_open(self) -> bool:
        return self.state is ConnectionState.OPEN

    def send(self, frame: bytes, *, update: bytes | None = None) -> None:
        """Queue a frame; never waits. Overflowing the bounds closes the connection (4408)."""
        if self.state is not ConnectionState.OPEN:
            return
        # The bounds apply to the backlog already waiting, not to the frame that comes: a frame
        # bigger than the byte bound (the sync step 2 of a large draft) must still go out to a
        # client that keeps up, else no client could ever open that draft.
        if len(self._queue) >= self._max_messages or self._queued_bytes >= self._max_bytes:
            logger.warning(
                "send queue overflow user=%s session=%s queued=%d bytes=%d",
                self.user,
                self.session,
                len(self._queue),
                self._queued_bytes,
            )
            self.close(CloseCode.TOO_SLOW, "too slow: send queue overflow")
            return
        if self._writer_parked and not self._queue and self._in_flight is None:
            self._send_now(frame)
            return
        if self._queue is _NO_FRAMES:
            self._queue = deque()
        self._queue.append(_Outgoing(frame, update))
        self._queued_bytes += len(frame)
        self._wake()

    def _wake(self) -> None:
        waiting, self._wakeup = self._wakeup, None
        if waiting is not None and not waiting.done():
            waiting.set_result(None)
        elif self._spawn is not None and self._writer is None:
            self._writer_parked = False  # sends queue behind the work it was started for
            self._writer = self._spawn(self.run_writer())

    def write_lazily(self, spawn: _Spawn) -> None:
        """Start the writer task (with `spawn`) only when there is work `send` cannot do on
        the caller's turn (a send that has to wait, a queue, a close), not for every
        connection: most connections of a draft only ever get frames that go out at once,
        and a task each was ~2 % of a connect's CPU and ~0.7 KB of an idle connection
        (`bench relay` N3000). The reader ends the connection with `finish`."""
        self._spawn = spawn
        if self._in_flight is not None or self._queue or not self.is_open:
            self._wake()  # work from before (the join's frames): the writer starts now

    async def finish(self) -> None:
        """A connection that writes lazily, at its end: close it (a no-op when a close is
        under way) and wait for the writer to be done; a writer that never had to start runs
        here, on the caller's task, to send the close."""
        self._spawn = None
        self.close(1000, "")
        writer = self._writer
        if writer is not None:
            await writer
        else:
            self._writer_parked = False
            await self.run_writer()

    def _send_now(self, frame: bytes) -> None:
        """Send on the caller's turn while the writer is idle: waking the writer for it would
        cost a trip through the event loop, a good part of a lone keystroke's latency. A send
        that has to wait (the transport pushes back) or fails is the writer's to finish."""
        metrics.TALLY.bytes_sent += len(frame)
        socket = self._socket
        try:
            if faults.ARMED:
                faults.trip("send")
            # A socket that can send at once without a coroutine does (server/sync/endpoint.py).
            send_now = getattr(socket, "send_now", None)
            if send_now is not None and send_now(frame):
                return
            sending = Started(socket.send_bytes(frame))
        except Exception as exc:
            self._in_flight = _Raising(exc)
        else:
            if sending.finished:
                return
            self._in_flight = sending
        self._wake()

    def set_can_write(self, allowed: bool) -> None:
        """A live role change. A downgrade is told at once (auth "read-only"), not at the next
        write; an upgrade re-arms that message for a later downgrade."""
        if allowed == self.can_write:
            return
        self.can_write = allowed
        if allowed:
            self._told_read_only = False
        else:
            self.deny_write()

    def deny_write(self) -> None:
        """Tell a read-only client once (y-protocols auth message) that its updates are dropped."""
        if not self._told_read_only:
            self._told_read_only = True
            self.send(encode_message(Auth(reason="read-only")))

    def tell_events(self, events: Sequence[JournalEvent]) -> None:
        """Journal events just committed in this connection's room; y-websocket has no message
        for them (a Hocuspocus connection sends some as Stateless)."""

    def close(self, code: int, reason: str, *, flush: bool = False) -> None:
        """Ask the writer to close; with `flush`, what is queued is sent first."""
        if self.state is not ConnectionState.OPEN:
            return
        self.state = ConnectionState.CLOSING
        self.close_code = code
        self.close_reason = reason
        self._flush_before_close = flush
        if not flush:
            self._queue.clear()
            self._queued_bytes = 0
        self._wake()
        if self.on_close is not None:
            self.on_close(self)

    async def run_writer(self) -> None:
        """Drain the queue until a close is requested (or the socket goes away). A send that
        fails while the peer is still there (a bug of ours, not a disconnect) is logged with its
        traceback and the socket closed with 1011, so the client never waits on a writer that
        stopped; a peer that is gone is nobody to tell."""
        try:
            while True:
                if self._in_flight is not None:
                    in_flight, self._in_flight = self._in_flight, None
                    await in_flight
                elif self._queue and (self.is_open or self._flush_before_close):
                    frame = self._next_frame()
                    metrics.TALLY.bytes_sent += len(frame)
                    await self._socket.send_bytes(frame)
                elif self.state is not ConnectionState.OPEN:
                    await self._socket.close(
                        self.close_code or 1000, fit_close_reason(self.close_reason)
                    )
                    return
                else:
                    self._queue = _NO_FRAMES  # drained: an idle connection holds no deque
                    self._wakeup = asyncio.get_running_loop().create_future()
                    self._writer_parked = True
                    try:
                        await self._wakeup
                    finally:
                        self._writer_parked = False
                        self._wakeup = None
        except OSError as exc:  # the peer is gone (uvicorn's ClientDisconnected); the reader
            # sees the disconnect too, and there is no one left to send a close to
            logger.debug("writer stopped user=%s session=%s: %r", self.user, self.session, exc)
        except Exception as exc:  # a bug of ours, the socket maybe still up: tell the client
            logger.error(
                "send failed user=%s session=%s: server error",
                self.user,
                self.session,
                exc_info=exc,
            )
            self.close_code = CloseCode.INTERNAL_ERROR
            self.close_reason = "server error, reconnect"
            with contextlib.suppress(Exception):  # closed already, or the peer gone meanwhile
                await self._socket.close(self.close_code, self.close_reason)
        finally:
            self.state = ConnectionState.CLOSED
            self._queue.clear()
            self._queued_bytes = 0
            self.finished.set()

    def _next_frame(self) -> bytes:
        first = self._queue.popleft()
        self._queued_bytes -= len(first.frame)
        if first.update is None or not self._queue or self._queue[0].update is None:
            return first.frame
        updates = [first.update]
        while self._queue and self._queue[0].update is not None and len(updates) < MAX_MERGE:
            item = self._queue.popleft()
            self._queued_bytes -= len(item.frame)
            updates.append(item.update)  # type: ignore[arg-type]
        return encode_message(Update(merge_updates(*updates)))


class _Raising:
    """An awaitable that raises: a send `_send_now` saw fail, handed to the writer so that it
    stops as it would have had the send been its own."""

    def __init__(self, error: Exception) -> None:
        self._error = error

    def __await__(self) -> Generator[Any, Any, None]:
        raise self._error
        yield  # a generator: awaited, it raises
