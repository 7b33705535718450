"""crdt.fields.FieldIndex on raw updates built by pycrdt docs.

The server side applies each client update to its own pycrdt doc, as the room does, and indexes
the update pycrdt integrated (a doc observer's `TransactionEvent.update`), not the bytes the
client sent (`tests.support.indexed_server.IndexedServer`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pycrdt
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Map, Text

from crdt.fields import FieldIndex, MapWrite
from crdt.lib0 import write_var_string, write_var_uint
from crdt.updates import NO_VALUE, decode_update
from tests.support.indexed_server import IndexedServer, sent_values
from tests.support.semantic_clients import decode_state_vector

Id = tuple[int, int]


def fields(doc: Doc) -> Map:
    return doc.get("fields", type=Map)


def push(server: IndexedServer, client: Doc) -> list[MapWrite]:
    """The client (re)connects and sends what the server lacks (sync step 2)."""
    return server.receive(client.get_update(server.doc.get_state()))


def pull(server: IndexedServer, client: Doc) -> None:
    client.apply_update(server.doc.get_update(client.get_state()))


def flags(writes: list[MapWrite]) -> list[tuple[str, Any, bool]]:
    return [(w.key, w.value, w.concurrent) for w in writes]


@pytest.fixture
def server() -> IndexedServer:
    return IndexedServer()


def synced_pair(server: IndexedServer, a_id: int, b_id: int) -> tuple[Doc, Doc]:
    """Two clients that both saw status=DRAFT written by the first."""
    a: Doc = Doc(client_id=a_id)
    b: Doc = Doc(client_id=b_id)
    fields(a)["status"] = "DRAFT"
    assert flags(push(server, a)) == [("status", "DRAFT", False)]
    pull(server, b)
    return a, b


# -- same origin: concurrent, whoever arrives first and whoever wins ---------------------------


@pytest.mark.parametrize(("a_id", "b_id"), [(5, 9), (9, 5)], ids=["a-loses", "a-wins"])
def test_same_origin_second_arrival_is_concurrent(
    server: IndexedServer, a_id: int, b_id: int
) -> None:
    a, b = synced_pair(server, a_id, b_id)
    fields(a)["status"] = "IN_REVIEW"
    fields(b)["status"] = "ARCHIVED"
    first = push(server, a)
    second = push(server, b)
    assert [(w.concurrent, w.origin) for w in first] == [(False, (a_id, 0))]
    assert [(w.concurrent, w.origin) for w in second] == [(True, (a_id, 0))]
    winner = server.index.winner("status")
    assert server.index.value_of(winner) == fields(server.doc)["status"]
    assert winner == (max(a_id, b_id), 1 if max(a_id, b_id) == a_id else 0)


def test_incoming_write_that_loses_yjs_ordering_is_flagged(server: IndexedServer) -> None:
    big, small = synced_pair(server, 900, 7)
    fields(big)["status"] = "IN_REVIEW"
    assert flags(push(server, big)) == [("status", "IN_REVIEW", False)]
    fields(small)["status"] = "ARCHIVED"  # written without having seen IN_REVIEW
    (write,) = push(server, small)
    assert fields(server.doc)["status"] == "IN_REVIEW"  # Yjs keeps the larger client id's
    assert write.concurrent
    assert (write.key, write.id, write.origin) == ("status", (7, 0), (900, 0))
    assert write.seen == "DRAFT"  # what the loser's writer saw
    assert server.index.winner("status") == (900, 1)


def test_losing_write_arrives_without_its_value(server: IndexedServer) -> None:
    """pycrdt deletes a losing map item while integrating it, and the integrated update then
    carries it as ContentDeleted: the index takes the value from the client's own bytes."""
    big, small = synced_pair(server, 900, 7)
    fields(big)["status"] = "IN_REVIEW"
    push(server, big)
    fields(small)["status"] = "ARCHIVED"
    (write,) = push(server, small)
    assert write.value == "ARCHIVED"
    assert server.index.ingest(b"\x00\x00") == []  # nothing more to index
    kept = IndexedServer(skip_gc=True)  # with deleted content kept, the value is there
    big2, small2 = synced_pair(kept, 900, 7)
    fields(big2)["status"] = "IN_REVIEW"
    push(kept, big2)
    fields(small2)["status"] = "ARCHIVED"
    (write2,) = push(kept, small2)
    assert (write2.concurrent, write2.value) == (True, "ARCHIVED")


