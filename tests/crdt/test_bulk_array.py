"""`crdt.bulk_array`: a list as one Yjs item, duplicates deleted by runs, both linear."""

from __future__ import annotations

import time
from typing import Any

import pytest
from pycrdt import Array, Doc

from crdt import bulk_array
from crdt.bulk_array import (
    array_item_update,
    array_values,
    delete_positions,
    fill_start,
    next_clock,
    runs_of,
)
from crdt.updates import decode_update

VALUES: list[Any] = ["a", 1, 2.5, True, False, None, {"k": [1, "x"]}, [], "é😀"]


def _separate(doc: Doc, values: list[Any]) -> Array:
    """`values` as one item each (inserted back to front at 0: nothing merges)."""
    array = doc.get("tags", type=Array)
    with doc.transaction():
        for value in reversed(values):
            array.insert(0, value)
    return array


def test_fill_start_reads_back_as_pycrdt_wrote_it() -> None:
    doc: Doc = Doc(client_id=5)
    fill_start(doc, "tags", VALUES)
    mirror: Doc = Doc(client_id=6)
    mirror.get("tags", type=Array).extend(VALUES)
    assert doc.get("tags", type=Array).to_py() == mirror.get("tags", type=Array).to_py()


def test_fill_start_is_one_item_by_the_docs_client_at_its_next_clock() -> None:
    doc: Doc = Doc(client_id=5)
    doc.get("tags", type=Array).append("first")
    fill_start(doc, "tags", ["x", "y", "z"])
    items = decode_update(doc.get_update()).items
    assert [(i.id, i.length) for i in items] == [((5, 0), 1), ((5, 1), 3)]
    doc.get("tags", type=Array).append("last")  # local inserts go on from there
    assert next_clock(doc, 5) == 5
    assert doc.get("tags", type=Array).to_py() == ["x", "y", "z", "first", "last"]


def test_a_replica_receives_the_same_list() -> None:
    doc: Doc = Doc(client_id=5)
    fill_start(doc, "tags", VALUES)
    replica: Doc = Doc()
    replica.apply_update(doc.get_update())
    assert replica.get("tags", type=Array).to_py() == doc.get("tags", type=Array).to_py()


def test_not_json_is_refused() -> None:
    with pytest.raises(TypeError, match="not a JSON value"):
        array_item_update("tags", 1, 0, [object()])


def test_array_values_is_to_py_up_to_number_types() -> None:
    doc: Doc = Doc()
    array = _separate(doc, VALUES)
    assert array_values(array) == array.to_py()


def test_runs_of_positions() -> None:
    assert runs_of([]) == []
    assert runs_of([1, 2, 3, 7, 9, 10]) == [(1, 4), (7, 8), (9, 11)]


@pytest.mark.parametrize("max_walk", [bulk_array.MAX_WALK, 0], ids=["ranges", "rewrite"])
def test_delete_positions_both_ways(monkeypatch: pytest.MonkeyPatch, max_walk: int) -> None:
    monkeypatch.setattr(bulk_array, "MAX_WALK", max_walk)
    doc: Doc = Doc(client_id=3)
    values = [f"v{i}" for i in range(20)]
    array = _separate(doc, values)
    gone = [0, 1, 5, 6, 7, 12, 19]
    delete_positions(array, "tags", gone)
    assert array.to_py() == [v for i, v in enumerate(values) if i not in gone]
    replica: Doc = Doc()
    replica.apply_update(doc.get_update())
    assert replica.get("tags", type=Array).to_py() == array.to_py()


def test_20000_values_fill_clear_refill_and_dedupe_in_linear_time() -> None:
    """pycrdt's element-by-element ways took seconds (and GBs) at these sizes."""
    values = [f"t{i}" for i in range(20_000)]
    start = time.perf_counter()
    doc: Doc = Doc(client_id=1)
    fill_start(doc, "tags", values)
    crafted: Doc = Doc(client_id=2)
    interleaved = _separate(crafted, [v for i in range(10_000) for v in (f"u{i}", "dup")])
    build = time.perf_counter() - start
    start = time.perf_counter()
    with doc.transaction():
        array = doc.get("tags", type=Array)
        del array[0 : len(array)]
        fill_start(doc, "tags", values)  # over 20,000 tombstones
    positions = [i for i, v in enumerate(array_values(interleaved)) if v == "dup"][1:]
    delete_positions(interleaved, "tags", positions)
    elapsed = time.perf_counter() - start
    assert array_values(array) == values
    assert array_values(interleaved).count("dup") == 1
    assert elapsed < 2 + 5 * build, f"{elapsed:.2f} s"
