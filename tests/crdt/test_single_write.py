"""`crdt.updates.read_single_write`: the full review's reader for one map write that raced
another (issue 24 point 1, S5: a third of its writes). Wherever it answers, it must answer
exactly what `decode_update` reads, so that the review (which then goes on unchanged) judges
as before; anything else is left to `decode_update`, which reads or refuses it as before."""

from __future__ import annotations

import random
from typing import Any

import pytest
from pycrdt import Doc

from crdt.errors import UndecodableUpdate
from crdt.semantics import SemanticFields
from crdt.updates import NO_VALUE, decode_update, read_single_write
from tests.crdt.test_fields_sequential import (
    ONE_DELETE,
    STRING_A,
    FullOnly,
    Server,
    changes_of,
    encode_item,
    fields,
    sequential_updates,
)


def raced_updates(values: list[Any]) -> list[bytes]:
    """Two editors set `category` at once, each on the value both had seen, round after round:
    each round is one write Yjs orders last (it deletes the other's item) and one it orders
    first (the server's doc integrates it as Deleted). As editors send them, after the key's
    first write (which names its parent, and both editors saw)."""
    editors = [Doc(client_id=cid) for cid in (7, 2**31 + 5)]
    sent: list[bytes] = []
    for editor in editors:
        editor.observe(lambda event: sent.append(event.update))
    fields(editors[0])["category"] = "first"
    updates = list(sent)
    editors[1].apply_update(updates[0])
    for r, value in enumerate(values):
        # Which arrives first alternates: the one Yjs orders first, arriving second, is
        # integrated as Deleted; arriving first, it is deleted by the other.
        order = editors if r % 2 == 0 else editors[::-1]
        round_updates = []
        for editor in order:
            sent.clear()
            fields(editor)["category"] = value if editor is editors[0] else f"{value}-other"
            (update,) = sent
            round_updates.append(update)
        for editor, other in zip(order, round_updates[::-1], strict=True):
            editor.apply_update(other)
        updates += round_updates
    return updates


@pytest.mark.parametrize("value", ["news", "", "é€😀", 3.5, -2.0, 7, True, None], ids=repr)
def test_raced_writes_read_as_decode_update_reads_them(value: Any) -> None:
    updates = raced_updates([value] * 4)
    changes = changes_of(updates)
    raced = [*updates[1:], *changes[1:]]
    read = [read_single_write(update) for update in raced]
    assert None not in read
    assert read == [decode_update(update) for update in raced]
    # What the server's doc integrated holds writes Yjs ordered first as Deleted, and writes
    # that delete another editor's item: both were left to `decode_update` before.
    assert any(d is not None and d.items[0].deleted for d in read)
    assert any(
        d is not None
        and d.items[0].origin not in {(c, k) for c, r in d.delete_set.items() for k, _ in r}
        for d in read
    )


def test_a_sequential_overwrite_reads_too() -> None:
    updates = sequential_updates(4, lambda n: f"v{n}")
    for update in [*updates[1:], *changes_of(updates)[1:]]:
        assert read_single_write(update) == decode_update(update)


