"""uvicorn's sans-I/O WebSocket protocol, leaner per frame and per idle connection.

`draftsync serve` runs uvicorn with `ws=LeanWebSocketProtocol` (server/cli.py). It is uvicorn's
`websockets-sansio` implementation with these changes, each measured in `bench relay`
(docs/performance-notes.md, "CPU per edit and memory per connection"):

- Reading is paused only when the received messages waiting for the app pass a bound
  (`PAUSE_MESSAGES` or `PAUSE_BYTES`), not after every message: uvicorn paused the transport on
  each frame and resumed it when the app had read it, two event-loop watcher changes per frame.
  The bound keeps what a client can queue in the server's memory as small as before.
- A binary frame of an open connection is written to the transport at once, without the
  checks of the handshake and close states `send` walks for every message type, and framed
  here: a large payload goes to the transport as header + the payload object itself, where
  `websockets` would copy it into a fresh frame per connection (a join storm's shared 5 MB
  sync reply was one 5 MB copy per joiner until each joiner read it).
- The received messages wait in a list with a read index, and writability is a flag with a
  future made only while someone waits, instead of an `asyncio.Queue` and an `asyncio.Event`:
  four deques (about 3 KB) that every idle connection carried.
- The handshake's request and response objects are dropped once the handshake is answered,
  and the headers and path of the `Request` websockets' parser still holds are cleared (about
  4 KB of header structures per connection).
- The upgrade request is not parsed twice (`take_parsed_upgrade`): uvicorn's HTTP protocol
  has parsed it with httptools already, and used to write it out again for websockets'
  pure-Python parser to read (that parse was ~9 % of the event loop's samples in `bench relay`
  N3000's connect phase, handing over the parsed request ~3 %). websockets gets the `Request`
  its parser would have made; a request that parser would refuse or treat otherwise (not a
  GET, a body, over its limits, invalid header values) takes the old way and gets websockets'
  own answer.
- The handshake's 101 response goes out with the first frame the app sends in the same turn
  of the event loop (a y-websocket connection's sync step 1), in one write: one send syscall
  a connect less, a tenth of the event loop's samples in N3000's connects were the three
  writes. Anything else that writes first, or the loop's next turn, sends it alone; and so
  does the app, at once, when it knows no frame comes soon (`release_response`: a draft to
  load first, whose client waits for the 101 before it sends its sync step 1).
- The keepalive ping is one of the loop's shared deadlines (server/sync/deadlines.py), not a
  `TimerHandle` of its own; attributes uvicorn sets in `__init__` are slots, which keeps the
  instance dict under CPython's 30-key limit for shared keys (1.6 KB -> 0.4 KB).

- Complete binary frames (final, masked, no extension, not inside a fragmented message, within
  the size limit) are read here (`_read_frames`): the header's two to fourteen bytes, the
  payload unmasked by websockets' C `apply_mask`, the message queued as uvicorn queues it.
  `websockets`' parser is a generator of generators (`Frame.parse` over a `StreamReader`) and
  uvicorn's dispatch walks an event list per frame: together ~10 % of the server's CPU per
  relayed edit in `bench relay` C100 (docs/performance-notes.md, "CPU per relayed edit").
  Every other frame (ping, pong, close, text, a fragment, a frame with RSV bits or a bad
  opcode) is handed to websockets whole, or up to where it ends, so its parser only ever
  starts at a frame boundary; a header websockets would refuse as soon as it reads it (not
  masked, over the size limit) hands it the rest of the stream for good.
- Those frames go straight to the app's reader (`deliver_to`, a sink: server/sync/endpoint.py)
  while its task waits for a message with none queued: a run of payloads, one call on the
  protocol's turn, without the ASGI message dict, the queue, the reader's future and its task's
  trip through the event loop per frame. A sink that cannot finish on that turn (the room makes
  it wait) says so: the protocol queues `SINK_BUSY`, whose arrival wakes the reader's task to
  finish the work, and queues every message after it as before (so in order, and reading pauses
  at the same bounds) until the task waits again on an empty queue.

Everything else (handshake, close, ping, flow control on writes, errors) is uvicorn's own.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import Any
from typing import Protocol as _Protocol

from uvicorn.logging import TRACE_LOG_LEVEL
from uvicorn.protocols.utils import (
    ClientDisconnected,
    get_client_addr,
    get_path_with_query_string,
    is_ssl,
)
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets import http11
from websockets.datastructures import Headers
from websockets.exceptions import InvalidHeaderValue
from websockets.frames import apply_mask
from websockets.protocol import Protocol, State
from websockets.server import ServerProtocol

from server.sync.deadlines import deadlines
from server.sync.flag import Flag

__all__ = [
    "PAUSE_BYTES",
    "PAUSE_MESSAGES",
    "PREFIXED_SEND",
    "PREFIX_KEY",
    "SHARE_PAYLOAD_BYTES",
    "SINK_BUSY",
    "FrameSink",
    "LeanWebSocketProtocol",
    "binary_frame_header",
    "warm_up_handshake",
]

# Received messages the app has not read yet before reading from the socket pauses. A reader
# takes a burst as one run (server/sync/endpoint.py, MAX_RUN = 128), so a bound above that
# never pauses a client that the room keeps up with.
PAUSE_MESSAGES = 256
PAUSE_BYTES = 1 << 20

# The ASGI extension this protocol lists in a WebSocket's scope: a "websocket.send" may then
# carry `PREFIX_KEY` (bytes) beside "bytes", sent as one binary message prefix + bytes without
# joining them (a Hocuspocus frame is its document's name + a message shared by every
# connection, server/sync/hocuspocus.py). Without the extension an app joins them itself.
PREFIXED_SEND = "draftsync.websocket.prefixed_send"
PREFIX_KEY = "draftsync.prefix"

# From this payload size on a binary frame goes to the transport as its header and the payload
# object, not as one joined copy: below it the copy is cheaper than a two-buffer write.
SHARE_PAYLOAD_BYTES = 64 * 1024

# A frame that has not fully arrived waits here (in `_partial`) while it is at most this long;
# a longer one is fed to websockets as it arrives (its reader keeps one growing buffer).
_WAIT_FRAME_BYTES = 64 * 1024
_FIN_BINARY = 0x82  # FIN set, no RSV bit, opcode 2

# Queued when a sink took payloads it could not finish on the protocol's turn (`deliver_to`):
# the reader's task, woken by it, finishes them before it reads the next message.
SINK_BUSY: dict[str, Any] = {"type": "draftsync.sink_busy"}


class FrameSink(_Protocol):
    """Where `deliver_to` sends complete binary messages while the app's reader waits."""

    def take(self, payloads: list[bytes]) -> bool:
        """Handle `payloads` (binary messages, in order) now. True: done. False: the rest is
        for the reader's task, which `SINK_BUSY` wakes; until then nothing more comes here."""
        ...


