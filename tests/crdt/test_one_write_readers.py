"""The cheaper pieces of a `fields` write's review (issue 24 point 1, S5): the unrolled varUint
reader of `read_overwrite`/`read_single_write`, the frozen records built by their slots'
setters, and the reads in a bare yrs transaction (crdt/bare_reads.py). Each must answer
exactly what it replaces: lib0's `Reader`, the dataclass constructors, pycrdt's reads."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Array, Doc, Map

from crdt.bare_reads import map_value, state_vector
from crdt.errors import MalformedMessage
from crdt.fields import MapWrite, _leaf_write, _one_clock_run, _Run
from crdt.lib0 import MAX_VAR_UINT, Reader, encode_var_uint
from crdt.updates import NO_VALUE, ItemHeader, _item_header, _Unread, _var_uint

# -- the varUint reader ------------------------------------------------------------------------


def lib0_reads(data: bytes, pos: int) -> tuple[int, int] | None:
    reader = Reader(data, pos)
    try:
        return reader.read_var_uint(), reader.pos
    except MalformedMessage:
        return None


def fast_reads(data: bytes, pos: int) -> tuple[int, int] | None:
    try:
        return _var_uint(data, pos)
    except (_Unread, IndexError):
        return None


def agree(data: bytes, pos: int = 0) -> None:
    assert fast_reads(data, pos) == lib0_reads(data, pos), (data.hex(), pos)


EDGE_VALUES = [
    *(2**k + d for k in range(0, 54) for d in (-1, 0, 1) if 0 <= 2**k + d <= MAX_VAR_UINT),
    *(2 ** (7 * n) - 1 for n in range(1, 8)),  # the largest of each length
    *(2 ** (7 * n) for n in range(1, 8)),  # the smallest of each next length
    MAX_VAR_UINT,
    2**32 - 1,  # the largest Yjs client id: 5 bytes
]


@pytest.mark.parametrize("value", sorted(set(EDGE_VALUES)))
def test_edge_values_read_alike_whole_and_truncated(value: int) -> None:
    encoded = encode_var_uint(value)
    assert fast_reads(encoded, 0) == (value, len(encoded))
    agree(encoded)
    agree(b"\x07\x81" + encoded + b"\x05", 2)  # inside a frame
    for cut in range(len(encoded)):
        agree(encoded[:cut])  # truncated: both refuse
        agree(b"\x01" + encoded[:cut], 1)


@pytest.mark.parametrize(
    "data",
    [
        bytes.fromhex("ffffffffffffff7f"),  # 8 bytes, 2**56 - 1: past 2**53 - 1
        bytes.fromhex("ffffffffffffff0f"),  # 8 bytes, exactly 2**53 - 1
        bytes.fromhex("80808080808080" + "10"),  # 8 bytes, 2**53: one past
        bytes.fromhex("ffffffffffffffff01"),  # 9 bytes
        bytes.fromhex("8080808080808080" + "00"),  # 9 bytes of padding
        bytes.fromhex("8000"),  # padded zero: lib0 reads it, so must we
        bytes.fromhex("ffffffff0f"),  # 5 bytes: 2**32 - 1
        bytes.fromhex("8080808010"),  # 5 bytes: 2**32
        bytes.fromhex("ffffffffffffff"),  # 7 continuation bytes, then the end
        b"",
    ],
)
def test_long_padded_and_over_large_varuints_read_alike(data: bytes) -> None:
    agree(data)
    agree(data + b"\x00")
    agree(b"\x00" + data, 1)


@given(st.binary(max_size=12), st.integers(0, 12))
@settings(max_examples=2000)
def test_any_bytes_read_alike(data: bytes, pos: int) -> None:
    agree(data, min(pos, len(data)))


def test_random_varuints_of_every_length_read_alike() -> None:
    rnd = random.Random(24)
    for _ in range(5000):
        length = rnd.randint(1, 9)
        data = bytes(
            [rnd.randrange(0x80, 0x100) for _ in range(length - 1)] + [rnd.randrange(0, 0x100)]
        )
        agree(data + bytes([rnd.randrange(0, 0x100)]))
        agree(data[: rnd.randrange(len(data) + 1)])


# -- frozen records built by their slots' setters ----------------------------------------------


def same_record(built: Any, constructed: Any) -> None:
    assert type(built) is type(constructed)
    assert built == constructed and hash(built) == hash(constructed)
    for field in dataclasses.fields(constructed):  # every slot set, to the same object
        assert getattr(built, field.name) is getattr(constructed, field.name), field.name
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.id = (0, 0)


@pytest.mark.parametrize("deleted", [False, True])
@pytest.mark.parametrize("value", ["c1", 3.0, None, True, NO_VALUE])
def test_item_header_is_the_constructors(deleted: bool, value: Any) -> None:
    args = ((2**32 - 1, 7), 1, (5, 2**40))
    same_record(
        _item_header(*args, deleted, value, 1 if deleted else 8),
        ItemHeader(*args, None, None, None, deleted, value, 1 if deleted else 8),
    )


def test_the_makers_set_every_field_their_classes_have() -> None:
    # A field added to a class must be added to its maker (and to this list).
    assert [f.name for f in dataclasses.fields(ItemHeader)] == [
        "id",
        "length",
        "origin",
        "right_origin",
        "parent_root",
        "parent_sub",
        "deleted",
        "value",
        "content",
    ]
    assert [f.name for f in dataclasses.fields(MapWrite)] == [
        "key",
        "id",
        "origin",
        "value",
        "concurrent",
        "seen",
        "leaf",
        "last",
        "content",
    ]
    assert [f.name for f in dataclasses.fields(_Run)] == ["start", "end", "key"]


@pytest.mark.parametrize("concurrent", [False, True])
@pytest.mark.parametrize("seen", ["x", NO_VALUE])
def test_leaf_write_and_one_clock_run_are_the_constructors(concurrent: bool, seen: Any) -> None:
    node, origin = (11, 3), (12, 9)
    same_record(
        _leaf_write("category", node, origin, "c1", concurrent, seen, 8),
        MapWrite("category", node, origin, "c1", concurrent, seen, True, node, 8),
    )
    run = _one_clock_run(41, "category")
    assert run == _Run(41, 42, "category") and hash(run) == hash(_Run(41, 42, "category"))


# -- reads in a bare yrs transaction -----------------------------------------------------------


def doc_with_fields(**kwargs: Any) -> tuple[Doc, Map]:
    doc = Doc(**kwargs)
    fields = doc.get("fields", type=Map)
    with doc.transaction():
        fields["category"] = "c1"
        fields["count"] = 3
        fields["none"] = None
        fields["nested"] = Map({"a": 1})
        fields["list"] = Array([1, 2])
    return doc, fields


def expected(fields: Map, key: str) -> Any:
    return fields.get(key, NO_VALUE)


@pytest.mark.parametrize("multithreading", [False, True])
def test_map_value_and_state_vector_answer_as_pycrdt(multithreading: bool) -> None:
    doc, fields = doc_with_fields(allow_multithreading=multithreading)
    events: list[Any] = []
    subscriptions = [doc.observe(events.append), fields.observe(events.append)]
    for key in ["category", "count", "none", "absent", ""]:
        assert map_value(doc, fields, key) == expected(fields, key)
    for key in ["nested", "list"]:  # shared types come wrapped, as `fields[key]` wraps them
        value = map_value(doc, fields, key)
        assert type(value) is type(fields[key]) and value.to_py() == fields[key].to_py()
    assert state_vector(doc) == doc.get_state()
    assert events == [] and doc._txn is None  # nothing fired, nothing left open
    with doc.transaction():  # inside an open transaction: read in it, as pycrdt does
        fields["category"] = "c2"
        assert map_value(doc, fields, "category") == "c2"
        assert state_vector(doc) == doc.get_state()
    assert map_value(doc, fields, "category") == "c2"
    assert len(events) == 2  # the write's own events, nothing more
    for subscription in subscriptions:
        subscription.drop()
