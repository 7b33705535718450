"""Model test of the semantic rules: random offline writes by 3 clients against the real room,
every replica converges and obeys the field's rule.

The server is the real one (`tests.support.room_driver`): a `server.sync.room.Room` loaded by the
registry of a `Service` over a SQLite store in a temporary directory, with its group commit, gate
and journal; the clients are pycrdt docs (`tests.support.semantic_clients.SimClient`) joined
through real `Connection`s whose socket hands them what the room sends. The room's doc is the
server's replica. Each example runs in its own event loop and directory.

Each round, every client goes offline, makes random writes to `status` (any schema state),
`current_step` (ints), `goal_amount` (manual; at most one write per client per round, see
`_expected_conflict`) and `tags` (pushes), then all reconnect in a random order: the client
answers the room's sync step 1 with what the room lacks, and gets what it lacks (the room's sync
step 2), server writes included; while online it gets every relay.

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

import asyncio
import tempfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pycrdt import Array, Doc, Map, Text

from crdt.fields import FieldIndex
from crdt.schema import DEFAULT_SCHEMA, parse_schema
from crdt.semantics import SemanticFields
from tests.support.room_driver import RoomDriver, open_driver
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


@dataclass(frozen=True)
class Round:
    batches: tuple[tuple[tuple[str, Any], ...], ...]  # per client, its offline writes
    order: tuple[int, ...]  # reconnect order


@dataclass(frozen=True)
class Scenario:
    server_id: int
    client_ids: tuple[int, int, int]
    rounds: tuple[Round, ...]


@st.composite
def scenarios(draw: st.DrawFn, *, one_step_write: bool = False) -> Scenario:
    """`one_step_write`: at most one current_step write per client per round (no client
    overwrites its own concurrent write before the server sees it, see CHAIN_FLAG_LOST)."""
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
        rounds.append(Round(tuple(batches), order))
    return Scenario(ids[0], (ids[1], ids[2], ids[3]), tuple(rounds))


@dataclass
class Run:
    room: RoomDriver
    clients: list[SimClient]

    @property
    def writes(self) -> list[Write]:
        return [w for c in self.clients for w in c.writes] + self.room.server_writes


async def _play(scenario: Scenario, room: RoomDriver) -> Run:
    clients = [SimClient(f"user{i}", cid) for i, cid in enumerate(scenario.client_ids)]
    for client in clients:
        await room.reconnect(client)
    for round_ in scenario.rounds:
        for client in clients:
            await room.go_offline(client)
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
        for position in round_.order:
            await room.reconnect(clients[position])
    server_state = decode_state_vector(room.doc.get_state())
    for client in clients:  # everyone is online and had every relay: nothing is missing
        assert decode_state_vector(client.doc.get_state()) == server_state, client.name
    return Run(room, clients)


def play(scenario: Scenario, *checks: Callable[[Run], None], skip_gc: bool = False) -> None:
    """Play `scenario` against a new real room (its own event loop and directory), then run
    `checks` on it while it is still open."""

    async def main(directory: Path) -> None:
        async with open_driver(directory, server_id=scenario.server_id, skip_gc=skip_gc) as room:
            run = await _play(scenario, room)
            for check in checks:
                check(run)

    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(main(Path(directory)))


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
    # manual: the server never writes goal_amount itself, and conflicts hold written values only
    assert not [w for w in run.room.server_writes if w.key == "goal_amount"]
    goals = {w.value for w in run.writes if w.key == "goal_amount"}
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
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@MODEL
@given(scenarios())
def test_replicas_converge_and_obey_union_and_transitions(scenario: Scenario) -> None:
    play(scenario, check_converged)


def _check_current_step(run: Run) -> None:
    assert _current_step_violations(run) == []


@MODEL
@example(LOSER_EXAMPLE)
@example(CHAIN_EXAMPLE)
@given(scenarios())
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
    registry's load builds that doc (`tests.support.room_driver._Rebuild`)."""
    play(scenario, check_converged, check_rules, skip_gc=True)


def test_chain_starting_with_a_concurrent_write_is_resolved() -> None:
    def resolved(run: Run) -> None:
        assert run.room.fields["current_step"] == 5

    play(CHAIN_EXAMPLE, check_converged, resolved)


# -- deterministic cases of the pipeline ------------------------------------------------------

SERVER_ID = 4_000_000_000


async def test_offline_sequence_of_allowed_transitions_stands(tmp_path: Path) -> None:
    async with open_driver(tmp_path, server_id=SERVER_ID) as room:
        client = SimClient("user0", 7)
        client.set("status", "DRAFT")
        client.set("status", "IN_REVIEW")
        review = await room.reconnect(client)
        assert review is not None
        assert review.rejected == []
        assert room.fields.get("status") == "IN_REVIEW"


async def test_sequential_transition_sent_one_update_at_a_time_stands(tmp_path: Path) -> None:
    async with open_driver(tmp_path, server_id=SERVER_ID) as room:
        client = SimClient("user0", 7)
        await room.reconnect(client)
        for state in ("DRAFT", "IN_REVIEW", "APPROVED", "DRAFT"):
            client.set("status", state)
            await room.send_changes(client)
            assert room.fields["status"] == state
        client.set("status", "PUBLISHED")  # not allowed from DRAFT: reverted
        review = await room.send_changes(client)
        assert review is not None and [r.value for r in review.rejected] == ["PUBLISHED"]
        assert room.fields["status"] == "DRAFT"
        assert client.fields["status"] == "DRAFT"  # relayed back to the writer


