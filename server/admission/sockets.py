"""Timeouts before trust: what a TCP socket must do before it is more than an open file.

uvicorn has no timeout for a request's headers: a socket that connects and sends nothing, or
sends headers a byte at a time (slowloris), is held forever, and enough of them exhaust the
file limit for everyone. `GuardedHttpProtocol` is uvicorn's httptools protocol with three
additions, all before the app sees a request:

* **Handshake timeout.** A socket must deliver a request's complete headers within
  `handshake_timeout` seconds of connecting (or, on a kept-alive connection, of the first byte
  of its next request); otherwise it is closed (408 if it had begun a request). A WebSocket's
  upgrade is such a request, so an un-upgraded socket never outlives it. The idle time between
  two requests of a kept-alive connection is uvicorn's `timeout_keep_alive`.
* **Header size.** The request line and headers may take `max_header_bytes` (431 past it):
  httptools has no limit of its own, and the deadline alone would let a fast client send
  gigabytes of headers.
* **A socket budget.** At most `max_sockets` sockets are open at once (the file limit minus a
  reserve, server/admission/fdlimit.py). A socket arriving at the budget takes the place of the
  oldest one that has no request under way (connected and silent, part-way through its
  headers, or idle between requests): those have been given nothing yet, so closing them
  disturbs no client's work, and a new request (`/healthz` among them) always gets in while
  sockets that did nothing are what makes the budget full. With no such socket to close, the
  new one is closed at once.

Established WebSockets and requests under way are never closed here: their caps are answered
with 1013 / 503 by the app (server/admission/caps.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, ClassVar

from uvicorn.logging import TRACE_LOG_LEVEL
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.utils import get_local_addr, get_remote_addr, is_ssl

from server import metrics
from server.sync.flag import Flag

__all__ = [
    "GuardedHttpProtocol",
    "LeanFlowControl",
    "SocketGuard",
    "guarded_protocol",
    "socket_addresses",
]

logger = logging.getLogger("draftsync.admission")

_REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
_HEADERS_TOO_LARGE = b"request headers too large"


class SocketGuard:
    """The limits of one server and the sockets that wait for a request, oldest first."""

    def __init__(
        self, *, handshake_timeout: float, max_header_bytes: int, max_sockets: int
    ) -> None:
        self.handshake_timeout = handshake_timeout
        self.max_header_bytes = max_header_bytes
        self.max_sockets = max_sockets
        # Sockets with no request under way, in the order they began waiting (dicts keep it).
        self.waiting: dict[GuardedHttpProtocol, None] = {}
        # Sockets we closed whose fds the loop has not released yet (connection_lost pending).
        self.closing = 0
        self._next_warning = 0.0
        # Sockets on the handshake clock and their deadlines. The timeout is one for all and
        # the clock only moves on, so insertion order is deadline order: one loop timer, for
        # the earliest, serves them all (a `call_later` each was a `TimerHandle` and a libuv
        # timer made and cancelled per connect).
        self.clocked: dict[GuardedHttpProtocol, float] = {}
        self._sweep: asyncio.TimerHandle | None = None
        metrics.SOCKETS_WAITING.set_function(lambda: len(self.waiting))

    def start_clock(self, protocol: GuardedHttpProtocol) -> None:
        """Put `protocol` on the handshake clock (no-op if it is on it already)."""
        if protocol in self.clocked:
            return
        loop = protocol.loop
        deadline = self.clocked[protocol] = loop.time() + self.handshake_timeout
        if self._sweep is None:
            self._sweep = loop.call_at(deadline, self._close_late, loop)

    def stop_clock(self, protocol: GuardedHttpProtocol) -> None:
        self.clocked.pop(protocol, None)

    def _close_late(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close the sockets whose deadline has come, then wait for the next one's."""
        self._sweep = None
        clocked = self.clocked
        now = loop.time()
        while clocked:
            protocol, deadline = next(iter(clocked.items()))
            if deadline > now:
                self._sweep = loop.call_at(deadline, self._close_late, loop)
                return
            del clocked[protocol]
            protocol.close_before_request("timeout")

    def make_room(self, newcomer: GuardedHttpProtocol) -> bool:
        """Close the oldest waiting socket other than `newcomer`; False if there is none."""
        now = time.monotonic()
        if now >= self._next_warning:  # an operator should hear of it, once a minute at most
            self._next_warning = now + 60.0
            logger.warning(
                "socket budget of %d reached (file limit minus --reserved-fds): closing the "
                "oldest sockets with no request under way",
                self.max_sockets,
            )
        for protocol in self.waiting:
            if protocol is not newcomer and not protocol.transport.is_closing():
                protocol.close_before_request("evicted")
                return True
        return False


