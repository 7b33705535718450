"""Which map key an item writes, and whether its writer had seen the key's current value.

For every item of the root map `fields` the index keeps `id -> key` (each clock of a merged
run), the tree its origins form per key, and the key's winning item as Yjs/yrs decide it:
siblings (items with one origin) are ordered by ascending client id and a node's subtree
follows it, so the winner is reached from the root by always taking the child with the largest
client id (docs/conflict-detection.md; matched pycrdt on every checked case).

A write is *concurrent* when its origin is not the key's winner at the moment it arrives, or
when it has no origin although the key already has items: its writer had not seen the value the
server holds. This holds whether the incoming write wins or loses Yjs's ordering.
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from crdt.errors import NonJsonValue
from crdt.updates import CONTENT_NAMES, JSON_CONTENTS, NO_VALUE, ItemHeader, decode_update

__all__ = ["FieldIndex", "Id", "MapWrite", "check_json_values"]

Id = tuple[int, int]
_NONE: Mapping[Id, Any] = {}


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


class FieldIndex:
    def __init__(self, root: str = "fields") -> None:
        self.root = root
        self._key_of: dict[Id, str] = {}
        self._children: dict[tuple[str, Id | None], list[Id]] = {}
        self._winner: dict[str, Id] = {}
        self._value_of: dict[Id, Any] = {}

    def __len__(self) -> int:
        return len(self._key_of)

    @property
    def ids(self) -> Container[Id]:
        """The ids of every item indexed (a live view): what an overwrite names as origin."""
        return self._key_of.keys()

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
        writes = self._integrate(decode_update(update).items, report=True, values=values or {})
        built_on = {write.origin for write in writes}
        return [w if (w.last or w.id) not in built_on else replace(w, leaf=False) for w in writes]

    def _integrate(
        self, items: list[ItemHeader], *, report: bool, values: Mapping[Id, Any] = _NONE
    ) -> list[MapWrite]:
        writes: list[MapWrite] = []
        waiting = [item for item in items if item.id not in self._key_of]
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

    def _key_for(self, item: ItemHeader) -> str | None:
        if item.parent_root is not None:
            return item.parent_sub if item.parent_root == self.root else None
        for neighbour in (item.origin, item.right_origin):
            if neighbour is not None and neighbour in self._key_of:
                return self._key_of[neighbour]
        return None

    def _add(self, item: ItemHeader, key: str) -> MapWrite:
        winner = self._winner.get(key)
        concurrent = item.origin != winner
        last = self._add_node(item, key)
        if not concurrent:
            self._winner[key] = last
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
        """Add the item's clocks as a chain under its origin; return its last id."""
        client, clock = item.id
        parent = item.origin
        for offset in range(item.length):
            node = (client, clock + offset)
            self._key_of[node] = key
            self._children.setdefault((key, parent), []).append(node)
            parent = node
        if item.value is not NO_VALUE:
            self._value_of[item.id] = item.value
        return (client, clock + item.length - 1)

    def _descend(self, key: str) -> Id:
        node: Id | None = None
        while True:
            children = self._children.get((key, node))
            if not children:
                assert node is not None
                return node
            node = max(children)  # the largest client id wins (ids are (client, clock))


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
            return [replace(item, value=values[item.id])]
        return [item]
    run = [(client, clock + offset) for offset in range(item.length)]
    if not item.deleted or not any(unit in values for unit in run):
        return [item]
    units = []
    origin = item.origin
    for offset in range(item.length):
        unit_id = (client, clock + offset)
        units.append(
            replace(
                item,
                id=unit_id,
                length=1,
                origin=origin,
                right_origin=None if offset else item.right_origin,
                value=values.get(unit_id, NO_VALUE),
            )
        )
        origin = unit_id
    return units


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