# -- chained writes: never concurrent ----------------------------------------------------------


def test_chained_writes_are_never_concurrent(server: IndexedServer) -> None:
    docs = [Doc(client_id=cid) for cid in (3, 3_000_000_000, 77)]
    for round_ in range(4):
        for position, doc in enumerate(docs):
            pull(server, doc)
            fields(doc)["current_step"] = round_ * 10 + position
            assert flags(push(server, doc)) == [("current_step", round_ * 10 + position, False)]
    assert fields(server.doc)["current_step"] == 32
    assert server.index.value_of(server.index.winner("current_step")) == 32


def test_offline_sequence_arriving_as_one_update_is_not_concurrent(server: IndexedServer) -> None:
    a, _ = synced_pair(server, 5, 9)
    for step in range(1, 6):
        fields(a)["current_step"] = step  # a new key, then overwrites
    fields(a)["status"] = "IN_REVIEW"
    fields(a)["status"] = "APPROVED"
    writes = push(server, a)
    assert writes, "nothing indexed"
    assert not any(w.concurrent for w in writes)
    # Superseded items merge into deleted runs; the last value of each key is reported.
    assert {w.key: w.value for w in writes if w.value is not NO_VALUE} == {
        "current_step": 5,
        "status": "APPROVED",
    }
    assert server.index.value_of(server.index.winner("current_step")) == 5
    assert server.index.value_of(server.index.winner("status")) == "APPROVED"


def test_a_clients_whole_state_from_scratch_is_not_concurrent(server: IndexedServer) -> None:
    a: Doc = Doc(client_id=12)
    for value in range(20):
        fields(a)["current_step"] = value
    writes = push(server, a)
    assert [(w.id, w.concurrent, w.value) for w in writes] == [
        ((12, 0), False, NO_VALUE),  # the deleted run (12,0)..(12,18)
        ((12, 19), False, 19),
    ]
    assert len(server.index) == 20  # every clock of the run is indexed


# -- first writes without an origin ------------------------------------------------------------


def test_first_write_to_a_new_key_is_not_concurrent(server: IndexedServer) -> None:
    a: Doc = Doc(client_id=5)
    fields(a)["category"] = "news"
    (write,) = push(server, a)
    assert (write.origin, write.concurrent, write.seen) == (None, False, NO_VALUE)


@pytest.mark.parametrize(("a_id", "b_id"), [(5, 9), (9, 5)])
def test_write_without_origin_when_the_key_has_items_is_concurrent(
    server: IndexedServer, a_id: int, b_id: int
) -> None:
    a: Doc = Doc(client_id=a_id)
    b: Doc = Doc(client_id=b_id)
    fields(a)["category"] = "news"
    fields(b)["category"] = "tech"  # b never saw a's write
    assert [w.concurrent for w in push(server, a)] == [False]
    (write,) = push(server, b)
    assert (write.origin, write.concurrent) == (None, True)
    assert server.index.value_of(server.index.winner("category")) == fields(server.doc)["category"]


def test_write_after_a_key_delete_names_the_deleted_item(server: IndexedServer) -> None:
    a: Doc = Doc(client_id=5)
    fields(a)["category"] = "news"
    push(server, a)
    del fields(a)["category"]
    assert push(server, a) == []  # a delete adds no item
    fields(a)["category"] = "tech"
    (write,) = push(server, a)
    assert (write.origin, write.concurrent) == ((5, 0), False)


# -- seen, value_of, what is indexed -----------------------------------------------------------


