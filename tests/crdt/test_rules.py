"""crdt.rules: what each field's rule makes of the writes one update brought to a key.

Two layers: `decide` on MapWrites written out by hand (the rule's logic alone), and on raw
updates built by pycrdt docs, applied to a server doc the way the room applies them and indexed
by FieldIndex (`tests.support.indexed_server.IndexedServer`), which is what the server runs.
The list rules through the whole pipeline are in tests/server/test_semantics_model.py.
"""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
from pycrdt import Doc, Map

from crdt.fields import MapWrite
from crdt.rules import Decision, decide, duplicate_positions
from crdt.schema import DEFAULT_SCHEMA, Field, parse_schema
from crdt.updates import NO_VALUE
from tests.support.indexed_server import IndexedServer

FIELDS = DEFAULT_SCHEMA.fields
STATUS = FIELDS["status"]  # transition (+ precedence), initial CREATING
STEP = FIELDS["current_step"]  # integer, max
GOAL = FIELDS["goal_amount"]  # number, manual
CATEGORY = FIELDS["category"]  # string, lww
DEADLINE = FIELDS["deadline"]  # date, manual

EXTRA = parse_schema(
    tomllib.loads(
        """
[fields.floor]
kind = "value"
type = "number"
rule = "min"

[fields.priority]
kind = "value"
type = "string"
rule = "precedence"
precedence = ["low", "medium", "high"]

[fields.done]
kind = "value"
type = "boolean"

[fields.due]
kind = "value"
type = "date"
rule = "max"

[fields.tags]
kind = "list"
type = "string"
rule = "union"

[fields.links]
kind = "list"
type = "string"
rule = "lww"
"""
    )
).fields
FLOOR, PRIORITY, DONE, DUE = EXTRA["floor"], EXTRA["priority"], EXTRA["done"], EXTRA["due"]

W0 = (1, 0)  # the item everyone saw, in hand-written cases


def write(
    value: Any,
    *,
    concurrent: bool,
    key: str = "k",
    client: int = 2,
    clock: int = 0,
    origin: tuple[int, int] | None = W0,
    seen: Any = NO_VALUE,
) -> MapWrite:
    return MapWrite(
        key=key,
        id=(client, clock),
        origin=origin,
        value=value,
        concurrent=concurrent,
        seen=seen,
    )


def assert_value(decision: Decision, expected: Any) -> None:
    """`expected` NO_VALUE: Yjs's value stands (the server writes nothing)."""
    if expected is NO_VALUE:
        assert decision.value is NO_VALUE
    else:
        assert decision.value == expected


def unchanged(decision: Decision) -> bool:
    return not decision.changes_doc and not decision.rejected and not decision.conflict


# -- lww ----------------------------------------------------------------------------------------


def test_lww_keeps_yjs_choice_on_concurrent_writes() -> None:
    for current in ("news", "tech"):
        decision = decide(
            CATEGORY,
            before="news",
            writes=[write("tech", concurrent=True)],
            current=current,
        )
        assert unchanged(decision)


def test_lww_sequential_write_stands() -> None:
    decision = decide(
        CATEGORY, before="news", writes=[write("tech", concurrent=False)], current="tech"
    )
    assert unchanged(decision)


# -- max / min ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "incoming", "current", "expected"),
    [
        (5, 9, 9, NO_VALUE),  # the incoming write won Yjs's ordering and is the max: stands
        (5, 3, 3, 5),  # the incoming write won Yjs's ordering but is smaller: back to 5
        (5, 3, 5, NO_VALUE),  # the incoming write lost and is smaller: Yjs already holds 5
        (5, 9, 5, 9),  # the incoming write LOST Yjs's ordering and is the max: the rule picks it
        (5.0, 5, 5, NO_VALUE),  # 5 and 5.0 are the same integer
    ],
)
def test_max_on_concurrent_writes(before: Any, incoming: Any, current: Any, expected: Any) -> None:
    decision = decide(
        STEP, before=before, writes=[write(incoming, concurrent=True)], current=current
    )
    assert_value(decision, expected)
    assert decision.rejected == () and decision.conflict == ()


