"""Which map key an item writes, and whether its writer had seen the key's current value.

For every item of the root map `fields` the index keeps `id -> key` (as runs of clocks: a
merged deleted run's length is only the update's claim, 2**32 - 1 clocks fit in 27 bytes, so
nothing costs per clock), the tree its origins form per key, and the key's winning item as
Yjs/yrs decide it: siblings (items with one origin) are ordered by ascending client id and a
node's subtree follows it, so the winner is reached from the root by always taking the child
with the largest client id (docs/conflict-detection.md; matched pycrdt on every checked case).

A write is *concurrent* when its origin is not the key's winner at the moment it arrives, or
when it has no origin although the key already has items: its writer had not seen the value the
server holds. This holds whether the incoming write wins or loses Yjs's ordering.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

from crdt.errors import NonJsonValue
from crdt.updates import (
    CONTENT_NAMES,
    JSON_CONTENTS,
    NO_VALUE,
    DecodedUpdate,
    ItemHeader,
    decode_update,
)

__all__ = ["FieldIndex", "Id", "MapWrite", "check_json_values"]

Id = tuple[int, int]
_NONE: Mapping[Id, Any] = {}
# How many runs a concurrent write's origin is looked for above the key's winner before the
# winner is found again from the root (`FieldIndex._rechoose`).
_MAX_CLIMB = 64
_OFF_PATH: Id = (-1, -1)  # the origin is not an ancestor of the winner


@dataclass(frozen=True, slots=True)
class MapWrite:
    key: str
    id: Id
    origin: Id | None
    value: Any  # NO_VALUE for a deleted item
    concurrent: bool
    seen: Any  # the value of the origin item (what the writer saw), NO_VALUE if unknown
    leaf: bool = True  # no other write of the same update builds on this one
    last: Id | None = None  # the item's last clock, when a merged deleted run spans several
    content: int = 8  # the item's content ref (crdt.updates.CONTENT_NAMES)


@dataclass(frozen=True, slots=True)
class _Run:
    """Clocks `start..end - 1` of one client, one item's chain: each clock's parent is the
    clock before it, the first one's is the item's origin."""

    start: int
    end: int
    key: str


# A frozen dataclass's `__init__` sets each field through `object.__setattr__` (~1.7 us for
# MapWrite's nine); the one-write ways below (`ingest_sequential`, `ingest_single`, every
# `fields` write of S5) build the same objects (equal, same hash) by the slots' own setters,
# in about a third of that (tests/crdt/test_one_write_readers.py checks them).
# `cast`: a type checker (mypy, mypyc) reads a slot on the class as the instance's value.
_SET_KEY = cast(Any, MapWrite).key.__set__
_SET_ID = cast(Any, MapWrite).id.__set__
_SET_ORIGIN = cast(Any, MapWrite).origin.__set__
_SET_VALUE = cast(Any, MapWrite).value.__set__
_SET_CONCURRENT = cast(Any, MapWrite).concurrent.__set__
_SET_SEEN = cast(Any, MapWrite).seen.__set__
_SET_LEAF = cast(Any, MapWrite).leaf.__set__
_SET_LAST = cast(Any, MapWrite).last.__set__
_SET_CONTENT = cast(Any, MapWrite).content.__set__
_SET_START = cast(Any, _Run).start.__set__
_SET_END = cast(Any, _Run).end.__set__
_SET_RUN_KEY = cast(Any, _Run).key.__set__
# `object.__new__` itself in the pure build; a compiled build's (mypyc) classes make their own.
_new_write = MapWrite.__new__
_new_run = _Run.__new__


def _leaf_write(
    key: str, node: Id, origin: Id, value: Any, concurrent: bool, seen: Any, content: int
) -> MapWrite:
    """`MapWrite(key, node, origin, value, concurrent, seen, True, node, content)`: the write
    of one clock, which no other write of its update builds on."""
    write = _new_write(MapWrite)
    _SET_KEY(write, key)
    _SET_ID(write, node)
    _SET_ORIGIN(write, origin)
    _SET_VALUE(write, value)
    _SET_CONCURRENT(write, concurrent)
    _SET_SEEN(write, seen)
    _SET_LEAF(write, True)
    _SET_LAST(write, node)
    _SET_CONTENT(write, content)
    return write


def _one_clock_run(clock: int, key: str) -> _Run:
    """`_Run(clock, clock + 1, key)`."""
    run = _new_run(_Run)
    _SET_START(run, clock)
    _SET_END(run, clock + 1)
    _SET_RUN_KEY(run, key)
    return run


class FieldIndex:
    def __init__(self, root: str = "fields") -> None:
        self.root = root
        # Runs, not clocks: a run's length is only a claim of the update (a deleted run of
        # 2**32 - 1 clocks fits in 27 bytes), so nothing here may cost per clock.
        self._starts: dict[int, list[int]] = {}  # client -> sorted run starts
        self._runs: dict[int, list[_Run]] = {}  # client -> its runs, in the same order
        self._clocks = 0
        self._children: dict[tuple[str, Id | None], list[Id]] = {}  # links between runs
        self._branches: dict[tuple[str, int], list[int]] = {}  # (key, client) -> sorted
        # clocks that have children in `_children` (where a descent may leave a run)
        self._winner: dict[str, Id] = {}
        self._value_of: dict[Id, Any] = {}
        self._parent: dict[Id, Id | None] = {}  # a run's first id -> its parent (None: root)
        # A run's first id -> its depth in its key's tree (a child of the root: 0; a clock
        # `k` of the run: that plus `k - start`). Missing when the parent's depth was unknown
        # as it was linked (a crafted update linking an item before its origin): such runs
        # are climbed without the depth bound, as before (`_path_child`).
        self._depth: dict[Id, int] = {}

    def __len__(self) -> int:
        return self._clocks

    @property
    def ids(self) -> Container[Id]:
        """The ids of every item indexed (a live view): what an overwrite names as origin."""
        return _Ids(self)

    def winner(self, key: str) -> Id | None:
        return self._winner.get(key)

    def value_of(self, item_id: Id) -> Any:
        return self._value_of.get(item_id, NO_VALUE)

    def load(self, state: bytes, *, below: Mapping[int, int] | None = None) -> None:
        """Index a whole document state; reports nothing.

        With `below` (client -> clock), only clocks under it are indexed: the document as it
        was before an update whose first clock per client `below` gives. Runs that straddle
        the cut (deleted runs merge across updates) are cut there."""
        items = decode_update(state).items
        if below:
            items = [cut for item in items if (cut := _cut(item, below)) is not None]
        self._integrate(items, report=False)
        for key in {key for key, _ in self._children}:
            self._winner[key] = self._descend(key)

    def ingest(self, update: bytes, values: Mapping[Id, Any] | None = None) -> list[MapWrite]:
        """Index the map items of an applied update, in causal order, flagging concurrency.

        `values` supplies contents by item id where the update lacks them: the server's doc
        deletes a write that loses Yjs's ordering while integrating it, so its own report of
        the transaction carries that write as Deleted; the client's bytes still hold it."""
        return self.ingest_decoded(decode_update(update), values)

    def ingest_decoded(
        self, update: DecodedUpdate, values: Mapping[Id, Any] | None = None
    ) -> list[MapWrite]:
        """`ingest` of an update the caller decoded already (the review reads it too)."""
        writes = self._integrate(update.items, report=True, values=values or {})
        built_on = {write.origin for write in writes}
        return [w if (w.last or w.id) not in built_on else _not_leaf(w) for w in writes]

    def key_of(self, item_id: Id) -> str | None:
        """The key of an indexed item, None if the index does not hold it."""
        run = self._run_of(item_id)
        return None if run is None else run.key

    def ingest_sequential(self, key: str, item: ItemHeader) -> MapWrite | None:
        """`ingest` of an update whose one item is `item`, if it is a sequential write to
        `key`: one clock with a value, not indexed yet, whose origin is the key's winner (its
        writer had seen the value the server holds). None otherwise, the index unchanged: the
        caller then ingests the update as usual.

        What `ingest` does with it, without finding out what is known here: the origin names
        the key (the winner is one of the key's items), the item is one unit (`_units`) and a
        leaf, not concurrent; `_add` then makes it one run of one clock under the origin
        (`_add_node`, `_insert_run`, `_link`) and the key's winner. A `fields` write's review
        took ~12 us in `ingest`'s general steps, ~5 here (tests/crdt/test_fields_sequential.py
        checks that both leave the same index)."""
        origin = item.origin
        if (
            origin is None
            or origin != self._winner.get(key)
            or item.length != 1
            or item.value is NO_VALUE
        ):
            return None
        node = item.id
        at = self._free_slot(node)
        if at is None:
            return None
        self._add_one_clock(key, node, origin, at)
        value = item.value
        self._value_of[node] = value
        self._winner[key] = node
        seen = self._value_of.get(origin, NO_VALUE)
        return _leaf_write(key, node, origin, value, False, seen, item.content)

    def ingest_single(
        self, item: ItemHeader, values: Mapping[Id, Any] = _NONE
    ) -> list[MapWrite] | None:
        """`ingest_decoded` of an update whose one item is `item`, if it is one clock, not
        indexed yet, whose left origin the index holds (so it names the key); None otherwise,
        the index unchanged: the caller then ingests the update as usual.

        That is a `fields` write that raced another (S5, issue 24: a third of its writes),
        sequential or not: what `_integrate` does for it, without its waiting list, `_units`,
        `_unindexed` (one clock not indexed is its own gap) and the leaf check (one write
        builds on none of its own update). `tests/crdt/test_fields_single.py` checks that
        both give the same writes and leave the same index on random histories."""
        origin = item.origin
        if origin is None or item.length != 1 or item.parent_root is not None:
            return None
        node = item.id
        at = self._free_slot(node)
        if at is None:
            return None
        origin_run = self._run_of(origin)
        if origin_run is None:
            return None
        key = origin_run.key
        value = item.value
        content = item.content
        if value is NO_VALUE and node in values:  # a write that lost Yjs's ordering (`_units`)
            value = values[node]
        winner = self._winner.get(key)
        concurrent = origin != winner
        self._add_one_clock(key, node, origin, at)
        if value is not NO_VALUE:
            self._value_of[node] = value
        if not concurrent:
            self._winner[key] = node
        elif winner is not None:
            self._winner[key] = self._rechoose(key, winner, node, origin, node)
        else:
            self._winner[key] = self._descend(key)
        seen = self._value_of.get(origin, NO_VALUE)
        return [_leaf_write(key, node, origin, value, concurrent, seen, content)]

    def _free_slot(self, node: Id) -> int | None:
        """Where a run of `node`'s clock alone goes among its client's runs; None if the index
        holds that clock already (`_run_of`). The one-item paths' shared first step."""
        client, clock = node
        starts = self._starts.get(client)
        if not starts:
            return 0
        at = bisect_right(starts, clock)
        if at and clock < self._runs[client][at - 1].end:
            return None
        return at

    def _add_one_clock(self, key: str, node: Id, origin: Id, at: int) -> None:
        """Index `node` as a run of one clock of `key` at `at` (`_free_slot`), under `origin`."""
        client, clock = node
        starts = self._starts.get(client)
        if starts:
            runs = self._runs[client]
        else:
            starts = self._starts[client] = []
            runs = self._runs[client] = []
        starts.insert(at, clock)
        runs.insert(at, _one_clock_run(clock, key))
        self._clocks += 1
        self._link(key, origin, node)

    def _integrate(
        self, items: list[ItemHeader], *, report: bool, values: Mapping[Id, Any] = _NONE
    ) -> list[MapWrite]:
        writes: list[MapWrite] = []
        waiting = [item for item in items if self._run_of(item.id) is None]
        # Items arrive grouped by client, not in causal order: take an item once its origin
        # is indexed (or it names its key); what never resolves is not a map item (text...).
        while waiting:
            left: list[ItemHeader] = []
            for item in waiting:
                key = self._key_for(item)
                if key is None:
                    left.append(item)
                elif report:
                    writes += [self._add(unit, key) for unit in _units(item, values)]
                else:
                    self._add_node(item, key)
            if len(left) == len(waiting):
                break
            waiting = left
        return writes

    def _run_of(self, node: Id) -> _Run | None:
        client, clock = node
        starts = self._starts.get(client)
        if not starts:
            return None
        at = bisect_right(starts, clock) - 1
        if at < 0:
            return None
        run = self._runs[client][at]
        return run if clock < run.end else None

    def _key_for(self, item: ItemHeader) -> str | None:
        if item.parent_root is not None:
            return item.parent_sub if item.parent_root == self.root else None
        for neighbour in (item.origin, item.right_origin):
            if neighbour is not None and (run := self._run_of(neighbour)) is not None:
                return run.key
        return None

    def _add(self, item: ItemHeader, key: str) -> MapWrite:
        winner = self._winner.get(key)
        concurrent = item.origin != winner
        client, clock = item.id
        # Only a concurrent write re-chooses the winner: a sequential one need not look.
        whole = concurrent and self._unindexed(client, clock, clock + item.length) == [
            (clock, clock + item.length)
        ]
        last = self._add_node(item, key)
        if not concurrent:
            self._winner[key] = last
        elif whole and winner is not None:
            self._winner[key] = self._rechoose(key, winner, item.id, item.origin, last)
        else:
            self._winner[key] = self._descend(key)
        return MapWrite(
            key=key,
            id=item.id,
            origin=item.origin,
            value=item.value,
            concurrent=concurrent,
            seen=self._value_of.get(item.origin, NO_VALUE) if item.origin else NO_VALUE,
            last=last,
            content=item.content,
        )

    def _add_node(self, item: ItemHeader, key: str) -> Id:
        """Add the item's clocks as a chain under its origin (runs for the clocks not yet
        indexed); return its last id."""
        client, clock = item.id
        end = clock + item.length
        parent = item.origin
        for start, stop in self._unindexed(client, clock, end):
            self._insert_run(client, _Run(start, stop, key))
            self._link(key, parent if start == clock else (client, start - 1), (client, start))
        if item.value is not NO_VALUE:
            self._value_of[item.id] = item.value
        return (client, end - 1)

    def _unindexed(self, client: int, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of clocks `start..end - 1` no run holds yet."""
        gaps = []
        starts = self._starts.get(client, [])
        at = max(bisect_right(starts, start) - 1, 0)
        runs = self._runs.get(client, [])
        cursor = start
        for run in runs[at:]:
            if run.start >= end:
                break
            if run.end <= cursor:
                continue
            if run.start > cursor:
                gaps.append((cursor, run.start))
            cursor = max(cursor, run.end)
        if cursor < end:
            gaps.append((cursor, end))
        return gaps

    def _insert_run(self, client: int, run: _Run) -> None:
        starts = self._starts.setdefault(client, [])
        at = bisect_right(starts, run.start)
        starts.insert(at, run.start)
        self._runs.setdefault(client, []).insert(at, run)
        self._clocks += run.end - run.start

    def _link(self, key: str, parent: Id | None, child: Id) -> None:
        self._children.setdefault((key, parent), []).append(child)
        self._parent[child] = parent
        depth = 0 if parent is None else self._depth_of(parent)
        if depth is not None:
            self._depth[child] = depth if parent is None else depth + 1
        if parent is not None:
            branches = self._branches.setdefault((key, parent[0]), [])
            at = bisect_left(branches, parent[1])
            if at == len(branches) or branches[at] != parent[1]:
                branches.insert(at, parent[1])

    def _rechoose(self, key: str, winner: Id, first: Id, origin: Id | None, last: Id) -> Id:
        """The key's winner after a concurrent write (`first..last`, a new chain under
        `origin`) joined the tree, without walking the key's whole history (`_descend` from the
        root: a key set many times made every concurrent write cost its whole history).

        The winner is the end of the path that always takes the largest child, so only the
        choice at `origin` can change, and only if `origin` is on that path, i.e. an ancestor
        of the old winner: then the new chain wins if its first id is larger than the path's
        child there (it has no children yet: its last id wins), else the old winner stays. An
        origin far above the winner (or none, the root) is settled by `_descend`."""
        child = self._path_child(winner, origin)
        if child is None:
            return self._descend(key)
        if child == _OFF_PATH:
            return winner
        return last if first > child else winner

    def _depth_of(self, node: Id) -> int | None:
        """The depth of an indexed clock in its key's tree, None if unknown."""
        run = self._run_of(node)
        if run is None:
            return None
        depth = self._depth.get((node[0], run.start))
        return None if depth is None else depth + node[1] - run.start

    def _path_child(self, node: Id, target: Id | None) -> Id | None:
        """The child of `target` on the path from the root to `node` (the winner),
        `_OFF_PATH` if `target` is not on it, None if that was not found within `_MAX_CLIMB`
        runs.

        The path holds one node per depth, so the climb stops at `target`'s depth: a concurrent
        write whose origin lost (is off the path) is settled in as many runs as its origin is
        shallower than the winner, instead of climbing to the root (S5: ten writers setting
        one key made most writes walk the key's whole history from the root)."""
        below: Id | None = None  # the path's node under `node`
        wanted = self._depth_of(target) if target is not None else None
        for _ in range(_MAX_CLIMB):
            run = self._run_of(node)
            if run is None:
                return None
            client, clock = node
            if target is not None and target[0] == client and run.start <= target[1] <= clock:
                return (client, target[1] + 1) if target[1] < clock else below
            start = (client, run.start)
            if start not in self._parent:
                return None
            top = self._depth.get(start)
            if wanted is not None and top is not None and top <= wanted:
                # This run holds the path's node at `target`'s depth, and it is not `target`.
                return _OFF_PATH
            parent = self._parent[start]
            if parent is None:  # `start` is a child of the root
                return start if target is None else _OFF_PATH
            below, node = start, parent
        return None

    def _descend(self, key: str) -> Id:
        """From the root, always to the child with the largest id (client, clock); along a
        run, straight to its next clock that has other children, or its end."""
        node: Id | None = None
        while True:
            children = list(self._children.get((key, node), ()))
            run = self._run_of(node) if node is not None else None
            along: Id | None = None  # the next clock of the node's own run
            if node is not None and run is not None and node[1] + 1 < run.end:
                along = (node[0], node[1] + 1)
                children.append(along)
            if not children:
                assert node is not None
                return node
            best = max(children)
            if node is not None and run is not None and best == along:
                client = node[0]
                branches = self._branches.get((key, client), [])
                at = bisect_left(branches, node[1] + 1)
                stop = run.end - 1
                if at < len(branches) and branches[at] < stop:
                    stop = branches[at]
                best = (client, stop)
            node = best


