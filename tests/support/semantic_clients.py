"""Editors of the semantic-field tests: pycrdt docs that go offline, write, and come back, with
the ground truth of what they wrote on the side.

`SimClient` is an editor's pycrdt doc. Every write records its item id and the writer's state
vector just before it (its causal past), so tests can tell concurrent writes from sequential
ones without asking the code under test. The server side is the real sync core
(`tests.support.core_driver`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pycrdt import Array, Doc, Map

from crdt.lib0 import Reader

__all__ = [
    "SimClient",
    "Write",
    "concurrent",
    "decode_state_vector",
    "happened_before",
    "snapshot",
]

Id = tuple[int, int]


def decode_state_vector(state: bytes) -> dict[int, int]:
    """A Yjs state vector (varUint count, then (client, clock) pairs) as a dict."""
    reader = Reader(state)
    vector = {}
    for _ in range(reader.read_var_uint()):
        client = reader.read_var_uint()
        vector[client] = reader.read_var_uint()
    reader.expect_end()
    return vector


@dataclass(frozen=True)
class Write:
    """One map set as its writer made it: which item, which value, what the writer had seen."""

    writer: str
    key: str
    value: Any
    id: Id
    past: dict[int, int]  # the writer's state vector just before the write


def happened_before(a: Write, b: Write) -> bool:
    """`a` is in `b`'s causal past (`b`'s writer had integrated `a` when writing)."""
    client, clock = a.id
    return b.past.get(client, 0) > clock


def concurrent(a: Write, b: Write) -> bool:
    return a.id != b.id and not happened_before(a, b) and not happened_before(b, a)


class SimClient:
    """An editor's doc. Writes go to `fields` (and `tags`); `writes` records each map set."""

    def __init__(self, name: str, client_id: int) -> None:
        self.name = name
        self.doc: Doc = Doc(client_id=client_id)
        self.client_id = client_id
        self.writes: list[Write] = []
        self.pushed_tags: list[str] = []

    @property
    def fields(self) -> Map:
        return self.doc.get("fields", type=Map)

    @property
    def tags(self) -> Array:
        return self.doc.get("tags", type=Array)

    def state(self) -> dict[int, int]:
        return decode_state_vector(self.doc.get_state())

    def set(self, key: str, value: Any) -> Write:
        past = self.state()
        self.fields[key] = value
        write = Write(self.name, key, value, (self.client_id, past.get(self.client_id, 0)), past)
        self.writes.append(write)
        return write

    def push_tag(self, tag: str) -> None:
        self.tags.append(tag)
        self.pushed_tags.append(tag)


def snapshot(doc: Doc) -> tuple[dict[str, Any], list[Any], dict[str, Any]]:
    """`fields`, `tags` and `conflicts` of a replica, as plain Python."""
    return (
        dict(doc.get("fields", type=Map).to_py() or {}),
        list(doc.get("tags", type=Array).to_py() or []),
        dict(doc.get("conflicts", type=Map).to_py() or {}),
    )
