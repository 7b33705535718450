"""The `/ws/{draft_id}?token=…` endpoint: checks, then one reader loop per connection.

Checks run after the upgrade is accepted, so a browser (which never sees the HTTP status of a
failed upgrade) learns why from the close code and reason; nothing of the draft is sent before
they pass. Any `ProtocolError` a frame raises closes that connection with 4400 and its reason;
the room and its other connections are untouched. Admission comes first: the draft id and the
token (in the URL) are checked before the socket is counted, so it is never held unauthenticated;
a socket over the server-wide cap, then a connection over its user's or draft's cap, is closed
with 1013 and the reason (server/admission/caps.py), as is one over its user's rate of
opening drafts (server/admission/connects.py), or one from an address with too many failed
sign-ins (server/admission/authfailures.py: refused before its token is read); connecting to a
new id over the user's draft quota is 4403. A connection whose token expires is closed with
4401 "token expired", and nothing it sends from then on reaches the room
(`server/sync/expiry.py`). Any other error after the accept is a bug of ours: it is logged with
its traceback and the connection is closed with 1011 and a reason (`server_error`), never left
for uvicorn to drop without a close frame.

The endpoint is a plain ASGI app, not a Starlette WebSocket session: the accept, the frames
and the close are the ASGI `receive` and `send` themselves, and the token and user agent are
read from the scope. Starlette's wrappers add three coroutine calls and a state check to every
frame, 4 % of the server's CPU in `bench relay` S3, for checks the reader and writer make
already; at the accept its state machine and query-string multidict were ~3 % of a connect's.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import time
from asyncio.tasks import _enter_task, _leave_task
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from uvicorn.protocols.utils import ClientDisconnected

from crdt.errors import DraftsyncError, MalformedMessage, ProtocolError
from crdt.protocol import Message, Update, decode_message, update_payload
from server import faults, metrics
from server.access import check_draft_id
from server.admission.authfailures import client_address
from server.errors import CapReached, CloseCode, StoreError, UnknownDraft, close_code_for
from server.sync.connection import Connection, fit_close_reason
from server.sync.expiry import TokenExpiry
from server.sync.inbox import Inbox
from server.sync.resume import Started
from server.sync.sessions import record_session
from server.sync.wsprotocol import SINK_BUSY

if TYPE_CHECKING:
    from server.service import Service
    from server.sync.room import Room

__all__ = ["MAX_RUN", "SyncSocket", "forget_request", "serve_sync_socket", "server_error"]

logger = logging.getLogger("draftsync.ws")

# Update frames that arrived together are applied as one run of at most this many (one
# transaction, one version): enough to amortise the per-version work, small enough that a
# flooding client's run is a fraction of a millisecond of pycrdt's time.
MAX_RUN = 128


class SyncSocket:
    """The ASGI app of the route (a class, so that Starlette hands it `receive` and `send`).
    `draftsync serve` reaches `serve_sync_socket` without the router (server/app.py)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await serve_sync_socket(scope, receive, send)