async def test_wrong_type_is_reverted_everywhere(tmp_path: Path) -> None:
    async with open_driver(tmp_path, server_id=SERVER_ID) as room:
        a, b = SimClient("user0", 7), SimClient("user1", 8)
        await room.reconnect(a)
        await room.reconnect(b)
        a.set("goal_amount", 500)
        await room.send_changes(a)
        a.set("goal_amount", "lots")
        review = await room.send_changes(a)
        assert review is not None
        assert [(r.field, r.value, r.reason) for r in review.rejected] == [
            ("goal_amount", "lots", "wrong type")
        ]
        for doc in (room.doc, a.doc, b.doc):
            assert doc.get("fields", type=Map)["goal_amount"] == 500


async def test_null_into_empty_integer_field_is_removed(tmp_path: Path) -> None:
    async with open_driver(tmp_path, server_id=SERVER_ID) as room:
        client = SimClient("user0", 7)
        client.set("current_step", None)
        review = await room.reconnect(client)
        assert review is not None and [r.value for r in review.rejected] == [None]
        assert "current_step" not in (room.fields.to_py() or {})


async def test_wrong_type_after_a_key_delete_removes_the_key(tmp_path: Path) -> None:
    async with open_driver(tmp_path, server_id=SERVER_ID) as room:
        client = SimClient("user0", 7)
        await room.reconnect(client)
        client.set("category", "news")
        await room.send_changes(client)
        state = client.doc.get_state()
        del client.fields["category"]
        await room.send(client, client.doc.get_update(state))
        assert "category" not in (room.fields.to_py() or {})
        client.set("category", 5)  # wrong type: nothing was held before
        review = await room.send_changes(client)
        assert review is not None and [r.value for r in review.rejected] == [5]
        assert "category" not in (room.fields.to_py() or {})


@pytest.mark.parametrize("a_wrote_before", [False, True])
async def test_offline_write_is_detected_after_a_restart(
    tmp_path: Path, a_wrote_before: bool
) -> None:
    """b (id 5) writes goal_amount=200; a (id 9), offline, writes 400 concurrently (its write
    wins Yjs's ordering); the server restarts (the service stops, another one opens the same
    SQLite file) before a reconnects. The index is then built lazily from the loaded state, and
    a's write must still open a conflict."""
    a, b = SimClient("user0", 9), SimClient("user1", 5)
    async with open_driver(tmp_path, server_id=SERVER_ID) as first:
        await first.reconnect(a)
        await first.reconnect(b)
        if a_wrote_before:
            a.set("goal_amount", 100)
            await first.send_changes(a)
        await first.go_offline(a)
        b.set("goal_amount", 200)  # b saw a's 100 (if any): sequential
        await first.send_changes(b)
    a.set("goal_amount", 400)  # concurrent with 200
    async with open_driver(tmp_path, server_id=SERVER_ID + 1) as restarted:
        assert restarted.fields["goal_amount"] == 200  # loaded from the store
        await restarted.reconnect(a)
        # Yjs's choice stands while the conflict is open
        assert restarted.fields["goal_amount"] == 400
        (entry,) = (restarted.conflicts.to_py() or {}).values()
        assert entry["field"] == "goal_amount"
        assert {c["value"] for c in entry["candidates"]} == {200, 400}
        assert snapshot(a.doc) == snapshot(restarted.doc)


async def test_concurrent_tags_are_unioned_without_duplicates(tmp_path: Path) -> None:
    async with open_driver(tmp_path, server_id=SERVER_ID) as room:
        a, b = SimClient("user0", 5), SimClient("user1", 9)
        for tag in ("news", "tech"):
            a.push_tag(tag)
        for tag in ("tech", "art", "tech"):
            b.push_tag(tag)
        await room.reconnect(a)
        await room.reconnect(b)  # a is online: it gets b's tags and the server's deletions
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
async def test_list_rules_on_concurrent_pushes(
    tmp_path: Path, rule_field: str, deduplicated: bool
) -> None:
    async with open_driver(tmp_path, server_id=SERVER_ID, schema=LIST_SCHEMA) as room:
        a, b = SimClient("user0", 5), SimClient("user1", 9)
        for client, values in ((a, ["x", "y"]), (b, ["y", "z", "y"])):
            array = client.doc.get(rule_field, type=Array)
            for value in values:
                array.append(value)
        await room.reconnect(a)
        await room.reconnect(b)
        final = list(room.doc.get(rule_field, type=Array).to_py() or [])
        if deduplicated:
            assert sorted(final) == ["x", "y", "z"]
        else:
            assert sorted(final) == ["x", "y", "y", "y", "z"]
        for client in (a, b):
            assert list(client.doc.get(rule_field, type=Array).to_py() or []) == final
        assert snapshot(a.doc)[2] == snapshot(room.doc)[2]


async def test_list_values_of_the_wrong_type_are_removed(tmp_path: Path) -> None:
    async with open_driver(tmp_path, server_id=SERVER_ID, schema=LIST_SCHEMA) as room:
        a = SimClient("user0", 5)
        tags = a.doc.get("tags", type=Array)
        tags.extend(["ok", 3, "fine", True])
        review = await room.reconnect(a)
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
