"""The review's way for the commonest `fields` write (issue 24 point 1, S5): one editor sets a
key whose value it had seen (`SemanticFields._review_sequential`, `FieldIndex.
ingest_sequential`, `crdt.updates.read_overwrite`).

It must judge exactly as the full review does: every test here compares it with the full
review or the full decoder on the same input, and checks that what it must not take (a
concurrent write, a value that is not a scalar, anything unreadable) still goes the full way
and is refused where the full way refuses it.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Map, Subscription, TransactionEvent, merge_updates

from crdt.errors import NonJsonValue, UndecodableUpdate
from crdt.fields import FieldIndex
from crdt.lib0 import write_var_bytes, write_var_string, write_var_uint
from crdt.origins import ClientOrigin, ServerOrigin
from crdt.schema import DEFAULT_SCHEMA
from crdt.semantics import Review, SemanticFields
from crdt.updates import ItemHeader, decode_update, read_overwrite
from tests.support.mutations import mutated

ORIGIN = ClientOrigin("alice", "s1")
SERVER_ID = 4_000_000_000


def fields(doc: Doc) -> Map:
    return doc.get("fields", type=Map)


class FullOnly(SemanticFields):
    """The oracle: the same rules with every `fields` write reviewed in full."""

    def _review_sequential(self, *args: Any) -> bool:
        return False


class Counting(SemanticFields):
    """Counts the writes the sequential way took, and the full reviews."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sequential = 0
        self.full = 0

    def _review_sequential(self, *args: Any) -> bool:
        taken = super()._review_sequential(*args)
        self.sequential += taken
        return taken

    def _review_fields(self, *args: Any) -> None:
        self.full += 1
        super()._review_fields(*args)


class Server:
    """A server doc that applies client updates and the rules' writes as the room does
    (`Room._admit`, `_apply_review`, `write_as_server`), reviewing with `kind`."""

    def __init__(self, kind: type[SemanticFields]) -> None:
        self.doc: Doc = Doc(client_id=SERVER_ID)
        ids = itertools.count()
        self.semantics = kind(self.doc, DEFAULT_SCHEMA, new_id=lambda: str(next(ids)))
        self._changes: bytes | None = None
        self._subscription: Subscription = self.doc.observe(self._capture)

    def _capture(self, event: TransactionEvent) -> None:
        self._changes = event.update

    def receive(self, update: bytes, now: float) -> tuple[Review | None, bytes | None]:
        """The review of a client update, and the rules' write it caused (None: none)."""
        self._changes = None
        with self.doc.transaction(origin=ORIGIN):
            self.doc.apply_update(update)
        changes, self._changes = self._changes, None
        if changes is None or not self.semantics.touched:
            return None, None
        review = self.semantics.review(changes, update, ORIGIN, now=now)
        if not review.writes_doc:
            return review, None
        with self.doc.transaction(origin=ServerOrigin("rules")):
            for key, value in review.values.items():
                self.semantics.fields[key] = value
            for key, value in review.reasserted.items():
                self.semantics.fields[key] = value
            for key in review.removals:
                del self.semantics.fields[key]
            for conflict_id, entry in review.conflicts.items():
                self.semantics.conflicts[conflict_id] = entry
        written, self._changes = self._changes, None
        assert written is not None
        self.semantics.absorb(written)
        return review, written


def sequential_updates(count: int, value: Callable[[int], Any]) -> list[bytes]:
    """`count` sets of `category` by three editors in turn, each having seen the last one,
    as editors send them (the update of each transaction: Yjs's `update` event)."""
    editors = [Doc(client_id=cid) for cid in (7, 2**31 + 5, 300)]
    sent: list[bytes] = []
    subscriptions = [e.observe(lambda event: sent.append(event.update)) for e in editors]
    updates = []
    for n in range(count):
        editor = editors[n % len(editors)]
        sent.clear()
        fields(editor)["category"] = value(n)
        (update,) = sent
        updates.append(update)
        for other in editors:
            if other is not editor:
                other.apply_update(update)
    for editor, subscription in zip(editors, subscriptions, strict=True):
        editor.unobserve(subscription)
    return updates


