"""Model test of the semantic rules: random offline writes by 3 clients against the real sync
core, every replica converges and obeys the field's rule.

The server is the room's sync core itself (`server.sync.core.RoomCore`, issue 20 point 5),
driven in memory by `tests.support.core_driver.CoreDriver`: a shell without I/O that routes what
the core returns (writes into an in-memory commit, messages through the real gate to the
addressed editors, the rules' own write after the client's) and takes no part in the rules. The
clients are pycrdt docs (`tests.support.semantic_clients.SimClient`). The core's doc is the
server's replica. No event loop, no store: an example takes milliseconds, so the model runs
many more of them than it could through the whole room (`MODEL`).

The commit is held: after each reconnect the scenario commits some of the pending writes (or
all), and the gate sends what waited for them; an editor that goes offline first never gets
what was still held for it. At the end everything commits (`CoreDriver.settle`). At every
delivery the driver checks that no editor is sent another client's uncommitted edit.

Each round, every client goes offline, makes random writes to `status` (any schema state),
`current_step` (ints), `goal_amount` (manual; at most one write per client per round, see
`_expected_conflict`) and `tags` (pushes), then all reconnect in a random order: the client
answers the core's sync step 1 with what the core lacks, and gets what it lacks (the core's sync
step 2), server writes included; while online it gets every relay once its ticket commits.

Invariants (after everyone synced):

- every replica (3 clients + server) has identical `fields`, `tags` and `conflicts`;
- `tags` holds every pushed tag exactly once (union);
- `status` is absent or a state reachable from the initial state by allowed transitions, and a
  value some client wrote;
- `current_step`: let F be the item holding the final value (a client's or the server's write).
  For every write w concurrent with F (neither had seen the other) that is a *head* among those
  (no other write concurrent with F had w in its past, i.e. w's own writer did not overwrite it),
  final >= w.value. That is "max over the concurrent candidates" stated so that it can be checked
  from causal histories; a value a writer itself overwrote later is not a candidate, and a
  sequential write stands even when smaller (a user may move `current_step` back);
- a manual conflict for `goal_amount` exists iff two different `goal_amount` values were written
  concurrently.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pycrdt import Array, Doc, Map, Text

from crdt.fields import FieldIndex
from crdt.schema import DEFAULT_SCHEMA, parse_schema
from crdt.semantics import SemanticFields
from tests.support.core_driver import CoreDriver
from tests.support.semantic_clients import (
    SimClient,
    Write,
    concurrent,
    decode_state_vector,
    happened_before,
    snapshot,
)

STATUS = DEFAULT_SCHEMA.fields["status"]
STATES = list(STATUS.precedence)
GOALS = [100, 250, 400]
TAGS = ["news", "tech", "sport", "art"]

client_ids = st.integers(min_value=1, max_value=2**32 - 1)

# -- scenario ---------------------------------------------------------------------------------

ops = st.one_of(
    st.tuples(st.just("status"), st.sampled_from(STATES)),
    st.tuples(st.just("current_step"), st.integers(min_value=0, max_value=12)),
    st.tuples(st.just("goal_amount"), st.sampled_from(GOALS)),
    st.tuples(st.just("tags"), st.sampled_from(TAGS)),
)

# How many pending writes commit after a reconnect: none, some, or all (None).
commit_counts = st.one_of(st.none(), st.integers(min_value=0, max_value=2))


@dataclass(frozen=True)
class Round:
    batches: tuple[tuple[tuple[str, Any], ...], ...]  # per client, its offline writes
    order: tuple[int, ...]  # reconnect order
    # After each reconnect, how many pending writes commit (None: all of them).
    commits: tuple[int | None, ...] = (None, None, None)


@dataclass(frozen=True)
class Scenario:
    server_id: int
    client_ids: tuple[int, int, int]
    rounds: tuple[Round, ...]


@st.composite
def scenarios(draw: st.DrawFn, *, one_step_write: bool = False, held: bool = False) -> Scenario:
    """`one_step_write`: at most one current_step write per client per round (no client
    overwrites its own concurrent write before the server sees it, see CHAIN_FLAG_LOST).
    `held`: after each reconnect only some pending writes commit (else all of them), so an
    editor may go offline before it is sent another's write. The `goal_amount` oracle
    (`_expected_conflict`) assumes no client overwrites its own write before the server has
    judged it, which held commits break, so the tests that check it do not hold commits."""
    ids = draw(st.lists(client_ids, min_size=4, max_size=4, unique=True))
    rounds = []
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        batches = []
        for _ in range(3):
            batch = draw(st.lists(ops, max_size=5))
            if one_step_write:
                steps = [i for i, (key, _) in enumerate(batch) if key == "current_step"]
                batch = [op for i, op in enumerate(batch) if i not in steps[1:]]
            batches.append(tuple(batch))
        order = tuple(draw(st.permutations(range(3))))
        commits = tuple(draw(commit_counts) if held else None for _ in range(3))
        rounds.append(Round(tuple(batches), order, commits))
    return Scenario(ids[0], (ids[1], ids[2], ids[3]), tuple(rounds))


@dataclass
class Run:
    room: CoreDriver
    clients: list[SimClient]

    @property
    def writes(self) -> list[Write]:
        return [w for c in self.clients for w in c.writes] + self.room.server_writes


def _play(scenario: Scenario, room: CoreDriver) -> Run:
    clients = [SimClient(f"user{i}", cid) for i, cid in enumerate(scenario.client_ids)]
    for client in clients:
        room.reconnect(client)
    room.settle()
    for round_ in scenario.rounds:
        for client in clients:
            room.go_offline(client)
        for client, batch in zip(clients, round_.batches, strict=True):
            wrote_goal = False
            for key, value in batch:
                if key == "tags":
                    client.push_tag(value)
                elif key == "goal_amount":
                    if not wrote_goal:  # see _expected_conflict
                        client.set(key, value)
                        wrote_goal = True
                else:
                    client.set(key, value)
        for position, commits in zip(round_.order, round_.commits, strict=True):
            room.reconnect(clients[position])
            room.commit(commits)
    room.settle()
    server_state = decode_state_vector(room.doc.get_state())
    for client in clients:  # everyone is online and had every relay: nothing is missing
        assert decode_state_vector(client.doc.get_state()) == server_state, client.name
    return Run(room, clients)


def play(scenario: Scenario, *checks: Callable[[Run], None], skip_gc: bool = False) -> None:
    """Play `scenario` against a new core whose commits it holds, then run `checks`."""
    room = CoreDriver(server_id=scenario.server_id, skip_gc=skip_gc, hold=True)
    run = _play(scenario, room)
    for check in checks:
        check(run)


# -- invariants -------------------------------------------------------------------------------


def _reachable_states() -> set[str]:
    seen = {STATUS.initial}
    queue = deque([STATUS.initial])
    while queue:
        for nxt in STATUS.transitions.get(queue.popleft(), ()):
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return seen


REACHABLE = _reachable_states()


def _final_item(doc: Doc, key: str) -> tuple[int, int] | None:
    """The item holding `key`'s value, by an index of the whole state (checked against pycrdt)."""
    index = FieldIndex()
    index.load(doc.get_update())
    winner = index.winner(key)
    value = doc.get("fields", type=Map).get(key)
    if winner is not None and value is not None:
        assert index.value_of(winner) == value
    return winner


