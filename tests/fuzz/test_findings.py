"""What fuzzing found in the decoders, each pinned by the smallest input that showed it."""

from __future__ import annotations

from pycrdt import Doc, Map

from crdt.fields import FieldIndex, MapWrite
from crdt.lib0 import write_var_string, write_var_uint
from crdt.rules import decide
from crdt.schema import DEFAULT_SCHEMA
from crdt.updates import NO_VALUE, decode_update
from tests.fuzz.work import lines_run


def deleted_run(length: int, *, client: int = 7, key: str = "k") -> bytes:
    """One deleted item of `length` clocks in the `fields` map, named by its key: what yrs
    writes back for a client that claims a deleted run of that length (27 bytes for 2**32-1)."""
    out = bytearray()
    for value in (1, 1, client, 0):  # one group, one struct, client, clock 0
        write_var_uint(out, value)
    out.append(0x20 | 1)  # parentSub + ContentDeleted
    write_var_uint(out, 1)
    write_var_string(out, "fields")
    write_var_string(out, key)
    write_var_uint(out, length)
    write_var_uint(out, 0)  # empty delete set
    return bytes(out)


def test_a_huge_deleted_run_in_fields_is_indexed_in_work_bounded_by_its_bytes() -> None:
    """Finding 1: FieldIndex indexed every clock of a run, so a 27-byte update claiming a
    deleted run of 2**32 - 1 clocks in `fields` (yrs accepts it, and it is stored) made the
    room's semantic review loop for hours and allocate without bound (MemoryError at 10**8)."""
    doc: Doc = Doc()
    doc.get("fields", type=Map)
    doc.apply_update(deleted_run(2**32 - 1))
    state = doc.get_update()  # what the room's `changes` and every later load read
    index = FieldIndex()
    lines, error = lines_run(index.ingest, state, 20_000)
    assert error is None and lines < 20_000
    assert len(index) == 2**32 - 1
    assert index.winner("k") == (7, 2**32 - 2)
    loaded = FieldIndex()
    lines, error = lines_run(loaded.load, state, 20_000)
    assert error is None and loaded.winner("k") == (7, 2**32 - 2)


def test_a_write_built_on_the_middle_of_a_huge_run_wins_as_in_yrs() -> None:
    """The run is kept as one range: an origin inside it still resolves, and the key's winner
    descends along the run to the write built on it, as yrs orders them."""
    doc: Doc = Doc()
    fields = doc.get("fields", type=Map)
    doc.apply_update(deleted_run(2**31))
    other: Doc = Doc(client_id=9)
    other.apply_update(doc.get_update())
    out = bytearray()
    for value in (1, 1, 9, 0):
        write_var_uint(out, value)
    out.append(0x80 | 8)  # origin + ContentAny
    write_var_uint(out, 7)
    write_var_uint(out, 2**20)  # origin: the middle of the run
    write_var_uint(out, 1)
    out += b"\x77\x03new"  # the string "new"
    write_var_uint(out, 0)
    doc.apply_update(bytes(out))
    index = FieldIndex()
    index.load(doc.get_update())
    assert fields["k"] == "new"
    assert index.winner("k") == (9, 0)
    assert index.value_of((9, 0)) == "new"


def test_a_transition_from_a_value_of_the_wrong_type_is_judged_not_crashed() -> None:
    """Finding 8: a client set `status` (a transition field of strings) to ["a", 1], then to
    "DRAFT" on top of it: the rule looked the list up in the transitions table (TypeError:
    unhashable type: 'list'), the connection closed with 1000 and the update, applied, was
    never stored. Found by the room fuzz (seed 5) with valid frames only."""
    status = DEFAULT_SCHEMA.values["status"]
    for seen in (["a", 1], {"x": 1}):
        write = MapWrite(
            key="status", id=(5, 1), origin=(5, 0), value="DRAFT", concurrent=False, seen=seen
        )
        decision = decide(status, before=seen, writes=[write], current="DRAFT")
        assert decision.rejected == (write,)  # no move leads from a list to DRAFT
        later = MapWrite(
            key="status", id=(5, 2), origin=(5, 9), value="DRAFT", concurrent=True, seen=NO_VALUE
        )
        decide(status, before=seen, writes=[later], current="DRAFT")  # reachable from a list?


ATHERIS_ZERO_LENGTH = bytes.fromhex(
    "010a16002101066669656c6473026b30012101066669656c647302000000c0000096002101066669656c6473"
    "026b30012101066669656c64730200000000000000000000000026000000000000000000000000006c647302"
    "6b3601a1160001a1a1166767"
)


def test_items_of_no_clocks_are_left_out_as_yrs_leaves_them_out() -> None:
    """Finding 9 (atheris, FieldIndex): a Deleted item of length 0 under a new key gave the
    key no node, and the winner's descent found an empty tree (AssertionError). yrs drops
    such items (a Deleted, Any or String content of nothing leaves the doc empty), so the
    decoder drops them too."""
    items = decode_update(ATHERIS_ZERO_LENGTH).items
    assert items and all(item.length > 0 for item in items)
    writes = FieldIndex().ingest(ATHERIS_ZERO_LENGTH)
    assert {write.key for write in writes} == {"k0"}