async def serve_sync_socket(scope: Scope, receive: Receive, send: Send) -> None:
    """One connection, from the upgrade to its end.

    One coroutine for its whole life, not one nested call per stage: a connection that waits
    for its next frame holds every frame of the calls it is in, and at 3,000 idle connections
    each frame is a fifth of a MB (`bench relay` N3000). For the same reason the handshake's
    `WebSocket` and the request's headers and query string are let go once the checks pass.
    """
    service: Service = scope["app"].state.service
    if (await receive())["type"] != "websocket.connect":
        return  # the peer went before the app was called (uvicorn sends "connect" first)
    await send({"type": "websocket.accept"})
    raw_id: str = scope["path_params"]["draft_id"]
    user: str | None = None
    try:
        if service.shutting_down:
            await send(_close_message(CloseCode.GOING_AWAY, "server shutting down"))
            return
        try:
            # No I/O so far: a socket is never held unauthenticated (its token is in its URL).
            draft_id = check_draft_id(raw_id)
            if service.rooms.get(draft_id) is None:
                _answer_now(send)  # a draft to load: the 101 goes now, not with the first frame
            # The host's `authenticate` (server/identity/caller.py) reads cookies and headers
            # through a Starlette `WebSocket`; accepting and reading go past it, as frames do.
            # It is asked only without a token (a token's verdict is final), so only then is the
            # `WebSocket` made.
            # An address with too many failed sign-ins is refused before the token is read
            # (1013), and a token refused here spends one (server/admission/authfailures.py).
            token = _query_value(scope, "token")
            address = client_address(scope)
            if token:
                claims = await service.callers.identify(
                    None,  # type: ignore[arg-type]
                    token,
                    address=address,
                )
            else:
                websocket = WebSocket(scope, receive, send)
                claims = await service.callers.identify(websocket, token, address=address)
                del websocket
            del token
            user = claims.user
            service.connects.admit(user)  # the user's joins a second, once the token is good: 1013
            lease = service.caps.open_socket(trusted=True)  # the server-wide cap: 1013
        except DraftsyncError as error:
            await _refuse(send, raw_id, user, error)
            return
        user_agent = _header_value(scope, b"user-agent")
        forget_request(scope)
        # Registered before the role is read: a deletion of the draft from here on refuses
        # the join.
        joining = service.rooms.joining(draft_id)
        ended: Callable[[], Awaitable[None]] | None = None  # the session's event, to store
        try:
            try:
                if faults.ARMED:
                    faults.trip("join")
                # A draft not loaded is read with the role (one store call), used once it passed.
                role, preload = await service.join_opening(draft_id, claims)  # over a cap: 1013
            except DraftsyncError as error:
                await _refuse(send, raw_id, user, error)
                return
            try:
                conn = Connection(
                    _FrameSender(send),
                    user=user,
                    session=secrets.token_hex(6),
                    can_write=role.can_write,
                    max_messages=service.settings.send_queue_messages,
                    max_bytes=service.settings.send_queue_bytes,
                )
                conn.granted = claims.grants.get(draft_id)
                service.track(conn)
                try:
                    room = await service.rooms.join(draft_id, conn, preload, joining)
                    del preload  # the draft's bytes: not kept for the connection's life
                except StoreError as error:
                    conn.close(CloseCode.TRY_AGAIN_LATER, f"store unavailable: {error}")
                    await conn.run_writer()
                    service.untrack(conn)
                    return
                except UnknownDraft:  # deleted since the role check: as its live clients are
                    conn.close(CloseCode.UNKNOWN_DRAFT, "draft deleted")
                    await conn.run_writer()
                    service.untrack(conn)
                    return
                except BaseException:  # a bug of ours (`server_error` closes it 1011)
                    _forget(service, draft_id, conn)
                    raise
                metrics.CONNECTIONS.inc()
                if logger.isEnabledFor(logging.INFO):  # `role.value` is an enum property call
                    logger.info(
                        "connection open draft=%s user=%s session=%s role=%s",
                        draft_id,
                        user,
                        conn.session,
                        role.value,
                    )
                expiry = TokenExpiry(conn, claims.expires_at)
                del claims, role
                started = time.time()
                try:
                    code = await _serve(receive, room, conn, service, expiry)
                finally:
                    expiry.cancel()
                metrics.CONNECTIONS.dec()
                metrics.CONNECTIONS_CLOSED.labels(code=str(code)).inc()
                logger.info(
                    "connection closed draft=%s user=%s session=%s code=%s reason=%s",
                    draft_id,
                    user,
                    conn.session,
                    code,
                    conn.close_reason,
                )
                ended = functools.partial(
                    record_session,
                    service.store,
                    draft_id,
                    user=user,
                    session=conn.session,
                    user_agent=user_agent,
                    started=started,
                    ended=time.time(),
                    version=room.version,
                )
            finally:
                service.caps.leave(user, draft_id)
        finally:
            joining.done()  # `join` did, unless refused or failed before it
            lease.release()
        # The session's event last, its places given back first (its store write, the first
        # session's parser import: server/sync/sessions.py): should storing it fail
        # unexpectedly, the connection is closed and counted already, and the error is logged
        # (`server_error`).
        if ended is not None:
            await ended()
    except Exception as error:  # a bug of ours: the client learns it was not its fault
        await server_error(send, error, draft=raw_id, user=user)


def _answer_now(send: Send) -> None:
    """Send the handshake's 101 now where the protocol holds it for the first frame
    (server/sync/wsprotocol.py `release_response`; under another ASGI server, it is sent
    already). A joiner whose draft must be loaded first got it only once the token was checked
    and the loop turned, and sends its sync step 1, which the reply that syncs it answers, only
    once it has it: now that step 1 travels while the token is checked and the draft read."""
    release = getattr(getattr(send, "__self__", None), "release_response", None)
    if release is not None:
        release()


