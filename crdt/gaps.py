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
fresh editor never see. The room asks `check_run` after each run it applied and reloads
the draft when it says yes (server/sync/room.py).

A struct held for a missing origin alone (its clock is its client's next one) is no gap:
when the origin comes, yrs integrates it in order, the state vector moves past it and that
transaction's update reports it. `check_run` tells it apart (`RunCheck.HELD`), from the same
reads: the room weighs what is held, since nothing else bounds it (crdt/heldback.py).

What it costs: nothing held back is visible in the doc (yrs keeps it aside, and pycrdt does
not expose it), so every update of a run must be read. yrs reads one in ~0.35 us (a diff
against the state vector), a fifth of applying it; on a flood of keystrokes that was 13-15 %
of the room's time. Most updates a run carries are one struct (a keystroke) or none (a
delete): for those the header says all (`_headers_clear`), and a run's headers are checked
together, as one large integer, in ~0.2 us an update (docs/performance-notes.md, "The gap
check's cost").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from itertools import compress, repeat
from operator import itemgetter

from pycrdt import Doc, merge_updates

# yrs' diff itself: `pycrdt.get_update` is a Python function around it, a frame per update
# diffed (~0.08 us of ~0.35); the map loops below then run wholly in C. pycrdt is pinned
# (0.14.13, as the room's `_doc`/`_txn` calls in server/sync/core.py).
from pycrdt._pycrdt import get_update

from crdt.bare_reads import state_vector
from crdt.errors import UndecodableUpdate
from crdt.lib0 import Reader
from crdt.statevector import decode_state
from crdt.updates import Id, decode_update

__all__ = ["RunCheck", "check_run"]

_U32 = 0xFFFF_FFFF
_NO_STRUCTS = b"\x00"  # an update's first byte when it has no struct groups
# A diff decodes the whole state vector: ~1 us an update against ~50 clients, ~12 us against
# 1,000. Past this many bytes of state vector (~170 clients), a run is merged and diffed once.
_SMALL_STATE = 1024
# From this many updates a run's headers are read together: below it, diffing each in yrs
# (~0.35 us) costs about what the header check's fixed part does (~8 us: the probe, the
# layout, the large integers), and the concurrent traces' runs (9-18 updates on average)
# measured no faster through it.
_HEADERS_FROM = 32
_first_byte = itemgetter(0)


class RunCheck(Enum):
    """What a run left in the doc, as `check_run` reads it."""

    CLEAR = "clear"  # every struct integrated or redundant
    HELD = "held"  # a struct held for a missing origin, at its client's next clock
    GAP = "gap"  # a struct past its client's next clock: the draft is reloaded


def check_run(
    doc: Doc,
    applied: Sequence[bytes],
    reported: bytes | None,
    *,
    state: bytes | None = None,
    starts: Sequence[Sequence[Id]] | None = None,
) -> RunCheck:
    """GAP if `doc`, after taking the updates `applied` in a transaction whose update was
    `reported` (None: nothing), holds or waits on a struct of theirs past its client's next
    clock. `state`: the doc's state vector after them, if the caller read it inside that
    transaction (~0.2 us; else it is read in a yrs transaction of its own, `state_vector`: ~0.6
    us, ~1.7 through pycrdt's `doc.get_state()`).

    A lone update that yrs reported as it came (a keystroke: yrs reports a Yjs client's
    update byte for byte) costs a compare. A run of one client's keystrokes and deletes is
    cleared by their headers (`_headers_clear`). Otherwise the doc's state vector is encoded
    once and each update diffed against it in yrs (~0.35 us): one with no struct past it is
    done. Only an update the doc did not take to its end (held back, or skipped) is read in
    Python (~10 us) for where its runs of clocks start: one that starts no clock past its
    client's next one is HELD (yrs keeps it aside for an origin), which no fast path misses,
    since each clears only structs the state vector covers (the header check: strictly below
    the next clock)."""
    if len(applied) == 1 and applied[0] == reported:
        return RunCheck.CLEAR  # every struct in it is reported: none is held or skipped
    if state is None:
        state = state_vector(doc)  # `doc.get_state()` without pycrdt's `Transaction`: ~1 us less
    if len(applied) >= _HEADERS_FROM and _headers_clear(applied, state):
        return RunCheck.CLEAR
    if len(applied) > 1 and len(state) > _SMALL_STATE and _within(applied, state):
        return RunCheck.CLEAR  # a run taken whole: one merge (~2 us an update), one diff
    diffs = _diffs(applied, state)
    if diffs is not None and not any(map(_first_byte, diffs)):
        return RunCheck.CLEAR  # no update has a struct past the state
    known: dict[int, int] | None = None
    for index, update in enumerate(applied):
        if update[:1] == _NO_STRUCTS:
            continue
        if diffs[index][:1] == _NO_STRUCTS if diffs is not None else _within((update,), state):
            continue  # every struct in it is within the doc's state vector
        if starts is not None:
            begins = starts[index]  # read by the limits' walk, off the event loop
        else:
            try:
                begins = decode_update(update).starts
            except UndecodableUpdate:
                return RunCheck.GAP  # yrs took it and we cannot tell what it holds: not trusted
        if known is None:
            known = decode_state(state)
        # yrs keeps the low 32 bits of a clock (fuzz finding 6): compare in its terms
        if any(clock & _U32 > known.get(client, 0) for client, clock in begins):
            return RunCheck.GAP
    return RunCheck.HELD  # a struct not covered by the state, at its client's next clock


def _within(updates: Sequence[bytes], state: bytes) -> bool:
    """Whether yrs finds no struct of `updates` past `state`; False if it cannot tell (yrs
    took them, yet a crafted one may still make it raise or panic here)."""
    try:
        update = updates[0] if len(updates) == 1 else merge_updates(*updates)
        return get_update(update, state)[:1] == _NO_STRUCTS
    except BaseException as error:  # pyo3's PanicException derives from BaseException
        if _cannot_tell(error):
            return False
        raise


def _diffs(updates: Sequence[bytes], state: bytes) -> list[bytes] | None:
    """Each update's diff against `state`, the loop in C (`map`): ~0.35 us an update; None if
    yrs cannot tell (see `_within`)."""
    try:
        return list(map(get_update, updates, repeat(state)))
    except BaseException as error:
        if _cannot_tell(error):
            return None
        raise


def _each_within(updates: Sequence[bytes], state: bytes) -> bool:
    """`_within` for each update on its own, the loop in C (`map`): ~0.35 us an update, a
    third less than a Python loop around the same calls."""
    try:
        return not any(map(_first_byte, map(get_update, updates, repeat(state))))
    except BaseException as error:
        if _cannot_tell(error):
            return False
        raise


def _cannot_tell(error: BaseException) -> bool:
    return isinstance(error, Exception) or type(error).__name__ == "PanicException"


# -- the header check ------------------------------------------------------------------------
#
# An update (Yjs v1) starts with its number of struct groups, then the first group's number of
# structs, client and clock (varUints), then the first struct's info byte:
#
#     01 01 <client> <clock> <info> ...    one group of one struct: a keystroke
#     00 ...                               no struct group at all: a delete
#
# The only clock a one-struct group starts is its own (`DecodedUpdate.starts`; only a Skip
# starts another), so if that struct is an Item (info's low 5 bits 1-9, not a GC or Skip) and
# its clock is at or below its client's next clock, nothing of the update is past it.
#
# For a run, the first `width` bytes of every update that has structs are laid end to end, and
# read as one little-endian integer: each update's header is one "slot" of it. A few integer
# operations (in C, over all slots at once) check that every slot is the same client with an
# `L`-byte clock, and that every clock is at most the client's next one: an `L`-byte varUint
# read as a little-endian number orders as the clock it encodes (its continuation bits are the
# same in every slot), so "at most" is "adding `field_max - bound` carries out of no slot".
# Groups of several structs (~2 % of a trace's updates) are diffed in yrs.

# Info bytes of an Item: content refs 1-9 (Deleted, JSON, Binary, String, Embed, Format, Type,
# Any, Doc), with any origin/parent flags.
_ITEM_INFO = bytes(b for b in range(256) if 1 <= b & 0x1F <= 9)
_NOT_ONE = bytes(0 if b == 1 else 1 for b in range(256))  # translate: 1 -> 0, the rest -> 1
_MAX_CLIENT_BYTES = 8  # lib0 reads at most 8 bytes (53 bits, crdt/lib0.py)
# Clocks of at most 4 bytes (< 2**28): yrs keeps clocks' low 32 bits (fuzz finding 6), and
# below 2**32 the clock it keeps is the clock written.
_MAX_CLOCK_BYTES = 4
_PROBE_LENGTH = b"\x80\x80\x80\x80\x01"  # varUint 2**28: past every clock of 4 bytes
_ALL_BELOW = 1 << 32  # a bound past every clock field of 4 bytes


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where a header's fields lie, for one client and one clock length."""

    client: bytes  # its varUint, as written
    clock_bytes: int  # L
    width: int  # 01 01 <client> <clock> <info>
    fixed_mask: int  # per slot: what must be equal in every header
    fixed: int  # ... and its value: 01, a one-byte struct count, the client, L-byte clock
    clock_mask: int  # per slot: the clock's bytes
    carry: int  # per slot: the bit above the clock
    probe: bytes  # a GC of this client over clocks [0, 2**28)


@lru_cache(maxsize=64)
def _layout(client: bytes, clock_bytes: int) -> _Layout:
    at = 2 + len(client)  # the clock's first byte
    width = at + clock_bytes + 1
    fixed_mask = b"\xff\x80" + b"\xff" * len(client) + b"\x80" * clock_bytes
    fixed = b"\x01\x00" + client + b"\x80" * (clock_bytes - 1) + b"\x00"
    clock_mask = bytes(at) + b"\xff" * clock_bytes
    return _Layout(
        client=client,
        clock_bytes=clock_bytes,
        width=width,
        fixed_mask=int.from_bytes(fixed_mask, "little"),
        fixed=int.from_bytes(fixed, "little"),
        clock_mask=int.from_bytes(clock_mask, "little"),
        carry=1 << 8 * (at + clock_bytes),
        probe=b"\x01\x01" + client + b"\x00\x00" + _PROBE_LENGTH + b"\x00",
    )


@dataclass(frozen=True, slots=True)
class _Slots:
    """A layout's per-slot patterns, repeated over a run's slots."""

    fixed_mask: int
    fixed: int
    clock_mask: int
    carry: int
    ones: int  # 1 in each slot's lowest byte: `pattern * ones` repeats a pattern


@lru_cache(maxsize=32)
def _slots(layout: _Layout, count: int) -> _Slots:
    """Cached: a flood's runs are of one client, mostly 128 updates long (MAX_RUN)."""
    ones = int.from_bytes((b"\x01" + bytes(layout.width - 1)) * count, "little")
    return _Slots(
        fixed_mask=layout.fixed_mask * ones,
        fixed=layout.fixed * ones,
        clock_mask=layout.clock_mask * ones,
        carry=layout.carry * ones,
        ones=ones,
    )


def _headers_clear(applied: Sequence[bytes], state: bytes) -> bool:
    """True if every update in `applied` starts its clock below its client's next one in
    `state` (so the state covers it: neither skipped nor held), as their headers show; False
    if they do not show it (the caller diffs them)."""
    if not all(applied):
        return False  # an empty update: not one yrs took
    structs = list(filter(_first_byte, applied))  # a delete (first byte 0) starts no clock
    if not structs:
        return True
    layout = _layout_of(structs[0])
    if layout is None:
        return False
    width, count = layout.width, len(structs)
    heads = b"".join(map(itemgetter(slice(0, width)), structs))
    if len(heads) != width * count:
        return False  # one is shorter than the header: another shape
    repeated = _slots(layout, count)
    slots = int.from_bytes(heads, "little")
    if slots & repeated.fixed_mask != repeated.fixed:
        return False  # another client, clock length, or more than one group
    if heads[width - 1 :: width].translate(None, _ITEM_INFO):
        return False  # a first struct that is a GC, a Skip (or unknown)
    # The field of the last clock below the next one: a field orders as the clock it writes.
    bound = _next_clock_field(layout, state) - 1
    if bound < 0:
        return False  # no clock below the next one, or yrs could not tell
    if bound < _ALL_BELOW - 1:
        field_max = (1 << 8 * layout.clock_bytes) - 1
        at = (width - 1 - layout.clock_bytes) * 8
        clocks = slots & repeated.clock_mask
        if (clocks + ((field_max - bound) << at) * repeated.ones) & repeated.carry:
            return False  # a clock at or past the client's next one
    counts = heads[1::width]
    if counts.count(1) != count:  # groups of several structs: a Skip may start another clock
        return _each_within(list(compress(structs, counts.translate(_NOT_ONE))), state)
    return True


def _layout_of(update: bytes) -> _Layout | None:
    """The layout of `update`'s header if it is one group (its struct count one byte), with
    a client of at most 8 bytes and a clock of at most 4; None otherwise."""
    if update[0] != 1 or len(update) < 2 or update[1] >= 0x80:
        return None
    clock_at = _var_uint_end(update, 2, _MAX_CLIENT_BYTES)
    if clock_at < 0:
        return None
    end = _var_uint_end(update, clock_at, _MAX_CLOCK_BYTES)
    if end < 0:
        return None
    return _layout(update[2:clock_at], end - clock_at)


def _var_uint_end(data: bytes, start: int, most: int) -> int:
    """Where the varUint at `start` ends, if it is at most `most` bytes; -1 otherwise."""
    for at in range(start, min(start + most, len(data))):
        if data[at] < 0x80:
            return at + 1
    return -1


def _next_clock_field(layout: _Layout, state: bytes) -> int:
    """The client's next clock in `state`, written as a clock field of `layout` (an
    `L`-byte varUint) and read as a little-endian number; `_ALL_BELOW` if every such field
    is below it, -1 if it cannot tell. yrs reads it: the part of a GC over [0, 2**28) that
    `state` lacks starts there."""
    try:
        missing = get_update(layout.probe, state)
    except BaseException as error:
        if _cannot_tell(error):
            return -1
        raise
    if missing[:1] == _NO_STRUCTS:
        return _ALL_BELOW  # the client's next clock is past 2**28
    at = 2 + len(layout.client)
    if missing[:2] != b"\x01\x01" or missing[2:at] != layout.client:
        return -1  # yrs wrote the client otherwise (it was written with padding)
    clock = Reader(missing, at).read_var_uint()
    digits = layout.clock_bytes
    if clock >= 1 << 7 * digits:
        return _ALL_BELOW
    field = bytes((clock >> 7 * i) & 0x7F | (0x80 if i < digits - 1 else 0) for i in range(digits))
    return int.from_bytes(field, "little")
