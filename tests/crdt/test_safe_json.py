"""Journal rows never fail to serialize (issue 21, finding 1): odd values become markers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pycrdt import Array, Doc, Map, Text

from crdt.journal import EventType, JournalEvent
from crdt.safe_json import dumps, json_safe


def _odd_values() -> list[Any]:
    doc: Doc = Doc()
    doc["m"] = shared_map = Map({"a": 1})
    doc["a"] = shared_array = Array([1])
    doc["t"] = shared_text = Text("hi")
    deep: Any = []
    for _ in range(5000):
        deep = [deep]
    return [
        shared_map,
        shared_array,
        shared_text,
        Map(),  # not integrated
        b"\x00bytes",
        bytearray(b"x"),
        float("nan"),
        float("inf"),
        object(),
        {1: "int key", (1, 2): "tuple key"},
        deep,
        10**5000,
        {"nested": [Map(), {"x": float("-inf")}]},
    ]


@pytest.mark.parametrize("value", _odd_values(), ids=lambda v: type(v).__name__)
def test_dumps_never_raises_and_gives_strict_json(value: Any) -> None:
    text = dumps({"field": "k", "new": value})
    json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in {text[:80]}"))


def test_markers_name_the_type() -> None:
    assert json_safe(Map()) == {"$type": "Map"}
    assert json_safe(b"abc") == {"$type": "Binary", "bytes": 3}
    assert json_safe([1, float("nan"), "x"]) == [1, None, "x"]
    assert json_safe({"a": {"b": True}}) == {"a": {"b": True}}


def test_a_journal_row_with_a_shared_type_value_serializes() -> None:
    event = JournalEvent(
        EventType.FIELD_UPDATED, "d", 3, "u", "s", 1, 0.0, {"field": "k", "new": Map()}
    )
    row = event.as_row()
    assert json.loads(str(row[-1])) == {"field": "k", "new": {"$type": "Map"}}


@pytest.mark.parametrize(
    "value",
    [
        {"field": "category", "kind": "value", "old": "c1", "new": "c2"},
        {"a": 'é😀\n"\\', "b": None, "c": True, "d": False, "e": -(10**30), "f": ""},
        {},
        {"x": 10**5000},  # too long for str(): the marker
    ],
    ids=["event", "escapes", "empty", "huge int"],
)
def test_a_flat_dict_is_encoded_as_json_dumps_encodes_it(value: dict[str, Any]) -> None:
    """Flat dicts of plain values take an encoder built once (S5: one journal row per
    `fields` write); the text is `json.dumps`'s, compact and ASCII."""
    try:
        expected = json.dumps(value, separators=(",", ":"), allow_nan=False)
    except ValueError:
        expected = json.dumps({"$type": "Unserializable"})
    assert dumps(value) == expected