def _query_value(scope: Scope, name: str) -> str | None:
    """The last `name=` of the query string, as Starlette's `query_params.get(name)` reads it
    (its parse without its multidict: a connect reads one parameter).

    A query string with nothing to unquote (no `%`, no `+`: a JWT and a y-websocket client's
    parameters) is split here as `parse_qsl(..., keep_blank_values=True)` splits it, without
    its per-field unquoting and coercion (~2 % of a connect's CPU); any other takes its parse."""
    query = scope["query_string"].decode("latin-1")
    value = None
    if "%" in query or "+" in query:
        for key, item in parse_qsl(query, keep_blank_values=True):
            if key == name:
                value = item
        return value
    for field in query.split("&"):
        key, _, item = field.partition("=")
        if key == name and field:
            value = item
    return value


def _header_value(scope: Scope, name: bytes) -> str | None:
    """The first `name` header (lower case), as Starlette's `headers.get(name)` reads it."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")  # type: ignore[no-any-return]
    return None


def forget_request(scope: Scope) -> None:
    """Let go of the upgrade request's headers and query string (the token) once the checks
    have read them: uvicorn's protocol keeps the scope for the connection's life, and they are
    a KB of an idle connection. Nothing reads them after the checks."""
    scope["headers"] = []
    scope["query_string"] = b""


class _FrameSender:
    """What a connection's writer sends through: the ASGI `send`, one frame a call; and
    `send_now`, the protocol's own synchronous send where the server is ours
    (server/sync/wsprotocol.py `send_binary_now`; under another ASGI server, never)."""

    __slots__ = ("_protocol", "_send")

    def __init__(self, send: Send) -> None:
        self._send = send
        # The protocol, where it sends on the caller's turn (kept, not its bound method: an
        # idle connection holds no method object for it).
        protocol = getattr(send, "__self__", None)
        self._protocol = protocol if hasattr(protocol, "send_binary_now") else None

    def send_now(self, data: bytes) -> bool:
        """Send `data` at once if the protocol can without waiting (True), else nothing."""
        protocol = self._protocol
        return protocol is not None and protocol.send_binary_now(data)  # type: ignore[no-any-return]

    async def send_bytes(self, data: bytes) -> None:
        await self._send({"type": "websocket.send", "bytes": data})

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        await self._send({"type": "websocket.close", "code": code, "reason": reason or ""})


async def _refuse(send: Send, raw_id: str, user: str | None, error: DraftsyncError) -> None:
    code = close_code_for(error)
    # Over a cap or a rate, a client looping would flood the log: counted instead
    # (draftsync_admission_refused_total{cap}), as REST does.
    level = logging.DEBUG if isinstance(error, CapReached) else logging.INFO
    logger.log(
        level,
        "connection refused draft=%.140s user=%s code=%d reason=%s",
        raw_id,
        user,
        code,
        error,
    )
    metrics.CONNECTIONS_CLOSED.labels(code=str(code)).inc()
    await send(_close_message(code, fit_close_reason(str(error))))


async def server_error(
    send: Send,
    error: BaseException,
    *,
    draft: str | None,
    user: str | None,
    log: logging.Logger = logger,
    what: str = "connection",
) -> None:
    """An unexpected error after the accept: logged with its traceback, and the connection
    closed with 1011 if it is still open (an app that raises, uvicorn ends without a close
    frame). A peer that went is nobody to tell, and no error of ours. Shared with the Hocuspocus
    endpoint (server/sync/hocuspocus.py): `log` and `what` name whose connection failed; `send`
    is anything that sends an ASGI close and raises when the socket is closed already."""
    if isinstance(error, ClientDisconnected):
        return
    log.error("%s failed draft=%.140s user=%s: server error", what, draft, user, exc_info=error)
    try:
        await send(_close_message(CloseCode.INTERNAL_ERROR, "server error, reconnect"))
    except Exception:
        # Closed already (the error came after the close: storing the session, counted then)
        # or the peer gone: the send raises, and there is no one left to tell.
        return
    metrics.CONNECTIONS_CLOSED.labels(code=str(CloseCode.INTERNAL_ERROR)).inc()


def _forget(service: Service, draft_id: str, conn: Connection) -> None:
    """A join that failed unexpectedly: the connection leaves what it was added to, so that
    the server does not keep it, nor the room keep it and never unload."""
    service.untrack(conn)
    room = service.rooms.get(draft_id)
    if room is not None and conn in room.connections:
        service.rooms.leave(room, conn)


def _close_message(code: int, reason: str) -> dict[str, object]:
    return {"type": "websocket.close", "code": code, "reason": reason}


async def _serve(
    receive: Receive, room: Room, conn: Connection, service: Service, expiry: TokenExpiry
) -> int:
    """Read until the peer goes or the connection is closed; return the close code: ours when
    the server closed it, else the peer's (1009 included: uvicorn's protocol layer sends it)."""
    conn.write_lazily(asyncio.create_task)  # the reader is the connection's only task
    peer_code = 1005
    try:
        peer_code = await _read(receive, room, conn, expiry)
    except ProtocolError as error:
        conn.close(CloseCode.MALFORMED, str(error))
    except Exception as error:  # a bug of ours: loud, and the client learns it was not its fault
        service.supervisor.report("room", error)  # logged with its traceback; /healthz 503
        conn.close(CloseCode.INTERNAL_ERROR, "server error, reconnect")
    finally:
        ours = conn.close_code
        service.rooms.leave(room, conn)
        await conn.finish()  # closes, unless a close is already under way
        service.untrack(conn)
    return ours if ours is not None else peer_code


async def _read(receive: Receive, room: Room, conn: Connection, expiry: TokenExpiry) -> int:
    inbox = Inbox(receive)
    # draftsync's own protocol hands the binary messages that arrive while this task waits
    # to `sink` on its own turn (server/sync/wsprotocol.py `deliver_to`); any other ASGI
    # server queues them for `receive` as ever.
    deliver_to = getattr(getattr(receive, "__self__", None), "deliver_to", None)
    sink = _Sink(room, conn, expiry)
    if deliver_to is not None:
        deliver_to(sink)
    try:
        return await _read_queued(inbox, sink, room, conn, expiry)
    finally:
        if deliver_to is not None:
            deliver_to(None)


async def _read_queued(
    inbox: Inbox, sink: _Sink, room: Room, conn: Connection, expiry: TokenExpiry
) -> int:
    """The reader's task: the messages `receive` gives, and what the sink left to finish.

    Binary messages are handled by the sink's own code, in the task: the ones that arrived
    together are handed over as one read of the protocol's would be (`_arrived`), so a frame
    is checked, gathered into runs and given to the room in one place however it came."""
    while True:
        message = await inbox.next()
        if message is not SINK_BUSY:
            if message["type"] == "websocket.disconnect":
                return int(message.get("code", 1005))
            data = message.get("bytes")
            if data is None:
                raise MalformedMessage(
                    "text frames are not part of the protocol: send binary frames"
                )
            sink.leave(_arrived(inbox, data))
        await sink.finish()


def _arrived(inbox: Inbox, first: bytes) -> list[bytes]:
    """`first` and the binary messages that arrived right behind it (at most `MAX_RUN`): the
    room applies a run of updates among them as one. Anything else (a text frame, the
    disconnect) is given back and read in turn."""
    payloads = [first]
    while len(payloads) < MAX_RUN:
        message = inbox.ready()
        if message is None:
            break
        data = message.get("bytes")
        if data is None or message["type"] != "websocket.receive":
            inbox.give_back(message)
            break
        payloads.append(data)
    return payloads


class _Sink:
    """The reader, on the protocol's turn: binary messages that arrived while the reader's task
    waited with nothing queued (server/sync/wsprotocol.py `deliver_to`), handled as `_read`
    handles them — the same checks, runs of at most `MAX_RUN` updates, the room's `receive_run`
    and `receive` — without the ASGI message, the queue, the future and the task's trip
    through the event loop per frame (`bench relay` C100: docs/performance-notes.md,
    "The reader on the protocol's turn").

    It runs as the reader's task would: that task is the current task meanwhile (a timeout
    or `current_task()` in the room sees it). A room call that has to wait (the commit
    queue is full, a review's turn) is not waited for here: `take` says so, the protocol wakes
    the task, and the task finishes that call and the rest (`finish`) before it reads on. An
    exception goes the same way, raised in the task. The task's own messages (queued while it
    was busy, or under another ASGI server) go through the same code (`leave`, `finish`)."""

    __slots__ = ("_conn", "_expiry", "_loop", "_pending", "_room", "_task")

    def __init__(self, room: Room, conn: Connection, expiry: TokenExpiry) -> None:
        self._room = room
        self._conn = conn
        self._expiry = expiry
        self._task = asyncio.current_task()
        self._loop = asyncio.get_running_loop()
        self._pending: _Left | BaseException | None = None  # what the task must finish

    def take(self, payloads: list[bytes]) -> bool:
        """Handle `payloads` now; False: the reader's task must `finish` them."""
        task = self._task
        if task is None:
            self.leave(payloads)
            return False
        loop = self._loop
        try:
            _enter_task(loop, task)
        except RuntimeError:  # called from inside a task: leave the work to the reader's
            self.leave(payloads)
            return False
        try:
            left = self._handle(payloads, 0, None)
        except Exception as error:  # the task raises it, as `_read` would have
            self._pending = error
            return False
        finally:
            _leave_task(loop, task)
        if left is None:
            return True
        self._pending = left
        return False

    def leave(self, payloads: list[bytes]) -> None:
        """Leave `payloads` for the reader's task to handle (`finish`)."""
        self._pending = (None, payloads, 0, None)

    async def finish(self) -> None:
        """On the reader's task: finish what `take` left (wait for the room, handle the rest)."""
        left, self._pending = self._pending, None
        while left is not None:
            if isinstance(left, BaseException):
                raise left
            waiting, payloads, at, decoded = left
            if waiting is not None:
                await waiting
                if decoded is not None and (not self._conn.is_open or self._expiry.lapsed()):
                    decoded = None  # frames read next may be later than `exp`
            left = self._handle(payloads, at, decoded)

    def _handle(self, payloads: list[bytes], at: int, decoded: Message | None) -> _Left | None:
        """Handle `decoded` (a message that ended a run), then `payloads[at:]`, in order, until
        a room call has to wait: then what is left (that call, the payloads, where the rest
        starts, a message that ended its run); None once all are handled. The one place a
        client's binary frame is checked, gathered into a run and given to the room, on the
        protocol's turn (`take`) or the reader's task (`finish`)."""
        room, conn, expiry = self._room, self._conn, self._expiry
        end = len(payloads)
        while decoded is not None or at < end:
            if decoded is None:
                data = payloads[at]
                at += 1
                if not conn.is_open or expiry.lapsed():
                    continue  # closing, or the token expired: what the client sends is dropped
                metrics.TALLY.bytes_received += len(data)
                first = update_payload(data)  # a keystroke's frame: no message object
                if first is None:
                    decoded = decode_message(data)
                    if type(decoded) is Update:
                        first, decoded = decoded.update, None
            else:
                first = None  # a run's end is never an update (`_run_in`)
            if first is not None:
                run, at, decoded = _run_in(payloads, at, first)
                waiting = _first_step(room.receive_run(conn, run))
                if waiting is not None:
                    return (waiting, payloads, at, decoded)
                if decoded is not None and (not conn.is_open or expiry.lapsed()):
                    decoded = None  # frames read next may be later than `exp`
            else:
                assert decoded is not None
                waiting = _first_step(room.receive(conn, decoded))
                decoded = None
                if waiting is not None:
                    return (waiting, payloads, at, None)
        return None


