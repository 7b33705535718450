"""`rebuild` (crdt/history.py) applies a stored tail in transactions of a bounded size: the doc
it builds is the one the updates make applied one by one, whatever the tail's length, order of
arrival (an update ahead of the one it depends on waits, as yrs keeps it pending), snapshot or
client id."""

from __future__ import annotations

import random

import pytest
from pycrdt import Doc, Map, Text

from crdt.history import compact, rebuild


def _typed(edits: int) -> list[bytes]:
    """A writer's updates: typing, a few deletions and a map key, one transaction each."""
    doc: Doc = Doc(client_id=7)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    text = doc.get("body", type=Text)
    fields = doc.get("fields", type=Map)
    for i in range(edits):
        if i % 50 == 49:
            del text[0:1]
        elif i % 97 == 0:
            fields["n"] = i
        else:
            text.insert(len(text), chr(ord("a") + i % 26))
    return updates


def _one_by_one(snapshot: bytes | None, tail: list[bytes]) -> Doc:
    doc: Doc = Doc()
    for update in ([snapshot] if snapshot is not None else []) + tail:
        doc.apply_update(update)
    return doc


def _content(doc: Doc) -> tuple[str, object]:
    return str(doc.get("body", type=Text)), doc.get("fields", type=Map).to_py()


@pytest.mark.parametrize("edits", [0, 1, 127, 128, 129, 300, 1000])
def test_a_tail_of_any_length_builds_the_doc_applying_it_one_by_one_builds(edits: int) -> None:
    updates = _typed(edits)
    split = edits // 3
    snapshot = compact(None, updates[:split]) if split else None
    tail = updates[split:]
    built = rebuild(snapshot, iter(tail), client_id=42)  # any iterable, read once
    assert _content(built) == _content(_one_by_one(snapshot, tail))
    assert built.get_state() == _one_by_one(snapshot, tail).get_state()
    assert built.client_id == 42


def test_a_tail_out_of_order_builds_what_applying_it_one_by_one_builds() -> None:
    updates = _typed(400)
    shuffled = updates[:]
    random.Random(24).shuffle(shuffled)  # dependencies cross the transactions' bounds
    built = rebuild(None, shuffled)
    assert _content(built) == _content(_one_by_one(None, shuffled))
    assert built.get_state() == _one_by_one(None, shuffled).get_state()


def test_an_undecodable_update_in_the_tail_raises_as_before() -> None:
    updates = _typed(200)
    with pytest.raises(ValueError):
        rebuild(None, [*updates[:150], b"\xff\xff\xff", *updates[150:]])