@pytest.mark.parametrize(
    ("field", "before", "incoming", "current", "concurrent", "reassert"),
    [
        (STEP, 5, 9, 9, True, True),  # the max stands in the doc, as its writer's item
        (STEP, 5, 5, 5, True, True),  # an equal concurrent write (it won or lost the ordering)
        (STEP, 5, 3, 5, True, True),  # the smaller one lost: the doc's 5 is its rival's item
        (STEP, 5, 9, 5, True, False),  # the rule writes 9: a change, not a re-assertion
        (STEP, 5, 7, 7, False, False),  # sequential: nothing concurrent to settle
        (GOAL, 400, 400, 400, True, True),  # manual, equal values: no conflict, yet written
        (CATEGORY, "a", "a", "a", True, False),  # lww is plain Yjs: the server never writes
    ],
)
def test_a_settled_value_the_doc_shows_is_written_again_by_the_server(
    field: Field, before: Any, incoming: Any, current: Any, concurrent: bool, reassert: bool
) -> None:
    """So that a writer who never saw the other concurrent heads is judged concurrent with the
    settled value on its next write (test_semantics_model.py, the equal loser forgotten)."""
    decision = decide(
        field, before=before, writes=[write(incoming, concurrent=concurrent)], current=current
    )
    assert decision.reassert is reassert
    if reassert:
        assert decision.value is NO_VALUE and not decision.conflict


@pytest.mark.parametrize(
    ("before", "incoming", "current", "expected"),
    [
        (5, 3, 3, NO_VALUE),
        (5, 9, 9, 5),
        (5, 3, 5, 3),  # the losing write is the min: picked
        (0.5, -1.25, 0.5, -1.25),
    ],
)
def test_min_on_concurrent_writes(before: Any, incoming: Any, current: Any, expected: Any) -> None:
    decision = decide(
        FLOOR, before=before, writes=[write(incoming, concurrent=True)], current=current
    )
    assert_value(decision, expected)


def test_max_over_several_concurrent_writes_of_one_update() -> None:
    writes = [
        write(4, concurrent=True, client=2, clock=0),
        write(11, concurrent=True, client=3, clock=0),
        write(7, concurrent=False, client=4, clock=0, origin=(3, 0)),
    ]
    assert decide(STEP, before=6, writes=writes, current=7).value == 11


def test_max_on_dates() -> None:
    decision = decide(
        DUE,
        before="2025-03-01",
        writes=[write("2025-04-15", concurrent=True)],
        current="2025-03-01",
    )
    assert decision.value == "2025-04-15"


@pytest.mark.parametrize("field", [STEP, FLOOR], ids=["max", "min"])
def test_sequential_writes_are_never_resolved(field: Field) -> None:
    for new in (0, 3, 100):  # a user may move current_step back (or the floor up)
        decision = decide(field, before=10, writes=[write(new, concurrent=False)], current=new)
        assert unchanged(decision), new


def test_first_write_with_no_before_stands() -> None:
    decision = decide(
        STEP, before=NO_VALUE, writes=[write(4, concurrent=False, origin=None)], current=4
    )
    assert unchanged(decision)


# -- precedence ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "incoming", "current", "expected"),
    [
        ("low", "high", "high", NO_VALUE),
        ("high", "low", "low", "high"),
        ("medium", "high", "medium", "high"),  # the losing write ranks higher: picked
        ("medium", "urgent", "urgent", "medium"),  # a string not in the list ranks lowest
    ],
)
def test_precedence_on_concurrent_writes(
    before: str, incoming: str, current: str, expected: Any
) -> None:
    decision = decide(
        PRIORITY, before=before, writes=[write(incoming, concurrent=True)], current=current
    )
    assert_value(decision, expected)


def test_precedence_sequential_write_down_stands() -> None:
    decision = decide(
        PRIORITY, before="high", writes=[write("low", concurrent=False)], current="low"
    )
    assert unchanged(decision)


# -- transition ---------------------------------------------------------------------------------


def test_transition_allowed_sequential_move_stands() -> None:
    for before, new in [("DRAFT", "IN_REVIEW"), ("APPROVED", "DRAFT"), ("ARCHIVED", "DRAFT")]:
        decision = decide(
            STATUS, before=before, writes=[write(new, concurrent=False, seen=before)], current=new
        )
        assert unchanged(decision), (before, new)


def test_transition_not_allowed_from_what_the_writer_saw_is_rejected_even_when_sequential() -> None:
    bad = write("PUBLISHED", concurrent=False, seen="DRAFT")
    decision = decide(STATUS, before="DRAFT", writes=[bad], current="PUBLISHED")
    assert decision.rejected == (bad,)
    assert decision.value == "DRAFT"  # reverted to the value held before