class _Ids(Container[Id]):
    """`id in ids`: whether a run of the index holds that clock."""

    def __init__(self, index: FieldIndex) -> None:
        self._index = index

    def __contains__(self, item: object) -> bool:
        if not (isinstance(item, tuple) and len(item) == 2):
            return False
        return self._index._run_of(item) is not None


def _not_leaf(write: MapWrite) -> MapWrite:
    """`replace(write, leaf=False)` without `dataclasses.replace`'s introspection (it cost
    more than the write's whole indexing when a run of updates chains several writes)."""
    w = write
    return MapWrite(w.key, w.id, w.origin, w.value, w.concurrent, w.seen, False, w.last, w.content)


def _cut(item: ItemHeader, below: Mapping[int, int]) -> ItemHeader | None:
    client, clock = item.id
    limit = below.get(client)
    if limit is None or clock + item.length <= limit:
        return item
    if clock >= limit:
        return None
    return replace(item, length=limit - clock, value=NO_VALUE)


def _units(item: ItemHeader, values: Mapping[Id, Any]) -> list[ItemHeader]:
    """A map item as writes: a merged deleted run of n clocks is n chained writes, each with
    the value `values` knows for it (a run can hide a write that lost Yjs's ordering)."""
    client, clock = item.id
    if item.length == 1:
        if item.value is NO_VALUE and item.id in values:
            i = item  # `replace(item, value=...)` without its introspection (a losing write)
            return [
                ItemHeader(
                    i.id,
                    i.length,
                    i.origin,
                    i.right_origin,
                    i.parent_root,
                    i.parent_sub,
                    i.deleted,
                    values[item.id],
                    i.content,
                )
            ]
        return [item]
    end = clock + item.length
    known = sorted(k for c, k in values if c == client and clock <= k < end)
    if not item.deleted or not known:
        return [item]
    # Each clock `values` knows is a write of its own; the clocks between stay one run
    # (a deleted run's length is a claim of the update: nothing may cost per clock).
    units = []
    origin = item.origin
    cursor = clock
    for start, length in _pieces(clock, end, known):
        unit_id = (client, start)
        units.append(
            replace(
                item,
                id=unit_id,
                length=length,
                origin=origin,
                right_origin=None if start != clock else item.right_origin,
                value=values.get(unit_id, NO_VALUE) if length == 1 else NO_VALUE,
            )
        )
        origin = (client, start + length - 1)
        cursor = start + length
    assert cursor == end
    return units


