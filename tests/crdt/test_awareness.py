from typing import Any

import pycrdt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdt.awareness import AwarenessEntry, decode_awareness_update, encode_awareness_update
from crdt.errors import MalformedMessage
from crdt.lib0 import MAX_VAR_UINT

# Payloads written by y-protocols 1.0.7 encodeAwarenessUpdate (tests/interop/node_modules) for
# client 1234: with state {user: {name: "Zoë", color: "#ff0"}}, then after setLocalState(null).
YJS_PAYLOADS = [
    (
        "01d20901277b2275736572223a7b226e616d65223a225a6fc3ab222c22636f6c6f72223a2223666630227d7d",
        [AwarenessEntry(1234, 1, '{"user":{"name":"Zoë","color":"#ff0"}}')],
    ),
    ("01d20902046e756c6c", [AwarenessEntry(1234, 2, "null")]),
]


@pytest.mark.parametrize(("hex_payload", "entries"), YJS_PAYLOADS, ids=["state", "left"])
def test_yjs_golden_payloads(hex_payload: str, entries: list[AwarenessEntry]) -> None:
    payload = bytes.fromhex(hex_payload)
    assert decode_awareness_update(payload) == entries
    assert encode_awareness_update(entries) == payload


def test_removed() -> None:
    assert AwarenessEntry(1, 3, "null").removed
    assert not AwarenessEntry(1, 3, "{}").removed
    assert not AwarenessEntry(1, 3, '"null"').removed


def test_empty_update() -> None:
    assert decode_awareness_update(b"\x00") == []
    assert encode_awareness_update(iter(())) == b"\x00"


def test_encode_takes_any_iterable() -> None:
    entries = [AwarenessEntry(1, 0, "{}"), AwarenessEntry(2**40, 7, "null")]
    payload = encode_awareness_update(entry for entry in entries)
    assert decode_awareness_update(payload) == entries


def test_decodes_pycrdt_awareness() -> None:
    doc: pycrdt.Doc[Any] = pycrdt.Doc(client_id=4321)
    awareness = pycrdt.Awareness(doc)
    awareness.set_local_state({"user": {"name": "Zoë"}, "cursor": None})
    payload = awareness.encode_awareness_update([4321])
    (entry,) = decode_awareness_update(payload)
    # pycrdt writes json.dumps(..., separators=(",", ":")) with its default ensure_ascii.
    assert entry == AwarenessEntry(4321, 1, '{"user":{"name":"Zo\\u00eb"},"cursor":null}')
    assert not entry.removed


def test_pycrdt_applies_ours() -> None:
    awareness = pycrdt.Awareness(pycrdt.Doc(client_id=1))
    joined = AwarenessEntry(55, 3, '{"user":{"name":"Zoë"}}')
    awareness.apply_awareness_update(encode_awareness_update([joined]), "test")
    assert awareness.states[55] == {"user": {"name": "Zoë"}}

    left = AwarenessEntry(55, 4, "null")
    payload = encode_awareness_update([left])
    frame_body = bytes([len(payload)]) + payload  # a varUint8Array, as in an awareness frame
    assert pycrdt.is_awareness_disconnect_message(frame_body)
    awareness.apply_awareness_update(payload, "test")
    assert 55 not in awareness.states


@pytest.mark.parametrize(
    ("payload", "text"),
    [
        (b"", "truncated varUint at byte 0"),
        (b"\x01", "truncated varUint at byte 1"),
        (b"\x01\xd2\x09", "truncated varUint at byte 3"),
        (b"\x01\x01\x00\x05nul", "length 5 at byte 3 runs past the end"),
        (b"\x02\x01\x00\x02{}", "truncated varUint at byte 6"),
        (b"\x01\x01\x00\x02{}\x00", "1 unread bytes"),
        (b"\x01\x01\x00\x01\xff", "invalid UTF-8 in string at byte 3"),
        (b"\x01" + b"\x80" * 8 + b"\x01\x00\x02{}", "longer than 8 bytes"),
    ],
)
def test_malformed_payloads(payload: bytes, text: str) -> None:
    with pytest.raises(MalformedMessage, match=text):
        decode_awareness_update(payload)


entries = st.builds(
    AwarenessEntry,
    st.integers(min_value=0, max_value=MAX_VAR_UINT),
    st.integers(min_value=0, max_value=MAX_VAR_UINT),
    st.text(),
)


@given(st.lists(entries))
def test_round_trip_property(values: list[AwarenessEntry]) -> None:
    assert decode_awareness_update(encode_awareness_update(values)) == values


@given(st.binary())
def test_arbitrary_bytes_raise_only_malformed(payload: bytes) -> None:
    try:
        decoded = decode_awareness_update(payload)
    except MalformedMessage:
        return
    assert decode_awareness_update(encode_awareness_update(decoded)) == decoded
