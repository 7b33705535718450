"""The sync core (server/sync/core.py, issue 20 point 1) driven by plain function calls: no
event loop, no store, no connection, no gate. Editors are pycrdt docs; what the core returns
is read as the room's shell reads it (writes to commit, messages tagged with the ticket they
wait for, a verdict)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from pycrdt import Doc, Map, Text

from bench.hostile import missing_clocks_deletes
from crdt.awareness import AwarenessEntry, encode_awareness_update
from crdt.errors import MalformedMessage, NonJsonValue, UndecodableUpdate
from crdt.heldback import HELD_BYTES, PROBE_EVERY_RUNS, RETRY_BUDGET, SHED_PAUSE_FACTOR
from crdt.origins import SERVER_USER, ClientOrigin
from crdt.protocol import Awareness, SyncStep2, Update, WriteAck, decode_message
from crdt.schema import DEFAULT_SCHEMA
from server.sync.core import EVERYONE, NOTHING, OK, OTHERS, SENDER, Outcome, RoomCore
from server.sync.journal import RoomJournal
from tests.support.phantom import PHANTOM, client_11_typing

ALICE = ClientOrigin("alice", "s-alice")
BOB = ClientOrigin("bob", "s-bob")
NOW = 1_700_000_000.0


def open_core() -> RoomCore:
    core = RoomCore(DEFAULT_SCHEMA, clock=lambda: NOW, new_id=lambda: "c1")
    core.open(Doc(client_id=1), 0, semantic_fields=True, journal=None)
    return core


def edit(doc: Doc, change: Callable[[Doc], None]) -> bytes:
    """What `change` adds to `doc`: the update an editor sends."""
    before = doc.get_state()
    change(doc)
    return doc.get_update(before)


def type_text(text: str) -> Callable[[Doc], None]:
    def change(doc: Doc) -> None:
        body = doc.get("body", type=Text)
        body += text

    return change


def text_of(update: bytes) -> str:
    doc: Doc = Doc()
    doc.apply_update(update)
    return str(doc.get("body", type=Text))


def test_no_event_loop_runs_here() -> None:
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()


def test_a_relay_waits_for_its_ticket_and_skips_its_sender() -> None:
    core = open_core()
    alice: Doc = Doc(client_id=10)
    outcome = core.apply_run(ALICE, [edit(alice, type_text("hello"))])
    assert outcome.verdict is OK and outcome.in_review is None and outcome.rules is None
    (write,) = outcome.writes
    assert (write.version, write.ticket, write.user, write.session) == (1, 1, "alice", "s-alice")
    assert write.client_id == 10 and write.created_at == NOW
    (relay,) = outcome.messages
    assert relay.to is OTHERS and relay.after == write.ticket and relay.update == write.data
    assert decode_message(relay.frame) == Update(write.data)
    assert (core.version, core.accepted) == (1, 1)
    second = core.apply_run(ALICE, [edit(alice, type_text("!"))])
    assert [m.after for m in second.messages] == [w.ticket for w in second.writes] == [2]


def test_a_joiners_sync_step_2_waits_for_the_update_not_committed_yet() -> None:
    core = open_core()
    alice: Doc = Doc(client_id=10)
    accepted = core.apply_run(ALICE, [edit(alice, type_text("pending"))])
    (ticket,) = [write.ticket for write in accepted.writes]
    joined = core.sync_step1(Doc().get_state())
    assert joined.writes == () and joined.verdict is OK
    (reply,) = joined.messages
    # It holds the pending text, so it is released only once that ticket is committed.
    assert reply.to is SENDER and reply.after == ticket
    message = decode_message(reply.frame)
    assert isinstance(message, SyncStep2) and text_of(message.update) == "pending"


def test_a_write_ack_waits_for_everything_accepted() -> None:
    core = open_core()
    alice: Doc = Doc(client_id=10)
    core.apply_run(ALICE, [edit(alice, type_text("a"))])
    core.apply_run(ALICE, [edit(alice, type_text("b"))])
    (ack,) = core.write_ack(WriteAck(b"7")).messages
    assert ack.to is SENDER and ack.after == 2 and decode_message(ack.frame) == WriteAck(b"7")


def test_an_unreadable_semantic_write_is_refused_with_nothing_to_commit_or_relay() -> None:
    core = open_core()
    mallory: Doc = Doc(client_id=66)

    def put_a_map(doc: Doc) -> None:
        doc["fields"] = fields = Map()
        fields["category"] = Map({"nested": 1})

    outcome = core.apply_run(BOB, [edit(mallory, put_a_map)])
    assert outcome.writes == () and outcome.messages == () and outcome.rules is None
    assert isinstance(outcome.verdict.refused, NonJsonValue)
    # The doc took it before the rules could read it: it is dropped, reloaded from the store.
    assert outcome.verdict.discard is not None and "user=bob" in outcome.verdict.discard
    assert (core.version, core.accepted) == (0, 0)


def test_a_remote_committed_update_is_relayed_to_everyone_as_durable() -> None:
    core = open_core()
    elsewhere: Doc = Doc(client_id=20)
    update = edit(elsewhere, type_text("from another instance"))
    outcome = core.apply_committed(update, 41, user="carol")
    assert outcome.writes == () and outcome.verdict is OK
    (relay,) = outcome.messages
    assert relay.to is EVERYONE and relay.after == 0
    assert relay.update is not None and text_of(relay.update) == "from another instance"
    assert (core.version, core.accepted) == (41, 0)  # numbered by the store, no ticket
    assert core.apply_committed(update, 41) == Outcome()  # a duplicate relays nothing


def test_awareness_reveals_no_content_and_is_not_gated() -> None:
    core = open_core()
    update = encode_awareness_update([AwarenessEntry(10, 1, '{"name":"alice"}')])
    applied = core.apply_awareness("alice's connection", update)
    assert [entry.client_id for entry in applied.entries] == [10]
    relay = core.awareness(update)
    assert relay.to is OTHERS and relay.after is None
    (everyone,) = core.query_awareness().messages
    assert everyone.to is SENDER and everyone.after is None
    assert isinstance(decode_message(everyone.frame), Awareness)
    assert [m.after for m in core.join(sync_on_join=True)] == [None, None]
    assert core.leave("alice's connection") is not None


@pytest.mark.parametrize("update", [b"\xff\xff\xff", b"\x01"], ids=["garbage", "truncated"])
def test_an_undecodable_update_is_refused(update: bytes) -> None:
    core = open_core()
    outcome = core.apply_run(ALICE, [update])
    assert outcome.writes == () and outcome.messages == ()
    assert isinstance(outcome.verdict.refused, UndecodableUpdate)
    assert outcome.verdict.discard is None  # yrs integrated nothing: the doc stands


def test_the_updates_before_an_undecodable_one_are_kept() -> None:
    core = open_core()
    alice: Doc = Doc(client_id=10)
    outcome = core.apply_run(ALICE, [edit(alice, type_text("kept")), b"\xff\xff"])
    assert [write.version for write in outcome.writes] == [1]
    assert isinstance(outcome.verdict.refused, UndecodableUpdate)


def test_a_bad_state_vector_is_refused() -> None:
    outcome = open_core().sync_step1(b"\xff\xff\xff\xff")
    assert outcome.messages == () and isinstance(outcome.verdict.refused, MalformedMessage)


def test_a_semantic_write_waits_for_its_review_turn_then_is_admitted() -> None:
    core = open_core()
    core.reviews_in_turn = True
    alice: Doc = Doc(client_id=10)

    def set_category(doc: Doc) -> None:
        doc["fields"] = fields = Map()
        fields["category"] = "news"

    outcome = core.apply_run(ALICE, [edit(alice, set_category)])
    assert outcome.writes == () and outcome.messages == () and outcome.in_review is not None
    admitted = core.admit(outcome.in_review)
    assert [w.ticket for w in admitted.writes] == [m.after for m in admitted.messages] == [1]


def test_a_server_write_goes_to_everyone_and_one_failing_half_way_discards_the_doc() -> None:
    core = open_core()

    def note(doc: Doc) -> None:
        doc.get("body", type=Text).insert(0, "restored")

    outcome = core.write_as_server("restore", note)
    (write,) = outcome.writes
    assert (write.user, write.session, write.ticket) == (SERVER_USER, "restore", 1)
    assert [(m.to, m.after) for m in outcome.messages] == [(EVERYONE, 1)]

    def half_way(doc: Doc) -> None:
        note(doc)
        raise ValueError("broke")

    failed = core.write_as_server("restore", half_way)
    assert failed.writes == () and failed.verdict.discard is not None
    assert isinstance(failed.verdict.error, ValueError)
    with pytest.raises(ValueError, match="nothing"):  # nothing changed: it just raises

        def nothing(doc: Doc) -> None:
            raise ValueError("nothing")

        core.write_as_server("restore", nothing)


# -- the run's transaction (one pycrdt wrapper kept per doc, the state read inside it) ---------


@pytest.mark.parametrize("keystrokes", [0, 40], ids=["short run", "run of 43"])
def test_a_run_whose_clocks_leave_a_gap_discards_the_doc(keystrokes: int) -> None:
    """The gap check reads the state vector inside the run's transaction: a run of several
    updates with a gap is still caught, short (diffed update by update) or long (headers)."""
    core = open_core()
    hel, l3 = client_11_typing()
    alice: Doc = Doc(client_id=10)
    keys = [edit(alice, type_text("k")) for _ in range(keystrokes)]
    outcome = core.apply_run(ALICE, [*keys, hel, PHANTOM, l3])
    assert outcome.writes == () and outcome.messages == ()
    assert outcome.verdict.discard is not None and "gap" in outcome.verdict.discard


def test_an_honest_run_after_a_failed_one_is_applied_in_a_fresh_transaction() -> None:
    """The kept transaction is left closed by a run that raised inside it (yrs refused an
    update) and by one that completed: the next runs apply, each its own change."""
    core = open_core()
    alice: Doc = Doc(client_id=10)
    refused = core.apply_run(ALICE, [b"\xff\xff\xff"])
    assert isinstance(refused.verdict.refused, UndecodableUpdate)
    first = core.apply_run(ALICE, [edit(alice, type_text("a")), edit(alice, type_text("b"))])
    second = core.apply_run(ALICE, [edit(alice, type_text("c"))])
    assert [w.version for w in (*first.writes, *second.writes)] == [1, 2]
    assert text_of(first.writes[0].data) == "ab"
    assert str(core.doc.get("body", type=Text)) == "abc"
    assert core.doc._txn is None  # no transaction left open on the doc


def test_the_runs_transaction_follows_the_doc_across_close_and_open() -> None:
    core = open_core()
    alice: Doc = Doc(client_id=10)
    core.apply_run(ALICE, [edit(alice, type_text("old"))])
    core.close()
    fresh: Doc = Doc(client_id=2)
    core.open(fresh, 7, semantic_fields=False, journal=None)
    bob: Doc = Doc(client_id=20)
    outcome = core.apply_run(BOB, [edit(bob, type_text("new")), edit(bob, type_text("!"))])
    assert [w.version for w in outcome.writes] == [8]
    assert str(fresh.get("body", type=Text)) == "new!"


def type_title(text: str) -> Callable[[Doc], None]:
    def change(doc: Doc) -> None:
        title = doc.get("title", type=Text)
        title += text

    return change


def test_a_doc_holding_back_costly_deletes_is_replaced_by_one_without_them() -> None:
    """yrs retries every held-back delete on each update after (crdt/heldback.py): past the
    budget the core sheds them. The copy keeps the content, the clocks, the semantic rules'
    record of who wrote each field, the journal's counts, and holds back nothing: deletes of
    a client's clocks that were held do not hit its text when it comes."""
    core = RoomCore(DEFAULT_SCHEMA, clock=lambda: NOW, new_id=lambda: "c1")
    doc: Doc = Doc(client_id=1)
    journal = RoomJournal("d-held", doc, DEFAULT_SCHEMA, on_burst_open=lambda: None)
    core.open(doc, 0, semantic_fields=True, journal=journal)
    alice: Doc = Doc(client_id=10)

    def set_category(doc: Doc) -> None:
        doc["fields"] = fields = Map()
        fields["category"] = "news"

    core.apply_run(ALICE, [edit(alice, type_title("kept")), edit(alice, set_category)])
    assert core.shed_held_back() is None, "nothing held back: the doc stays"
    assert core.doc is doc
    core.apply_run(ALICE, [missing_clocks_deletes(500_000, owner=4242)])  # ~7 ms a retry
    state = core.doc.get_state()

    shed = core.shed_held_back()

    assert shed is not None and shed.retry_seconds > RETRY_BUDGET
    assert core.doc is not doc and core.doc.client_id == 1
    assert core.doc.get_state() == state
    assert str(core.doc.get("title", type=Text)) == "kept"
    assert core.semantics is not None and core.semantics.fields.to_py() == {"category": "news"}
    assert core.semantics._authors.keys() == {"category"}  # who wrote it: no doc holds that
    owner: Doc = Doc(client_id=4242)
    outcome = core.apply_run(BOB, [edit(owner, type_title(" hello world"))])
    assert str(core.doc.get("title", type=Text)) == "kept hello world"
    assert [w.version for w in outcome.writes] == [2]  # the held deletes made no version
    # the journal counts the copy's text: bob's burst holds the 12 characters typed since
    bursts = {(e.user, e.data["inserted"]) for e in journal.bursts.close_all()}
    assert bursts == {("alice", 4), ("bob", 12)}
    bob: Doc = Doc(client_id=20)
    bob.apply_update(core.doc.get_update())

    def recategorize(doc: Doc) -> None:
        doc.get("fields", type=Map)["category"] = "sport"

    review = core.apply_run(BOB, [edit(bob, recategorize)])
    assert review.verdict is OK and [w.version for w in review.writes] == [3]
    assert core.semantics.fields.to_py() == {"category": "sport"}


