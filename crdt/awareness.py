"""Awareness updates: who is here, where their cursor is, as each client last said.

::

    update = varUint n, then n entries
    entry  = varUint clientID, varUint clock, varString stateJSON

``stateJSON`` is whatever the client's ``JSON.stringify(state)`` produced; ``null`` means that
client left. The server only relays and remembers entries, so the JSON stays an opaque string
here (y-protocols ``encodeAwarenessUpdate``, https://github.com/yjs/y-protocols/blob/
c2b3facc1c4b9dd17f3e4abc95e73838feef1a9d/src/awareness.js#L202).
"""

from collections.abc import Iterable
from dataclasses import dataclass

from .lib0 import Reader, write_var_string, write_var_uint

__all__ = ["AwarenessEntry", "decode_awareness_update", "encode_awareness_update"]


@dataclass(frozen=True, slots=True)
class AwarenessEntry:
    client_id: int
    clock: int
    state_json: str

    @property
    def removed(self) -> bool:
        """Whether this entry says the client left."""
        return self.state_json == "null"


def decode_awareness_update(payload: bytes) -> list[AwarenessEntry]:
    """Read a whole awareness update; framing errors raise ``MalformedMessage``."""
    reader = Reader(payload)
    count = reader.read_var_uint()
    entries = []
    for _ in range(count):
        client_id = reader.read_var_uint()
        clock = reader.read_var_uint()
        entries.append(AwarenessEntry(client_id, clock, reader.read_var_string()))
    reader.expect_end()
    return entries


def encode_awareness_update(entries: Iterable[AwarenessEntry]) -> bytes:
    items = list(entries)
    out = bytearray()
    write_var_uint(out, len(items))
    for entry in items:
        write_var_uint(out, entry.client_id)
        write_var_uint(out, entry.clock)
        write_var_string(out, entry.state_json)
    return bytes(out)
