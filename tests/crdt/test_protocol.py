import dataclasses
from typing import Any

import pycrdt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdt.errors import MalformedMessage, ProtocolError, UnknownMessageType
from crdt.protocol import (
    Auth,
    Awareness,
    Message,
    QueryAwareness,
    SyncStep1,
    SyncStep2,
    Update,
    WriteAck,
    decode_message,
    encode_message,
    update_frame,
    update_payload,
)

# Frames written by the real JavaScript stack (yjs 13.6.33, y-protocols 1.0.7, lib0 0.2.120 from
# tests/interop/node_modules) for a Y.Doc with clientID 1234 holding Text "body" = "héllo" and
# Map "fields" = {status: "draft"}: y-protocols writeSyncStep1 / writeSyncStep2 (against an empty
# state vector) / writeUpdate / writePermissionDenied, each after its varUint message type.
YJS_UPDATE = bytes.fromhex(
    "0102d20900040104626f64790668c3a96c6c6f2801066669656c647306737461747573017705647261667400"
)
YJS_FRAMES: list[tuple[str, Message]] = [
    ("00000401d20906", SyncStep1(bytes.fromhex("01d20906"))),
    ("00012c" + YJS_UPDATE.hex(), SyncStep2(YJS_UPDATE)),
    ("00022c" + YJS_UPDATE.hex(), Update(YJS_UPDATE)),
    ("02000d726561642d6f6e6c7920e29c93", Auth("read-only ✓")),
    ("010901d20902046e756c6c", Awareness(bytes.fromhex("01d20902046e756c6c"))),
    ("03", QueryAwareness()),
]

LONG = bytes(range(256)) * 2  # needs a two-byte length