def test_seen_is_the_origins_value(server: IndexedServer) -> None:
    a, b = synced_pair(server, 5, 9)
    fields(b)["status"] = "IN_REVIEW"
    (write,) = push(server, b)
    assert (write.seen, write.value, write.concurrent) == ("DRAFT", "IN_REVIEW", False)
    pull(server, a)
    fields(a)["status"] = "APPROVED"
    (write,) = push(server, a)
    assert write.seen == "IN_REVIEW"
    assert server.index.value_of(write.origin) == "IN_REVIEW"
    assert server.index.value_of((123, 456)) is NO_VALUE


def test_only_fields_items_are_indexed(server: IndexedServer) -> None:
    a: Doc = Doc(client_id=5)
    a.get("title", type=Text).insert(0, "Hello")
    a.get("conflicts", type=Map)["c1"] = {"field": "x"}
    nested = Map({"inner": 1})
    a.get("other", type=Map)["k"] = nested
    fields(a)["meta"] = Map({"deep": 2})  # a nested map's own items are not `fields` keys
    writes = push(server, a)
    assert [(w.key, w.id) for w in writes] == [("meta", (5, 8))]
    assert writes[0].value is NO_VALUE
    assert len(server.index) == 1


def test_write_with_origin_in_the_middle_of_a_merged_run() -> None:
    """b synced while a was at step 5; a then overwrote 14 more times. Merged as stored updates
    are (pycrdt.merge_updates), a's old steps are one deleted run and b's write names a clock
    inside it: every clock of a run must be indexed."""
    a: Doc = Doc(client_id=5)
    b: Doc = Doc(client_id=9)
    for step in range(6):
        fields(a)["current_step"] = step
    b.apply_update(a.get_update())
    for step in range(6, 20):
        fields(a)["current_step"] = step
    fields(b)["current_step"] = 100  # origin (5, 5)
    state = pycrdt.merge_updates(a.get_update(), b.get_update(a.get_state()))
    items = decode_update(state).items
    assert [(i.id, i.length) for i in items if i.id[0] == 5] == [((5, 0), 19), ((5, 19), 1)]
    assert [i.origin for i in items if i.id[0] == 9] == [(5, 5)]
    index = FieldIndex()
    index.load(state)
    assert len(index) == 21
    merged: Doc = Doc()
    merged.apply_update(state)
    assert fields(merged)["current_step"] == 100  # b's subtree follows a's (5, 6)..: larger id
    assert index.winner("current_step") == (9, 0)
    assert index.value_of((9, 0)) == 100


def test_crafted_string_item_after_a_fields_item_is_a_write_to_its_key(
    server: IndexedServer,
) -> None:
    """A String item whose origin is a `fields` item becomes that key's value in pycrdt."""
    a: Doc = Doc(client_id=5)
    fields(a)["status"] = "DRAFT"
    push(server, a)
    out = bytearray()
    for value in (1, 1, 66, 0):  # one group, one struct, client 66, clock 0
        write_var_uint(out, value)
    out.append(0x84)  # origin + ContentString
    for value in (5, 0):
        write_var_uint(out, value)
    write_var_string(out, "evil")
    write_var_uint(out, 0)
    (write,) = server.receive(bytes(out))
    assert fields(server.doc)["status"] == "evil"
    assert (write.key, write.value, write.concurrent) == ("status", "evil", False)


# -- randomized: winner == pycrdt, flags == ground truth, load + ingest == incremental ----------


@dataclass
class Client:
    doc: Doc
    unsent: list[tuple[Write | None, bytes]] = field(default_factory=list)


@dataclass(frozen=True)
class Write:
    key: str
    value: str
    id: Id
    past: dict[int, int]


@dataclass(frozen=True)
class Script:
    client_ids: tuple[int, ...]
    steps: tuple[tuple[str, int, str], ...]  # (op, client, key); op: write, delete, push, pull


KEYS = ("a", "b")


@st.composite
def scripts(draw: st.DrawFn, *, deletes: bool) -> Script:
    ids = draw(
        st.lists(
            st.one_of(st.integers(1, 20), st.integers(1, 2**32 - 1)),
            min_size=2,
            max_size=4,
            unique=True,
        )
    )
    op_names = ["write", "write", "write", "push", "pull"] + (["delete"] if deletes else [])
    steps = draw(
        st.lists(
            st.tuples(
                st.sampled_from(op_names),
                st.integers(0, len(ids) - 1),
                st.sampled_from(KEYS),
            ),
            min_size=1,
            max_size=30,
        )
    )
    return Script(tuple(ids), tuple(steps))