def _first_step(call: Coroutine[Any, Any, None]) -> Awaitable[None] | None:
    """Run `call` up to where it first waits: None if it finished, else what finishes it."""
    try:
        yielded = call.send(None)
    except StopIteration:
        return None
    return Started.suspended(call, yielded)


# What a sink left its reader's task: the room call to wait for (None: none), the payloads,
# where the ones not handled yet start, and a message that ended a run, to handle first.
_Left = tuple[Awaitable[Any] | None, list[bytes], int, Message | None]


def _run_in(
    payloads: list[bytes], at: int, first: bytes
) -> tuple[list[bytes], int, Message | None]:
    """A run: `first` and the updates of `payloads[at:]` right behind it
    (at most `MAX_RUN`), where the rest starts, and the protocol message that ended the run
    (decoded, handled next; None if the run ended otherwise)."""
    run = [first]
    end = len(payloads)
    while at < end and len(run) < MAX_RUN:
        data = payloads[at]
        payload = update_payload(data)
        if payload is None:
            try:
                decoded = decode_message(data)
            except ProtocolError:
                break  # decoded again in turn, on its way to closing with 4400
            at += 1
            metrics.TALLY.bytes_received += len(data)
            if type(decoded) is not Update:
                return run, at, decoded
            run.append(decoded.update)
            continue
        at += 1
        metrics.TALLY.bytes_received += len(data)
        run.append(payload)
    return run, at, None
