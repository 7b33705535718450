"""crdt.limits: the pre-scan counts what an update asks of yrs, and refuses it past a limit."""

from __future__ import annotations

import pytest
from pycrdt import Array, Doc, Map, Text

from crdt.errors import ProtocolError, UndecodableUpdate, UpdateTooLarge
from crdt.lib0 import write_var_string, write_var_uint
from crdt.limits import (
    DEFAULT_LIMITS,
    ELEMENT_BYTES,
    RunScan,
    UpdateCounts,
    UpdateLimits,
    check_update_limits,
    count_update,
)

UNLIMITED = UpdateLimits(
    structs=10**12,
    keys=10**12,
    field_writes=10**12,
    elements=10**12,
    delete_ranges=10**12,
    merge_bytes=10**15,
    clients=10**12,
)


def counts(update: bytes) -> UpdateCounts:
    return count_update(update, UNLIMITED)


def chained_text(n: int, *, client: int = 4242, text: str = "a", clock: int = 0) -> bytes:
    """n one-string items, each continuing the one before (origin: its last clock)."""
    out = bytearray()
    for value in (1, n, client, clock):
        write_var_uint(out, value)
    units = len(text.encode("utf-16-le")) // 2
    for i in range(n):
        if i == 0 and clock == 0:
            out.append(4)
            write_var_uint(out, 1)
            write_var_string(out, "title")
        else:
            out.append(0x84)
            write_var_uint(out, client)
            write_var_uint(out, clock + i * units - 1)
        write_var_string(out, text)
    write_var_uint(out, 0)
    return bytes(out)


def unchained_text(n: int, *, client: int = 4242) -> bytes:
    """n one-character items, each inserted at the start of the text (linear in yrs)."""
    out = bytearray()
    for value in (1, n, client, 0):
        write_var_uint(out, value)
    for _ in range(n):
        out.append(4)
        write_var_uint(out, 1)
        write_var_string(out, "title")
        write_var_string(out, "a")
    write_var_uint(out, 0)
    return bytes(out)


def chained_values(n: int, *, client: int = 4242) -> bytes:
    """n one-value array items (Any), each continuing the one before."""
    out = bytearray()
    for value in (1, n, client, 0):
        write_var_uint(out, value)
    for i in range(n):
        if i == 0:
            out.append(8)
            write_var_uint(out, 1)
            write_var_string(out, "tags")
        else:
            out.append(0x88)
            write_var_uint(out, client)
            write_var_uint(out, i - 1)
        write_var_uint(out, 1)
        out += bytes([125, 1])  # varInt 1
    write_var_uint(out, 0)
    return bytes(out)


def fields_keys(n: int, *, root: str = "fields", client: int = 99) -> bytes:
    """n new keys of the map `root`, each one Any value, in one update."""
    out = bytearray()
    for value in (1, n, client, 0):
        write_var_uint(out, value)
    for i in range(n):
        out.append(8 | 0x20)
        write_var_uint(out, 1)
        write_var_string(out, root)
        write_var_string(out, f"k{i}")
        write_var_uint(out, 1)
        out += bytes([125, 1])
    write_var_uint(out, 0)
    return bytes(out)


# -- counting, on updates pycrdt builds -------------------------------------------------------


def test_a_keystroke_counts_one_struct_and_nothing_else() -> None:
    doc = Doc(client_id=1)
    text = doc.get("title", type=Text)
    text.insert(0, "hello")
    before = doc.get_state()
    text.insert(5, "!")
    found = counts(doc.get_update(before))
    assert (found.structs, found.keys, found.elements, found.merge_bytes) == (1, 0, 0, 0)


def test_map_keys_and_fields_writes_are_counted() -> None:
    doc = Doc(client_id=1)
    with doc.transaction():
        fields = doc.get("fields", type=Map)
        other = doc.get("other", type=Map)
        for i in range(5):
            fields[f"f{i}"] = i
        for i in range(3):
            other[f"o{i}"] = [1, 2, {"x": 3}]
    found = counts(doc.get_update())
    assert found.structs == 8
    assert found.keys == 8
    assert found.field_writes == 5  # `other` is not reviewed
    # 5 values + 3 lists of 3 values, one of which an object of one
    assert found.elements == 5 + 3 * (1 + 3 + 1)