def _expected_conflict(writes: list[Write]) -> bool:
    """Two different goal_amount values written concurrently (by clients).

    Each client writes goal_amount at most once per offline round, so no write is overwritten
    by its own writer before anyone sees it: "written concurrently" has one meaning.
    """
    goal = [w for w in writes if w.key == "goal_amount" and w.writer != "server"]
    return any(
        concurrent(a, b) and a.value != b.value for i, a in enumerate(goal) for b in goal[i + 1 :]
    )


def _current_step_violations(run: Run) -> list[str]:
    final = run.room.fields.get("current_step")
    if final is None:
        return []
    winner_id = _final_item(run.room.doc, "current_step")
    steps = [w for w in run.writes if w.key == "current_step"]
    by_id = {w.id: w for w in steps}
    assert winner_id in by_id, f"final current_step item {winner_id} was never written"
    final_write = by_id[winner_id]
    rivals = [w for w in steps if concurrent(w, final_write)]
    heads = [w for w in rivals if not any(happened_before(w, o) for o in rivals if o is not w)]
    return [
        f"final {final} < {w.value} written by {w.writer} concurrently with {final_write}"
        for w in heads
        if w.value > final
    ]


def check_converged(run: Run) -> None:
    expected = snapshot(run.room.doc)
    for client in run.clients:
        assert snapshot(client.doc) == expected, client.name
    fields, tags, conflicts = expected
    pushed = {t for c in run.clients for t in c.pushed_tags}
    assert len(tags) == len(set(tags)), f"duplicate tags {tags}"
    assert set(tags) == pushed
    status = fields.get("status")
    if status is not None:
        assert status in REACHABLE
        assert status in {w.value for w in run.writes if w.key == "status"}
    step = fields.get("current_step")
    if step is not None:
        assert DEFAULT_SCHEMA.fields["current_step"].accepts(step)
    # manual: the server never chooses a goal_amount (it only writes again, as its own, a
    # value a client wrote: `Decision.reassert`), and conflicts hold written values only
    goals = {w.value for w in run.writes if w.key == "goal_amount" and w.writer != "server"}
    assert {w.value for w in run.room.server_writes if w.key == "goal_amount"} <= goals
    for entry in conflicts.values():
        assert entry["field"] == "goal_amount"
        assert {c["value"] for c in entry["candidates"]} <= goals
        assert len(entry["candidates"]) >= 2