def test_transition_is_judged_from_the_origins_value_not_from_before() -> None:
    # The writer saw IN_REVIEW; the server meanwhile holds DRAFT (someone moved back).
    # APPROVED is allowed from IN_REVIEW (what the writer saw), not from DRAFT.
    move = write("APPROVED", concurrent=True, seen="IN_REVIEW")
    decision = decide(STATUS, before="DRAFT", writes=[move], current="APPROVED")
    assert decision.rejected == ()
    assert decision.value is NO_VALUE  # precedence: APPROVED > DRAFT, Yjs already holds it
    # ... and the reverse: a move allowed from `before` but not from what the writer saw.
    stale = write("IN_REVIEW", concurrent=True, seen="CREATING")
    decision = decide(STATUS, before="DRAFT", writes=[stale], current="IN_REVIEW")
    assert decision.rejected == (stale,)
    assert decision.value == "DRAFT"


def test_first_status_write_is_judged_from_the_initial_state() -> None:
    ok = write("DRAFT", concurrent=False, origin=None)
    assert unchanged(decide(STATUS, before=NO_VALUE, writes=[ok], current="DRAFT"))
    bad = write("APPROVED", concurrent=False, origin=None)
    decision = decide(STATUS, before=NO_VALUE, writes=[bad], current="APPROVED")
    assert decision.rejected == (bad,)
    assert decision.remove  # nothing acceptable to go back to


@pytest.mark.parametrize(
    ("held", "incoming", "current", "expected"),
    [
        ("ARCHIVED", "IN_REVIEW", "IN_REVIEW", "ARCHIVED"),  # both allowed from DRAFT
        ("IN_REVIEW", "ARCHIVED", "ARCHIVED", NO_VALUE),
        ("IN_REVIEW", "ARCHIVED", "IN_REVIEW", "ARCHIVED"),  # the losing move ranks higher
    ],
)
def test_concurrent_allowed_moves_are_settled_by_precedence(
    held: str, incoming: str, current: str, expected: Any
) -> None:
    move = write(incoming, concurrent=True, seen="DRAFT")
    decision = decide(STATUS, before=held, writes=[move], current=current)
    assert decision.rejected == ()
    assert_value(decision, expected)


def test_concurrent_move_not_allowed_is_rejected_even_if_it_ranks_higher() -> None:
    bad = write("PUBLISHED", concurrent=True, seen="DRAFT")  # DRAFT -> PUBLISHED: not allowed
    decision = decide(STATUS, before="IN_REVIEW", writes=[bad], current="PUBLISHED")
    assert decision.rejected == (bad,)
    assert decision.value == "IN_REVIEW"


# -- manual -------------------------------------------------------------------------------------


def test_manual_concurrent_different_values_open_a_conflict_and_keep_yjs_choice() -> None:
    incoming = write(400, concurrent=True)
    for current in (100, 400):
        decision = decide(GOAL, before=100, writes=[incoming], current=current)
        assert decision.conflict == (incoming,)
        assert decision.conflict_with_before
        assert not decision.changes_doc


def test_manual_losing_write_is_a_candidate() -> None:
    loser = write(400, concurrent=True, client=1)
    decision = decide(GOAL, before=100, writes=[loser], current=100)
    assert decision.conflict == (loser,)


def test_manual_same_value_is_no_conflict() -> None:
    decision = decide(GOAL, before=100, writes=[write(100.0, concurrent=True)], current=100.0)
    assert unchanged(decision)


def test_manual_sequential_write_is_no_conflict() -> None:
    decision = decide(GOAL, before=100, writes=[write(400, concurrent=False)], current=400)
    assert unchanged(decision)


def test_manual_conflict_between_writes_of_one_update_without_a_before() -> None:
    a = write("2025-01-01", concurrent=False, client=2, origin=None)
    b = write("2025-02-01", concurrent=True, client=3, origin=None)
    decision = decide(DEADLINE, before=NO_VALUE, writes=[a, b], current="2025-02-01")
    # Nothing was held before: both heads are the candidates people choose between.
    assert decision.conflict == (a, b)
    assert not decision.conflict_with_before


# -- types --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "good", "bad"),
    [
        (STEP, 3, "three"),
        (STEP, 3, 2.5),
        (STEP, 3, True),
        (STEP, 3, [3]),
        (GOAL, 12.5, "12.5"),
        (GOAL, 12.5, False),
        (GOAL, 12.5, float("inf")),
        (GOAL, 12.5, {"amount": 12.5}),
        (CATEGORY, "news", 7),
        (DONE, True, 1),
        (DEADLINE, "2025-06-30", "next week"),
        (DEADLINE, "2025-06-30", "2025-13-01"),
        (STATUS, "DRAFT", 2),
    ],
)
@pytest.mark.parametrize("concurrent", [False, True])
def test_wrong_type_is_rejected_and_reverted(
    field: Field, good: Any, bad: Any, concurrent: bool
) -> None:
    wrong = write(bad, concurrent=concurrent, seen=good)
    decision = decide(field, before=good, writes=[wrong], current=bad)
    assert decision.rejected == (wrong,)
    assert decision.value == good