def test_an_overwrite_next_to_a_new_fields_key_counts_as_a_fields_write() -> None:
    doc = Doc(client_id=1)
    fields = doc.get("fields", type=Map)
    with doc.transaction():
        fields["a"] = 1
    with doc.transaction():
        fields["a"] = 2  # origin: the first write
    found = counts(doc.get_update())
    assert found.keys == 1
    assert found.field_writes == 2


def test_array_values_and_delete_ranges_are_counted() -> None:
    doc = Doc(client_id=1)
    array = doc.get("tags", type=Array)
    array.extend(list(range(10)))
    text = doc.get("title", type=Text)
    text.insert(0, "abcdefgh")
    del text[1:2]
    del text[4:6]
    found = counts(doc.get_update())
    assert found.elements == 10
    assert found.delete_ranges == 2


def test_a_long_paste_is_one_struct_with_no_merge_cost() -> None:
    doc = Doc(client_id=1)
    doc.get("title", type=Text).insert(0, "é" * 500_000 + "😀" * 1000)
    update = doc.get_update()
    found = count_update(update)  # the default limits pass it
    assert found.structs == 1
    assert found.merge_bytes == 0
    check_update_limits([update], DEFAULT_LIMITS)


# -- chains (finding 2) ------------------------------------------------------------------------


def test_a_chain_costs_its_items_times_its_bytes() -> None:
    found = counts(chained_text(1000))
    assert found.structs == 1000
    assert found.merge_bytes == 999 * 1000
    found = counts(chained_values(1000))
    assert found.merge_bytes == 999 * 1000 * ELEMENT_BYTES


def test_non_ascii_chains_count_clocks_in_utf16_units() -> None:
    # "😀" is 2 UTF-16 units: each origin is 2 clocks after the one before, still a chain
    found = counts(chained_text(100, text="😀"))
    assert found.merge_bytes == 99 * 100 * 4


def test_items_that_do_not_continue_each_other_cost_nothing() -> None:
    doc = Doc(client_id=1)
    text = doc.get("title", type=Text)
    for _ in range(200):
        with doc.transaction():
            text.insert(0, "ab")  # each at the start: origin-less, never squashed
    found = counts(doc.get_update())
    assert found.structs == 200
    assert found.merge_bytes == 0


def test_a_chain_spanning_the_updates_of_a_run_is_counted_whole() -> None:
    first = chained_text(100)
    second = chained_text(100, clock=100)  # continues the first update's chain
    scan = RunScan(UNLIMITED)
    scan.add(first)
    scan.add(second)
    assert scan.finish().merge_bytes == 199 * 200


def test_a_long_chain_is_refused_naming_the_limit() -> None:
    limits = UpdateLimits(merge_bytes=1_000_000)
    with pytest.raises(UpdateTooLarge, match=r"bytes of chained items > 1000000 .*merge-bytes"):
        count_update(chained_text(2000), limits)
    with pytest.raises(UpdateTooLarge):
        check_update_limits([chained_text(1000), chained_text(1000, clock=1000)], limits)


def test_the_default_limits_refuse_the_finding_2_chains() -> None:
    # 30,000 chained items took 0.55 GB: under the struct limit, over the merge limit
    with pytest.raises(UpdateTooLarge, match="--max-update-merge-bytes"):
        check_update_limits([chained_text(30_000)], DEFAULT_LIMITS)
    with pytest.raises(UpdateTooLarge, match="--max-update-structs"):
        check_update_limits([unchained_text(200_000)], DEFAULT_LIMITS)