class Trial:
    """Clients with offline batches against one IndexedServer, with ground truth on the side."""

    def __init__(self, script: Script) -> None:
        self.server = IndexedServer()
        self.shadow: Doc = Doc()  # the server's state, advanced one client write at a time
        self.clients = [Client(Doc(client_id=cid)) for cid in script.client_ids]
        self.by_value: dict[str, Write] = {}
        self.counter = 0
        self.script = script

    def run(self, on_push: Any) -> None:
        for op, position, key in self.script.steps:
            self.step(op, position, key, on_push)
        for position in range(len(self.clients)):
            self.step("push", position, "", on_push)
        for position in range(len(self.clients)):
            self.step("pull", position, "", on_push)

    def step(self, op: str, position: int, key: str, on_push: Any) -> None:
        client = self.clients[position]
        doc = client.doc
        if op == "write":
            past = decode_state_vector(doc.get_state())
            self.counter += 1
            value = f"{position}:{self.counter}"
            fields(doc)[key] = value
            write = Write(key, value, (doc.client_id, past.get(doc.client_id, 0)), past)
            self.by_value[value] = write
            client.unsent.append((write, doc.get_update(_encode_sv(past))))
        elif op == "delete":
            if key in (fields(doc).to_py() or {}):
                state = doc.get_state()
                del fields(doc)[key]
                client.unsent.append((None, doc.get_update(state)))
        elif op == "pull":
            pull(self.server, doc)
        elif op == "push":
            before = self.server.doc.get_update()
            update = doc.get_update(self.server.doc.get_state())
            truth = self.truth(client)
            writes = self.server.receive(update)
            changes = self.server.changes[-1] if writes else None
            on_push(self, before, update, changes, writes, truth)

    def truth(self, client: Client) -> dict[Id, bool]:
        """Per write of the batch: had its writer not seen the value the server held?"""
        concurrent: dict[Id, bool] = {}
        for write, update in client.unsent:
            if write is not None:
                held = fields(self.shadow).get(write.key)
                if held is None:
                    concurrent[write.id] = False
                else:
                    holder = self.by_value[held].id
                    concurrent[write.id] = write.past.get(holder[0], 0) <= holder[1]
            self.shadow.apply_update(update)
        client.unsent.clear()
        return concurrent

    def check_winners(self) -> None:
        index = self.server.index
        server_fields = fields(self.server.doc).to_py() or {}
        deleted = decode_update(self.server.doc.get_update()).delete_set
        for key in KEYS:
            winner = index.winner(key)
            if key in server_fields:
                assert winner is not None
                assert index.value_of(winner) == server_fields[key], key
            elif winner is not None:
                client, clock = winner
                assert any(s <= clock < s + n for s, n in deleted.get(client, [])), key


def _encode_sv(vector: dict[int, int]) -> bytes:
    out = bytearray()
    write_var_uint(out, len(vector))
    for client, clock in vector.items():
        write_var_uint(out, client)
        write_var_uint(out, clock)
    return bytes(out)


TRIALS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@TRIALS
@given(scripts(deletes=True))
def test_winner_is_pycrdts_value(script: Script) -> None:
    trial = Trial(script)
    trial.run(lambda t, *_: t.check_winners())
    replicas = [fields(c.doc).to_py() for c in trial.clients] + [fields(trial.server.doc).to_py()]
    assert all(r == replicas[-1] for r in replicas)


@TRIALS
@given(scripts(deletes=False))
def test_concurrency_flags_match_ground_truth(script: Script) -> None:
    def check(trial: Trial, before: bytes, update: bytes, changes: Any, writes: Any, truth: Any):
        reported = {w.id: w for w in writes}
        for write_id, expected in truth.items():
            if write_id in reported:
                assert reported[write_id].concurrent == expected, write_id
            else:  # inside a merged deleted run: a chain from the run's head, itself reported
                client, clock = write_id
                assert any(
                    w.id[0] == client and w.id[1] < clock and w.value is NO_VALUE for w in writes
                ), write_id
        trial.check_winners()

    Trial(script).run(check)


