import pycrdt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdt.errors import MalformedMessage
from crdt.lib0 import (
    MAX_VAR_UINT,
    Reader,
    encode_var_uint,
    write_var_bytes,
    write_var_string,
    write_var_uint,
)

var_uints = st.integers(min_value=0, max_value=MAX_VAR_UINT)

# Written by lib0 0.2.120 encoding.writeVarUint (tests/interop/node_modules).
VAR_UINT_VECTORS = [
    (0, "00"),
    (127, "7f"),
    (128, "8001"),
    (300, "ac02"),
    (16383, "ff7f"),
    (16384, "808001"),
    (2**32 - 1, "ffffffff0f"),
    (2**53 - 1, "ffffffffffffff0f"),
]


@pytest.mark.parametrize(("value", "hex_bytes"), VAR_UINT_VECTORS)
def test_var_uint_matches_lib0(value: int, hex_bytes: str) -> None:
    assert encode_var_uint(value) == bytes.fromhex(hex_bytes)
    reader = Reader(bytes.fromhex(hex_bytes))
    assert reader.read_var_uint() == value
    assert reader.at_end


@given(var_uints)
def test_var_uint_round_trip(value: int) -> None:
    out = bytearray(b"\xff")  # writers append, readers start anywhere
    write_var_uint(out, value)
    reader = Reader(bytes(out), 1)
    assert reader.read_var_uint() == value
    reader.expect_end()


@given(var_uints)
def test_var_uint_matches_pycrdt(value: int) -> None:
    assert encode_var_uint(value) == pycrdt.write_var_uint(value)


@given(st.binary())
def test_var_bytes_round_trip(data: bytes) -> None:
    out = bytearray()
    write_var_bytes(out, data)
    assert bytes(out) == encode_var_uint(len(data)) + data
    reader = Reader(bytes(out))
    assert reader.read_var_bytes() == data
    reader.expect_end()


@given(st.text())
def test_var_string_round_trip(text: str) -> None:
    out = bytearray()
    write_var_string(out, text)
    reader = Reader(bytes(out))
    assert reader.read_var_string() == text
    reader.expect_end()


@given(st.lists(st.one_of(var_uints, st.binary(), st.text())))
def test_mixed_sequence_round_trip(values: list[int | bytes | str]) -> None:
    out = bytearray()
    for value in values:
        if isinstance(value, int):
            write_var_uint(out, value)
        elif isinstance(value, bytes):
            write_var_bytes(out, value)
        else:
            write_var_string(out, value)
    reader = Reader(bytes(out))
    for value in values:
        if isinstance(value, int):
            assert reader.read_var_uint() == value
        elif isinstance(value, bytes):
            assert reader.read_var_bytes() == value
        else:
            assert reader.read_var_string() == value
    reader.expect_end()


def test_var_string_length_counts_utf8_bytes() -> None:
    out = bytearray()
    write_var_string(out, "é✓")
    assert bytes(out) == b"\x05\xc3\xa9\xe2\x9c\x93"


def test_non_minimal_var_uint_is_accepted_like_lib0() -> None:
    reader = Reader(b"\x80\x00\x81\x80\x00")
    assert reader.read_var_uint() == 0
    assert reader.read_var_uint() == 1
    assert reader.at_end


def test_read_uint8() -> None:
    reader = Reader(b"\x00\xff", 0)
    assert reader.read_uint8() == 0
    assert not reader.at_end
    assert reader.read_uint8() == 255
    assert reader.at_end
    with pytest.raises(MalformedMessage, match="expected a byte at 2, frame is 2 bytes"):
        reader.read_uint8()


@pytest.mark.parametrize(
    ("data", "read", "message"),
    [
        (b"", "read_var_uint", "truncated varUint at byte 0"),
        (b"\x80\x80", "read_var_uint", "truncated varUint at byte 0 \\(frame is 2 bytes\\)"),
        (b"\x80" * 8 + b"\x01", "read_var_uint", "varUint at byte 0 is longer than 8 bytes"),
        (b"\x80" * 8, "read_var_uint", "varUint at byte 0 is longer than 8 bytes"),
        (b"\xff" * 7 + b"\x10", "read_var_uint", "varUint at byte 0 exceeds 2\\*\\*53 - 1"),
        (b"\x03ab", "read_var_bytes", "length 3 at byte 0 runs past the end .*frame is 3 bytes"),
        (b"\x80", "read_var_bytes", "truncated varUint at byte 0"),
        (b"\x02\xc3\x28", "read_var_string", "invalid UTF-8 in string at byte 0"),
        (b"\x03\xed\xa0\x80", "read_var_string", "invalid UTF-8"),  # a lone surrogate
        (b"\x05abc", "read_var_string", "runs past the end"),
    ],
)
def test_malformed_reads(data: bytes, read: str, message: str) -> None:
    with pytest.raises(MalformedMessage, match=message):
        getattr(Reader(data), read)()


def test_failed_read_leaves_position() -> None:
    reader = Reader(b"\x01\x80")
    assert reader.read_var_uint() == 1
    with pytest.raises(MalformedMessage, match="truncated varUint at byte 1"):
        reader.read_var_uint()
    assert reader.pos == 1


def test_expect_end() -> None:
    reader = Reader(b"\x01\x01\x03")
    reader.read_var_uint()
    with pytest.raises(MalformedMessage, match="2 unread bytes after the message ends at byte 1"):
        reader.expect_end()
    reader.read_var_bytes()
    reader.expect_end()


@pytest.mark.parametrize("value", [-1, MAX_VAR_UINT + 1])
def test_write_var_uint_out_of_range(value: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        encode_var_uint(value)


@given(st.binary(), st.lists(st.sampled_from(["u", "b", "s", "8"])))
def test_arbitrary_bytes_raise_only_malformed(data: bytes, reads: list[str]) -> None:
    reader = Reader(data)
    ops = {
        "u": reader.read_var_uint,
        "b": reader.read_var_bytes,
        "s": reader.read_var_string,
        "8": reader.read_uint8,
    }
    try:
        for op in reads:
            ops[op]()
        reader.expect_end()
    except MalformedMessage:
        pass