def _pieces(start: int, end: int, singles: list[int]) -> list[tuple[int, int]]:
    """`start..end - 1` as (first clock, length) pieces: each of `singles` (sorted) alone,
    the clocks between them together."""
    pieces = []
    cursor = start
    for single in singles:
        if single > cursor:
            pieces.append((cursor, single - cursor))
        pieces.append((single, 1))
        cursor = single + 1
    if cursor < end:
        pieces.append((cursor, end - cursor))
    return pieces


def check_json_values(writes: Sequence[MapWrite], sent: Mapping[Id, int] = _NONE) -> None:
    """Raise NonJsonValue if a write sets a key to anything but JSON (a shared type, binary,
    a subdocument...): the server reads `fields` as JSON everywhere (REST, journal, rules).

    `sent` gives content refs by item id from what the client sent: a write that lost Yjs's
    ordering is Deleted in the doc's report of the transaction, but was still not JSON."""
    for write in writes:
        content = sent.get(write.id, write.content)
        if content not in JSON_CONTENTS:
            what = CONTENT_NAMES.get(content, f"content {content}")
            raise NonJsonValue(f'fields["{write.key}"]: values must be JSON, not {what}')
        if _holds_bytes(write.value):  # a Uint8Array inside an Any value (lib0 tag 116)
            raise NonJsonValue(f'fields["{write.key}"]: values must be JSON, not binary')


def _holds_bytes(value: Any) -> bool:
    """Whether bytes occur in `value` (an Any value: nested at most MAX_ANY_DEPTH deep)."""
    if isinstance(value, bytes | bytearray):
        return True
    if isinstance(value, list):
        return any(_holds_bytes(item) for item in value)
    if isinstance(value, dict):
        return any(_holds_bytes(item) for item in value.values())
    return False