# -- each limit --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limits", "update", "flag"),
    [
        pytest.param(
            UpdateLimits(structs=100), fields_keys(101, root="m"), "update-structs", id="structs"
        ),
        pytest.param(UpdateLimits(keys=100), fields_keys(101, root="m"), "update-keys", id="keys"),
        pytest.param(
            UpdateLimits(field_writes=100), fields_keys(101), "update-field-writes", id="fields"
        ),
        pytest.param(
            UpdateLimits(elements=100), fields_keys(101, root="m"), "insert-elements", id="values"
        ),
    ],
)
def test_each_limit_refuses_one_past_it(limits: UpdateLimits, update: bytes, flag: str) -> None:
    with pytest.raises(UpdateTooLarge, match=f"> 100 \\(--max-{flag}\\)"):
        check_update_limits([update], limits)
    assert counts(update).structs == 101


def test_delete_ranges_are_limited() -> None:
    out = bytearray([0, 1, 7])  # no structs; one client 7 ...
    write_var_uint(out, 101)  # ... with 101 ranges
    for i in range(101):
        out += bytes([2 * i % 128, 1])
    with pytest.raises(UpdateTooLarge, match="101 delete ranges > 100"):
        count_update(bytes(out), UpdateLimits(delete_ranges=100))


def empty_client_groups(n: int) -> bytes:
    """n struct groups of no struct, each of a client of its own, and no delete set."""
    out = bytearray()
    write_var_uint(out, n)
    for client in range(1000, 1000 + n):
        out += b"\x00"
        write_var_uint(out, client)
        out += b"\x00"
    return bytes(out + b"\x00")


def empty_delete_entries(n: int, first: int = 1000) -> bytes:
    """No structs; a delete set of n clients (from `first`), each with no range."""
    out = bytearray([0])
    write_var_uint(out, n)
    for client in range(first, first + n):
        write_var_uint(out, client)
        out += b"\x00"
    return bytes(out)


def test_clients_are_limited_across_structs_and_delete_set() -> None:
    """yrs's cost grows with the square of the clients, and ~87,000 empty groups overflow its
    stack: the distinct clients of a run, struct groups and delete set alike, are bounded."""
    with pytest.raises(UpdateTooLarge, match="101 clients > 100 \\(--max-update-clients\\)"):
        count_update(empty_client_groups(101), UpdateLimits(clients=100))
    with pytest.raises(UpdateTooLarge, match="101 clients > 100"):
        count_update(empty_delete_entries(101), UpdateLimits(clients=100))
    scan = RunScan(UpdateLimits(clients=100))
    scan.add(empty_client_groups(60))
    scan.add(empty_delete_entries(60, first=1040))  # 1000..1099: 100 clients, within the limit
    with pytest.raises(UpdateTooLarge, match="101 clients"):
        scan.add(empty_delete_entries(1, first=5))
    same = count_update(empty_client_groups(50)[:-1] + empty_delete_entries(50)[1:], UNLIMITED)
    assert same.clients == 50


def test_empty_groups_and_rangeless_delete_entries_still_count() -> None:
    """An empty group is a struct to yrs, an entry without ranges a range: a run of them is
    bounded by `structs` and `delete_ranges` even when they name one client over and over."""
    out = bytearray()
    write_var_uint(out, 101)
    out += b"\x00\x07\x00" * 101
    with pytest.raises(UpdateTooLarge, match="101 structs > 100"):
        count_update(bytes(out + b"\x00"), UpdateLimits(structs=100))
    out = bytearray([0])
    write_var_uint(out, 101)
    out += b"\x07\x00" * 101
    with pytest.raises(UpdateTooLarge, match="101 delete ranges > 100"):
        count_update(bytes(out), UpdateLimits(delete_ranges=100))


def test_the_finding_5_fields_flood_is_refused_early() -> None:
    with pytest.raises(UpdateTooLarge, match="writes to fields"):
        check_update_limits([fields_keys(700_000)], DEFAULT_LIMITS)