# -- read_overwrite: what decode_update reads, or nothing ---------------------------------------


def changes_of(updates: list[bytes]) -> list[bytes]:
    """What a server doc reports for each update, in turn (the bytes the review reads)."""
    server = Server(FullOnly)
    reported = []
    for update in updates:
        with server.doc.transaction(origin=ORIGIN):
            server.doc.apply_update(update)
        assert server._changes is not None
        reported.append(server._changes)
        server._changes = None
    return reported


@pytest.mark.parametrize("value", ["news", "", "é€😀", 3.5, -2.0, True, False, None], ids=repr)
def test_an_overwrite_reads_as_decode_update_reads_it(value: Any) -> None:
    updates = sequential_updates(3, lambda n: value if n == 2 else f"v{n}")
    for update in (updates[2], changes_of(updates)[2]):
        item = read_overwrite(update)
        assert item is not None
        assert decode_update(update).items == [item]
        assert item.value == value and item.origin is not None


def encode_item(
    client: int, clock: int, info: int, origin: tuple[int, int], content: bytes, deletes: bytes
) -> bytes:
    out = bytearray()
    for number in (1, 1, client, clock):
        write_var_uint(out, number)
    out.append(info)
    write_var_uint(out, origin[0])
    write_var_uint(out, origin[1])
    return bytes(out) + content + deletes


ONE_DELETE = bytes([1, 7, 1, 0, 1])  # client 7: clock 0, one clock
STRING_A = bytes([1, 119, 1]) + b"a"  # Any content: one value, a string "a"