@pytest.mark.parametrize(
    ("update", "why"),
    [
        (sequential_updates(1, lambda n: "x")[0], "no origin: the first write of a key"),
        (encode_item(5, 0, 0x84, (7, 0), bytes([1, 97]), ONE_DELETE), "String content (text)"),
        (encode_item(5, 0, 0xC8, (7, 0), STRING_A, ONE_DELETE), "a right origin"),
        (encode_item(5, 0, 0x88, (7, 0), bytes([2, 119, 1, 97, 119, 1, 98]), ONE_DELETE), "two"),
        (encode_item(5, 0, 0x88, (7, 0), bytes([1, 117, 1, 125, 1]), ONE_DELETE), "an array"),
        (encode_item(5, 0, 0x88, (7, 0), bytes([1, 116, 1, 0]), ONE_DELETE), "binary"),
        (encode_item(5, 0, 0x81, (7, 0), bytes([0]), ONE_DELETE), "Deleted of no clocks"),
        (encode_item(5, 0, 0x88, (7, 0), STRING_A, ONE_DELETE)[:-1], "truncated"),
        (encode_item(5, 0, 0x88, (7, 0), STRING_A, ONE_DELETE) + b"\x00", "a byte left over"),
        (encode_item(5, 0, 0x88, (7, 0), STRING_A, bytes([2, 7, 0])), "a client missing"),
        (encode_item(5, 0, 0x88, (7, 0), STRING_A, bytes([1, 7, 0xFF, 0xFF, 0x7F, 0])), "ranges"),
        (
            bytes([1, 2]) + encode_item(5, 0, 0x88, (7, 0), STRING_A, ONE_DELETE)[2:],
            "two structs announced",
        ),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_anything_else_is_left_to_decode_update(update: bytes, why: str) -> None:
    assert read_single_write(update) is None, why


def test_a_delete_set_of_any_shape_reads_as_the_full_decoders() -> None:
    deletes = bytes([2, 7, 2, 0, 1, 4, 3, 9, 1, 1, 1])  # client 7: [0, 1), [4, 7); client 9
    for info, content in ((0x88, STRING_A), (0xA8, STRING_A), (0x81, bytes([3]))):
        update = encode_item(5, 2, info, (7, 0), content, deletes)
        read = read_single_write(update)
        assert read is not None and read == decode_update(update)
        assert read.delete_set == {7: [(0, 1), (4, 3)], 9: [(1, 1)]}
        assert read.items[0].deleted == (info == 0x81)
        assert (read.items[0].value is NO_VALUE) == (info == 0x81)


def test_an_unreadable_varuint_is_unreadable_to_both() -> None:
    update = encode_item(
        5, 0, 0x81, (7, 0), bytes([1]), bytes([1]) + bytes([0xFF] * 7 + [0x10]) + bytes([1, 0, 1])
    )
    assert read_single_write(update) is None
    with pytest.raises(UndecodableUpdate):
        decode_update(update)


def test_mutated_updates_are_read_only_as_decode_update_reads_them() -> None:
    """Bytes flipped, cut or added anywhere in real updates, raced and sequential, as sent and
    as integrated: whenever `read_single_write` answers, `decode_update` answers the same."""
    rng = random.Random(2024)
    seeds = [
        *raced_updates(["a", 1.5, True])[1:],
        *changes_of(raced_updates([None, "é", 3]))[1:],
        *changes_of(sequential_updates(4, lambda n: f"v{n}")),
    ]
    answered = 0
    for _ in range(6000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            if not data:
                break
            at = rng.randrange(len(data))
            match rng.randrange(3):
                case 0:
                    data[at] = rng.choice([rng.randrange(256), data[at] ^ 0x80, 0xFF, 0x7F, 0])
                case 1:
                    del data[at:]
                case _:
                    data.insert(at, rng.randrange(256))
        read = read_single_write(bytes(data))
        if read is not None:
            answered += 1
            # by repr: a mutated float may be NaN, which equals nothing, itself included
            assert repr(decode_update(bytes(data))) == repr(read), bytes(data).hex()
    assert answered > 100  # the mutations left many readable: the comparison was made


def test_raced_writes_are_reviewed_as_before() -> None:
    """Through the review: a server that reviews raced writes (full reviews, now read by
    `read_single_write`) ends with the values, reviews and doc of one that also takes the
    sequential way for what it can; and the rule's answer is Yjs's last writer."""
    updates = raced_updates([f"r{n}" for n in range(6)])
    servers = [Server(FullOnly), Server(SemanticFields)]
    reviews: list[list[object]] = [[], []]
    for n, update in enumerate(updates):
        for server, seen in zip(servers, reviews, strict=True):
            review, written = server.receive(update, now=float(n))
            seen.append((review, written))
    assert reviews[0] == reviews[1]
    assert fields(servers[0].doc).to_py() == fields(servers[1].doc).to_py()
    final = fields(servers[0].doc)["category"]
    assert final in {"r5", "r5-other"}