def check_rules(run: Run) -> None:
    assert _current_step_violations(run) == []
    conflicts = [
        entry
        for entry in (run.room.conflicts.to_py() or {}).values()
        if entry["field"] == "goal_amount"
    ]
    assert len(conflicts) <= 1
    assert bool(conflicts) == _expected_conflict(run.writes), conflicts


# Client 2 (small id) writes current_step=9 concurrently with client 3's 2 and reconnects last:
# its write loses Yjs's ordering, max must pick it.
LOSER_EXAMPLE = Scenario(
    server_id=4_000_000_000,
    client_ids=(1, 2, 3),
    rounds=(Round(batches=((), (("current_step", 9),), (("current_step", 2),)), order=(2, 1, 0)),),
)
# Same shape for the manual field: 400 (loser, arrives last) vs 100.
MANUAL_LOSER_EXAMPLE = Scenario(
    server_id=4_000_000_000,
    client_ids=(1, 2, 3),
    rounds=(
        Round(batches=((), (("goal_amount", 400),), (("goal_amount", 100),)), order=(2, 1, 0)),
    ),
)
# Client 2 writes 5; client 3 (larger id, so its writes win Yjs's ordering), offline too,
# writes 1 then 2 and reconnects last: max must keep 5 (CHAIN_FLAG_LOST).
CHAIN_EXAMPLE = Scenario(
    server_id=4_000_000_000,
    client_ids=(1, 2, 3),
    rounds=(
        Round(
            batches=((), (("current_step", 5),), (("current_step", 1), ("current_step", 2))),
            order=(1, 2, 0),
        ),
    ),
)

MODEL = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@MODEL
@given(scenarios(held=True))
def test_replicas_converge_and_obey_union_and_transitions(scenario: Scenario) -> None:
    play(scenario, check_converged)


def _check_current_step(run: Run) -> None:
    assert _current_step_violations(run) == []