@pytest.mark.parametrize("field", [STEP, GOAL, CATEGORY, DEADLINE, DONE])
def test_wrong_type_with_nothing_before_removes_the_key(field: Field) -> None:
    wrong = write(["not", "a", "scalar"], concurrent=False, origin=None)
    decision = decide(field, before=NO_VALUE, writes=[wrong], current=["not", "a", "scalar"])
    assert decision.rejected == (wrong,)
    assert decision.remove


def test_null_with_nothing_before_removes_the_key() -> None:
    wrong = write(None, concurrent=False, origin=None)
    decision = decide(STEP, before=NO_VALUE, writes=[wrong], current=None)
    assert decision.rejected == (wrong,)
    assert decision.remove


def test_null_with_a_good_before_is_reverted() -> None:
    wrong = write(None, concurrent=False)
    decision = decide(STEP, before=4, writes=[wrong], current=None)
    assert decision.rejected == (wrong,)
    assert decision.value == 4


def test_a_bad_value_held_before_is_not_restored() -> None:
    wrong = write("x", concurrent=False)
    decision = decide(STEP, before="also bad", writes=[wrong], current="x")
    assert decision.rejected == (wrong,)
    assert decision.remove


def test_valid_write_after_a_rejected_one_in_the_same_update_stands() -> None:
    writes = [
        write("x", concurrent=False, clock=0),
        write(6, concurrent=False, clock=1, origin=(2, 0)),
    ]
    decision = decide(STEP, before=4, writes=writes, current=6)
    assert [w.value for w in decision.rejected] == ["x"]
    assert not decision.changes_doc


def test_deleted_items_are_not_judged() -> None:
    decision = decide(STEP, before=4, writes=[write(NO_VALUE, concurrent=True)], current=4)
    assert unchanged(decision)


CHAIN_FLAG_LOST = (
    "crdt/rules.py decide() drops writes whose value is NO_VALUE together with their "
    "`concurrent` flag: a chain that starts with a concurrent write its writer overwrote before "
    "syncing (the first item arrives deleted) has only sequential valued writes, so max is never "
    "applied and the smaller value written concurrently wins"
)


def test_chain_that_starts_concurrent_is_resolved() -> None:
    first = write(NO_VALUE, concurrent=True, clock=0)  # superseded by its own writer: deleted
    last = write(2, concurrent=False, clock=1, origin=(2, 0), seen=NO_VALUE)
    decision = decide(STEP, before=5, writes=[first, last], current=2)
    assert decision.value == 5


# -- on raw pycrdt updates: what the server actually decides -------------------------------------


def arrive(server: IndexedServer, client: Doc, field: Field) -> Decision:
    """One client update through the server doc, the index and the field's rule."""
    key = field.name
    before = server.fields.get(key, NO_VALUE)
    writes = server.receive(client.get_update(server.doc.get_state()))
    current = server.fields.get(key, NO_VALUE)
    return decide(field, before=before, writes=[w for w in writes if w.key == key], current=current)


def concurrent_pair(
    field: Field, base: Any, first: Any, second: Any, *, second_wins: bool, skip_gc: bool
) -> Decision:
    """Both clients saw `base`; `first` arrives, then `second`, which wins or loses Yjs's
    ordering (larger or smaller client id). Returns the decision on the second arrival."""
    server = IndexedServer(skip_gc=skip_gc)
    early: Doc = Doc(client_id=500)
    late: Doc = Doc(client_id=900 if second_wins else 100)
    early.get("fields", type=Map)[field.name] = base
    assert unchanged(arrive(server, early, field))
    late.apply_update(server.doc.get_update())
    early.get("fields", type=Map)[field.name] = first
    late.get("fields", type=Map)[field.name] = second
    arrive(server, early, field)
    return decide_and_check(server, late, field)


def decide_and_check(server: IndexedServer, client: Doc, field: Field) -> Decision:
    decision = arrive(server, client, field)
    assert decision.rejected == ()
    return decision


# (field, base, first arrival, second arrival, what the rule must end with)
LOSER_MUST_WIN = [
    (STEP, 1, 3, 9, 9),
    (FLOOR, 10, 8, 2, 2),
    (PRIORITY, "low", "medium", "high", "high"),
    (STATUS, "DRAFT", "IN_REVIEW", "ARCHIVED", "ARCHIVED"),
]