def binary_frame_header(length: int) -> bytes:
    """The header of an unmasked, final, uncompressed binary frame (RFC 6455 5.2) carrying
    `length` bytes: what `websockets` writes before the payload of a server's frame."""
    if 0 <= length < 126:  # a negative length is refused by `struct` below, as ever
        return _SHORT_HEADERS[length]
    if length < 65536:
        return struct.pack("!BBH", 0x82, 126, length)
    return struct.pack("!BBQ", 0x82, 127, length)


# The header of every binary frame under 126 bytes (a relayed keystroke's), made once.
_SHORT_HEADERS = tuple(struct.pack("!BB", 0x82, length) for length in range(126))


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
        "_held",
        "_partial",
        "_passthrough",
        "_read_here",
        "_sink",
        "_sink_armed",
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
        self.conn.__class__ = _ServerProtocol  # its accept makes no Date header (below)
        self.queue = _Messages()  # type: ignore[assignment]
        self.writable = Flag()  # type: ignore[assignment]
        self.writable.set()
        self._held: bytes | None = None  # the 101 response, until the first frame goes
        # Frames are read here (`_read_frames`) once websockets' parser waits at a frame
        # boundary after the handshake; False for good once a header is one it must refuse.
        self._read_here = False
        self._partial: bytearray | None = None  # the start of a frame not fully arrived
        self._passthrough = 0  # bytes websockets still needs to finish the frame it is in
        self._sink: FrameSink | None = None  # `deliver_to`
        # True only while the app's reader waits in `receive()` with nothing queued: then,
        # and only then, a frame may go to the sink without passing one queued before it.
        self._sink_armed = False

    def take_socket(
        self,
        transport: asyncio.Transport,
        server: tuple[str, int | None] | None,
        client: tuple[str, int] | None,
    ) -> None:
        """uvicorn's `connection_made` for a socket whose addresses its HTTP protocol has read
        already (server/admission/sockets.py): not read again."""
        self.connections.add(self)
        self.transport = transport
        self.server = server
        self.client = client
        self.scheme = "wss" if is_ssl(transport) else "ws"
        if self.logger.level <= TRACE_LOG_LEVEL:
            prefix = f"{client[0]}:{client[1]} - " if client else ""
            self.logger.log(TRACE_LOG_LEVEL, "%sWebSocket connection made", prefix)

    def take_parsed_upgrade(
        self, method: str, target: bytes, headers: list[tuple[bytes, bytes]]
    ) -> None:
        """Take over a socket whose upgrade request uvicorn's HTTP protocol has parsed (the
        request line's `method` and `target`, the headers as uvicorn lists them: names lower
        case, values stripped), after `connection_made` (server/admission/sockets.py)."""
        request = _parsed_request(method, target, headers)
        if request is None:  # as uvicorn does it: written out again for websockets to parse
            lines = [method.encode(), b" ", target, b" HTTP/1.1\r\n"]
            for name, value in headers:
                lines += [name, b": ", value, b"\r\n"]
            lines.append(b"\r\n")
            self.data_received(b"".join(lines))
            return
        # What websockets' `ServerProtocol.parse` goes on with once it has read the request:
        # the frames (its request-reading generator would have kept the `Request` alive).
        conn = self.conn
        conn.parser = Protocol.parse(conn)
        next(conn.parser)
        self.handle_connect(request)
        self._read_here = True  # websockets' parser waits for a frame, its buffer empty

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

    def deliver_to(self, sink: FrameSink | None) -> None:
        """Hand complete binary messages to `sink` while the app waits in `receive()` with
        none queued (module docstring); None: every message is queued again. The app's reader
        sets it once it reads only through `receive()` and unsets it when it stops reading."""
        self._sink = sink
        if sink is None:
            self._sink_armed = False

    async def receive(self) -> Any:
        queue: _Messages = self.queue  # type: ignore[assignment]
        while queue.empty():  # awaited here, not in `queue.get()`: one coroutine frame less
            self._sink_armed = self._sink is not None
            try:
                await queue.arrival()
            finally:
                self._sink_armed = False
        message = queue.get_nowait()
        if self.read_paused and self.queue.empty():
            self.read_paused = False
            self.transport.resume_reading()
        return message

    def receive_nowait(self) -> Any:
        """The next received message if one is waiting, else None, without a coroutine or a
        future: what `Inbox.ready` asks after each frame (server/sync/inbox.py), where
        starting `receive()` only to find the queue empty cost a coroutine, a future and the
        `Started` around them per relayed edit."""
        queue: _Messages = self.queue  # type: ignore[assignment]
        if queue.empty():
            return None
        message = queue.get_nowait()
        if self.read_paused and queue.empty():
            self.read_paused = False
            self.transport.resume_reading()
        return message

    def send_binary_now(self, data: bytes) -> bool:
        """Send one binary message on the caller's turn, as `send` would without waiting,
        and say so; False (nothing sent) where `send` would wait or take another way (the
        handshake not answered, the transport pushing back, a close under way): the caller
        then awaits `send`. A relay to one connection is one call and one write, without the
        three coroutines and the message dict of the ASGI `send` (server/sync/endpoint.py)."""
        if (
            self.handshake_complete
            and self.initial_response is None
            and self.writable.is_set()
            and not self.close_sent
            and not self.disconnected
        ):
            conn = self.conn
            length = len(data)
            if (
                length < 126
                and self._held is None
                and conn.state is State.OPEN
                and not (conn.extensions or conn.writes)
            ):  # a relayed keystroke: `_send_binary`'s own way, its checks in one place
                self.transport.write(_SHORT_HEADERS[length] + data)
            else:
                self._send_binary(b"", data)
            return True
        return False

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # none if the handshake was refused
        if scope is not None:
            scope["extensions"][PREFIXED_SEND] = {}

    async def send(self, message: Any) -> None:
        if (
            message["type"] == "websocket.send"
            and message.get("bytes") is not None
            and self.handshake_complete
            and self.initial_response is None
        ):
            if not self.writable.is_set():  # the transport pushes back: wait as uvicorn does
                await self.writable.wait()
            if not self.close_sent and not self.disconnected:
                self._send_binary(message.get(PREFIX_KEY, b""), message["bytes"])
                return
        if (
            message["type"] == "websocket.accept"
            and not self.handshake_complete
            and self.initial_response is None
            and not self.disconnected
            and self.writable.is_set()
        ):
            self._accept(message)
            return
        self._release_held()  # whatever is written next comes after the 101
        if PREFIX_KEY in message:
            message = {"type": message["type"], "bytes": message[PREFIX_KEY] + message["bytes"]}
        await super().send(message)
        if self.handshake_complete:
            self._forget_handshake()

    def _forget_handshake(self) -> None:
        """Answered (accepted, or refused with a response): the handshake objects are done.
        websockets' parser keeps the `Request` it read for the socket's life (a local of its
        generator): its headers and path (the token) go, ~2.5 KB of an idle socket."""
        request = getattr(self, "request", None)
        if request is not None:
            request.headers.clear()
            request.path = ""
        self.request = None  # type: ignore[assignment]
        self.response = None  # type: ignore[assignment]

    def _accept(self, message: Any) -> None:
        """uvicorn's answer to "websocket.accept", except that the 101 response is held for
        the first frame (module docstring): released with it, by any other write, by the
        next bytes from the client, or on the loop's next turn, whichever comes first."""
        if self.logger.isEnabledFor(logging.INFO):
            self.logger.info(
                '%s - "WebSocket %s" [accepted]',
                get_client_addr(self.scope),
                get_path_with_query_string(self.scope),
            )
        headers = [
            (name.decode("latin-1").lower(), value.decode("latin-1"))
            for name, value in (self.default_headers + list(message.get("headers", [])))
        ]
        accepted_subprotocol = message.get("subprotocol")
        if accepted_subprotocol:
            headers.append(("Sec-WebSocket-Protocol", accepted_subprotocol))
        self.response.headers.update(headers)  # uvicorn's date and server headers
        if not self.transport.is_closing():
            self.handshake_complete = True
            self.conn.send_response(self.response)
            self._held = b"".join(self.conn.data_to_send())
            self.loop.call_soon(self._release_held)
            self.start_keepalive()
            self._forget_handshake()

    def release_response(self) -> None:
        """Send the held 101 response now, if there is one: the app knows its first frame is
        not coming soon (a draft to load first, server/sync/endpoint.py), and the client sends
        nothing before it has the 101, its sync step 1 included."""
        self._release_held()

    def _release_held(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self.transport.is_closing():
                self.transport.write(held)

    def data_received(self, data: bytes) -> None:
        self._release_held()  # an answer to these bytes (a pong, a close) comes after the 101
        if self._read_here:
            self._read_frames(data)
        else:
            super().data_received(data)

    def _read_frames(self, data: bytes) -> None:
        """Queue the complete binary frames of `data` (with what was left of the last call),
        hand every other frame to websockets from its start; see the module docstring."""
        if self._passthrough:
            taken = min(self._passthrough, len(data))
            self._passthrough -= taken
            self._to_websockets(data[:taken] if taken < len(data) else data)
            if taken == len(data) or not self._read_here:
                return
            data = data[taken:]
        partial = self._partial
        if partial is not None:
            partial += data
            buffer: bytes | bytearray = partial
        else:
            buffer = data
        conn = self.conn
        end = len(buffer)
        at = 0
        batch: list[bytes] = []  # for the sink, in order: handed over before any other frame
        while at < end and self._read_here:
            if conn.state is not State.OPEN or conn.extensions:
                self._read_here = False  # closing, or compressed: websockets' own from here on
                self._to_sink(batch)
                self._to_websockets(buffer[at:])
                at = end
                break
            if end - at < 2:
                break
            first, second = buffer[at], buffer[at + 1]
            length = second & 0x7F
            start = at + 6  # 2 bytes, then the 4-byte mask
            if length == 126:
                start = at + 8
                if end < start:
                    break
                length = int.from_bytes(buffer[at + 2 : at + 4], "big")
            elif length == 127:
                start = at + 14
                if end < start:
                    break
                length = int.from_bytes(buffer[at + 2 : at + 10], "big")
            # websockets' own limit for this frame (`Protocol.parse`)
            limit = conn.max_message_size
            if limit is not None and conn.current_size is not None:
                limit -= conn.current_size
            fragment = conn.max_fragment_size
            if fragment is not None:
                limit = fragment if limit is None else min(limit, fragment)
            if not second & 0x80 or (limit is not None and length > limit):
                self._read_here = False  # websockets fails it on its header: let it, and the rest
                self._to_sink(batch)
                self._to_websockets(buffer[at:])
                at = end
                break
            stop = start + length
            if stop > end:
                if length > _WAIT_FRAME_BYTES:  # a large frame goes to websockets as it arrives
                    self._passthrough = stop - end
                    self._to_sink(batch)
                    self._to_websockets(buffer[at:])
                    at = end
                break
            if first == _FIN_BINARY and conn.current_size is None:
                payload = apply_mask(buffer[start:stop], buffer[start - 4 : start])
                if self._sink_armed and self.queue.empty() and not self.close_sent:
                    batch.append(payload)
                elif not self.close_sent:  # as uvicorn: past the app's close, dropped
                    self.frames = [payload]
                    self.curr_msg_data_type = "bytes"
                    self.send_receive_event_to_app()
            else:
                self._to_sink(batch)
                self._to_websockets(buffer[at:stop])
            at = stop
        self._to_sink(batch)
        if at >= end:
            self._partial = None
        elif partial is not None:
            del partial[:at]
        else:
            self._partial = bytearray(buffer[at:])

    def _to_sink(self, batch: list[bytes]) -> None:
        """Hand `batch` (emptied) to the sink; one that could not finish it wakes the reader's
        task with `SINK_BUSY`, and what follows is queued behind it."""
        if not batch:
            return
        payloads = batch.copy()  # the sink may keep them (work it left for the reader's task)
        batch.clear()
        sink = self._sink
        if sink is None or not self._sink_armed or not self.queue.empty():  # as a last guard
            for payload in payloads:
                self.frames = [payload]
                self.curr_msg_data_type = "bytes"
                self.send_receive_event_to_app()
            return
        if not sink.take(payloads):
            self._sink_armed = False
            self.queue.put_nowait(SINK_BUSY)

    def _to_websockets(self, data: bytes | bytearray) -> None:
        """uvicorn's `data_received`: websockets parses `data`, then its events are handled."""
        super().data_received(bytes(data))

    def shutdown(self) -> None:
        self._release_held()  # before uvicorn's close frame
        super().shutdown()

    def _send_binary(self, head: bytes, data: bytes) -> None:
        """One binary message `head + data`, framed here (module docstring), after the held
        101 response if there is one."""
        conn = self.conn
        if conn.state is not State.OPEN:
            raise ClientDisconnected()
        length = len(head) + len(data)
        held = self._held
        if (
            held is not None
            and length < SHARE_PAYLOAD_BYTES
            and not (conn.extensions or conn.writes)
        ):
            self._held = None
            self.transport.write(held + binary_frame_header(length) + head + data)
            return
        self._release_held()
        if conn.extensions or conn.writes:  # compressed, or not ours to frame alone
            conn.send_binary(head + data)
            self.transport.write(b"".join(conn.data_to_send()))
        elif length < SHARE_PAYLOAD_BYTES:
            self.transport.write(binary_frame_header(length) + head + data)
        else:
            # The payload object itself goes to the transport (uvloop keeps a reference, no
            # copy): one 5 MB sync reply shared by 100 joiners stays one 5 MB object however
            # slowly they read.
            self.transport.writelines((binary_frame_header(length) + head, data))


class _ServerProtocol(ServerProtocol):
    """websockets' server side, whose 101 response has no Date header of its own: uvicorn's
    default headers (its `date`, made once a second) are added to it on the accept, and the one
    websockets formatted for each handshake (~2 % of a connect's CPU) was deleted there."""

    def accept(self, request: http11.Request) -> http11.Response:
        """websockets' `accept`, less the Date header. A request it would refuse takes its
        own `accept`, which checks it again and makes the refusal (and logs) as ever."""
        try:
            accept_header, extensions_header, protocol_header = self.process_request(request)
        except Exception:
            return super().accept(request)
        self.accept_called = True
        headers = Headers()
        headers["Upgrade"] = "websocket"
        headers["Connection"] = "Upgrade"
        headers["Sec-WebSocket-Accept"] = accept_header
        if extensions_header is not None:
            headers["Sec-WebSocket-Extensions"] = extensions_header
        if protocol_header is not None:
            headers["Sec-WebSocket-Protocol"] = protocol_header
        return http11.Response(101, "Switching Protocols", headers)


def _parsed_request(
    method: str, target: bytes, headers: list[tuple[bytes, bytes]]
) -> http11.Request | None:
    """The `Request` websockets' parser makes of this request, or None where it would refuse
    it or does more than read it (then the request takes the parser's way)."""
    max_line = getattr(http11, "MAX_LINE_LENGTH", 8192)
    if (
        method != "GET"
        or len(headers) > getattr(http11, "MAX_NUM_HEADERS", 128)
        or len(target) + 14 > max_line  # "GET " + target + " HTTP/1.1\r\n"
        or not target.isascii()
    ):
        return None
    parsed = Headers()
    for name, value in headers:
        if name in _BODY_HEADERS or len(name) + len(value) + 4 > max_line:
            return None
        try:
            parsed[name.decode("ascii")] = value.decode("iso-8859-1")  # validates the value
        except InvalidHeaderValue:
            return None
    return http11.Request(target.decode("ascii"), parsed)


# websockets' parser refuses a request with a body, or does more than read it.
_BODY_HEADERS = frozenset((b"transfer-encoding", b"content-length"))

# An upgrade request as a y-websocket client's arrives from uvicorn's httptools parse.
_WARM_UP_REQUEST = (
    b"/ws/warm-up?token=warm-up",
    [
        (b"host", b"127.0.0.1"),
        (b"connection", b"Upgrade"),
        (b"upgrade", b"websocket"),
        (b"sec-websocket-version", b"13"),
        (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
        (b"sec-websocket-extensions", b"permessage-deflate; client_max_window_bits"),
    ],
)


def warm_up_handshake(max_size: int | None = None) -> bytes:
    """Run the handshake's own code once, on a made-up request, before the server accepts
    connections; return the 101 response it made (nothing is sent).

    The first call of each function on the way (the `Request` made here, websockets' request
    checks, accept key and response) costs several times its later ones: in isolation the
    first `_parsed_request` in a process took 81 us against 6, the first accept and 101 246
    us against 19. After a restart that was the first joiner's wait: ~0.2-0.45 ms of `bench
    relay` C1's join (docs/performance-notes.md, "Cold load: where a C1 join's time goes
    now")."""
    target, headers = _WARM_UP_REQUEST
    request = _parsed_request("GET", target, headers)
    assert request is not None
    protocol = _ServerProtocol(max_size=max_size, logger=logging.getLogger("uvicorn.error"))
    response = protocol.accept(request)
    response.headers.update([("server", "uvicorn")])
    protocol.send_response(response)
    return b"".join(protocol.data_to_send()) + binary_frame_header(2)