MESSAGES: list[Message] = [
    SyncStep1(b""),
    SyncStep1(b"\x01\xd2\x09\x06"),
    SyncStep2(b"\x00\x00"),
    SyncStep2(LONG),
    Update(YJS_UPDATE),
    Update(LONG),
    Awareness(b"\x00"),
    Awareness(LONG),
    Auth("read-only"),
    Auth(""),
    Auth("permission denied: ✓ 日本"),
    QueryAwareness(),
    WriteAck(b""),
    WriteAck(b"ack-17"),
    WriteAck(LONG),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip(message: Message) -> None:
    assert decode_message(encode_message(message)) == message


@pytest.mark.parametrize(
    ("hex_frame", "message"), YJS_FRAMES, ids=[type(m).__name__ for _, m in YJS_FRAMES]
)
def test_yjs_golden_frames(hex_frame: str, message: Message) -> None:
    frame = bytes.fromhex(hex_frame)
    assert decode_message(frame) == message
    assert encode_message(message) == frame


def test_write_ack_frame_layout() -> None:
    assert encode_message(WriteAck(b"ab")) == b"\x66\x02ab"  # 102 fits in one varUint byte
    assert decode_message(b"\x66\x00") == WriteAck(b"")


def test_pycrdt_applies_yjs_update() -> None:
    message = decode_message(bytes.fromhex("00012c" + YJS_UPDATE.hex()))
    assert isinstance(message, SyncStep2)
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    doc.apply_update(message.update)
    assert str(doc.get("body", type=pycrdt.Text)) == "héllo"
    assert doc.get("fields", type=pycrdt.Map).to_py() == {"status": "draft"}


def _doc_with_text(text: str, client_id: int) -> pycrdt.Doc[Any]:
    doc: pycrdt.Doc[Any] = pycrdt.Doc(client_id=client_id)
    doc["body"] = body = pycrdt.Text()
    body += text
    return doc


def test_pycrdt_sync_step1_matches() -> None:
    doc = _doc_with_text("hello", 1234)
    frame = pycrdt.create_sync_message(doc)
    assert decode_message(frame) == SyncStep1(doc.get_state())
    assert encode_message(SyncStep1(doc.get_state())) == frame


def test_pycrdt_answers_our_step1_with_step2_we_decode() -> None:
    server = _doc_with_text("hello", 1234)
    client: pycrdt.Doc[Any] = pycrdt.Doc(client_id=99)
    frame = encode_message(SyncStep1(client.get_state()))
    reply = pycrdt.handle_sync_message(frame[1:], server)  # pycrdt takes the frame past the type
    assert reply is not None
    step2 = decode_message(reply)
    assert step2 == SyncStep2(server.get_update(client.get_state()))
    assert isinstance(step2, SyncStep2)
    client.apply_update(step2.update)
    assert str(client.get("body", type=pycrdt.Text)) == "hello"


def test_pycrdt_update_frames_match_both_ways() -> None:
    source = _doc_with_text("hi ✓", 7)
    update = source.get_update()
    frame = pycrdt.create_update_message(update)
    assert decode_message(frame) == Update(update)
    assert encode_message(Update(update)) == frame

    target: pycrdt.Doc[Any] = pycrdt.Doc()
    assert pycrdt.handle_sync_message(encode_message(Update(update))[1:], target) is None
    assert pycrdt.handle_sync_message(encode_message(SyncStep2(update))[1:], target) is None
    assert str(target.get("body", type=pycrdt.Text)) == "hi ✓"


def test_pycrdt_awareness_frame_matches() -> None:
    payload = b"\x01\xd2\x09\x02\x04null"
    frame = pycrdt.create_awareness_message(payload)
    assert decode_message(frame) == Awareness(payload)
    assert encode_message(Awareness(payload)) == frame


@pytest.mark.parametrize(
    ("frame", "error", "text"),
    [
        (b"", MalformedMessage, "empty message"),
        (b"\x80", MalformedMessage, "truncated varUint at byte 0"),
        (b"\x00", MalformedMessage, "truncated varUint at byte 1"),
        (b"\x00\x02", MalformedMessage, "truncated varUint at byte 2"),
        (b"\x00\x02\x85", MalformedMessage, "truncated varUint at byte 2"),
        (b"\x00\x02\x05abc", MalformedMessage, "length 5 at byte 2 runs past the end"),
        (b"\x01\x03\x00", MalformedMessage, "length 3 at byte 1 runs past the end"),
        (b"\x66\x01", MalformedMessage, "length 1 at byte 1 runs past the end"),
        (b"\x00\x00\x00\x00", MalformedMessage, "1 unread bytes"),
        (b"\x00\x02\x02\x00\x00\xff\xff", MalformedMessage, "2 unread bytes"),
        (b"\x03\x00", MalformedMessage, "1 unread bytes"),
        (b"\x01\x01\x00\x00", MalformedMessage, "1 unread bytes"),
        (b"\x02\x00\x02\xc3\x28", MalformedMessage, "invalid UTF-8 in string at byte 2"),
        (b"\x02\x00\x03ab", MalformedMessage, "runs past the end"),
        (b"\x02", MalformedMessage, "truncated varUint at byte 1"),
        (b"\x02\x01\x00", MalformedMessage, "auth subtype 1 at byte 1: only 0 is defined"),
        (b"\x07", UnknownMessageType, "unknown message type 7"),
        (b"\x07\x00\x00", UnknownMessageType, "unknown message type 7"),
        (b"\xac\x02", UnknownMessageType, "unknown message type 300"),
        (b"\x00\x05\x00", UnknownMessageType, "unknown sync message subtype 5"),
        (b"\x80" * 9 + b"\x00", MalformedMessage, "longer than 8 bytes"),
        (b"\x00" + b"\xff" * 7 + b"\x7f", MalformedMessage, "at byte 1 exceeds 2\\*\\*53 - 1"),
    ],
)
def test_malformed_frames(frame: bytes, error: type[ProtocolError], text: str) -> None:
    with pytest.raises(error, match=text):
        decode_message(frame)


def test_update_frames_around_the_fast_path_decode_strictly() -> None:
    # decode_message reads short sync updates without a Reader: the same values and the
    # same refusals on both sides of its bound (a one-byte length, under 128).
    for n in range(131):
        payload = bytes(i % 251 for i in range(n))
        frame = encode_message(Update(payload))
        assert decode_message(frame) == Update(payload)
        assert decode_message(frame).update == payload
        with pytest.raises(MalformedMessage, match="unread bytes"):
            decode_message(frame + b"\x00")
        if n:
            with pytest.raises(MalformedMessage, match="runs past the end"):
                decode_message(frame[:-1])
        assert decode_message(b"\x00\x01" + frame[2:]) == SyncStep2(payload)


def test_the_relay_frame_is_the_encoded_update_message_for_every_length() -> None:
    # update_frame builds a relay without the message object: byte for byte the frame
    # encode_message writes, below and past the one-byte length (128) and the two-byte one.
    for n in [*range(300), 16_383, 16_384, 70_000]:
        payload = bytes(i % 251 for i in range(n))
        assert (
            update_frame(payload)
            == encode_message(Update(payload))
            == b"\x00\x02" + (encode_message(SyncStep2(payload))[2:])
        )
        assert decode_message(update_frame(payload)) == Update(payload)


def test_a_runs_frames_are_read_as_payloads_only_when_decode_message_agrees() -> None:
    # The reader takes a keystroke's frame by `update_payload`, without a message object: it
    # must give the update decode_message gives, and None for every other frame, which then
    # goes through decode_message (an update with a longer length, another message, or a
    # malformed frame, whose refusal decode_message raises).
    for n in range(200):
        payload = bytes(i % 251 for i in range(n))
        frame = encode_message(Update(payload))
        if 0 < n < 128:
            assert update_payload(frame) == payload == decode_message(frame).update  # type: ignore[union-attr]
        else:
            assert update_payload(frame) is None  # empty, or a two-byte length: decode_message
            assert decode_message(frame) == Update(payload)
        for other in (frame + b"\x00", frame[:-1], b"\x00\x01" + frame[2:], b"\x01" + frame[1:]):
            assert update_payload(other) is None
    # a length byte past 127 is not a one-byte length, even where it matches the frame's size
    assert update_payload(b"\x00\x02\x85" + bytes(0x85)) is None
    for frame in (b"", b"\x00", b"\x00\x02", b"\x00\x02\x00", b"\x00\x02\x01"):
        assert update_payload(frame) is None


def test_auth_can_only_deny_permission() -> None:
    assert Auth("x").permission_denied
    with pytest.raises(ValueError, match="can only deny permission"):
        Auth("x", permission_denied=False)


def test_encode_rejects_non_messages() -> None:
    with pytest.raises(TypeError, match="not a y-protocols message"):
        encode_message(b"\x00\x00\x00")  # type: ignore[arg-type]


def test_messages_are_frozen_values() -> None:
    message = Update(b"\x00\x00")
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.update = b""  # type: ignore[misc]
    assert message == Update(b"\x00\x00")
    assert hash(message) == hash(Update(b"\x00\x00"))
    assert not hasattr(message, "__dict__")


messages = st.one_of(
    st.builds(SyncStep1, st.binary()),
    st.builds(SyncStep2, st.binary()),
    st.builds(Update, st.binary()),
    st.builds(Awareness, st.binary()),
    st.builds(Auth, st.text()),
    st.just(QueryAwareness()),
    st.builds(WriteAck, st.binary()),
)


@given(messages)
def test_round_trip_property(message: Message) -> None:
    assert decode_message(encode_message(message)) == message


# Arbitrary bytes, and arbitrary bytes behind every known type prefix so the fuzzer reaches the
# body decoders instead of stopping at an unknown type.
KNOWN_PREFIXES = [
    b"\x00",
    b"\x00\x00",
    b"\x00\x01",
    b"\x00\x02",
    b"\x01",
    b"\x02",
    b"\x02\x00",
    b"\x03",
    b"\x66",
]
frames = st.one_of(
    st.binary(),
    st.tuples(st.sampled_from(KNOWN_PREFIXES), st.binary()).map(b"".join),
)


@given(frames)
def test_decode_raises_only_protocol_errors(frame: bytes) -> None:
    try:
        message = decode_message(frame)
    except ProtocolError:
        return
    # Whatever decodes re-encodes to a frame that decodes to the same message (the bytes may
    # differ: lib0 accepts non-minimal varUints, we always write minimal ones).
    assert decode_message(encode_message(message)) == message