def held_for_a_missing_origin(size: int) -> tuple[bytes, bytes]:
    """(the origin: one character of client 1; `size` characters of client 2 typed after
    it): the second waits in yrs's pending store until the first comes."""
    first: Doc = Doc(client_id=1)
    origin = edit(first, type_title("x"))
    second: Doc = Doc(client_id=2)
    second.apply_update(origin)
    return origin, edit(second, type_title("y" * size))


def test_runs_that_leave_structs_held_past_the_budget_are_shed_with_them() -> None:
    """A struct whose origin the doc lacks costs yrs memory (~190 bytes each) and no retry
    time the probe would see: the gap check weighs the runs that leave some (`HELD_BYTES`),
    and past that the core sheds them. When their origin comes, they stay out."""
    core = open_core()
    origin, held = held_for_a_missing_origin(HELD_BYTES)
    assert core.apply_run(ALICE, [held]) is NOTHING  # nothing integrated, nothing to store
    assert core.held_bytes == len(held) > HELD_BYTES
    assert core.runs_unprobed == PROBE_EVERY_RUNS  # the shell probes after this run

    shed = core.shed_held_back()

    assert shed is not None and shed.held_bytes == len(held) and core.held_bytes == 0
    outcome = core.apply_run(BOB, [origin])
    assert str(core.doc.get("title", type=Text)) == "x"
    assert [text_of_title(w.data) for w in outcome.writes] == ["x"]


