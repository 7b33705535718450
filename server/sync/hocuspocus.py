"""The `/hocuspocus` endpoint: Hocuspocus providers (Tiptap's) in the same rooms as y-websocket.

One WebSocket carries many documents, each frame prefixed with its *address* (the document
name, or `name\\0sessionId`), framing in `crdt/hocuspocus.py`. Each address is authorised on
its own (Auth token -> the same JWTs, roles and draft ids as `/ws`) and, once it is, becomes
one `Connection` in its draft's room, exactly like a y-websocket client: same rules, journal,
history, gate and send-queue bounds. What differs is only at the edges:

* Its `Socket` (`_DocSocket`) prefixes every frame with the address and sends it through the
  socket's one ASGI `send` (`_Wire`, a lock keeps frames whole). Types 0, 1 and 3 have the
  same numbers and bodies in both protocols, so the room's frames go out unchanged.
* The room never sends it a sync step 1 on join (`sync_on_join`): the server answers the
  client's step 1 with its own step 1, then step 2 (through the gate), as Hocuspocus does.
* Every update or step 2 it sends is answered with SyncStatus: `SyncStatus(1)` goes through
  the room's gate after everything the room accepted so far, so it leaves only once the
  update is committed (durable mode): the provider's `hasUnsyncedChanges` turns false only
  when its edits are on disk. A read-only connection's write gets `SyncStatus(0)` and is not
  applied (a step 2 with nothing new gets 1, so the provider's first sync still completes).
* A live downgrade or upgrade is told as Auth "authenticated" with the new scope.
* Token refresh: before a document's token expires the server sends the protocol's token sync
  request (Auth subtype 0, no token); the provider answers with its current token (its `token`
  option, a function when the app refreshes it), and a valid token of the same user, asked for
  or sent unsolicited, moves the deadline. Otherwise the document is closed at expiry (CLOSE
  with "token expired", 4401 in the log) and nothing it sent from then on is applied; an
  invalid or another user's token closes it at once (`server/sync/expiry.py`).
* Closing one document sends CLOSE (7) with the reason and leaves the socket open (bad input
  on that address: 4400, access revoked, draft deleted), preceded by a Stateless JSON notice
  `{"type": "draftsync.closed", "code", "reason"}` (`_closed_notice`); what asks the client
  to reconnect and resend (store trouble 1013, a server error 1011, a slow reader 4408,
  shutdown 1001) closes the whole socket, since the provider reconnects only on a socket close.
* A room reload (its doc discarded, `Room.discard`: a refused update, yrs gave up) closes that
  room's documents only, with CLOSE (7) and the reason, and re-opens each on the same socket
  (`_Session.reopen`): the stock provider re-syncs a document only when its socket opens,
  so the server asks for its token (Auth subtype 0), authorises the answer afresh, joins
  the reloaded room, sends its step 1 and its whole state (the provider then sends what the
  server lacks as a step 2), and answers that step 2 with the SyncStatus the old room owed
  (writes it dropped or whose ack it never sent), so `hasUnsyncedChanges` turns false again
  once everything is on disk.

Admission (server/admission/): a socket from an address with too many failed sign-ins
(authfailures.py: a refused Auth token spends one) is closed with 1013 at once, before any token
is read, as is one whose next Auth finds the address so; on a socket with documents open, that
document alone is refused for now. The socket counts against the server-wide cap and, until
its first document is authorised, the unauthenticated one (over either: 1013 at once); each
document against its user's and draft's caps and its user's rate of opening drafts
(server/admission/connects.py; a reopen after a reload is not counted): over one, a socket
with nothing else open is closed with 1013 (the provider reconnects later), else that document
alone is refused for now (`_Session._refuse_for_now`: a `draftsync.refused` notice, its token
asked for again after a pause), as is one whose join fails on a server error (1011).

Frames of an address not authorised yet are queued (bounded per socket: `MAX_PENDING_*`,
else 4205) and replayed after its Auth succeeds; a failed Auth answers PermissionDenied with
the reason, drops what was queued for it and keeps the socket open. Frames of an address the server
ended (its Auth refused, or the document closed with CLOSE 7) are dropped, not queued, until it
sends a Token again (`_Session.ended`): the provider keeps sending them. A socket with no
authorised document `--hocuspocus-auth-timeout` seconds after it opened (60 by default, as
Hocuspocus's `timeout`) is closed with 4408 "Connection Timeout", however much it sent
meanwhile: its token comes after the WebSocket handshake, so `--handshake-timeout` cannot
bound it, and until then it holds a place under `--max-unauthenticated`. The server
sends Ping (`[0x09]`) every `PING_SECONDS`: the provider reconnects after 30 s without a
frame, and relies on traffic rather than on seeing its own awareness echoed (draftsync
relays awareness to the others only).

Stateless messages from clients are accepted up to `MAX_STATELESS_BYTES` (more closes that
document) and dropped: they are never relayed nor stored, so they cannot carry content past
the rules. The server's own Stateless messages are rule outcomes (a value rejected, a
conflict opened or resolved, a restore), sent once committed (`HocuspocusConnection.tell_events`).
QueryAwareness is answered with the room's full awareness.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pycrdt import Doc, get_update, merge_updates
from starlette.requests import HTTPConnection
from starlette.types import Message as AsgiMessage
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from crdt.errors import DraftsyncError, ProtocolError, UndecodableUpdate
from crdt.hocuspocus import (
    PING,
    PONG,
    SCOPE_READ_ONLY,
    SCOPE_READ_WRITE,
    CloseDocument,
    HocuspocusMessage,
    Stateless,
    Token,
    decode_body,
    encode_authenticated,
    encode_close,
    encode_permission_denied,
    encode_stateless,
    encode_sync_status,
    encode_token_request,
    prefix,
    read_address,
)
from crdt.journal import OUTCOMES, JournalEvent
from crdt.protocol import SyncStep1, SyncStep2, Update, encode_message
from crdt.safe_json import dumps
from server import faults, metrics
from server.access import Role, check_draft_id
from server.admission.authfailures import client_address
from server.admission.caps import SocketLease
from server.errors import (
    CapReached,
    CloseCode,
    CrossSiteRequest,
    RateLimited,
    StoreError,
    UnknownDraft,
    close_code_for,
)
from server.sync.connection import Connection, fit_close_reason
from server.sync.endpoint import MAX_RUN, server_error
from server.sync.expiry import TokenExpiry
from server.sync.inbox import Inbox
from server.sync.registry import Joining
from server.sync.room import RoomState
from server.sync.sessions import record_session
from server.sync.sharing import apply_to
from server.sync.wsprotocol import PREFIX_KEY, PREFIXED_SEND

if TYPE_CHECKING:
    from server.service import Service
    from server.sync.room import Room

__all__ = [
    "DOCUMENT_CLOSE_CODES",
    "MAX_ENDED_DOCUMENTS",
    "MAX_PENDING_BYTES",
    "MAX_PENDING_DOCUMENTS",
    "MAX_PENDING_MESSAGES",
    "MAX_STATELESS_BYTES",
    "PING_SECONDS",
    "RESET_CONNECTION",
    "RETRY_FIRST_SECONDS",
    "RETRY_MAX_SECONDS",
    "TOLD_EVENTS",
    "HocuspocusConnection",
    "HocuspocusSocket",
]

logger = logging.getLogger("draftsync.hocuspocus")

PING_SECONDS = 10.0  # well within the provider's 30 s messageReconnectTimeout
MAX_PENDING_MESSAGES = 1000  # frames queued before their address is authorised (per socket)
MAX_PENDING_BYTES = 5 * 1024 * 1024
MAX_PENDING_DOCUMENTS = 100
RETRY_FIRST_SECONDS = 2.0  # a document refused for now is asked for its token again after this
RETRY_MAX_SECONDS = 30.0  # ... doubling at each refusal up to this
MAX_STATELESS_BYTES = 64 * 1024
MAX_ENDED_DOCUMENTS = 1000  # addresses remembered as ended, whose frames are dropped (per socket)

RESET_CONNECTION = 4205  # @hocuspocus/common CloseEvents: decode errors, pre-auth caps
_UNAUTHORIZED = 4401

DOCUMENT_CLOSE_CODES = frozenset(
    {CloseCode.MALFORMED, CloseCode.UNAUTHORIZED, CloseCode.FORBIDDEN, CloseCode.UNKNOWN_DRAFT}
)
"""Closes that end one document (CLOSE 7 with the reason); any other closes the socket."""

TOLD_EVENTS = OUTCOMES
"""Journal events told to Hocuspocus clients as Stateless JSON once committed (crdt/journal.py
`OUTCOMES`: the fan-out catches up the same ones)."""

_SILENT = 1000  # the client closed the document itself, or the socket is gone: say nothing
# What a discarded room closes its connections with (`Room.discard`): a Hocuspocus document
# of such a room is reopened on its socket instead (module docstring).
_RELOAD_CODES = frozenset({CloseCode.TRY_AGAIN_LATER, CloseCode.INTERNAL_ERROR})
_SYNC_STATUS = encode_sync_status(True)[:1]  # the type byte of a SyncStatus body


class HocuspocusSocket:
    """The ASGI app of the route.

    Any error after the accept that nothing below handled (opening the socket's lease, setting
    up its session, one escaping the session's run) is a bug of ours: logged with its traceback
    and the socket closed with 1011 "server error, reconnect" if it is still open, as on
    y-websocket (`server_error`, server/sync/endpoint.py), never left for uvicorn to drop
    without a close frame."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        websocket = WebSocket(scope, receive, send)
        service: Service = websocket.app.state.service
        await websocket.accept()
        session: _Session | None = None
        try:
            if service.shutting_down:
                await websocket.close(CloseCode.GOING_AWAY, "server shutting down")
                return
            try:
                # An address with too many failed sign-ins: refused before any token work (its
                # warning is logged there, once a minute at most).
                service.auth_failures.check(client_address(scope))
                lease = service.caps.open_socket()  # server-wide and unauthenticated caps: 1013
            except CapReached as error:
                level = logging.DEBUG if isinstance(error, RateLimited) else logging.INFO
                logger.log(level, "hocuspocus socket refused reason=%s", error)
                metrics.CONNECTIONS_CLOSED.labels(code=str(CloseCode.TRY_AGAIN_LATER)).inc()
                await websocket.close(CloseCode.TRY_AGAIN_LATER, fit_close_reason(str(error)))
                return
            try:
                session = _Session(service, websocket, receive, send, lease)
                await session.run()
            finally:
                lease.release()
        except Exception as error:  # a bug of ours: the client learns it was not its fault
            close = send if session is None else session.send_close  # the wire, once there is one
            await server_error(
                close, error, draft=None, user=None, log=logger, what="hocuspocus socket"
            )


class HocuspocusConnection(Connection):
    """A document of a Hocuspocus socket, as its room sees it."""

    sync_on_join = False

    def deny_write(self) -> None:
        """Refused writes are answered one by one with SyncStatus(0) by the endpoint."""

    def set_can_write(self, allowed: bool) -> None:
        if allowed == self.can_write:
            return
        self.can_write = allowed
        self.send(encode_authenticated(SCOPE_READ_WRITE if allowed else SCOPE_READ_ONLY))

    def tell_events(self, events: Sequence[JournalEvent]) -> None:
        """Rule outcomes, once committed, as Stateless JSON (`TOLD_EVENTS`): `{"type":
        "draftsync.event", "event", "version", "user", "data", "yours"}`, `yours` when this
        connection's write caused it."""
        for event in events:
            if event.type not in TOLD_EVENTS:
                continue
            payload = {
                "type": "draftsync.event",
                "event": str(event.type),
                "version": event.version,
                "user": event.user,
                "data": event.data,
                "yours": event.session == self.session,
            }
            self.send(encode_stateless(dumps(payload)))


def _refused_notice(code: int, reason: str, retry_in: float) -> bytes:
    """Why a document could not be opened for now (over a cap, the user's connect rate: 1013; a
    server error: 1011), as Stateless JSON in the shape of `_closed_notice`, with the seconds
    until the server asks for the document's token again (`_Session._refuse_for_now`)."""
    payload = {"type": "draftsync.refused", "code": code, "reason": reason, "retryIn": retry_in}
    return encode_stateless(dumps(payload))


def _closed_notice(code: int, reason: str) -> bytes:
    """Why the server ends a document (access revoked, draft deleted, token expired, bad input),
    as Stateless JSON sent just before its CLOSE: apps read the server's events from the
    provider's `stateless` handler in one shape (`TOLD_EVENTS` too), and can act on a
    revocation without parsing a close reason. Not sent when the room reloads: the document is
    reopened at once."""
    return encode_stateless(dumps({"type": "draftsync.closed", "code": code, "reason": reason}))


class _Wire:
    """The socket's one ASGI `send`, shared by its documents' writers; frames stay whole."""

    def __init__(self, send: Send, *, prefixed_send: bool = False) -> None:
        self._send = send
        self._lock = asyncio.Lock()
        self.closed = False
        # The server takes a document's name and a frame apart (wsprotocol.PREFIXED_SEND): a
        # 5 MB sync reply shared by a room's joiners is then not copied once per joiner.
        self._prefixed_send = prefixed_send

    async def send_bytes(self, data: bytes) -> None:
        if self.closed:
            raise ConnectionError("socket closed")
        async with self._lock:
            await self._send({"type": "websocket.send", "bytes": data})

    async def send_prefixed(self, head: bytes, data: bytes) -> None:
        """One message `head + data`."""
        if not self._prefixed_send:
            await self.send_bytes(head + data)
            return
        if self.closed:
            raise ConnectionError("socket closed")
        async with self._lock:
            await self._send({"type": "websocket.send", "bytes": data, PREFIX_KEY: head})

    async def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        async with self._lock:
            await self._send(
                {"type": "websocket.close", "code": code, "reason": fit_close_reason(reason)}
            )


class _DocSocket:
    """What one document's `Connection` writes to: the wire, every frame prefixed."""

    def __init__(self, session: _Session, address: str) -> None:
        self._session = session
        self._address = address
        self._prefix = prefix(address)
        # The provider counts each write it sends and each SyncStatus(1) it gets: what the
        # server received and answered tells what it still waits for when its room reloads.
        self.writes = 0
        self.acked = 0

    async def send_bytes(self, data: bytes) -> None:
        await self._session.wire.send_prefixed(self._prefix, data)
        if data[:1] == _SYNC_STATUS:
            self.acked += 1

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        """End this document: CLOSE (7) for a document-level code, then a token request when
        its room reloads (the document is reopened); any other closes the whole socket, once
        every document of it has flushed what it had queued."""
        session = self._session
        reload = code in _RELOAD_CODES and session.reloading(self._address)
        session.detach(self._address)
        wire = session.wire
        if wire.closed:
            return
        if code == _SILENT:
            pass
        elif code in DOCUMENT_CLOSE_CODES or reload:
            if not reload:
                session.ended(self._address)
                with contextlib.suppress(Exception):
                    await wire.send_bytes(self._prefix + _closed_notice(code, reason or ""))
            with contextlib.suppress(Exception):
                await wire.send_bytes(self._prefix + encode_close(reason or ""))
            if reload:
                session.reopen(self._address, owed=max(0, self.writes - self.acked))
                with contextlib.suppress(Exception):
                    await wire.send_bytes(self._prefix + encode_token_request())
        elif session.closing is None:
            session.closing = (code, reason or "")
            for document in session.documents():
                document.conn.close(code, reason or "", flush=True)
        if session.closing is not None and not session.documents():
            await wire.close(*session.closing)


@dataclass
class _Refused:
    """A document refused for now (`_Session._refuse_for_now`), until asked again."""

    owed: int  # SyncStatus owed to the provider once the document opens
    pause: float  # seconds waited before this ask; the next refusal waits twice as long
    asking: asyncio.Task[None]  # the ask for its token, after the pause


@dataclass
class _Document:
    address: str
    draft_id: str
    conn: HocuspocusConnection
    socket: _DocSocket
    room: Room | None
    writer: asyncio.Task[None]
    expiry: TokenExpiry
    # Reopened after a room reload: the SyncStatus owed to the provider, sent in answer to
    # its step 2 (its reply to the server's step 1); None once sent, or if not reopened.
    owed: int | None = None
    started: float = field(default_factory=time.time)  # the editing session's start


class _Session:
    """One Hocuspocus WebSocket: its documents by address and what waits for authorisation."""

    def __init__(
        self,
        service: Service,
        connection: HTTPConnection,
        receive: Receive,
        send: Send,
        lease: SocketLease,
    ) -> None:
        self.service = service
        self.connection = connection  # the upgrade request: what `authenticate` reads
        self._lease = lease  # trusted once a document is authorised
        extensions = connection.scope.get("extensions") or {}
        self.wire = _Wire(send, prefixed_send=PREFIXED_SEND in extensions)
        self._inbox = Inbox(receive)
        self._documents: dict[str, _Document] = {}
        self._pending: dict[str, list[tuple[bytes, int]]] = {}
        self._pending_messages = 0
        self._pending_bytes = 0
        # Addresses closed by a room reload, waiting for the provider's token (`reopen`):
        # the SyncStatus the old room owed each.
        self._reopening: dict[str, int] = {}
        self._authorised_once = False
        # A socket-level close under way (code, reason): sent once no document is left.
        self.closing: tuple[int, str] | None = None
        # SESSION events of detached documents being stored; awaited before the socket ends.
        self._journaling: set[asyncio.Task[None]] = set()
        # Addresses refused for now, each asked for its token again after a pause.
        self._refused: dict[str, _Refused] = {}
        # Addresses the server ended (closed, or refused their Auth), oldest first (`ended`).
        self._ended: dict[str, None] = {}
        if faults.ARMED:
            faults.trip("socket-setup")

    async def run(self) -> None:
        """Read the socket's frames until it ends, then detach its documents.

        An unexpected error in a document's join (`_authenticate`, up to its room's join:
        `_JoinFailed`) is that connection's bug: logged with its traceback, and the socket closed
        with 1011, while the server stays healthy, as a y-websocket connection's join
        (server/sync/endpoint.py). It is not reported to the supervisor: that turns `/healthz`
        to 503 and, at the fifth in a minute, stops the server, which is for a component that
        is broken, not for one connection's failure. An error in a joined document's frames is
        its room's (as in y-websocket's `_serve`), reported as the "room" component's."""
        ticker = asyncio.create_task(self._ping())
        peer_code = 1005
        try:
            peer_code = await self._read()
        except _CloseSocket as close:
            await self._close_socket(close.code, close.reason)
        except _JoinFailed as failed:
            await server_error(
                self.send_close,
                failed.error,
                draft=failed.draft,
                user=failed.user,
                log=logger,
                what="hocuspocus document join",
            )
        except Exception as error:  # a bug of ours, in a room's handling of a frame
            self.service.supervisor.report("room", error)
            await self._close_socket(CloseCode.INTERNAL_ERROR, "server error, reconnect")
        finally:
            ticker.cancel()
            for refused in self._refused.values():
                refused.asking.cancel()
            self._refused.clear()
            writers = []
            for address in list(self._documents):
                document = self._documents[address]
                writers.append(document.writer)
                self.detach(address)
                document.conn.close(_SILENT, "")
            for writer in writers:
                with contextlib.suppress(Exception):
                    await writer
            if self._journaling:
                await asyncio.gather(*self._journaling, return_exceptions=True)
        logger.debug("hocuspocus socket closed code=%s", peer_code)

    async def send_close(self, message: AsgiMessage) -> None:
        """Send an ASGI close `message` through the wire (after what its writers send); raise
        if the socket is closed already (`server_error` then counts nothing)."""
        if self.wire.closed:
            raise ConnectionError("socket closed")
        await self.wire.close(message["code"], message["reason"])

    async def _close_socket(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await self.wire.close(code, reason)

    async def _ping(self) -> None:
        """Ping every `PING_SECONDS`; close a socket with no document authorised
        `hocuspocus_auth_timeout` seconds after it opened (4408, as Hocuspocus)."""
        deadline = time.monotonic() + self.service.settings.hocuspocus_auth_timeout
        next_ping = time.monotonic() + PING_SECONDS
        while True:
            wake = next_ping if self._authorised_once else min(next_ping, deadline)
            await asyncio.sleep(max(0.0, wake - time.monotonic()))
            now = time.monotonic()
            if not self._authorised_once and now >= deadline:
                await self._close_socket(CloseCode.TOO_SLOW, "Connection Timeout")
                return
            if now >= next_ping:
                next_ping = now + PING_SECONDS
                try:
                    await self.wire.send_bytes(PING)
                except Exception:
                    return

    # -- reading ------------------------------------------------------------------------------

    async def _read(self) -> int:
        while True:
            message = await self._inbox.next()
            if message["type"] == "websocket.disconnect":
                return int(message.get("code", 1005))
            data = message.get("bytes")
            if data is None:
                raise _CloseSocket(RESET_CONNECTION, "text frames are not part of the protocol")
            metrics.TALLY.bytes_received += len(data)
            if data in (PONG, PING):
                continue
            try:
                address, offset = read_address(data)
            except ProtocolError as error:
                raise _CloseSocket(_UNAUTHORIZED, f"unreadable document address: {error}") from None
            document = self._documents.get(address)
            if document is not None:
                await self._handle(document, data, offset)
            else:
                await self._unauthorised(address, data, offset)

    async def _unauthorised(self, address: str, data: bytes, offset: int) -> None:
        """A frame for an address with no document yet: Auth, or queued until one."""
        try:
            message: HocuspocusMessage | None = decode_body(data, offset)
        except ProtocolError:
            message = None  # decoded (and refused) in turn once the address is authorised
        if isinstance(message, Token):
            await self._authenticate(address, message.token)
            return
        if isinstance(message, CloseDocument):
            self._ended.pop(address, None)
            self._drop_pending(address)
            self._reopening.pop(address, None)
            refused = self._refused.pop(address, None)
            if refused is not None:
                refused.asking.cancel()
            return
        if address in self._ended:
            return  # nothing of it is applied until a new Auth (`ended`): not queued either
        queue = self._pending.get(address)
        if queue is None:
            if len(self._pending) >= MAX_PENDING_DOCUMENTS:
                raise _CloseSocket(RESET_CONNECTION, "too many documents waiting for auth")
            queue = self._pending[address] = []
        queue.append((data, offset))
        self._pending_messages += 1
        self._pending_bytes += len(data)
        if self._pending_messages > MAX_PENDING_MESSAGES or self._pending_bytes > MAX_PENDING_BYTES:
            raise _CloseSocket(RESET_CONNECTION, "too much sent before auth")

    def ended(self, address: str) -> None:
        """The server ended the document at `address`: closed it (CLOSE 7: access revoked, bad
        input, token expired, draft deleted) or refused its Auth (PermissionDenied). The stock
        provider goes on sending that document's updates and awareness (every 15 s) on the
        socket until it authenticates again, which it does only on a new socket or when asked:
        queued as if waiting for their Auth, they filled the socket's pre-auth queue
        (`MAX_PENDING_*`) and reset the whole socket with 4205, its other documents with it.
        They are dropped instead until the address sends a Token; unanswered writes leave the
        provider's `hasUnsyncedChanges` true, which they are (nothing of them is stored)."""
        self._drop_pending(address)
        self._ended.pop(address, None)
        self._ended[address] = None
        if len(self._ended) > MAX_ENDED_DOCUMENTS:
            del self._ended[next(iter(self._ended))]  # the oldest: its frames queue again

    def _drop_pending(self, address: str) -> list[tuple[bytes, int]]:
        queue = self._pending.pop(address, [])
        self._pending_messages -= len(queue)
        self._pending_bytes -= sum(len(data) for data, _ in queue)
        return queue

    async def _authenticate(self, address: str, token: str) -> None:
        service = self.service
        if service.shutting_down:
            raise _CloseSocket(CloseCode.GOING_AWAY, "server shutting down")
        if self.closing is not None:
            return  # the socket is closing: the provider authenticates again on reconnect
        owed = self._reopening.pop(address, None)
        self._ended.pop(address, None)  # a new Auth: its frames count again (queued until it)
        refused = self._refused.pop(address, None)
        if refused is not None:
            refused.asking.cancel()
        name = address.split("\0", 1)[0]
        user: str | None = None
        joining: Joining | None = None
        document: _Document | None = None
        try:
            try:
                draft_id = check_draft_id(name)
                # Registered before the role is read: a deletion from here on refuses the join.
                joining = service.rooms.joining(draft_id)
                claims = await service.callers.identify(self.connection, token)
                user = claims.user
                if owed is None:  # a reopen after a reload is the server's doing: not counted
                    service.connects.admit(user)  # the user's joins a second: 1013
                    if refused is not None:  # asked again after a refusal: it owes what that did
                        owed = refused.owed
                if faults.ARMED:
                    faults.trip("join")
                role = await service.join_role(draft_id, claims)
            except (CapReached, CrossSiteRequest) as error:
                # Over a cap (1013), or another site's page on the host's session (4403, the
                # socket is not ours to serve: server/identity/origin.py).
                if not self._documents:
                    # nothing else on this socket: close it (the provider retries a 1013)
                    if isinstance(error, CrossSiteRequest):
                        logger.info("hocuspocus socket refused reason=%s", error)
                    raise _CloseSocket(close_code_for(error), str(error)) from None
                # Closing the socket would disturb its open documents: refuse this one alone,
                # for now when a cap refused it (asked again later), for good when another site did.
                logger.info("hocuspocus document refused document=%.140r reason=%s", name, error)
                if isinstance(error, CapReached):
                    retry_after = getattr(error, "retry_after", None)
                    await self._refuse_for_now(
                        address, owed, refused, close_code_for(error), str(error), retry_after
                    )
                    return
                self.ended(address)
                with contextlib.suppress(Exception):
                    await self.wire.send_bytes(
                        prefix(address) + encode_permission_denied(str(error))
                    )
                return
            except DraftsyncError as error:
                logger.info(
                    "hocuspocus auth refused document=%.140r user=%s reason=%s", name, user, error
                )
                self.ended(address)
                with contextlib.suppress(Exception):  # the socket is gone: nothing to tell
                    await self.wire.send_bytes(
                        prefix(address) + encode_permission_denied(str(error))
                    )
                return
            if address in self._documents:  # authorised meanwhile (cannot happen: reads are serial)
                service.caps.leave(user, draft_id)
                return
            self._lease.trust()
            settings = service.settings
            socket = _DocSocket(self, address)
            conn = HocuspocusConnection(
                socket,
                user=user,
                session=secrets.token_hex(6),
                can_write=role.can_write,
                max_messages=settings.send_queue_messages,
                max_bytes=settings.send_queue_bytes,
            )
            conn.granted = claims.grants.get(draft_id)
            # Authenticated goes first, before the document is loaded (as Hocuspocus does).
            conn.send(encode_authenticated(SCOPE_READ_WRITE if role.can_write else SCOPE_READ_ONLY))
            writer = service.spawn_writer(conn)
            writer.add_done_callback(lambda _: service.untrack(conn))
            service.track(conn)
            expiry = TokenExpiry(
                conn, claims.expires_at, ask_refresh=lambda: conn.send(encode_token_request())
            )
            document = _Document(address, draft_id, conn, socket, None, writer, expiry)
            self._documents[address] = document
            self._authorised_once = True
            try:
                room = await service.rooms.join(draft_id, conn, joining=joining)
            except StoreError as error:
                conn.close(CloseCode.TRY_AGAIN_LATER, f"store unavailable: {error}")
                return
            except UnknownDraft:  # deleted since the role check: as its live clients are
                conn.close(CloseCode.UNKNOWN_DRAFT, "draft deleted")
                return
        except _CloseSocket:
            raise
        except Exception as error:  # a bug of ours in this join: 1011, not a room's crash (`run`)
            self._forget(address, document)
            if not self._documents:  # nothing else on this socket: closed with 1011 (`run`)
                raise _JoinFailed(error, draft=name, user=user) from error
            # Closing the socket would disturb its open documents: refuse this one alone.
            logger.error(
                "hocuspocus document join failed draft=%.140s user=%s: server error",
                name,
                user,
                exc_info=error,
            )
            await self._refuse_for_now(
                address, owed, refused, CloseCode.INTERNAL_ERROR, "server error", None
            )
            return
        finally:
            if joining is not None:
                joining.done()  # `join` did, unless refused before it
        assert document is not None
        if self._documents.get(address) is not document:
            # Closed while its draft loaded (its token expired, the server is shutting down):
            # detached already, with no room to leave then, so nothing else would take it out
            # of this one, which would never unload.
            service.rooms.leave(room, conn)
            return
        document.room = room
        metrics.CONNECTIONS.inc()
        logger.info(
            "hocuspocus document open draft=%s user=%s session=%s role=%s",
            draft_id,
            user,
            conn.session,
            role.value,
        )
        if owed is not None:  # reopened after a reload: the server starts the sync
            socket.writes = document.owed = owed
            conn.send(encode_message(SyncStep1(room.doc.get_state())))
            await room.receive(conn, SyncStep1(b"\x00"))  # its whole state, once committed
        for data, offset in self._drop_pending(address):
            if self._documents.get(address) is not document:
                break
            await self._handle(document, data, offset, gather=False)

    async def _refuse_for_now(
        self,
        address: str,
        owed: int | None,
        before: _Refused | None,
        code: int,
        reason: str,
        retry_after: int | None,
    ) -> None:
        """Refuse the document at `address` for now, on a socket that serves others: tell why
        (`_refused_notice`), then ask for its token again after a pause (2 s doubling up to
        30 s a refusal, or the refusal's `retry_after` if longer), so the provider opens it by
        itself once the cap has room. PermissionDenied would read as a failed authentication to
        the app, and the stock provider never asks again before its socket reconnects.

        What the provider sent for the document meanwhile was never answered: its writes are
        owed a SyncStatus each, plus one for its step 2 (`HocuspocusProvider.startSync` counts
        one unsynced change until answered), paid when it is opened, as after a reload."""
        dropped = self._drop_pending(address)
        writes = sum(
            1
            for data, offset in dropped
            if data[offset : offset + 1] == b"\x00" and data[offset + 1 : offset + 2] in _WRITES
        )
        if before is not None:
            owed, pause = before.owed, min(before.pause * 2, RETRY_MAX_SECONDS)
        else:
            pause = RETRY_FIRST_SECONDS
        if retry_after is not None:
            pause = max(pause, float(retry_after))
        owed = (1 if owed is None else owed) + writes
        wire = self.wire
        if self.closing is not None or len(self._refused) >= MAX_PENDING_DOCUMENTS:
            # Closing, or too many waiting already: refused for good (the provider's next
            # socket tries again).
            self.ended(address)
            with contextlib.suppress(Exception):
                await wire.send_bytes(prefix(address) + encode_permission_denied(reason))
            return
        asking = asyncio.create_task(self._ask_token_later(address, pause))
        self._refused[address] = _Refused(owed, pause, asking)
        with contextlib.suppress(Exception):
            await wire.send_bytes(prefix(address) + _refused_notice(code, reason, pause))

    async def _ask_token_later(self, address: str, pause: float) -> None:
        """After `pause`, ask the provider for `address`'s token (Auth subtype 0): its answer
        opens the document (`_authenticate`). Cancelled if the provider closes the document,
        sends its token first, or the socket ends."""
        await asyncio.sleep(pause)
        if self.closing is None and address not in self._documents:
            with contextlib.suppress(Exception):
                await self.wire.send_bytes(prefix(address) + encode_token_request())

    def _forget(self, address: str, document: _Document | None) -> None:
        """A document whose join failed unexpectedly leaves what it was added to: this socket,
        its caps, and its room's set if `Room.add` put it there before failing (the room would
        keep it and never unload: server/sync/endpoint.py does the same); its writer ends."""
        if document is None or self._documents.get(address) is not document:
            return  # failed before it was registered (or detached already): in no room
        self.detach(address)  # no room of its own yet: `document.room` is set after the join
        conn = document.conn
        room = self.service.rooms.get(document.draft_id)
        if room is not None and conn in room.connections:
            self.service.rooms.leave(room, conn)
        conn.close(_SILENT, "")

    def documents(self) -> list[_Document]:
        return list(self._documents.values())

    def reloading(self, address: str) -> bool:
        """Whether the document at `address` is being closed because its room's doc was
        discarded (`Room.discard`: the registry loads the draft afresh)."""
        document = self._documents.get(address)
        room = document.room if document is not None else None
        return room is not None and room.state in (RoomState.DISCARDED, RoomState.CLOSED)

    def reopen(self, address: str, *, owed: int) -> None:
        """Expect the provider's token for `address` (asked for by the caller): it opens the
        document again, in the reloaded room, owing `owed` SyncStatus."""
        if self.closing is None and len(self._reopening) < MAX_PENDING_DOCUMENTS:
            self._reopening[address] = owed

    def detach(self, address: str) -> None:
        """The document at `address` leaves its room (idempotent); its writer ends on its own."""
        document = self._documents.pop(address, None)
        if document is None:
            return
        conn = document.conn
        document.expiry.cancel()
        self.service.caps.leave(conn.user, document.draft_id)
        if document.room is not None:
            self.service.rooms.leave(document.room, conn)
            self._journal_session(document)
            metrics.CONNECTIONS.dec()
            code = conn.close_code if conn.close_code is not None else 1000
            metrics.CONNECTIONS_CLOSED.labels(code=str(code)).inc()
            logger.info(
                "hocuspocus document closed draft=%s user=%s session=%s code=%s reason=%s",
                document.draft_id,
                conn.user,
                conn.session,
                code,
                conn.close_reason,
            )

    def _journal_session(self, document: _Document) -> None:
        """The document's editing session, as a `SESSION` event (server/sync/sessions.py)."""
        assert document.room is not None
        conn = document.conn
        task = asyncio.create_task(
            record_session(
                self.service.store,
                document.draft_id,
                user=conn.user,
                session=conn.session,
                user_agent=self.connection.headers.get("user-agent"),
                started=document.started,
                ended=time.time(),
                version=document.room.version,
            )
        )
        self._journaling.add(task)
        task.add_done_callback(self._journaling.discard)
        task.add_done_callback(
            functools.partial(
                _journaled, draft=document.draft_id, user=conn.user, session=conn.session
            )
        )

    # -- one document's messages ----------------------------------------------------------------

    async def _handle(
        self, document: _Document, data: bytes, offset: int, *, gather: bool = True
    ) -> None:
        """One frame of an authorised document; an update gathers the updates for the same
        address that arrived right behind it (not when replaying queued frames: they go first)."""
        conn, room = document.conn, document.room
        if room is None or not conn.is_open or document.expiry.lapsed():
            # Closing (the token expired: 4401; the room reloads): this frame is not applied.
            if data[offset : offset + 1] == b"\x00" and data[offset + 1 : offset + 2] in _WRITES:
                document.socket.writes += 1  # unanswered: owed if the document is reopened
            return
        try:
            message = decode_body(data, offset)
            if type(message) is Update:
                updates = self._run_from(document, message.update) if gather else [message.update]
                await self._write(document, room, updates, step2=False)
            elif type(message) is SyncStep2:
                await self._write(document, room, [message.update], step2=True)
            elif type(message) is SyncStep1:
                conn.send(room.replies.step1(room.doc.get_state))  # kept until the doc changes
                await room.receive(conn, message)
            elif type(message) is Stateless:
                if len(message.payload.encode()) > MAX_STATELESS_BYTES:
                    conn.close(
                        CloseCode.MALFORMED,
                        f"stateless payload over {MAX_STATELESS_BYTES} bytes",
                    )
                # Accepted and dropped: never relayed nor stored (module docstring).
            elif type(message) is CloseDocument:
                conn.close(_SILENT, "provider_initiated")
                self.detach(document.address)
            elif type(message) is Token:
                await self._refresh(document, message.token)
            else:
                await room.receive(conn, message)
        except ProtocolError as error:
            conn.close(CloseCode.MALFORMED, str(error))

    async def _refresh(self, document: _Document, token: str) -> None:
        """A token for an authorised document, asked for or not: a valid one of the same user
        extends it; any other closes it with 4401 (as Hocuspocus does when onTokenSync fails).

        Verified as at connect (`signer.authenticate`): an app token signed with a key the app
        rotated in since the document opened fetches its JWKS, where the keys at hand alone
        refused it as an unknown key id. Its roles claim replaces the old token's: a grant
        dropped or lowered in the fresh token takes the write (or the document) away at once
        (`sharing.apply_to`), as a y-websocket client renewing by reconnecting gets it; before,
        the first token's grant stayed for as long as the document was open."""
        conn = document.conn
        try:
            claims = await self.service.signer.authenticate(token)
        except DraftsyncError as error:
            conn.close(CloseCode.UNAUTHORIZED, f"token refresh refused: {error}")
            return
        if claims.user != conn.user:
            conn.close(CloseCode.UNAUTHORIZED, "token refresh refused: another user's token")
            return
        granted = claims.grants.get(document.draft_id)
        if granted != conn.granted and conn.is_open:
            conn.granted = granted  # first: a role change stored meanwhile applies with it
            try:
                stored = await self.service.store.role_of(document.draft_id, conn.user)
            except StoreError as error:
                conn.close(CloseCode.TRY_AGAIN_LATER, f"store unavailable: {error}")
                return
            if not conn.is_open:
                return
            apply_to(conn, None if stored is None else Role(stored))
            if not conn.is_open:
                return
        if document.expiry.renew(claims.expires_at):
            logger.info("hocuspocus token renewed user=%s session=%s", conn.user, conn.session)

    def _run_from(self, document: _Document, first: bytes) -> list[bytes]:
        """`first` and the updates for the same address that arrived right behind it."""
        run = [first]
        while len(run) < MAX_RUN:
            message = self._inbox.ready()
            if message is None:
                break
            data = message.get("bytes")
            if data is None or message["type"] != "websocket.receive":
                self._inbox.give_back(message)
                break
            try:
                address, offset = read_address(data)
                decoded = decode_body(data, offset) if address == document.address else None
            except ProtocolError:
                decoded = None
            if type(decoded) is not Update:
                self._inbox.give_back(message)
                break
            metrics.TALLY.bytes_received += len(data)
            run.append(decoded.update)
        return run

    async def _write(
        self, document: _Document, room: Room, updates: list[bytes], *, step2: bool
    ) -> None:
        conn = document.conn
        answers = len(updates)
        if step2 and document.owed is not None:
            # The reply to the step 1 sent on reopening: it answers what the old room owed
            # (`socket.writes` counts those already), not a write of its own.
            answers, document.owed = document.owed, None
        else:
            document.socket.writes += answers
        if not conn.can_write:
            if step2:
                # Tried on a copy of the doc (`_nothing_new`): yrs must not take what the room
                # would refuse from a writer (a crafted nesting crashed the process).
                await room.check_bounded(updates)
            applied = step2 and all(_nothing_new(room.doc, update) for update in updates)
            for _ in range(answers):
                conn.send(encode_sync_status(applied))
            return
        await room.receive_run(conn, updates)
        if not conn.is_open:
            return
        if not conn.can_write:  # downgraded while the run waited: not applied
            for _ in range(answers):
                conn.send(encode_sync_status(False))
            return
        # "On disk": released once everything the room accepted so far is committed.
        status = encode_sync_status(True)
        for _ in range(answers):
            room.gate.send((conn,), status, after=room.gate.accepted)


def _journaled(task: asyncio.Task[None], *, draft: str, user: str, session: str) -> None:
    """A document's SESSION event stored, or why not: the document is closed and counted
    already, so nobody is left to tell but the log (as on y-websocket, which awaits it): a
    StoreError as a warning, anything else, a bug of ours, with its traceback."""
    if task.cancelled():
        return
    error = task.exception()
    if error is None:
        return
    if isinstance(error, StoreError):
        logger.warning("session not journaled draft=%s error=%s", draft, error)
    else:
        logger.error(
            "session not journaled draft=%s user=%s session=%s: server error",
            draft,
            user,
            session,
            exc_info=error,
        )


_WRITES = (b"\x01", b"\x02")  # sync step 2 and update: the sync subtypes SyncStatus answers


class _JoinFailed(Exception):
    """An unexpected error in a document's join (`_Session._authenticate`): see `_Session.run`."""

    def __init__(self, error: Exception, *, draft: str, user: str | None) -> None:
        super().__init__(f"join failed: {error!r}")
        self.error = error
        self.draft = draft
        self.user = user


class _CloseSocket(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


_NO_STRUCTS = b"\x00"  # an update's first byte when it has no struct groups
_NOTHING = b"\x00\x00"  # no struct group, no delete set


def _nothing_new(doc: Doc, update: bytes) -> bool:
    """True if applying `update` would change nothing of `doc` (Yjs `snapshotContainsUpdate`):
    a read-only client's sync step 2 normally holds nothing we lack. `UndecodableUpdate` if
    yrs panics on it.

    Why not apply it to a copy of the doc and compare (the obvious way, and this function's
    first form): that encodes and rebuilds the whole doc for every frame a viewer sends,
    ~40 ms on a 1.5 MB draft, so a viewer's cheap frames could stall every room; and no doc
    ever takes a viewer's update now, so none can panic on it. Instead, in yrs: the update
    diffed against our state vector holds no struct we lack, and its delete set adds
    nothing to ours (their union, encoded, is ours: yrs merges both the same way). Our
    delete set is our update from our own state vector: no content encoded."""
    if update == _NOTHING:
        return True
    state = doc.get_state()
    try:
        beyond = get_update(update, state)
        if beyond[:1] != _NO_STRUCTS:
            return False  # a struct past our state vector
        if beyond == _NOTHING:
            return True  # no struct we lack, no delete at all
        ours = doc.get_update(state)  # no struct: our delete set alone
        return merge_updates(ours, beyond) == merge_updates(ours, _NOTHING)
    except ValueError:
        return False
    except BaseException as error:  # pyo3's PanicException derives from BaseException
        if type(error).__name__ != "PanicException":
            raise
        # Bad input on this document (4400), as the same update from a writer is: past every
        # handler, a panic would end the whole socket without a close code.
        raise UndecodableUpdate(f"update rejected by the CRDT: {error}") from None
