"""State vectors (lib0: a varUint count, then that many varUint pairs, client and clock)
decoded in one pass, exactly as yrs reads them or not at all.

Why one decoder: the doc's own state vector is read for the gap check (crdt/gaps.py) and the
kept replies' key (server/sync/replies.py), and a joiner's, which is the client's to choose,
for normalizing it (server/sync/statevector.py). A joiner's is bounded (`decode_bounded`): it
may be 16 MB, and a number past what yrs reads exactly (a client id past u64, a clock past
u32) leaves it to yrs. One pass over the bytes is ~3x faster than a call per number
(`crdt.lib0.Reader`)."""

from __future__ import annotations

from crdt.errors import MalformedMessage

__all__ = ["decode_bounded", "decode_state", "entry_count"]

_MAX_CLIENT = 1 << 64  # yrs reads a client id as a u64 (yrs writes the doc's ones so too)
_MAX_CLOCK = 1 << 32  # yrs reads a clock as a u32: past it, its reading is its own


class _Inexact(Exception):
    """A number this decoder would not read as yrs does: leave the vector to yrs."""


def decode_state(state: bytes) -> dict[int, int]:
    """The doc's own state vector (`Doc.get_state()`, written by yrs: always exact)."""
    entries = decode_bounded(state, len(state))
    assert entries is not None
    return entries


def entry_count(state_vector: bytes) -> int:
    """How many entries `state_vector` says it holds (read in O(1): what decoding it costs).
    Raises `MalformedMessage` if there is no count (yrs refuses it too)."""
    count, _ = _read(state_vector, 0)
    if count is None:
        raise MalformedMessage("undecodable state vector: no entry count")
    return count


def decode_bounded(data: bytes, max_entries: int) -> dict[int, int] | None:
    """{client: clock}, the last entry for a client winning (yrs fills a map the same way);
    None past `max_entries` entries or for a number read inexactly. One pass over the bytes
    (~3x faster than a call per number)."""
    try:
        count, pos = _read(data, 0)
    except _Inexact:
        return None
    if count is None:
        raise MalformedMessage("undecodable state vector: no entry count")
    if count > max_entries:
        return None
    need = 2 * count
    numbers: list[int] = []
    append = numbers.append
    value = shift = 0
    for byte in data[pos : pos + 10 * need]:  # a number takes at most 10 bytes here
        if byte < 0x80:
            append(value | byte << shift)
            if len(numbers) == need:
                break
            value = shift = 0
        else:
            value |= (byte & 0x7F) << shift
            shift += 7
            if shift == 70:  # an 11th byte: past a u64
                return None
    if len(numbers) < need:  # the bytes ended first (the slice holds 10 bytes a number)
        raise MalformedMessage("undecodable state vector: truncated")
    clients, clocks = numbers[0::2], numbers[1::2]
    if count and (max(clients) >= _MAX_CLIENT or max(clocks) >= _MAX_CLOCK):
        return None
    return dict(zip(clients, clocks, strict=True))


def _read(data: bytes, pos: int) -> tuple[int | None, int]:
    """A varUint at `pos` and the position after it; None if the bytes end first. Raises
    `_Inexact` past 10 bytes (past a u64: yrs' reading of it is its own)."""
    value = 0
    shift = 0
    end = min(len(data), pos + 10)
    while pos < end:
        byte = data[pos]
        pos += 1
        if byte < 0x80:
            return value | byte << shift, pos
        value |= (byte & 0x7F) << shift
        shift += 7
    if pos < len(data):
        raise _Inexact
    return None, pos
