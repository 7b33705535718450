"""uvicorn's sans-I/O WebSocket protocol, leaner per frame and per idle connection.

`draftsync serve` runs uvicorn with `ws=LeanWebSocketProtocol` (server/cli.py). It is uvicorn's
`websockets-sansio` implementation with these changes, each measured in `bench relay`
(docs/performance-notes.md, "CPU per edit and memory per connection"):

- Reading is paused only when the received messages waiting for the app pass a bound
  (`PAUSE_MESSAGES` or `PAUSE_BYTES`), not after every message: uvicorn paused the transport on
  each frame and resumed it when the app had read it, two event-loop watcher changes per frame.
  The bound keeps what a client can queue in the server's memory as small as before.
- A binary frame of an open connection is written to the transport at once, without the
  checks of the handshake and close states `send` walks for every message type.
- The received messages wait in a list with a read index, and writability is a flag with a
  future made only while someone waits, instead of an `asyncio.Queue` and an `asyncio.Event`:
  four deques (about 3 KB) that every idle connection carried.
- The handshake's request and response objects are dropped once the handshake is answered,
  and the headers and path of the `Request` websockets' parser still holds are cleared (about
  4 KB of header structures per connection).
- The keepalive ping is one of the loop's shared deadlines (server/sync/deadlines.py), not a
  `TimerHandle` of its own; attributes uvicorn sets in `__init__` are slots, which keeps the
  instance dict under CPython's 30-key limit for shared keys (1.6 KB -> 0.4 KB).

Everything else (handshake, close, ping, flow control on writes, errors) is uvicorn's own.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState

from server.sync.deadlines import deadlines
from server.sync.flag import Flag

__all__ = ["PAUSE_BYTES", "PAUSE_MESSAGES", "LeanWebSocketProtocol"]

# Received messages the app has not read yet before reading from the socket pauses. A reader
# takes a burst as one run (server/sync/endpoint.py, MAX_RUN = 128), so a bound above that
# never pauses a client that the room keeps up with.
PAUSE_MESSAGES = 256
PAUSE_BYTES = 1 << 20


class _Messages:
    """The subset of `asyncio.Queue` uvicorn's protocol uses, for one reader: a list with a
    read index (no deques), the reader's future made only while it waits."""

    __slots__ = ("_head", "_items", "_waiter", "queued_bytes")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._head = 0
        self._waiter: asyncio.Future[None] | None = None
        self.queued_bytes = 0

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        data = item.get("bytes")
        if data is not None:
            self.queued_bytes += len(data)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def qsize(self) -> int:
        return len(self._items) - self._head

    def empty(self) -> bool:
        return self._head == len(self._items)

    def arrival(self) -> asyncio.Future[None]:
        """A future done when the next item is put (the reader awaits it while `empty()`)."""
        waiter = self._waiter
        if waiter is None or waiter.done():
            waiter = self._waiter = asyncio.get_running_loop().create_future()
        return waiter

    async def get(self) -> Any:
        while self._head == len(self._items):
            await self.arrival()
        return self.get_nowait()

    def get_nowait(self) -> Any:
        item = self._items[self._head]
        self._head += 1
        if self._head == len(self._items):
            self._items.clear()
            self._head = 0
        elif self._head >= 1024:
            del self._items[: self._head]
            self._head = 0
        data = item.get("bytes")
        if data is not None:
            self.queued_bytes -= len(data)
        return item


class LeanWebSocketProtocol(WebSocketsSansIOProtocol):
    # uvicorn's __init__ sets 34 attributes and the handshake three more. Past 30, CPython
    # gives up sharing an instance's dict keys with its class and gives each socket a dict of
    # its own, 1.6 KB. Slots for those set in __init__ (member descriptors win over the
    # dict: uvicorn's code reads and writes them as ever) leave the dict 17 keys, shared.
    __slots__ = (
        "app",
        "app_state",
        "asgi_version",
        "client",
        "close_timeout",
        "config",
        "conn",
        "connections",
        "default_headers",
        "logger",
        "loop",
        "ping_interval",
        "ping_timeout",
        "queue",
        "root_path",
        "scheme",
        "server",
        "tasks",
        "transport",
        "writable",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = _Messages()  # type: ignore[assignment]
        self.writable = Flag()  # type: ignore[assignment]
        self.writable.set()

    def send_receive_event_to_app(self) -> None:
        queue: _Messages = self.queue  # type: ignore[assignment]
        was_paused = self.read_paused
        self.read_paused = True  # uvicorn's method pauses unless paused: skip that
        try:
            super().send_receive_event_to_app()
        finally:
            self.read_paused = was_paused
        if not was_paused and (
            queue.qsize() >= PAUSE_MESSAGES or queue.queued_bytes >= PAUSE_BYTES
        ):
            self.read_paused = True
            self.transport.pause_reading()

    def schedule_ping(self) -> None:
        """uvicorn's, on the loop's shared deadlines instead of a `TimerHandle` each."""
        assert self.ping_interval is not None
        delay = max(0.0, self.ping_interval - self.last_ping_rtt)
        self.ping_timer = deadlines().call_later(delay, self.send_keepalive_ping)  # type: ignore[assignment]

    async def receive(self) -> Any:
        queue: _Messages = self.queue  # type: ignore[assignment]
        while queue.empty():  # awaited here, not in `queue.get()`: one coroutine frame less
            await queue.arrival()
        message = queue.get_nowait()
        if self.read_paused and self.queue.empty():
            self.read_paused = False
            self.transport.resume_reading()
        return message

    async def send(self, message: Any) -> None:
        if (
            message["type"] == "websocket.send"
            and self.handshake_complete
            and not self.close_sent
            and not self.disconnected
            and self.writable.is_set()
            and self.initial_response is None
        ):
            data = message.get("bytes")
            if data is not None:
                try:
                    self.conn.send_binary(data)
                except InvalidState:
                    raise ClientDisconnected() from None
                self.transport.write(b"".join(self.conn.data_to_send()))
                return
        await super().send(message)
        if self.handshake_complete:
            # Answered (accepted, or refused with a response): the handshake objects are done.
            # websockets' parser keeps the `Request` for the socket's life (a local of its
            # generator): its headers and path (the token) go, ~2.5 KB of an idle socket.
            request = getattr(self, "request", None)
            if request is not None:
                request.headers.clear()
                request.path = ""
            self.request = None  # type: ignore[assignment]
            self.response = None  # type: ignore[assignment]