@MODEL
@example(LOSER_EXAMPLE)
@example(CHAIN_EXAMPLE)
@given(scenarios(held=True))
def test_current_step_is_max_of_concurrent_heads(scenario: Scenario) -> None:
    play(scenario, check_converged, _check_current_step)


@MODEL
@example(MANUAL_LOSER_EXAMPLE)
@given(scenarios())
def test_manual_conflict_iff_different_concurrent_values(scenario: Scenario) -> None:
    play(scenario, check_converged, check_rules)


@MODEL
@example(LOSER_EXAMPLE)
@example(MANUAL_LOSER_EXAMPLE)
@given(scenarios(one_step_write=True))
def test_rules_hold_when_the_server_keeps_deleted_content(scenario: Scenario) -> None:
    """The same invariants with the room's doc built `skip_gc=True` (keeping deleted content):
    the rules must not depend on how the server's doc stores what lost Yjs's ordering. The
    driver builds that doc as the registry's load would (`CoreDriver`, `skip_gc`)."""
    play(scenario, check_converged, check_rules, skip_gc=True)


def test_chain_starting_with_a_concurrent_write_is_resolved() -> None:
    def resolved(run: Run) -> None:
        assert run.room.fields["current_step"] == 5

    play(CHAIN_EXAMPLE, check_converged, resolved)


def test_a_concurrent_write_equal_to_the_winner_still_counts() -> None:
    """b's current_step=1, concurrent with a's 1 and losing Yjs's ordering, changes no value
    when it arrives (max holds already). Before, it was then forgotten: when a, which never saw
    it, moved current_step back to 0, that write looked sequential (its origin, a's own 1, was
    the key's winner) and stood, though the max of the concurrent heads is 1. Now the server
    writes the settled 1 again as its own (`Decision.reassert`), so a's 0 is judged concurrent
    with it. Found by the model once commits were held."""
    room = CoreDriver(server_id=1)
    a, b = SimClient("user0", 4), SimClient("user1", 3)  # a's writes win Yjs's ordering
    room.reconnect(a)
    room.reconnect(b)
    room.go_offline(a)
    room.go_offline(b)
    a.set("current_step", 1)
    room.reconnect(a)
    room.go_offline(a)
    b.set("current_step", 1)  # concurrent with a's 1 (b never saw it)
    a.set("current_step", 0)  # a moves back, never having seen b's 1
    room.reconnect(b)
    room.reconnect(a)
    run = Run(room, [a, b])
    check_converged(run)
    assert _current_step_violations(run) == []


# -- deterministic cases of the pipeline ------------------------------------------------------

SERVER_ID = 4_000_000_000


def test_offline_sequence_of_allowed_transitions_stands() -> None:
    room = CoreDriver(server_id=SERVER_ID)
    client = SimClient("user0", 7)
    client.set("status", "DRAFT")
    client.set("status", "IN_REVIEW")
    review = room.reconnect(client)
    assert review is not None
    assert review.rejected == []
    assert room.fields.get("status") == "IN_REVIEW"


def test_sequential_transition_sent_one_update_at_a_time_stands() -> None:
    room = CoreDriver(server_id=SERVER_ID)
    client = SimClient("user0", 7)
    room.reconnect(client)
    for state in ("DRAFT", "IN_REVIEW", "APPROVED", "DRAFT"):
        client.set("status", state)
        room.send_changes(client)
        assert room.fields["status"] == state
    client.set("status", "PUBLISHED")  # not allowed from DRAFT: reverted
    review = room.send_changes(client)
    assert review is not None and [r.value for r in review.rejected] == ["PUBLISHED"]
    assert room.fields["status"] == "DRAFT"
    assert client.fields["status"] == "DRAFT"  # relayed back to the writer