def test_small_runs_are_not_walked_and_cannot_cross_a_limit() -> None:
    keystroke = chained_text(1)
    assert not DEFAULT_LIMITS.needs_scan([keystroke])
    assert not DEFAULT_LIMITS.needs_scan([chained_text(1, clock=i) for i in range(128)])
    assert DEFAULT_LIMITS.needs_scan([chained_text(1)] * 10_000)
    assert DEFAULT_LIMITS.needs_scan([fields_keys(10)] * 10)  # writes `fields`: walked
    assert not DEFAULT_LIMITS.needs_scan([fields_keys(10)])
    # typing the word "fields" names no root: a run of such keystrokes is not walked
    typed = [chained_text(1, clock=i, text="fields ") for i in range(0, 128 * 7, 7)]
    assert sum(map(len, typed)) > 4 * DEFAULT_LIMITS.field_writes
    assert not DEFAULT_LIMITS.needs_scan(typed)
    assert DEFAULT_LIMITS.needs_scan(typed, has_fields=True)
    # the bound holds: the densest runs that are not walked are within every limit
    limits = UpdateLimits(merge_bytes=1_000_000, field_writes=20)
    for build in (chained_values, chained_text, fields_keys):
        n = 1
        while not limits.needs_scan([build(n + 1)]):
            n += 1
        count_update(build(n), limits)


# -- malformed input: ProtocolError, never IndexError -----------------------------------------


@pytest.mark.parametrize(
    "update",
    [
        pytest.param(chained_text(50), id="chained-text"),
        pytest.param(chained_values(50), id="chained-values"),
        pytest.param(fields_keys(20), id="fields-keys"),
    ],
)
def test_every_truncation_is_a_protocol_error(update: bytes) -> None:
    count_update(update, UNLIMITED)
    for cut in range(len(update) - 1):
        with pytest.raises(ProtocolError):
            count_update(update[:cut], UNLIMITED)


def test_a_nested_any_is_walked_without_recursion() -> None:
    depth = 100_000
    out = bytearray([1, 1, 5, 0, 8, 1])
    write_var_string(out, "a")
    out += bytes([1]) + bytes([117, 1]) * depth + bytes([126])  # [[[...null...]]]
    out += bytes([0])
    found = count_update(bytes(out), UNLIMITED)
    assert found.elements == depth + 1


def test_unknown_content_and_tags_are_undecodable() -> None:
    with pytest.raises(UndecodableUpdate, match="content ref"):
        count_update(bytes([1, 1, 5, 0, 0x0B, 1, 1, ord("a"), 0]), UNLIMITED)
    bad_tag = bytearray([1, 1, 5, 0, 8, 1])
    write_var_string(bad_tag, "a")
    bad_tag += bytes([1, 99, 0])
    with pytest.raises(UndecodableUpdate, match="any tag 99"):
        count_update(bytes(bad_tag), UNLIMITED)
    with pytest.raises(UndecodableUpdate, match="unread"):
        count_update(chained_text(3) + b"\x00", UNLIMITED)


def test_counts_agree_with_the_full_decoder_on_a_rich_document() -> None:
    from pycrdt import XmlElement, XmlFragment, XmlText

    from crdt.updates import decode_update

    doc = Doc(client_id=3)
    with doc.transaction():
        doc.get("title", type=Text).insert(0, "hello world")
        doc.get("note", type=Text).insert(0, "héllo 😀", attrs={"bold": True})
        doc.get("fields", type=Map).update({"a": 1, "b": "x", "c": [1, {"d": None}]})
        doc.get("tags", type=Array).extend(["t1", "t2", 3.5, True, b"raw"])
        fragment = doc.get("body", type=XmlFragment)
        fragment.children.append(XmlElement("p", {"class": "x"}, [XmlText("para")]))
    with doc.transaction():
        del doc.get("title", type=Text)[2:5]
        doc.get("title", type=Text).insert(0, ">")
        doc.get("fields", type=Map)["a"] = 2
    update = doc.get_update()
    decoded = decode_update(update)
    found = counts(update)
    assert found.structs == len(decoded.items)  # no GC or Skip structs here
    assert found.keys == sum(1 for item in decoded.items if item.parent_sub is not None)
    assert found.field_writes == 4  # a, b, c, and a's overwrite
    assert found.delete_ranges == sum(len(ranges) for ranges in decoded.delete_set.values())