@TRIALS
@given(scripts(deletes=True))
def test_load_of_the_state_before_then_ingest_equals_incremental(script: Script) -> None:
    def check(trial: Trial, before: bytes, update: bytes, changes: Any, writes: Any, truth: Any):
        if changes is None:
            return
        fresh = FieldIndex()
        fresh.load(before)
        again = fresh.ingest(changes, sent_values(update))
        assert [(w.key, w.id, w.origin, w.concurrent) for w in again] == [
            (w.key, w.id, w.origin, w.concurrent) for w in writes
        ]
        for key in KEYS:
            assert fresh.winner(key) == trial.server.index.winner(key)

    Trial(script).run(check)


# a (id 5) wrote `a`, b (id 9) overwrote it; a, offline since, overwrites twice: its two new
# items lose to b's, are deleted, and in the server's full state form one run with a's first.
MERGE_EXAMPLE = Script(
    client_ids=(5, 9),
    steps=(
        ("write", 0, "a"),
        ("push", 0, ""),
        ("pull", 1, ""),
        ("write", 1, "a"),
        ("push", 1, ""),
        ("write", 0, "a"),
        ("write", 0, "a"),
        ("push", 0, ""),
    ),
)


def first_clocks(changes: bytes) -> dict[int, int]:
    """The document before `changes`: below the first clock they bring for each client."""
    below: dict[int, int] = {}
    for item in decode_update(changes).items:
        client, clock = item.id
        below[client] = min(clock, below.get(client, clock))
    return below


LAZY_LOAD_MERGE = (
    "crdt/fields.py FieldIndex.load(state, skip=ids) compares only the first id of each "
    "decoded item with `skip`: when the update's new items are merged in the full state into a "
    "run that starts at an older item of the same client (both deleted), the run's head is not "
    "in `skip`, load() indexes the new clocks as old, and ingest() drops them as already known "
    "(_integrate filters `item.id not in self._key_of`): the concurrent write is not reported. "
    "crdt/semantics.py _ingest() builds its lazy index exactly this way"
)


@TRIALS
@example(MERGE_EXAMPLE)
@given(scripts(deletes=True))
def test_lazy_load_with_skip_then_ingest_equals_incremental(script: Script) -> None:
    """What SemanticFields does on the first `fields` write after a load (server restart)."""

    def check(trial: Trial, before: bytes, update: bytes, changes: Any, writes: Any, truth: Any):
        if changes is None:
            return
        lazy = FieldIndex()
        lazy.load(trial.server.doc.get_update(), below=first_clocks(changes))
        again = lazy.ingest(changes, sent_values(update))
        assert [(w.key, w.id, w.origin, w.concurrent) for w in again] == [
            (w.key, w.id, w.origin, w.concurrent) for w in writes
        ]

    Trial(script).run(check)


def test_lazy_load_with_skip_when_nothing_merges() -> None:
    """The common case of a restart: the new item is its client's first, or stays live."""
    server = IndexedServer()
    a: Doc = Doc(client_id=5)
    b: Doc = Doc(client_id=9)
    fields(b)["goal"] = 100
    push(server, b)
    fields(a)["goal"] = 400  # never saw 100; loses to b (smaller id)
    (incremental,) = push(server, a)
    changes = server.changes[-1]
    lazy = FieldIndex()
    lazy.load(server.doc.get_update(), below=first_clocks(changes))
    assert lazy.winner("goal") == (9, 0)
    (again,) = lazy.ingest(changes)
    assert (
        (again.id, again.concurrent) == (incremental.id, incremental.concurrent) == ((5, 0), True)
    )


