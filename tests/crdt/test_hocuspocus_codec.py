"""The Hocuspocus framing codec (crdt/hocuspocus.py), byte for byte against what
@hocuspocus/provider 4.8.0 writes and reads."""

from __future__ import annotations

import pytest

from crdt.errors import MalformedMessage, UnknownMessageType
from crdt.hocuspocus import (
    PING,
    PONG,
    CloseDocument,
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
from crdt.protocol import Awareness, QueryAwareness, SyncStep1, SyncStep2, Update


def decode(frame: bytes) -> tuple[str, object]:
    address, offset = read_address(frame)
    return address, decode_body(frame, offset)


def test_the_address_is_a_var_string_and_may_carry_a_session() -> None:
    assert prefix("doc") == b"\x03doc"
    assert read_address(b"\x03doc\x00\x00\x00") == ("doc", 4)
    assert read_address(prefix("doc\x00s1") + b"\x07") == ("doc\x00s1", 7)
    assert prefix("é") == b"\x02\xc3\xa9"  # the length counts bytes


@pytest.mark.parametrize(
    "frame",
    [b"", b"\x05ab", b"\x03doc", b"\x02\xff\xfe\x00"],
    ids=["empty", "short", "no-type", "bad-utf8"],
)
def test_an_unreadable_address_is_malformed(frame: bytes) -> None:
    with pytest.raises(MalformedMessage):
        read_address(frame)


def test_client_messages_decode() -> None:
    p = prefix("d")
    assert decode(p + b"\x00\x00\x01\x00") == ("d", SyncStep1(b"\x00"))
    assert decode(p + b"\x00\x01\x02\x00\x00") == ("d", SyncStep2(b"\x00\x00"))
    assert decode(p + b"\x00\x02\x02\x00\x00") == ("d", Update(b"\x00\x00"))
    assert decode(p + b"\x01\x01\x00") == ("d", Awareness(b"\x00"))
    assert decode(p + b"\x03") == ("d", QueryAwareness())
    assert decode(p + b"\x02\x00\x03tok\x054.8.0") == ("d", Token("tok", "4.8.0"))
    assert decode(p + b"\x02\x00\x00") == ("d", Token("", None))  # a v3 provider, no token
    assert decode(p + b"\x05\x02hi") == ("d", Stateless("hi"))
    assert decode(p + b"\x07") == ("d", CloseDocument())


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"\x06\x01x", UnknownMessageType),  # broadcast stateless is server-internal
        (b"\x08\x01", UnknownMessageType),  # sync status is the server's
        (b"\x63", UnknownMessageType),
        (b"\x02\x02\x01x", MalformedMessage),  # "authenticated" from a client
        (b"\x00\x02\x05ab", MalformedMessage),  # a length past the end
        (b"\x07\x00", MalformedMessage),  # bytes after the message
        (b"\x05\x01hi", MalformedMessage),
    ],
)
def test_bad_bodies_are_refused(body: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        decode(prefix("d") + body)


def test_server_messages_encode_as_the_provider_reads_them() -> None:
    assert encode_authenticated("read-write") == b"\x02\x02\x0aread-write"
    assert encode_authenticated("readonly") == b"\x02\x02\x08readonly"
    assert encode_permission_denied("no") == b"\x02\x01\x02no"
    assert encode_token_request() == b"\x02\x00"
    assert encode_sync_status(True) == b"\x08\x01"  # varInt 1
    assert encode_sync_status(False) == b"\x08\x00"
    assert encode_close("bye") == b"\x07\x03bye"
    assert encode_stateless('{"a":1}') == b"\x05\x07" + b'{"a":1}'
    assert (PING, PONG) == (b"\x09", b"\x0a")