def test_wrong_type_is_reverted_everywhere() -> None:
    room = CoreDriver(server_id=SERVER_ID)
    a, b = SimClient("user0", 7), SimClient("user1", 8)
    room.reconnect(a)
    room.reconnect(b)
    a.set("goal_amount", 500)
    room.send_changes(a)
    a.set("goal_amount", "lots")
    review = room.send_changes(a)
    assert review is not None
    assert [(r.field, r.value, r.reason) for r in review.rejected] == [
        ("goal_amount", "lots", "wrong type")
    ]
    for doc in (room.doc, a.doc, b.doc):
        assert doc.get("fields", type=Map)["goal_amount"] == 500


def test_null_into_empty_integer_field_is_removed() -> None:
    room = CoreDriver(server_id=SERVER_ID)
    client = SimClient("user0", 7)
    client.set("current_step", None)
    review = room.reconnect(client)
    assert review is not None and [r.value for r in review.rejected] == [None]
    assert "current_step" not in (room.fields.to_py() or {})


def test_wrong_type_after_a_key_delete_removes_the_key() -> None:
    room = CoreDriver(server_id=SERVER_ID)
    client = SimClient("user0", 7)
    room.reconnect(client)
    client.set("category", "news")
    room.send_changes(client)
    state = client.doc.get_state()
    del client.fields["category"]
    room.send(client, client.doc.get_update(state))
    assert "category" not in (room.fields.to_py() or {})
    client.set("category", 5)  # wrong type: nothing was held before
    review = room.send_changes(client)
    assert review is not None and [r.value for r in review.rejected] == [5]
    assert "category" not in (room.fields.to_py() or {})


@pytest.mark.parametrize("a_wrote_before", [False, True])
def test_offline_write_is_detected_after_a_restart(a_wrote_before: bool) -> None:
    """b (id 5) writes goal_amount=200; a (id 9), offline, writes 400 concurrently (its write
    wins Yjs's ordering); the server restarts (another core is loaded from what was committed,
    as the registry loads it) before a reconnects. The index is then built lazily from the
    loaded state, and a's write must still open a conflict."""
    a, b = SimClient("user0", 9), SimClient("user1", 5)
    first = CoreDriver(server_id=SERVER_ID)
    first.reconnect(a)
    first.reconnect(b)
    if a_wrote_before:
        a.set("goal_amount", 100)
        first.send_changes(a)
    first.go_offline(a)
    b.set("goal_amount", 200)  # b saw a's 100 (if any): sequential
    first.send_changes(b)
    a.set("goal_amount", 400)  # concurrent with 200
    restarted = first.restarted(server_id=SERVER_ID + 1)
    assert restarted.fields["goal_amount"] == 200  # loaded from the store
    restarted.reconnect(a)
    # Yjs's choice stands while the conflict is open
    assert restarted.fields["goal_amount"] == 400
    (entry,) = (restarted.conflicts.to_py() or {}).values()
    assert entry["field"] == "goal_amount"
    assert {c["value"] for c in entry["candidates"]} == {200, 400}
    assert snapshot(a.doc) == snapshot(restarted.doc)


def test_a_run_of_updates_is_judged_as_one_change() -> None:
    """Two updates that arrived together (one run): DRAFT then IN_REVIEW is a sequence of
    allowed transitions, judged together as one write, not IN_REVIEW alone."""
    room = CoreDriver(server_id=SERVER_ID)
    client = SimClient("user0", 7)
    room.reconnect(client)
    updates = []
    for state in ("DRAFT", "IN_REVIEW"):
        before = client.doc.get_state()
        client.set("status", state)
        updates.append(client.doc.get_update(before))
    review = room.send_run(client, updates)
    assert review is not None and review.rejected == []
    assert len(room.committed) == 1  # one version for the run
    assert room.fields["status"] == "IN_REVIEW"