def test_structs_held_below_the_budget_stay_until_their_origin_comes() -> None:
    core = open_core()
    origin, held = held_for_a_missing_origin(10)
    core.apply_run(ALICE, [held])
    assert 0 < core.held_bytes < HELD_BYTES and core.runs_unprobed == 0
    assert core.shed_held_back() is None
    core.apply_run(BOB, [origin])
    assert str(core.doc.get("title", type=Text)) == "x" + "y" * 10


def text_of_title(update: bytes) -> str:
    doc: Doc = Doc()
    doc.apply_update(update)
    return str(doc.get("title", type=Text))


def test_a_copy_waits_for_a_pause_fifty_times_the_last_ones() -> None:
    """A copy is linear in the draft: without a pause, a writer of a large draft could have
    it copied (136 ms for 7.4 MB) every two runs of held deletes. Copies take at most 2 % of
    the event loop; meanwhile what is held stays, and is shed once the pause is over."""
    now = [1_000.0]
    core = RoomCore(DEFAULT_SCHEMA, clock=lambda: NOW, monotonic=lambda: now[0])
    core.open(Doc(client_id=1), 0, semantic_fields=False, journal=None)
    core.apply_run(ALICE, [missing_clocks_deletes(500_000, owner=4242)])
    first = core.shed_held_back()
    assert first is not None and first.copy_seconds > 0
    held = core.doc
    core.apply_run(ALICE, [missing_clocks_deletes(500_000, owner=4343)])

    now[0] += SHED_PAUSE_FACTOR * first.copy_seconds * 0.99
    assert core.shed_held_back() is None and core.doc is held, "copied within the pause"
    now[0] += SHED_PAUSE_FACTOR * first.copy_seconds * 0.02
    second = core.shed_held_back()
    assert second is not None and second.retry_seconds > RETRY_BUDGET and core.doc is not held
