"""The Hocuspocus provider's framing (``@hocuspocus/provider`` 4.x) as values: pure codec.

::

    frame = varString address, varUint type, body     (one binary WebSocket frame)
    address = document name, or name + "\\0" + sessionId (provider option sessionAwareness)

    type  message          body                                      here
    0     sync             as y-protocols (step 1, step 2, update)   crdt.protocol classes
    1     awareness        varUint8Array awareness update            crdt.protocol.Awareness
    2     auth             varUint subtype, then                     Token (c->s)
            0 token          varString token [, varString version]    (s->c, empty: refresh)
            1 denied         varString reason                         encode_permission_denied
            2 authenticated  varString scope "read-write"|"readonly"  encode_authenticated
    3     query awareness  (empty)                                   crdt.protocol.QueryAwareness
    5     stateless        varString payload                         Stateless
    6     broadcast stateless (server-internal; refused from a client)
    7     close            c->s empty; s->c varString reason         CloseDocument, encode_close
    8     sync status      varInt 1 (applied) or 0 (refused)         encode_sync_status
    9/10  ping / pong      single bytes [0x09] / [0x0a], no address  PING / PONG

Types 0, 1 and 3 have y-protocols' numbers and bodies, so a frame of draftsync's y-websocket
codec (``crdt.protocol.encode_message``) becomes a Hocuspocus frame by prefixing the address.
Read from @hocuspocus/provider and @hocuspocus/common 4.8.0 (``MessageReceiver.ts``,
``auth.ts``, ``HocuspocusProviderWebsocket.ts``). Decoding is as strict as ``crdt.protocol``:
a truncated body or bytes left over are ``MalformedMessage``, an unknown type is
``UnknownMessageType``.
"""

from dataclasses import dataclass

from .errors import MalformedMessage, UnknownMessageType
from .lib0 import Reader, write_var_string, write_var_uint
from .protocol import (
    MESSAGE_AWARENESS,
    MESSAGE_QUERY_AWARENESS,
    MESSAGE_SYNC,
    Message,
    decode_message,
)

__all__ = [
    "AUTH_AUTHENTICATED",
    "AUTH_PERMISSION_DENIED",
    "AUTH_TOKEN",
    "MESSAGE_AUTH",
    "MESSAGE_BROADCAST_STATELESS",
    "MESSAGE_CLOSE",
    "MESSAGE_PING",
    "MESSAGE_PONG",
    "MESSAGE_STATELESS",
    "MESSAGE_SYNC_STATUS",
    "PING",
    "PONG",
    "SCOPE_READ_ONLY",
    "SCOPE_READ_WRITE",
    "CloseDocument",
    "HocuspocusMessage",
    "Stateless",
    "Token",
    "decode_body",
    "encode_authenticated",
    "encode_close",
    "encode_permission_denied",
    "encode_stateless",
    "encode_sync_status",
    "encode_token_request",
    "prefix",
    "read_address",
]

MESSAGE_AUTH = 2
MESSAGE_STATELESS = 5
MESSAGE_BROADCAST_STATELESS = 6
MESSAGE_CLOSE = 7
MESSAGE_SYNC_STATUS = 8
MESSAGE_PING = 9
MESSAGE_PONG = 10

AUTH_TOKEN = 0
AUTH_PERMISSION_DENIED = 1
AUTH_AUTHENTICATED = 2

SCOPE_READ_WRITE = "read-write"
SCOPE_READ_ONLY = "readonly"  # not "read-only": the provider's AuthorizedScope

PING = bytes([MESSAGE_PING])
PONG = bytes([MESSAGE_PONG])


@dataclass(frozen=True, slots=True)
class Token:
    """Auth subtype 0 from a client: its token (``""`` when it has none) and, since v4, the
    provider's version."""

    token: str
    version: str | None = None


@dataclass(frozen=True, slots=True)
class Stateless:
    payload: str


@dataclass(frozen=True, slots=True)
class CloseDocument:
    """The client detaches this address (its provider was destroyed or detached)."""


HocuspocusMessage = Message | Token | Stateless | CloseDocument


def read_address(data: bytes) -> tuple[str, int]:
    """The address a frame starts with and the offset of its type; ``MalformedMessage`` when
    there is no whole address (the caller closes the socket: it cannot tell whose it is)."""
    reader = Reader(data)
    address = reader.read_var_string()
    if reader.pos >= len(data):
        raise MalformedMessage("frame ends after its address: no message type")
    return address, reader.pos


def decode_body(data: bytes, offset: int) -> HocuspocusMessage:
    """Decode the message of a frame whose address ends at `offset`."""
    reader = Reader(data, offset)
    message_type = reader.read_var_uint()
    if message_type in (MESSAGE_SYNC, MESSAGE_AWARENESS, MESSAGE_QUERY_AWARENESS):
        return decode_message(data[offset:])
    message: HocuspocusMessage
    if message_type == MESSAGE_AUTH:
        subtype = reader.read_var_uint()
        if subtype != AUTH_TOKEN:
            raise MalformedMessage(f"auth subtype {subtype} is sent by servers, not clients")
        token = reader.read_var_string()
        version = reader.read_var_string() if reader.pos < len(data) else None
        message = Token(token, version)
    elif message_type == MESSAGE_STATELESS:
        message = Stateless(reader.read_var_string())
    elif message_type == MESSAGE_CLOSE:
        message = CloseDocument()
    elif message_type == MESSAGE_BROADCAST_STATELESS:
        raise UnknownMessageType("broadcast stateless (6) is server-internal, not for clients")
    else:
        raise UnknownMessageType(f"unknown Hocuspocus message type {message_type}")
    reader.expect_end()
    return message


def prefix(address: str) -> bytes:
    """The bytes every frame for `address` starts with."""
    out = bytearray()
    write_var_string(out, address)
    return bytes(out)


def encode_authenticated(scope: str) -> bytes:
    """Auth "authenticated" with `scope` (``SCOPE_READ_WRITE`` or ``SCOPE_READ_ONLY``), without
    the address."""
    out = bytearray([MESSAGE_AUTH, AUTH_AUTHENTICATED])
    write_var_string(out, scope)
    return bytes(out)


def encode_permission_denied(reason: str) -> bytes:
    out = bytearray([MESSAGE_AUTH, AUTH_PERMISSION_DENIED])
    write_var_string(out, reason)
    return bytes(out)


def encode_token_request() -> bytes:
    """Auth subtype 0 with no token: the provider answers with its (fresh) token."""
    return bytes([MESSAGE_AUTH, AUTH_TOKEN])


def encode_sync_status(applied: bool) -> bytes:
    # The provider reads a varInt: 1 and 0 encode as one byte each.
    return bytes([MESSAGE_SYNC_STATUS, 1 if applied else 0])


def encode_close(reason: str) -> bytes:
    out = bytearray()
    write_var_uint(out, MESSAGE_CLOSE)
    write_var_string(out, reason)
    return bytes(out)


def encode_stateless(payload: str) -> bytes:
    out = bytearray()
    write_var_uint(out, MESSAGE_STATELESS)
    write_var_string(out, payload)
    return bytes(out)