def test_a_held_write_reaches_the_others_at_its_commit_or_at_their_reconnect() -> None:
    """b is online when a's write is accepted but not committed: b gets it at the commit. c
    goes offline before the commit: what was held for it is never sent, it gets the write in
    its sync step 2 when it comes back, once the write is committed."""
    room = CoreDriver(server_id=SERVER_ID, hold=True)
    a, b, c = SimClient("user0", 5), SimClient("user1", 6), SimClient("user2", 7)
    for client in (a, b, c):
        room.reconnect(client)
    room.settle()
    a.set("goal_amount", 300)
    room.send_changes(a)
    room.go_offline(c)
    assert "goal_amount" not in b.fields and len(room.pending) == 1
    room.commit()
    assert b.fields["goal_amount"] == 300 and "goal_amount" not in c.fields
    a.set("goal_amount", 350)
    room.send_changes(a)
    room.reconnect(c)
    assert "goal_amount" not in c.fields  # its sync step 2 waits for a's second write
    room.settle()
    assert c.fields["goal_amount"] == b.fields["goal_amount"] == 350


def test_concurrent_tags_are_unioned_without_duplicates() -> None:
    room = CoreDriver(server_id=SERVER_ID)
    a, b = SimClient("user0", 5), SimClient("user1", 9)
    for tag in ("news", "tech"):
        a.push_tag(tag)
    for tag in ("tech", "art", "tech"):
        b.push_tag(tag)
    room.reconnect(a)
    room.reconnect(b)  # a is online: it gets b's tags and the server's deletions
    for doc in (room.doc, a.doc, b.doc):
        values = snapshot(doc)[1]
        assert sorted(values) == ["art", "news", "tech"]


LIST_SCHEMA = parse_schema(
    {
        "fields": {
            "tags": {"kind": "list", "type": "string", "rule": "union"},
            "links": {"kind": "list", "type": "string", "rule": "lww"},
        }
    }
)


@pytest.mark.parametrize(("rule_field", "deduplicated"), [("tags", True), ("links", False)])
def test_list_rules_on_concurrent_pushes(rule_field: str, deduplicated: bool) -> None:
    room = CoreDriver(server_id=SERVER_ID, schema=LIST_SCHEMA)
    a, b = SimClient("user0", 5), SimClient("user1", 9)
    for client, values in ((a, ["x", "y"]), (b, ["y", "z", "y"])):
        array = client.doc.get(rule_field, type=Array)
        for value in values:
            array.append(value)
    room.reconnect(a)
    room.reconnect(b)
    final = list(room.doc.get(rule_field, type=Array).to_py() or [])
    if deduplicated:
        assert sorted(final) == ["x", "y", "z"]
    else:
        assert sorted(final) == ["x", "y", "y", "y", "z"]
    for client in (a, b):
        assert list(client.doc.get(rule_field, type=Array).to_py() or []) == final
    assert snapshot(a.doc)[2] == snapshot(room.doc)[2]


def test_list_values_of_the_wrong_type_are_removed() -> None:
    room = CoreDriver(server_id=SERVER_ID, schema=LIST_SCHEMA)
    a = SimClient("user0", 5)
    tags = a.doc.get("tags", type=Array)
    tags.extend(["ok", 3, "fine", True])
    review = room.reconnect(a)
    assert review is not None
    assert [(r.field, r.value) for r in review.rejected] == [("tags", 3), ("tags", True)]
    assert room.doc.get("tags", type=Array).to_py() == ["ok", "fine"]
    assert tags.to_py() == ["ok", "fine"]


def test_review_of_text_only_update_is_empty() -> None:
    """The fields observer does not fire for text: nothing is decoded or reviewed."""
    doc: Doc = Doc(client_id=4_000_000_000)
    semantics = SemanticFields(doc, DEFAULT_SCHEMA, new_id=lambda: "c1")
    editor: Doc = Doc(client_id=3)
    editor.get("title", type=Text).insert(0, "Hello")
    doc.apply_update(editor.get_update())
    assert not semantics.touched
    editor.get("fields", type=Map)["category"] = "news"
    doc.apply_update(editor.get_update())
    assert semantics.touched
