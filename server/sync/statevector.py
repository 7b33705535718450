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

Bounded: decoding is Python, linear in the vector and the vector is the client's (a frame may
be 16 MB). Measured on this machine: 10,000 entries (80 KB) decode in ~5.5 ms (~0.55 us an
entry). So only a vector of at most `len(doc) + UNKNOWN_CLIENTS_DECODED` entries is decoded
(an honest one names the doc's clients and a few of its own that the server has not seen yet);
a longer one, or one whose numbers are past what yrs reads exactly (a client id of 8 bytes or
more, a clock past u32), is not normalized (`None`): its raw bytes are the key and yrs decodes
it (in Rust), paced like any reply that is not kept (server/sync/step2budget.py). A vector that
runs out of bytes is undecodable for yrs too: `MalformedMessage` (closed with 4400, as before).
"""

from __future__ import annotations

from crdt.errors import MalformedMessage
from crdt.lib0 import write_var_uint

__all__ = ["UNKNOWN_CLIENTS_DECODED", "decode_state", "normalize"]

# An honest joiner's vector names the doc's clients and those of its own edits the server has
# not seen (made offline, or sent and not yet applied): a handful. 64 is generous and keeps the
# decode of a hostile vector at most ~35 us past the doc's own clients.
UNKNOWN_CLIENTS_DECODED = 64

_MAX_CLIENT = 1 << 53  # lib0's largest varUint; yrs reads a u64 (7 bytes read the same)
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


def _decode(data: bytes, max_entries: int) -> dict[int, int] | None:
    """{client: clock}, the last entry for a client winning (yrs fills a map the same way);
    None past `max_entries` entries or for a number read inexactly."""
    entries: dict[int, int] = {}
    try:
        count, pos = _read(data, 0)
        if count is None:
            raise MalformedMessage("undecodable state vector: no entry count")
        if count > max_entries:
            return None
        for _ in range(count):
            client, pos = _read(data, pos)
            clock, pos = _read(data, pos)
            if client is None or clock is None:
                raise MalformedMessage("undecodable state vector: truncated")
            if client >= _MAX_CLIENT or clock >= _MAX_CLOCK:
                raise _Inexact
            entries[client] = clock
    except _Inexact:
        return None
    return entries


def _read(data: bytes, pos: int) -> tuple[int | None, int]:
    """A varUint at `pos` and the position after it; None if the bytes end first. Raises
    `_Inexact` past 8 bytes (more than lib0 writes: yrs' reading of it is its own)."""
    value = 0
    shift = 0
    end = min(len(data), pos + 8)
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
