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

from crdt.lib0 import write_var_uint
from crdt.statevector import decode_bounded

__all__ = ["FREE_ENTRIES", "MAX_UNKNOWN_CLIENTS", "UNKNOWN_CLIENTS_DECODED", "normalize"]

# An honest joiner's vector names the doc's clients and those of its own edits the server has
# not seen (made offline, or sent and not yet applied): a handful. 64 is generous and keeps the
# decode of a hostile vector at most ~35 us past the doc's own clients.
UNKNOWN_CLIENTS_DECODED = 64

# A vector naming more clients than the doc has plus this many is refused (4400) before anyone
# decodes it: yrs reads every entry on the event loop (1,500,000 entries, 6.4 MB: ~0.1 s a
# frame). An honest joiner names few the server lacks; as many as one update may name
# (--max-update-clients' default) is generous.
MAX_UNKNOWN_CLIENTS = 4096

# Entries normalized without a token: ~20-50 us, about what any small frame costs the server to
# read. Most drafts have fewer clients; a joiner of one with more pays one token of its burst.
FREE_ENTRIES = 64


def normalize(state_vector: bytes, doc_state: dict[int, int]) -> bytes | None:
    """The canonical state vector that gets the same reply from the doc as `state_vector`:
    `min(state_vector[c], doc_state[c])` for each client `c` of the doc, sorted by client,
    zero clocks dropped, encoded as lib0 writes a state vector. None if it is not decoded here
    (longer than the bound, or numbers yrs reads its own way): the caller uses the raw bytes.
    Raises `MalformedMessage` if it runs out of bytes (yrs refuses it too)."""
    entries = decode_bounded(state_vector, len(doc_state) + UNKNOWN_CLIENTS_DECODED)
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
