"""Which map key an item writes, and whether its writer had seen the key's current value.

For every item of the root map `fields` the index keeps `id -> key` (each clock of a merged
run), the tree its origins form per key, and the key's winning item as Yjs/yrs decide it:
siblings (items with one origin) are ordered by ascending client id and a node's subtree
follows it, so the winner is reached from the root by always taking the child with the largest
client id (shared/docs/conflict-detection.md; matched pycrdt on every checked case).

A write is *concurrent* when its origin is not the key's winner at the moment it arrives, or
when it has no origin although the key already has items: its writer had not seen the value the
server holds. This holds whether the incoming write wins or loses Yjs's ordering.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crdt.updates import NO_VALUE, ItemHeader, decode_update

__all__ = ["FieldIndex", "MapWrite"]

Id = tuple[int, int]


@dataclass(frozen=True, slots=True)
class MapWrite:
    key: str
    id: Id
    origin: Id | None
    value: Any  # NO_VALUE for a deleted item
    concurrent: bool
    seen: Any  # the value of the origin item (what the writer saw), NO_VALUE if unknown


class FieldIndex:
    def __init__(self, root: str = "fields") -> None:
        self.root = root
        self._key_of: dict[Id, str] = {}
        self._children: dict[tuple[str, Id | None], list[Id]] = {}
        self._winner: dict[str, Id] = {}
        self._value_of: dict[Id, Any] = {}

    def __len__(self) -> int:
        return len(self._key_of)

    def winner(self, key: str) -> Id | None:
        return self._winner.get(key)

    def value_of(self, item_id: Id) -> Any:
        return self._value_of.get(item_id, NO_VALUE)

    def load(self, state: bytes, *, skip: frozenset[Id] | set[Id] = frozenset()) -> None:
        """Index a whole document state, leaving out the items in `skip`; reports nothing."""
        items = [item for item in decode_update(state).items if item.id not in skip]
        self._integrate(items, report=False)
        for key in {key for key, _ in self._children}:
            self._winner[key] = self._descend(key)

    def ingest(self, update: bytes) -> list[MapWrite]:
        """Index the map items of an applied update, in causal order, flagging concurrency."""
        return self._integrate(decode_update(update).items, report=True)

    def _integrate(self, items: list[ItemHeader], *, report: bool) -> list[MapWrite]:
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
                    writes.append(self._add(item, key))
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
