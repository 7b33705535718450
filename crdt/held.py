"""How much of a run a doc holds back, waiting for what it does not have (yrs's pending).

Why: yrs keeps a struct whose origin it lacks, and a delete of clocks past what it has, aside
until they come ("pending"), and pycrdt does not show it. Nothing bounds that store: a client
sending deletes of a client that does not exist (50,000 ranges a run, within
`--max-update-deletes`) grew it by ~1.6 MB a run, and yrs retries the whole pending delete set
on every update after: past 100 such runs each keystroke on the draft took ~215 ms on the event
loop (up to 1.5 s), every draft's clients waiting; held structs grew it by ~190 bytes each
(6,000,000 from one connection: 1.2 GB). The room counts what each run leaves held
(`held_units`) and drops the doc, which drops its pending store, past a bound
(server/sync/core.py).

A unit is a delete range past its client's clock in the doc, or a byte of an update part of
whose structs were held (a conservative weight: a struct takes a few bytes). What yrs later
integrates is not subtracted: honest clients almost never send either (every client of a
draft syncs through the server), so a budget per loaded doc is enough.

Cost: a lone update that yrs reported byte for byte is free; otherwise one diff in yrs per
update (~0.35 us), and Python reads only a diff that keeps a delete set.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat

from pycrdt import Doc
from pycrdt._pycrdt import get_update

from crdt.bare_reads import state_vector
from crdt.errors import MalformedMessage
from crdt.lib0 import Reader
from crdt.statevector import decode_state

__all__ = ["held_units"]

_NOTHING = b"\x00\x00"  # no struct past the state, no delete set


def held_units(
    doc: Doc, applied: Sequence[bytes], reported: bytes | None, *, state: bytes | None = None
) -> int:
    """Units of `applied` (updates `doc` took in one transaction, which reported `reported`)
    that the doc holds back. `state`: its state vector after them, if the caller has it. Call
    it after the gap check (crdt/gaps.py), which has refused every update it cannot read."""
    if len(applied) == 1 and applied[0] == reported:
        return 0  # yrs integrated it whole, deletes included
    if state is None:
        state = state_vector(doc)
    try:
        diffs = list(map(get_update, applied, repeat(state)))
    except BaseException as error:  # pyo3's PanicException derives from BaseException
        if isinstance(error, Exception) or type(error).__name__ == "PanicException":
            return sum(map(len, applied))  # yrs took them and cannot diff them: all held
        raise
    if diffs.count(_NOTHING) == len(diffs):
        return 0
    units = 0
    known: dict[int, int] | None = None
    for diff in diffs:
        if diff == _NOTHING:
            continue
        if diff[0] != 0:  # structs past the state: held for an origin
            units += len(diff)
            continue
        if known is None:
            known = decode_state(state)
        units += _deletes_past(diff, known)
    return units


def _deletes_past(diff: bytes, known: dict[int, int]) -> int:
    """Delete ranges of `diff` (no structs, then a delete set) that reach past their client's
    clock in `known`: yrs holds each until the clocks come."""
    reader = Reader(diff)
    try:
        reader.read_var_uint()  # 0 struct groups
        past = 0
        for _ in range(reader.read_var_uint()):
            have = known.get(reader.read_var_uint(), 0)
            for _ in range(reader.read_var_uint()):
                clock = reader.read_var_uint()
                if clock + reader.read_var_uint() > have:
                    past += 1
        return past
    except MalformedMessage:
        return len(diff)  # yrs wrote it: it cannot be short, but if so, count it all
