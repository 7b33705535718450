"""A room's awareness table (cursors, names): who is here, as y-protocols' `Awareness` keeps it.

The server keeps the latest state per Yjs client id, so that a client joining later, or asking
with query-awareness, gets everyone's state, and so that a connection's states can be announced
as removed (`null`) when it goes away.

Awareness belongs to its connection. y-protocols trusts whoever sends an entry, which let any
connection (a viewer included) overwrite, delete or pin another's entry, or fill the room with
states. Here each client id has an owner: the connection that introduced it (the first to send
a state for an id nobody holds), or the instance whose clients it is (Redis fan-out). Only the
owner sets or removes it; it is removed for everyone when the owner goes, and by nobody else.
Entries for ids someone else owns are dropped, not refused: a stock y-websocket provider
re-broadcasts every awareness change it applies, the others' included (and its own time-outs
of them as `null`), so every client sends foreign entries all the time.

Clocks follow y-protocols `applyAwarenessUpdate` (a higher clock wins; at an equal clock only
a removal wins), and may advance at most `MAX_CLOCK_STEP` at once: a client adds 1 per local
change and sends every change, so only a forged clock jumps further (and would pin the entry
until the owner made as many changes). A connection owns at most `max_states` ids, whose
states hold at most `max_bytes`; an update that would pass either is refused whole
(`AwarenessLimitExceeded`, 4400) before anything of it is kept.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from crdt.awareness import AwarenessEntry, decode_awareness_update, encode_awareness_update
from crdt.errors import MalformedMessage
from crdt.lib0 import Reader
from server.errors import AwarenessLimitExceeded

__all__ = [
    "MAX_BYTES",
    "MAX_CLOCK_STEP",
    "MAX_DEPARTED",
    "MAX_ENTRIES",
    "MAX_STATES",
    "RATE",
    "Applied",
    "AwarenessLimits",
    "Presence",
]

# Defaults of `--awareness-max-states`, `--awareness-max-bytes`, `--awareness-rate`. A stock
# client sends one id (its doc's); 8 leaves room for a few docs on one socket. The web editor's
# state (name, colour, a cursor and selection) is under 1 KiB.
MAX_STATES = 8
MAX_BYTES = 64 * 1024
RATE = 20

# How far a clock may advance over the one held: a client adds 1 per change, so a million is
# hours of typing and cursor moves sent while the server never heard them, which cannot happen
# on one connection; a forged 10^15 can.
MAX_CLOCK_STEP = 2**20

# Ids whose owner went away are remembered with their last clock (the newest this many per
# room): a client that re-broadcasts a departed client's state (y-websocket echoes every change
# it applies) may not resurrect it with a clock the others already passed.
MAX_DEPARTED = 1024

# Entries one awareness message from a connection may carry beyond the ids the room knows (held
# or departed), checked from its count before it is decoded (in Python, on the event loop:
# 1,500,000 entries, 10.5 MB, held it 2.0 s). A stock client echoes the states of the relays it
# hears, at most everyone in the room: so the bound grows with the room (itself bounded by
# --max-connections-per-draft and --awareness-max-states), never below this.
MAX_ENTRIES = 4096


@dataclass(frozen=True, slots=True)
class AwarenessLimits:
    """Bounds on what one connection may hold in a room's awareness (serve's flags)."""

    max_states: int = MAX_STATES  # client ids one connection may own
    max_bytes: int = MAX_BYTES  # bytes (UTF-8 JSON) of the states it holds, all ids together
    rate: int = RATE  # relays of its awareness per second; more are coalesced (pacing.py)


class Applied(NamedTuple):
    """What an update changed: each changed id's entry to relay (the latest per id, in order
    of first change), and how many entries were dropped (someone else's id, a clock refused)."""

    entries: list[AwarenessEntry]
    dropped: int


@dataclass(slots=True)
class _Held:
    owner: Hashable
    clock: int
    state: str | None  # None: the owner removed it; it keeps the id and its clock
    size: int  # UTF-8 bytes of `state`


@dataclass(slots=True)
class _Owner:
    ids: set[int] = field(default_factory=set)
    size: int = 0  # bytes of the states of `ids`


class Presence:
    def __init__(self, limits: AwarenessLimits | None = None) -> None:
        self.limits = limits or AwarenessLimits()
        self._held: dict[int, _Held] = {}
        self._owners: dict[Hashable, _Owner] = {}
        self._departed: dict[int, int] = {}  # id -> last clock, of owners gone
        self._present = 0  # ids with a state (removed ones are held for their clock)
        # `full_update`'s answer until `_held` changes: every joiner and every query-awareness
        # is answered with it, and a query costs the asker three bytes but the room an encode
        # of every state (~0.9 ms for 1,500 cursors), as often as the asker likes.
        self._full: bytes | None = None

    def __len__(self) -> int:
        """How many clients have a state here."""
        return self._present

    def owned_by(self, owner: Hashable) -> set[int]:
        """The client ids `owner` holds (a copy)."""
        held = self._owners.get(owner)
        return set(held.ids) if held is not None else set()

    def apply(self, owner: Hashable, payload: bytes) -> Applied:
        """Take the entries of a local connection's awareness update that it may make.

        Raises `MalformedMessage` (not an update, or a state that is not JSON: every other
        client parses it) or `AwarenessLimitExceeded`; either way nothing of it is kept.
        """
        return self._apply(owner, payload, remote=False)

    def apply_remote(self, instance: Hashable, payload: bytes) -> Applied:
        """Take what another instance relays of its clients' awareness. It bounded them, and
        its relays are coalesced, so a clock may step further; it tells of a client going only
        by a removal, so a removal frees the id."""
        return self._apply(instance, payload, remote=True)

    def _apply(self, owner: Hashable, payload: bytes, *, remote: bool) -> Applied:
        if not remote:
            count = Reader(payload).read_var_uint() if payload else 0
            known = len(self._held) + len(self._departed)
            if count > MAX_ENTRIES + known:
                raise AwarenessLimitExceeded(
                    f"awareness: {count} entries in one update > {MAX_ENTRIES} "
                    f"+ the room's {known} known ids"
                )
        mine = self._owners.get(owner) or _Owner()
        limits = self.limits
        changes: dict[int, _Held] = {}
        claimed = 0
        dropped = 0
        for entry in decode_awareness_update(payload):
            client_id = entry.client_id
            held = changes.get(client_id) or self._held.get(client_id)
            if held is not None and held.owner != owner:
                dropped += 1
                continue
            last = held.clock if held is not None else self._departed.get(client_id)
            if not _takes(entry, held, last, bounded=not remote):
                dropped += 1
                continue
            if held is None:
                claimed += 1
                if not remote and len(mine.ids) + claimed > limits.max_states:
                    raise AwarenessLimitExceeded(
                        f"awareness: over {limits.max_states} client ids on one connection"
                    )
            if entry.removed:
                changes[client_id] = _Held(owner, entry.clock, None, 0)
            else:
                size = len(entry.state_json.encode())
                changes[client_id] = _Held(owner, entry.clock, entry.state_json, size)
        if not changes:
            return Applied([], dropped)
        if not remote:
            size = mine.size + sum(
                change.size - self._size_of(client_id) for client_id, change in changes.items()
            )
            if size > limits.max_bytes:
                raise AwarenessLimitExceeded(
                    f"awareness: {size} bytes of states on one connection, "
                    f"at most {limits.max_bytes}"
                )
        for client_id, change in changes.items():
            if change.state is not None:
                try:
                    json.loads(change.state)
                except (ValueError, RecursionError) as exc:
                    # RecursionError: valid JSON nested past Python's limit (a 40 KB state of
                    # brackets) is bad input as well, not a fault of ours (1011, /healthz 503).
                    raise MalformedMessage(
                        f"awareness state of client {client_id} is not JSON"
                    ) from exc
        self._owners[owner] = mine
        for client_id, change in changes.items():
            self._drop(client_id, mine)
            if remote and change.state is None:
                self._remember_departed(client_id, change.clock)
                continue
            self._departed.pop(client_id, None)
            self._held[client_id] = change
            self._full = None
            mine.ids.add(client_id)
            mine.size += change.size
            if change.state is not None:
                self._present += 1
        if not mine.ids:
            del self._owners[owner]
        entries = [
            AwarenessEntry(client_id, change.clock, change.state or "null")
            for client_id, change in changes.items()
        ]
        return Applied(entries, dropped)

    def _size_of(self, client_id: int) -> int:
        held = self._held.get(client_id)
        return held.size if held is not None else 0

    def _drop(self, client_id: int, mine: _Owner) -> _Held | None:
        """Forget what is held of `client_id` (owned by `mine`), keeping the counts right."""
        held = self._held.pop(client_id, None)
        if held is not None:
            self._full = None
            mine.ids.discard(client_id)
            mine.size -= held.size
            if held.state is not None:
                self._present -= 1
        return held

    def full_update(self) -> bytes | None:
        """Every state we hold as one awareness update, or None when nobody is here. Encoded
        once per change of the table, not once per asker."""
        if not self._present:
            return None
        if self._full is None:
            self._full = encode_awareness_update(
                AwarenessEntry(client_id, held.clock, held.state)
                for client_id, held in self._held.items()
                if held.state is not None
            )
        return self._full

    def release(self, owner: Hashable, client_ids: Iterable[int] | None = None) -> bytes | None:
        """`owner` went away: drop its ids (or those of `client_ids` it owns) and return the
        update that tells the others they left: at the next clock (as y-protocols does), or at
        the removal's own for an id its owner removed (that removal may still wait for its
        relay, server/sync/pacing.py; peers that had it ignore it again)."""
        mine = self._owners.get(owner)
        if mine is None:
            return None
        ids = set(mine.ids) if client_ids is None else mine.ids & set(client_ids)
        gone = []
        for client_id in ids:
            held = self._drop(client_id, mine)
            assert held is not None
            clock = held.clock + (held.state is not None)
            gone.append(AwarenessEntry(client_id, clock, "null"))
            self._remember_departed(client_id, clock)
        if not mine.ids:
            del self._owners[owner]
        return encode_awareness_update(gone) if gone else None

    def _remember_departed(self, client_id: int, clock: int) -> None:
        self._departed.pop(client_id, None)
        self._departed[client_id] = clock
        if len(self._departed) > MAX_DEPARTED:
            del self._departed[next(iter(self._departed))]


def _takes(entry: AwarenessEntry, held: _Held | None, last: int | None, *, bounded: bool) -> bool:
    """Whether `entry` changes an id its sender may change: held (None: nobody holds it), last
    clock seen (None: never, or forgotten)."""
    if held is None and entry.removed:
        return False  # nothing to remove (an echo of a departure); never claims an id
    if last is None:
        return True
    if entry.clock < last or (bounded and entry.clock > last + MAX_CLOCK_STEP):
        return False
    if entry.clock == last:
        # y-protocols: at an equal clock only a removal wins, of a state still there.
        return entry.removed and held is not None and held.state is not None
    return True