@pytest.mark.parametrize(
    ("update", "why"),
    [
        (
            bytes([1, 1, 5, 0, 0x28, 1, 6])
            + b"fields"
            + bytes([8])
            + b"category"
            + STRING_A[0:]
            + bytes([0]),
            "no origin: the first write of a key names its parent",
        ),
        (encode_item(5, 0, 0x84, (7, 0), bytes([1, 97]), ONE_DELETE), "String content (text)"),
        (encode_item(5, 0, 0xC8, (7, 0), STRING_A, ONE_DELETE), "a right origin"),
        (
            encode_item(5, 0, 0x88, (7, 0), bytes([2, 119, 1, 97, 119, 1, 98]), ONE_DELETE),
            "two values",
        ),
        (encode_item(5, 0, 0x88, (7, 0), bytes([1, 117, 1, 125, 1]), ONE_DELETE), "an array"),
        (encode_item(5, 0, 0x88, (7, 0), bytes([1, 118, 0]), ONE_DELETE), "an object"),
        (encode_item(5, 0, 0x88, (7, 0), bytes([1, 116, 1, 0]), ONE_DELETE), "binary"),
        (
            encode_item(5, 0, 0x88, (7, 0), bytes([1, 119, 2, 0xC3, 0x28]), ONE_DELETE),
            "invalid UTF-8",
        ),
        (encode_item(5, 0, 0x88, (7, 0), STRING_A, ONE_DELETE)[:-1], "truncated"),
        (encode_item(5, 0, 0x88, (7, 0), STRING_A, ONE_DELETE) + b"\x00", "a byte left over"),
        (encode_item(5, 0, 0x88, (7, 0), STRING_A, bytes([1, 7, 1, 1, 1])), "another deleted"),
        (encode_item(5, 0, 0x88, (7, 0), STRING_A, bytes([1, 7, 1, 0, 2])), "two deleted"),
        (encode_item(5, 0, 0x88, (7, 0), STRING_A, bytes([0])), "nothing deleted"),
        (
            encode_item(
                5,
                0,
                0x88,
                (7, 0),
                STRING_A,
                bytes([1]) + bytes([0xFF] * 7 + [0x10]) + bytes([1, 0, 1]),
            ),
            "a delete set naming a client past 2**53 - 1",
        ),
        (
            bytes([1, 1, 5, 0, 0x88, *[0x80] * 7, 0x10, 0]) + STRING_A + ONE_DELETE,
            "an origin past 2**53 - 1",
        ),
        (
            bytes([1, 2]) + encode_item(5, 0, 0x88, (7, 0), STRING_A, ONE_DELETE)[2:],
            "two structs announced",
        ),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_anything_else_is_left_to_decode_update(update: bytes, why: str) -> None:
    assert read_overwrite(update) is None, why


def test_an_unreadable_delete_set_is_unreadable_to_both() -> None:
    update = encode_item(
        5, 0, 0x88, (7, 0), STRING_A, bytes([1]) + bytes([0xFF] * 7 + [0x10]) + bytes([1, 0, 1])
    )
    assert read_overwrite(update) is None
    with pytest.raises(UndecodableUpdate):
        decode_update(update)


def test_mutated_updates_read_alone_only_as_decode_update_reads_them() -> None:
    """Bytes flipped, cut or added anywhere in real updates: whenever `read_overwrite` answers,
    `decode_update` reads the same one item (and does not fail)."""
    rng = random.Random(24)
    seeds = [
        *sequential_updates(4, lambda n: f"v{n}"),
        *changes_of(sequential_updates(4, lambda n: [1.5, True, None, "x"][n])),
    ]
    answered = 0
    for _ in range(4000):
        data = mutated(rng.choice(seeds), rng)
        item = read_overwrite(data)
        if item is not None:
            answered += 1
            assert decode_update(data).items == [item], data.hex()
    assert answered > 50  # the mutations left many readable: the comparison was made


# -- FieldIndex.ingest_sequential ---------------------------------------------------------------


def test_a_concurrent_write_is_not_ingested_sequentially() -> None:
    index = FieldIndex()
    a, b = Doc(client_id=1), Doc(client_id=2)
    fields(a)["category"] = "agreed"
    index.ingest(a.get_update())
    b.apply_update(a.get_update())
    before = b.get_state()
    fields(b)["category"] = "b's"  # b saw "agreed"
    b_update = b.get_update(before)
    before = a.get_state()
    fields(a)["category"] = "a's"  # a did not see b's write
    a_update = a.get_update(before)
    index.ingest(b_update)
    item = read_overwrite(a_update)
    assert item is not None and item.origin == (1, 0)
    state = dict(vars(index))
    assert index.ingest_sequential("category", item) is None
    assert vars(index) == state  # unchanged
    (write,) = index.ingest(a_update)
    assert write.concurrent


def test_a_write_known_already_or_to_another_key_is_not_ingested_sequentially() -> None:
    updates = sequential_updates(3, lambda n: f"v{n}")
    index = FieldIndex()
    for update in updates[:2]:
        index.ingest(update)
    item = read_overwrite(updates[1])
    assert item is not None
    assert index.ingest_sequential("category", item) is None  # indexed already
    item = read_overwrite(updates[2])
    assert item is not None
    assert index.ingest_sequential("status", item) is None  # not that key's winner
    (write,) = index.ingest(updates[2])
    assert not write.concurrent


# -- SemanticFields: the sequential way judges as the full review -------------------------------

VALUES: dict[str, list[Any]] = {
    "category": ["news", "sport", 5, None, True],  # lww string: a number or null is rejected
    "current_step": [1.0, 2.0, 3.0, 7.0, "two", 2.5],  # max integer
    "status": ["DRAFT", "IN_REVIEW", "APPROVED", "PUBLISHED", "ARCHIVED", 3.0],  # transition
    "goal_amount": [10.0, 20.5, 30.0, "much"],  # manual number: concurrent writes conflict
    "deadline": ["2026-12-24", "soon"],  # manual date
    "free": ["x", 1.0, False, None],  # outside the schema: Yjs's value stands
}
CLIENT_IDS = (3, 11, 2**31 + 9, 2**32 - 1)


@dataclass(frozen=True)
class Step:
    op: str  # write, push, pull, push_merged
    client: int
    key: str
    value: int  # an index into VALUES[key]


steps = st.lists(
    st.builds(
        Step,
        st.sampled_from(["write", "write", "push", "pull", "push_merged", "live", "live", "live"]),
        st.integers(0, len(CLIENT_IDS) - 1),
        st.sampled_from(sorted(VALUES)),
        st.integers(0, 9),
    ),
    min_size=1,
    max_size=40,
)


class Twins:
    """Editors whose every update goes to two servers: one with the sequential way, one that
    reviews everything in full; what each answers and writes must be the same."""

    def __init__(self) -> None:
        self.fast = Server(Counting)
        self.full = Server(FullOnly)
        self.editors = [Doc(client_id=cid) for cid in CLIENT_IDS]
        self.unsent: list[list[bytes]] = [[] for _ in CLIENT_IDS]
        self.now = 1_000_000.0

    def write(self, position: int, key: str, value: Any) -> None:
        editor = self.editors[position]
        before = editor.get_state()
        fields(editor)[key] = value
        self.unsent[position].append(editor.get_update(before))

    def send(self, update: bytes) -> None:
        self.now += 1
        fast, fast_written = self.fast.receive(update, self.now)
        full, full_written = self.full.receive(update, self.now)
        assert fast == full
        # Written alike (a conflict's entry may encode its keys in another order: yrs's maps)
        assert (fast_written is None) == (full_written is None)
        self.check_same()

    def check_same(self) -> None:
        for root in ("fields", "conflicts"):
            fast, full = self.fast.doc.get(root, type=Map), self.full.doc.get(root, type=Map)
            assert fast.to_py() == full.to_py()
        assert self.fast.semantics._values == self.full.semantics._values

    def push(self, position: int, *, merged: bool = False) -> None:
        unsent, self.unsent[position] = self.unsent[position], []
        if merged and len(unsent) > 1:
            unsent = [merge_updates(*unsent)]
        for update in unsent:
            self.send(update)

    def pull(self, position: int) -> None:
        editor = self.editors[position]
        editor.apply_update(self.fast.doc.get_update(editor.get_state()))

    def run(self, script: list[Step]) -> None:
        for step in script:
            values = VALUES[step.key]
            value = values[step.value % len(values)]
            if step.op == "write":
                self.write(step.client, step.key, value)
            elif step.op == "live":  # write as a connected editor: sent at once, then synced
                self.pull(step.client)
                self.write(step.client, step.key, value)
                self.push(step.client)
                for position in range(len(self.editors)):
                    self.pull(position)
            elif step.op == "pull":
                self.pull(step.client)
            else:
                self.push(step.client, merged=step.op == "push_merged")
        for position in range(len(self.editors)):
            self.push(position)
        fast_index, full_index = self.fast.semantics._index, self.full.semantics._index
        assert (fast_index is None) == (full_index is None)
        if fast_index is not None and full_index is not None:
            assert vars(fast_index) == vars(full_index)  # the same runs, links, winners...
        self.check_same()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_the_sequential_way_answers_as_the_full_review(script: list[Step]) -> None:
    Twins().run(script)


def test_sequential_writes_take_the_sequential_way() -> None:
    twins = Twins()
    for n in range(30):
        twins.run([Step("live", n % 3, "category", n)])
    counting = twins.fast.semantics
    assert isinstance(counting, Counting)
    # The first write of a key names its parent (a full review, which builds the index).
    assert counting.full == 1
    assert counting.sequential == 29


def test_a_concurrent_write_takes_the_full_review_and_its_rule() -> None:
    """`current_step` is `max`: a concurrent lower value that wins Yjs's ordering is put
    back to the higher one, which only the full review (concurrency known) can decide."""
    twins = Twins()
    twins.run([Step("live", 0, "current_step", 0)])  # 1, seen by all
    twins.write(1, "current_step", 7.0)
    twins.write(3, "current_step", 2.0)  # the largest client id: its write wins Yjs's order
    twins.push(1)  # 7 had seen 1: sequential, it stands
    counting = twins.fast.semantics
    assert isinstance(counting, Counting)
    assert counting.sequential == 1
    review, written = twins.fast.receive(twins.unsent[3].pop(), now=2.0)  # 2 had seen 1 only
    assert counting.sequential == 1 and counting.full == 2
    assert review is not None and review.values == {"current_step": 7.0}
    assert written is not None and fields(twins.fast.doc)["current_step"] == 7.0


def sequential_crafted(value_content: bytes) -> tuple[Server, bytes]:
    """A server holding `category` = "a" from editor 7, and an update shaped as its next
    sequential write (one item, origin the winner, one Any value) with `value_content`."""
    server = Server(Counting)
    editor = Doc(client_id=7)
    fields(editor)["category"] = "a"
    review, _ = server.receive(editor.get_update(), now=1.0)
    assert review is not None and not review.rejected
    out = bytearray([1, 1])
    write_var_uint(out, 9)
    write_var_uint(out, 0)
    out.append(0xA8)
    write_var_uint(out, 7)
    write_var_uint(out, 0)
    out += value_content
    out += ONE_DELETE
    return server, bytes(out)


def binary_value() -> bytes:
    out = bytearray([1, 116])
    write_var_bytes(out, b"\x00\x01")
    return bytes(out)


def test_a_sequential_write_of_binary_is_refused() -> None:
    server, update = sequential_crafted(binary_value())
    with pytest.raises(NonJsonValue, match="binary"):
        server.receive(update, now=2.0)


def test_a_sequential_write_of_a_scalar_stands() -> None:
    content = bytearray([1, 119])
    write_var_string(content, "b")
    server, update = sequential_crafted(bytes(content))
    review, written = server.receive(update, now=2.0)
    counting = server.semantics
    assert isinstance(counting, Counting) and counting.sequential == 1
    assert review is not None and review.changed == {"category": ("a", "b")}
    assert written is None


def test_a_sequential_write_of_a_shared_type_is_refused() -> None:
    server = Server(Counting)
    editor = Doc(client_id=7)
    fields(editor)["category"] = "a"
    server.receive(editor.get_update(), now=1.0)
    before = editor.get_state()
    fields(editor)["category"] = Map({"nested": 1.0})  # origin: the winner, content: a type
    with pytest.raises(NonJsonValue, match="shared type"):
        server.receive(editor.get_update(before), now=2.0)


def test_an_item_header_for_a_lone_item_is_the_full_decoders() -> None:
    update = sequential_updates(2, lambda n: "v")[1]
    (item,) = decode_update(update).items
    assert read_overwrite(update) == ItemHeader(
        item.id, 1, item.origin, None, None, None, False, "v", 8
    )


FINDING_4 = bytes.fromhex(  # tests/fuzz/test_room.py: yrs panics half-way through applying it
    "010a16002101066669656c6473026b30ffffffff0f2101066669656c6473026b31012101066669656c64"
    "73026b32012101066669656c6473026b3301a1160001a1160101a816020175037c3f800000770374776f"
    "75027c40600000760104666f75727c40800000a81603017601066e65737465647601046465657075037c"
    "3f8000007c40000000760101787ea81604017705322a2a3533a116050101160200060901"
)


def test_an_update_yrs_gives_up_on_half_way_leaves_the_process_alive() -> None:
    """The `fields` observer runs as yrs ends even a transaction it panicked in; reading the
    event there (`event.keys`) crashed the process (SIGSEGV), so the observer only flags."""
    doc: Doc = Doc(client_id=1)
    semantics = SemanticFields(doc, DEFAULT_SCHEMA, new_id=lambda: "c1")
    with (
        pytest.raises(BaseException, match="unwrap") as raised,
        doc.transaction() as transaction,
    ):
        doc._doc.apply_update(transaction._txn, FINDING_4)
    assert type(raised.value).__name__ == "PanicException"
    assert semantics.touched