def test_lazy_load_with_skip_when_new_items_merge_into_an_older_run() -> None:
    server = IndexedServer()
    a: Doc = Doc(client_id=5)
    b: Doc = Doc(client_id=9)
    fields(a)["goal"] = 100
    push(server, a)
    pull(server, b)
    fields(b)["goal"] = 200
    push(server, b)
    fields(a)["goal"] = 300  # a has not seen 200
    fields(a)["goal"] = 400
    update = a.get_update(server.doc.get_state())
    incremental = server.receive(update)
    # The deleted run 300 -> 400 is split again with the values a sent: two chained writes.
    assert [(w.id, w.concurrent, w.leaf) for w in incremental] == [
        ((5, 1), True, False),
        ((5, 2), True, True),
    ]
    assert incremental[-1].value == 400
    changes = server.changes[-1]
    state_items = decode_update(server.doc.get_update()).items
    assert ((5, 0), 3) in [(i.id, i.length) for i in state_items]  # one run: old + new clocks
    lazy = FieldIndex()
    lazy.load(server.doc.get_update(), below=first_clocks(changes))
    again = lazy.ingest(changes, sent_values(update))
    assert [(w.id, w.concurrent) for w in again] == [((5, 1), True), ((5, 2), True)]


# -- a key set many times: concurrent writes near and far from the winner -----------------------


@pytest.mark.parametrize("behind", [1, 3, 63, 64, 65, 150])
@pytest.mark.parametrize("late_id", [3, 10**9], ids=["late-loses", "late-wins"])
def test_concurrent_write_deep_in_a_long_history(
    server: IndexedServer, behind: int, late_id: int
) -> None:
    """A key written 200 times in turn by two clients, then a write whose writer saw the
    value `behind` writes ago: near the winner (found by climbing from it) or far above it
    (found again from the root), winning or losing Yjs's ordering, the winner is pycrdt's."""
    a: Doc = Doc(client_id=1_000)
    b: Doc = Doc(client_id=2_000)
    late: Doc = Doc(client_id=late_id)
    for n in range(200):
        writer, reader = (a, b) if n % 2 == 0 else (b, a)
        fields(writer)["category"] = f"v{n}"
        push(server, writer)
        pull(server, reader)
        if n == 199 - behind:
            pull(server, late)
    fields(late)["category"] = "late"
    writes = push(server, late)
    assert [w.concurrent for w in writes] == [True]
    winner = server.index.winner("category")
    assert winner is not None
    assert server.index.value_of(winner) == fields(server.doc)["category"]
    # one more write on top of whatever won is not concurrent, and wins
    pull(server, a)
    fields(a)["category"] = "after"
    assert [w.concurrent for w in push(server, a)] == [False]
    assert server.index.value_of(server.index.winner("category")) == "after"


class _CountingIndex(FieldIndex):
    """Counts how often the winner is found again from the root (a walk of the key's history)."""

    def __init__(self) -> None:
        super().__init__()
        self.descents = 0

    def _descend(self, key: str) -> Id:
        self.descents += 1
        return super()._descend(key)


def test_writes_building_on_a_losing_write_are_settled_without_walking_the_history(
    server: IndexedServer,
) -> None:
    """Writers racing on one key (bench scenario S5): a write whose origin lost Yjs's ordering
    is off the winner's path, and the index knows that from the depths of the origin and the
    path, not by climbing to the root and walking the key's history down again."""
    counting = server.index = _CountingIndex()
    a: Doc = Doc(client_id=1_000)
    b: Doc = Doc(client_id=2_000)
    for n in range(150):  # a history deeper than the climb's bound
        writer, reader = (a, b) if n % 2 == 0 else (b, a)
        fields(writer)["category"] = f"v{n}"
        push(server, writer)
        pull(server, reader)
    low: Doc = Doc(client_id=3)  # loses every race with `a`
    for n in range(20):
        pull(server, a)
        pull(server, low)
        fields(a)["category"] = f"a{n}"
        fields(low)["category"] = f"low{n}"
        assert [w.concurrent for w in push(server, a)] == [False]
        assert [w.concurrent for w in push(server, low)] == [True]  # loses to a's
        fields(low)["category"] = f"low{n}-again"  # built on its own losing write
        assert [w.concurrent for w in push(server, low)] == [True]
        winner = server.index.winner("category")
        assert winner is not None
        assert server.index.value_of(winner) == fields(server.doc)["category"] == f"a{n}"
    assert counting.descents == 0