@pytest.mark.parametrize(
    ("field", "base", "first", "second", "expected"),
    LOSER_MUST_WIN,
    ids=[case[0].name for case in LOSER_MUST_WIN],
)
@pytest.mark.parametrize(
    "skip_gc",
    [
        pytest.param(False, id="room-doc"),
        pytest.param(True, id="doc-keeping-deleted-content"),
    ],
)
def test_rule_picks_the_losing_write_on_raw_updates(
    field: Field, base: Any, first: Any, second: Any, expected: Any, skip_gc: bool
) -> None:
    decision = concurrent_pair(field, base, first, second, second_wins=False, skip_gc=skip_gc)
    assert decision.value == expected


@pytest.mark.parametrize(
    ("field", "base", "first", "second", "expected"),
    [
        (STEP, 1, 9, 3, 9),
        (FLOOR, 10, 2, 8, 2),
        (PRIORITY, "low", "high", "medium", "high"),
        (STATUS, "DRAFT", "ARCHIVED", "IN_REVIEW", "ARCHIVED"),
    ],
    ids=["max", "min", "precedence", "transition"],
)
def test_rule_overrides_a_winning_write_on_raw_updates(
    field: Field, base: Any, first: Any, second: Any, expected: Any
) -> None:
    decision = concurrent_pair(field, base, first, second, second_wins=True, skip_gc=False)
    assert decision.value == expected


@pytest.mark.parametrize(
    "skip_gc",
    [
        pytest.param(False, id="room-doc"),
        pytest.param(True, id="doc-keeping-deleted-content"),
    ],
)
def test_manual_conflict_with_a_losing_write_on_raw_updates(skip_gc: bool) -> None:
    decision = concurrent_pair(GOAL, 50, 100, 400, second_wins=False, skip_gc=skip_gc)
    assert [w.value for w in decision.conflict] == [400]
    assert not decision.changes_doc


def test_manual_conflict_with_a_winning_write_on_raw_updates() -> None:
    decision = concurrent_pair(GOAL, 50, 100, 400, second_wins=True, skip_gc=False)
    assert [w.value for w in decision.conflict] == [400]
    assert decision.conflict_with_before


def test_sequential_raw_writes_are_never_resolved() -> None:
    server = IndexedServer()
    a: Doc = Doc(client_id=500)
    b: Doc = Doc(client_id=100)
    for doc, value in [(a, 10), (b, 4), (a, 2), (b, 7)]:  # each saw the last
        doc.apply_update(server.doc.get_update(doc.get_state()))
        doc.get("fields", type=Map)["current_step"] = value
        assert unchanged(arrive(server, doc, STEP))
        assert server.fields["current_step"] == value


def test_sequential_raw_transition_not_allowed_is_rejected() -> None:
    server = IndexedServer()
    a: Doc = Doc(client_id=500)
    a.get("fields", type=Map)["status"] = "DRAFT"
    assert unchanged(arrive(server, a, STATUS))
    a.get("fields", type=Map)["status"] = "PUBLISHED"
    decision = arrive(server, a, STATUS)
    assert [w.value for w in decision.rejected] == ["PUBLISHED"]
    assert decision.value == "DRAFT"


def test_raw_wrong_type_is_rejected() -> None:
    server = IndexedServer()
    a: Doc = Doc(client_id=500)
    a.get("fields", type=Map)["goal_amount"] = 250
    arrive(server, a, GOAL)
    a.get("fields", type=Map)["goal_amount"] = "a lot"
    decision = arrive(server, a, GOAL)
    assert [w.value for w in decision.rejected] == ["a lot"]
    assert decision.value == 250


# -- lists: union deduplicates, lww keeps what Yjs merged ----------------------------------------


@pytest.mark.parametrize(
    ("values", "duplicates"),
    [
        ([], []),
        (["a", "b", "c"], []),
        (["a", "b", "a", "c", "b", "a"], [2, 4, 5]),
        ([1.0, 1, 2], [1]),
        ([{"x": 1}, {"x": 1}, {"x": 2}], [1]),
        ([[1, 2], [1, 2], [2, 1]], [1]),
        (["1", 1], []),
    ],
)
def test_duplicate_positions(values: list[Any], duplicates: list[int]) -> None:
    assert duplicate_positions(values) == duplicates
    kept = [v for i, v in enumerate(values) if i not in set(duplicates)]
    assert len({repr(v) for v in kept}) == len(kept)
