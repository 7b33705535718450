"""The full review's shortcuts for a `fields` write that raced another (issue 24 point 1, S5:
a third of its writes): `FieldIndex.ingest_single` (one item indexed without `_integrate`'s
general steps) and `decide`'s `lww` shortcut (`_lww_stands`).

Each must answer exactly as the general way it skips: the index's writes and its whole state,
the rule's decision, and so the reviews, the doc and the journal's inputs (`Review.changed`).
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Map

from crdt.fields import FieldIndex, MapWrite
from crdt.rules import _decide, decide
from crdt.schema import DEFAULT_SCHEMA, Field, Kind, Rule, ValueType
from crdt.semantics import SemanticFields
from crdt.updates import NO_VALUE, DecodedUpdate, decode_update
from tests.crdt.test_fields_sequential import FullOnly, Server, Step, Twins, steps
from tests.crdt.test_single_write import raced_updates


class GeneralOnly(FullOnly):
    """The oracle: every `fields` write reviewed in full and indexed by `_integrate`."""

    def _ingest(self, changes: DecodedUpdate, values: Any = None) -> list[MapWrite]:
        return self._ensure_index(changes).ingest_decoded(changes, values)


class SingleTwins(Twins):
    """Every update to a server as it runs (sequential way, `ingest_single`, the rules'
    shortcuts) and to one that takes the general way for all of it."""

    def __init__(self) -> None:
        super().__init__()
        self.fast = Server(SemanticFields)
        self.full = Server(GeneralOnly)


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each call of `FieldIndex.ingest_single` took the write (not None)."""
    answers: list[bool] = []
    original = FieldIndex.ingest_single

    def counted(self: FieldIndex, *args: Any, **kwargs: Any) -> list[MapWrite] | None:
        writes = original(self, *args, **kwargs)
        answers.append(writes is not None)
        return writes

    monkeypatch.setattr(FieldIndex, "ingest_single", counted)
    return answers


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_single_items_are_indexed_and_judged_as_the_general_way_does(script: list[Step]) -> None:
    SingleTwins().run(script)  # same reviews, writes, values, doc and index, step by step


def s5_like(count: int, seed: int) -> list[bytes]:
    """Ten editors setting `category` in turn every 5 ms, each learning the others' writes
    1-8 ms later (S5's shape: about a third of the writes race another)."""
    rnd = random.Random(seed)
    editors = [Doc(client_id=rnd.randrange(1, 2**32)) for _ in range(10)]
    sent: list[bytes] = []
    for editor in editors:
        editor.observe(lambda event: sent.append(event.update))
    pending: list[list[tuple[float, bytes]]] = [[] for _ in editors]
    latest = [0.0] * len(editors)
    updates = []
    for n in range(count):
        now, position = n * 5.0, n % len(editors)
        editor = editors[position]
        due = [update for at, update in pending[position] if at <= now]
        pending[position] = [(at, update) for at, update in pending[position] if at > now]
        for update in due:
            editor.apply_update(update)
        sent.clear()
        editor.get("fields", type=Map)["category"] = rnd.choice([f"c{n // 10}", "x", 3, None])
        (update,) = sent
        updates.append(update)
        for other in range(len(editors)):
            if other != position:
                latest[other] = max(latest[other], now + 1 + rnd.uniform(0, 7))
                pending[other].append((latest[other], update))
    return updates


@pytest.mark.parametrize("seed", range(4))
def test_raced_writes_take_the_single_item_way_and_end_alike(seed: int, taken: list[bool]) -> None:
    twins = SingleTwins()
    for update in s5_like(300, seed):
        twins.send(update)
    fast, full = twins.fast.semantics._index, twins.full.semantics._index
    assert fast is not None and full is not None
    assert vars(fast) == vars(full)
    assert taken.count(True) > 50  # raced writes took it (wrong types too: judged alike)


def test_writes_that_lost_yjs_ordering_carry_their_sent_values(taken: list[bool]) -> None:
    updates = raced_updates(["news", "", 3.5, None, "é"] * 3)
    twins = SingleTwins()
    for update in updates:
        twins.send(update)  # the losers' values judged as the general way judges them
    assert taken.count(True) >= 10


def test_an_index_takes_a_single_item_as_ingest_does() -> None:
    """Straight on `FieldIndex`: raced writes, each item alone, the same writes and state."""
    updates = raced_updates([f"v{n}" for n in range(20)])
    single, general = FieldIndex(), FieldIndex()
    for index in (single, general):
        index.ingest(updates[0])
    took = 0
    for update in updates[1:]:
        decoded = decode_update(update)
        (item,) = decoded.items
        writes = single.ingest_single(item)
        if writes is None:
            writes = single.ingest_decoded(decoded)
        else:
            took += 1
        assert writes == general.ingest_decoded(decoded)
        assert vars(single) == vars(general)
    assert took == len(updates) - 1


def test_a_single_item_the_index_cannot_place_is_left_alone() -> None:
    updates = raced_updates(["a", "b"])
    index = FieldIndex()
    index.ingest(updates[0])
    before = repr(vars(index))
    (item,) = decode_update(updates[1]).items
    assert index.ingest_single(replace(item, origin=(99, 0))) is None  # origin not indexed
    assert index.ingest_single(replace(item, origin=None)) is None  # no origin: names its key
    assert index.ingest_single(replace(item, length=2)) is None  # a run of clocks
    assert index.ingest_single(replace(item, parent_root="fields")) is None
    index.ingest(updates[1])
    after = repr(vars(index))
    assert index.ingest_single(item) is None  # indexed already
    assert repr(vars(index)) == after != before


# -- decide: the `lww` shortcut answers as the general case ------------------------------------

LWW_FIELDS = [Field(f"lww_{t.value}", Kind.VALUE, t, Rule.LWW) for t in ValueType]
FIELDS = LWW_FIELDS + list(DEFAULT_SCHEMA.values.values())
SCALARS = st.one_of(
    st.sampled_from(
        [NO_VALUE, None, True, False, 0, 1, 1.0, 2.5, "news", "tech", "2026-12-24", "DRAFT"]
    ),
    st.integers(-3, 3),
    st.text(max_size=3),
)
WRITES = st.lists(
    st.builds(
        MapWrite,
        key=st.just("k"),
        id=st.tuples(st.integers(1, 4), st.integers(0, 9)),
        origin=st.one_of(st.none(), st.tuples(st.integers(1, 4), st.integers(0, 9))),
        value=SCALARS,
        concurrent=st.booleans(),
        seen=SCALARS,
        leaf=st.booleans(),
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=2000, deadline=None)
@given(st.sampled_from(FIELDS), SCALARS, WRITES, SCALARS)
def test_decide_answers_as_its_general_case(
    field: Field, before: Any, writes: list[MapWrite], current: Any
) -> None:
    assert decide(field, before=before, writes=writes, current=current) == _decide(
        field, before=before, writes=writes, current=current
    )
