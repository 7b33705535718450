"""Whether a doc holds part of an update outside its state vector (a gap in a client's clocks).

Why: Yjs keeps a struct whose clock is past its client's next clock pending until the clocks
before it arrive. yrs (pycrdt 0.14.13) does not, in two ways:

- a struct whose origins the doc has is integrated at once, after a Skip (fuzz finding 2):
  the transaction's update is empty;
- a struct that waits for an origin is integrated, after a Skip, by the transaction that
  brings the origin (fuzz seed 3): that transaction's update holds the origin's structs and
  not this one.

Either way the doc shows a struct that its state vector does not cover and that no update it
reported holds, so the store never gets it: the room shows what a reload, a restart or a
fresh editor never see. The room asks `holds_a_gap` after each run it applied and reloads
the draft when it says yes (server/sync/room.py).

A struct held for a missing origin alone (its clock is its client's next one) is no gap:
when the origin comes, yrs integrates it in order, the state vector moves past it and that
transaction's update reports it.
"""

from __future__ import annotations

from collections.abc import Sequence

from pycrdt import Doc, get_update, merge_updates

from crdt.errors import UndecodableUpdate
from crdt.lib0 import Reader
from crdt.updates import decode_update

__all__ = ["holds_a_gap"]

_U32 = 0xFFFF_FFFF
_NO_STRUCTS = b"\x00"  # an update's first byte when it has no struct groups
# A diff decodes the whole state vector: ~1 us an update against ~50 clients, ~12 us against
# 1,000. Past this many bytes of state vector (~170 clients), a run is merged and diffed once.
_SMALL_STATE = 1024


def holds_a_gap(doc: Doc, applied: Sequence[bytes], reported: bytes | None) -> bool:
    """True if `doc`, after taking the updates `applied` in a transaction whose update was
    `reported` (None: nothing), holds or waits on a struct of theirs past its client's next
    clock.

    A lone update that yrs reported as it came (a keystroke: yrs reports a Yjs client's
    update byte for byte) costs a compare. Otherwise the doc's state vector is encoded once
    and each update diffed against it in yrs (~1 us): one with no struct past it is done.
    Only an update the doc did not take to its end (held back, or skipped) is read in Python
    (~10 us) for where its runs of clocks start."""
    if len(applied) == 1 and applied[0] == reported:
        return False  # every struct in it is reported: none is held or skipped
    state = doc.get_state()
    if len(applied) > 1 and len(state) > _SMALL_STATE and _within(applied, state):
        return False  # a run taken whole: one merge (~2 us an update), one diff
    known: dict[int, int] | None = None
    for update in applied:
        if update[:1] == _NO_STRUCTS or _within((update,), state):
            continue  # every struct in it is within the doc's state vector
        try:
            starts = decode_update(update).starts
        except UndecodableUpdate:
            return True  # yrs took it and we cannot tell what it holds: not to be trusted
        if known is None:
            known = _state_vector(state)
        # yrs keeps the low 32 bits of a clock (fuzz finding 6): compare in its terms
        if any(clock & _U32 > known.get(client, 0) for client, clock in starts):
            return True
    return False


def _within(updates: Sequence[bytes], state: bytes) -> bool:
    """Whether yrs finds no struct of `updates` past `state`; False if it cannot tell (yrs
    took them, yet a crafted one may still make it raise or panic here)."""
    try:
        update = updates[0] if len(updates) == 1 else merge_updates(*updates)
        return get_update(update, state)[:1] == _NO_STRUCTS
    except BaseException as error:  # pyo3's PanicException derives from BaseException
        if isinstance(error, Exception) or type(error).__name__ == "PanicException":
            return False
        raise


def _state_vector(encoded: bytes) -> dict[int, int]:
    reader = Reader(encoded)
    vector: dict[int, int] = {}
    for _ in range(reader.read_var_uint()):
        client = reader.read_var_uint()
        vector[client] = reader.read_var_uint()
    return vector
