"""Whether an update would change a doc, told without applying it.

Why: while the server refuses writes (its disk is full), a joining reader still sends its sync
step 2, and a reconnecting one sends its delete set with it, which Yjs always includes. Those
change nothing and must pass; an update that would change the doc must be refused before it
is applied, since once applied it could not be stored. Applying to a copy would cost an
encoding of the whole doc; this costs an encoding of the doc's delete set and a decode of the
update, and runs only while writes are refused.
"""

from __future__ import annotations

import bisect

from pycrdt import Doc, get_update

from crdt.updates import decode_update

__all__ = ["is_redundant"]

_NO_STRUCTS = b"\x00"  # an update's first byte when it has no struct groups


def is_redundant(update: bytes, doc: Doc) -> bool:
    """True if applying `update` to `doc` certainly changes nothing: every struct in it is
    within the doc's state vector and every range it deletes is deleted in the doc already.
    False when it may change something (also when it cannot be read)."""
    try:
        # yrs's diff of the update against the doc's state vector keeps every struct past it.
        # (`get_state(update)` would not do: it counts only clocks that run unbroken from 0,
        # so a client's second keystroke looked redundant.)
        if get_update(update, doc.get_state())[:1] != _NO_STRUCTS:
            return False
        deletes = decode_update(update).delete_set
    except BaseException as error:  # pyo3's PanicException derives from BaseException
        if isinstance(error, Exception) or type(error).__name__ == "PanicException":
            return False  # unreadable: it may change something
        raise
    if not deletes:
        return True
    deleted = decode_update(doc.get_update(doc.get_state())).delete_set
    for client, ranges in deletes.items():
        merged = _merged(deleted.get(client, []))
        if not all(_covered(start, length, merged) for start, length in ranges if length):
            return False
    return True


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, non-overlapping (start, end) ranges covering the same clocks."""
    merged: list[tuple[int, int]] = []
    for start, length in sorted(ranges):
        end = start + length
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _covered(start: int, length: int, merged: list[tuple[int, int]]) -> bool:
    index = bisect.bisect_right(merged, (start, float("inf"))) - 1
    return index >= 0 and merged[index][0] <= start and start + length <= merged[index][1]
