"""A joiner's state vector, reduced to what its sync step 2 depends on: the kept reply's key.

Why: the reply to a SyncStep1 is `Doc.get_update(state_vector)`, and yrs encodes for each
client the doc knows the structs from `state_vector[client]` (0 when absent) to the doc's own
clock, plus the doc's whole delete set (yrs `BlockStore::encode_diff`): an entry for a client
the doc lacks, or a clock past the doc's, changes nothing. The raw bytes are the client's to
choose, though: a hostile client that sent a new bogus vector each time (`{999999: 5}`, 4
bytes) missed the kept replies (server/sync/replies.py) and cost a full encode of the doc per
frame (21.6 ms for a 5 MB draft, on the event loop, with the GIL held). Keyed by
`min(state_vector[c], doc[c])` for each client `c` of the doc, sorted, zero clocks dropped, such
a vector is the empty one: a fresh joiner's, answered from the same kept frame.
tests/server/test_sync_step1_pacing.py proves with hypothesis that the doc's update for the
normalized vector is the one for the raw vector, byte for byte.

Bounded: decoding is Python, linear in the vector, and the vector is the client's (a frame may
be 16 MB). Measured on this machine, loaded (load 4.5): `normalize` of 10 entries 17 us, of
256 entries 0.39 ms, of 10,000 entries (80 KB) 30-47 ms, of which decoding 12 ms and writing
the key the rest. So only a vector of at most `len(doc) + UNKNOWN_CLIENTS_DECODED` entries is
decoded (an honest one names the doc's clients and a few of its own that the server has not
seen yet); a longer one, or one whose numbers are past what yrs reads exactly (a client id past
u64, a clock past u32), is not normalized (`None`): its raw bytes are the key and yrs decodes
it (in Rust). And a vector of more than `FREE_ENTRIES` entries costs its connection a token of
its budget before it is decoded, as an encode does (server/sync/step2budget.py): a hostile
client cannot make the server decode big vectors unpaced either. A vector that runs out of
bytes is undecodable for yrs too: `MalformedMessage` (closed with 4400, as before).
"""

from __future__ import annotations

from crdt.errors import MalformedMessage
from crdt.lib0 import write_var_uint

__all__ = ["FREE_ENTRIES", "UNKNOWN_CLIENTS_DECODED", "decode_state", "entry_count", "normalize"]

# An honest joiner's vector names the doc's clients and those of its own edits the server has
# not seen (made offline, or sent and not yet applied): a handful. 64 is generous and keeps the
# decode of a hostile vector at most ~35 us past the doc's own clients.
UNKNOWN_CLIENTS_DECODED = 64

# Entries normalized without a token: ~20-50 us, about what any small frame costs the server to
# read. Most drafts have fewer clients; a joiner of one with more pays one token of its burst.
FREE_ENTRIES = 64

_MAX_CLIENT = 1 << 64  # yrs reads a client id as a u64 (yrs writes the doc's ones so too)
_MAX_CLOCK = 1 << 32  # yrs reads a clock as a u32: past it, its reading is its own


class _Inexact(Exception):
    """A number this decoder would not read as yrs does: leave the vector to yrs."""


def decode_state(state: bytes) -> dict[int, int]:
    """The doc's own state vector (`Doc.get_state()`, written by yrs: always exact)."""
    entries = _decode(state, len(state))
    assert entries is not None
    return entries


def normalize(state_vector: bytes, doc_state: dict[int, int]) -> bytes | None:
    """The canonical state vector that gets the same reply from the doc as `state_vector`:
    `min(state_vector[c], doc_state[c])` for each client `c` of the doc, sorted by client,
    zero clocks dropped, encoded as lib0 writes a state vector. None if it is not decoded here
    (longer than the bound, or numbers yrs reads its own way): the caller uses the raw bytes.
    Raises `MalformedMessage` if it runs out of bytes (yrs refuses it too)."""
    entries = _decode(state_vector, len(doc_state) + UNKNOWN_CLIENTS_DECODED)
    if entries is None:
        return None
    kept = []
    for client, clock in entries.items():
        known = doc_state.get(client)
        if known is not None and clock > 0:
            kept.append((client, clock if clock < known else known))
    kept.sort()
    out = bytearray()
    write_var_uint(out, len(kept))
    for client, clock in kept:
        write_var_uint(out, client)
        write_var_uint(out, clock)
    return bytes(out)


def entry_count(state_vector: bytes) -> int:
    """How many entries `state_vector` says it holds (read in O(1): what decoding it costs).
    Raises `MalformedMessage` if there is no count (yrs refuses it too)."""
    count, _ = _read(state_vector, 0)
    if count is None:
        raise MalformedMessage("undecodable state vector: no entry count")
    return count


def _decode(data: bytes, max_entries: int) -> dict[int, int] | None:
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