class _HeadersTooLarge(Exception):
    pass


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a handshake deadline, a header size limit and the
    socket budget (module docstring). `guarded_protocol(guard)` binds it to one guard."""

    guard: ClassVar[SocketGuard]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_bytes = 0
        self._headers_too_large = False
        self._begun = False  # bytes of a request arrived since the last complete headers
        self._closed_by_guard = False

    # -- the socket's life ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # uvicorn's `connection_made`, with the addresses the transport read when it accepted
        # the socket (`socket_addresses`) and a flow control without a deque.
        self.connections.add(self)
        self.transport = transport
        self.flow = LeanFlowControl(transport)
        self.server, self.client = socket_addresses(transport)
        self.scheme = "https" if is_ssl(transport) else "http"
        if self.logger.level <= TRACE_LOG_LEVEL:
            prefix = f"{self.client[0]}:{self.client[1]} - " if self.client else ""
            self.logger.log(TRACE_LOG_LEVEL, "%sHTTP connection made", prefix)
        guard = self.guard
        self._wait_for_request()
        self._start_deadline()
        if len(self.connections) - guard.closing > guard.max_sockets and not guard.make_room(self):
            self.close_before_request("refused")

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        if self._closed_by_guard:
            self._closed_by_guard = False
            self.guard.closing -= 1
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        guard = self.guard
        if self in guard.waiting and self not in guard.clocked:
            guard.start_clock(self)  # bytes after a keep-alive pause: the next request's clock
        super().data_received(data)

    def close_before_request(self, reason: str) -> None:
        """Close a socket that has no request under way (timed out, evicted, refused)."""
        if self.transport is None or self.transport.is_closing():
            return
        metrics.SOCKETS_CLOSED_EARLY.labels(reason=reason).inc()
        logger.debug("socket closed before a request reason=%s client=%s", reason, self.client)
        if reason == "timeout" and self._begun:
            self.transport.write(_REQUEST_TIMEOUT)
        self._stop_waiting()
        self._closed_by_guard = True
        self.guard.closing += 1
        self.transport.close()

    # -- waiting for a request --------------------------------------------------------------

    def _wait_for_request(self) -> None:
        self.guard.waiting[self] = None
        self._header_bytes = 0

    def _start_deadline(self) -> None:
        self.guard.start_clock(self)

    def _stop_waiting(self) -> None:
        guard = self.guard
        guard.waiting.pop(self, None)
        guard.clocked.pop(self, None)
        self._begun = False

    # -- parser callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._begun = True
        self._header_bytes = 0
        if self.cycle is None or self.cycle.response_complete:
            # No request under way: evictable, as when idle, and on the clock. A request
            # pipelined behind one under way starts its clock once that one is answered.
            self.guard.waiting[self] = None
            self._start_deadline()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self.guard.max_header_bytes:
            self._headers_too_large = True
            # httptools raises it as HttpParserCallbackError (an HttpParserError): uvicorn
            # then answers through send_400_response, which we make a 431.
            raise _HeadersTooLarge

    def on_headers_complete(self) -> None:
        self._stop_waiting()
        super().on_headers_complete()

    def handle_websocket_upgrade(self) -> None:
        if not hasattr(self.ws_protocol_class, "take_parsed_upgrade"):
            super().handle_websocket_upgrade()
        else:
            # uvicorn's, except that the WebSocket protocol gets the request as parsed here
            # (`take_parsed_upgrade`, server/sync/wsprotocol.py), not written out again for
            # it to parse.
            self.connections.discard(self)
            protocol = self.ws_protocol_class(  # type: ignore[call-arg, misc]
                config=self.config,
                server_state=self.server_state,
                app_state=self.app_state,
                _loop=self.loop,  # else asyncio.get_event_loop(): a getpid syscall on 3.11
            )
            # `connection_made`, with the addresses this protocol read at its own (read again
            # through uvicorn's helpers they cost no syscall, uvloop keeps them, but Python
            # work: ~1 % of a connect's samples).
            protocol.take_socket(self.transport, self.server, self.client)
            self.transport.set_protocol(protocol)
            protocol.take_parsed_upgrade(self.scope["method"], self.url, self.scope["headers"])
        # The socket is the WebSocket protocol's now. This one would wait for the cyclic
        # garbage collector (its httptools parser holds its bound methods), with its deques,
        # flow control and parser, ~6 KB a connect: at a connect storm those collections
        # were a third of the server's CPU (`bench relay` N3000). Refcounting frees it now.
        self.parser = None  # type: ignore[assignment]

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if self._begun:  # the next request's headers are part-way in: their clock starts
            self._unset_keepalive_if_required()  # not idle: as if its bytes came after
            self.guard.waiting[self] = None
            self._start_deadline()
        elif self.timeout_keep_alive_task is not None:  # idle until the next request
            self._wait_for_request()

    def send_400_response(self, msg: str) -> None:
        if not self._headers_too_large:
            super().send_400_response(msg)
            return
        metrics.SOCKETS_CLOSED_EARLY.labels(reason="headers_too_large").inc()
        self._stop_waiting()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: text/plain; charset=utf-8\r\n"
            + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(_HEADERS_TOO_LARGE)
            + _HEADERS_TOO_LARGE
        )
        self.transport.close()


def guarded_protocol(guard: SocketGuard) -> type[GuardedHttpProtocol]:
    """The protocol class to give uvicorn (`Config(http=...)`), bound to `guard`."""
    return type("GuardedHttpProtocol", (GuardedHttpProtocol,), {"guard": guard})


class LeanFlowControl(FlowControl):
    """uvicorn's `FlowControl` with a `Flag` for "writable" instead of an `asyncio.Event`:
    the Event's deque (and its share of the young collections) was made for every socket,
    and a socket that upgrades to a WebSocket drops this object at once."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self.read_paused = False
        self.write_paused = False
        self._is_writable_event = Flag()  # type: ignore[assignment]
        self._is_writable_event.set()


def socket_addresses(
    transport: asyncio.BaseTransport,
) -> tuple[tuple[str, int | None] | None, tuple[str, int] | None]:
    """The socket's local and peer addresses as uvicorn's `get_local_addr` and
    `get_remote_addr` give them, from what the transport read when it accepted the socket.

    uvicorn's helpers ask the transport for its "socket" first: under uvloop that is a new
    pseudo-socket, a `socket.socket` made around the descriptor and a getsockname or
    getpeername syscall each, three of them a connect for addresses uvloop had read already
    (`bench relay` N3000). Where the transport has none, the helpers are asked as ever."""
    local = transport.get_extra_info("sockname")
    if isinstance(local, tuple) and len(local) >= 2:
        server: tuple[str, int | None] | None = (str(local[0]), int(local[1]))
    elif isinstance(local, str):
        server = (local, None)
    else:
        server = get_local_addr(transport)  # type: ignore[arg-type]
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        client: tuple[str, int] | None = (str(peer[0]), int(peer[1]))
    else:
        client = get_remote_addr(transport)  # type: ignore[arg-type]
    return server, client
