"""crdt.updates: Yjs update v1 read without a Doc, on updates built by pycrdt and by hand."""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable
from typing import Any

import pycrdt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycrdt import Array, Doc, Map, Text, XmlElement, XmlFragment, XmlText

from crdt.errors import ProtocolError, UndecodableUpdate
from crdt.lib0 import Reader, write_var_string, write_var_uint
from crdt.updates import NO_VALUE, DecodedUpdate, ItemHeader, decode_update, first_client_id
from tests.support.semantic_clients import decode_state_vector

# -- helpers ----------------------------------------------------------------------------------


def var_uints(*values: int) -> bytes:
    out = bytearray()
    for value in values:
        write_var_uint(out, value)
    return bytes(out)


def var_strings(*texts: str) -> bytes:
    out = bytearray()
    for text in texts:
        write_var_string(out, text)
    return bytes(out)


def one_struct(info: int, body: bytes, *, client: int = 42, clock: int = 0) -> bytes:
    """An update of one struct group holding one struct, and an empty delete set."""
    return var_uints(1, 1, client, clock) + bytes([info]) + body + var_uints(0)


MAP_PARENT = var_uints(1) + var_strings("fields", "k")  # root "fields", key "k" (info & 0x20)
TEXT_PARENT = var_uints(1) + var_strings("t")  # root "t", no key


def only_item(update: bytes) -> ItemHeader:
    (item,) = decode_update(update).items
    return item


def items_of(doc: Doc, since: bytes | None = None) -> list[ItemHeader]:
    update = doc.get_update() if since is None else doc.get_update(since)
    return decode_update(update).items


# -- maps, built by pycrdt --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("draft", "draft"),
        ("", ""),
        ("ünïcødé 😀", "ünïcødé 😀"),
        (3, 3),
        (-7, -7),
        (2**40, 2**40),
        (1.5, 1.5),
        (-0.1, -0.1),
        (True, True),
        (False, False),
        (None, None),
        ({"a": 1, "b": ["x", None]}, {"a": 1, "b": ["x", None]}),
        ([1, "two", 3.5, False], [1, "two", 3.5, False]),
        ([], []),
    ],
)
def test_map_set_of_each_value_type(value: Any, expected: Any) -> None:
    doc: Doc = Doc(client_id=7)
    doc.get("fields", type=Map)["k"] = value
    item = only_item(doc.get_update())
    assert item == ItemHeader(
        id=(7, 0),
        length=1,
        origin=None,
        right_origin=None,
        parent_root="fields",
        parent_sub="k",
        deleted=False,
        value=item.value,
    )
    assert item.value == expected
    assert type(item.value) is type(doc.get("fields", type=Map)["k"])  # as pycrdt reads it


def test_map_overwrite_names_only_its_origin() -> None:
    doc: Doc = Doc(client_id=7)
    fields = doc.get("fields", type=Map)
    fields["status"] = "DRAFT"
    state = doc.get_state()
    fields["status"] = "IN_REVIEW"
    update = doc.get_update(state)
    decoded = decode_update(update)
    (item,) = decoded.items
    assert item.id == (7, 1)
    assert item.origin == (7, 0)
    assert (item.parent_root, item.parent_sub) == (None, None)  # inherited from the origin
    assert item.value == "IN_REVIEW"
    assert decoded.delete_set == {7: [(0, 1)]}


def test_many_overwrites_merge_into_one_deleted_run() -> None:
    doc: Doc = Doc(client_id=7)
    fields = doc.get("fields", type=Map)
    for step in range(50):
        fields["current_step"] = step
    decoded = decode_update(doc.get_update())
    assert [(i.id, i.length, i.deleted) for i in decoded.items] == [
        ((7, 0), 49, True),
        ((7, 49), 1, False),
    ]
    head, last = decoded.items
    assert (head.parent_root, head.parent_sub, head.value) == ("fields", "current_step", NO_VALUE)
    assert last.origin == (7, 48)  # the last clock of the run
    assert last.value == 49
    assert decoded.delete_set == {7: [(0, 49)]}


def test_several_keys_and_clients_in_one_state() -> None:
    a: Doc = Doc(client_id=3)
    b: Doc = Doc(client_id=300_000)
    a.get("fields", type=Map)["x"] = 1
    b.apply_update(a.get_update())
    b.get("fields", type=Map)["y"] = "why"
    b.get("fields", type=Map)["x"] = 2
    decoded = decode_update(b.get_update())
    by_id = {item.id: item for item in decoded.items}
    assert set(by_id) == {(3, 0), (300_000, 0), (300_000, 1)}
    assert by_id[(300_000, 0)].parent_sub == "y"
    assert by_id[(300_000, 1)].origin == (3, 0)
    assert by_id[(3, 0)].deleted
    assert decoded.delete_set == {3: [(0, 1)]}


def test_key_delete_is_only_in_the_delete_set() -> None:
    doc: Doc = Doc(client_id=7)
    fields = doc.get("fields", type=Map)
    fields["category"] = "news"
    state = doc.get_state()
    del fields["category"]
    decoded = decode_update(doc.get_update(state))
    assert decoded.items == []
    assert decoded.delete_set == {7: [(0, 1)]}


# -- text, arrays, nested types ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "utf16_length"),
    [("abc", 3), ("é", 1), ("日本語", 3), ("😀", 2), ("a😀b👍🏽", 8), ("\u0301", 1)],
)
def test_text_insert_counts_utf16_code_units(text: str, utf16_length: int) -> None:
    doc: Doc = Doc(client_id=9)
    title = doc.get("title", type=Text)
    title.insert(0, text)
    item = only_item(doc.get_update())
    assert item.length == utf16_length
    assert (item.parent_root, item.parent_sub, item.value) == ("title", None, text)
    assert decode_state_vector(doc.get_state()) == {9: utf16_length}
    state = doc.get_state()
    title.insert(len(title), "!")  # pycrdt's Text offsets and len() count UTF-8 bytes
    appended = only_item(doc.get_update(state))
    assert appended.id == (9, utf16_length)
    assert appended.origin == (9, utf16_length - 1)


def test_text_delete_goes_to_the_delete_set_in_utf16_units() -> None:
    doc: Doc = Doc(client_id=9)
    title = doc.get("title", type=Text)
    title.insert(0, "a😀bcdé")  # clocks: a=0, 😀=1..2, b=3, c=4, d=5, é=6
    state = doc.get_state()
    del title[1:6]  # "😀b": pycrdt's Text offsets count UTF-8 bytes (4 + 1)
    assert str(title) == "acdé"
    decoded = decode_update(doc.get_update(state))
    assert decoded.items == []
    assert decoded.delete_set == {9: [(1, 3)]}
    full = decode_update(doc.get_update())
    assert [(i.id, i.length, i.deleted) for i in full.items] == [
        ((9, 0), 1, False),
        ((9, 1), 3, True),
        ((9, 4), 3, False),
    ]
    assert full.items[2].value == "cdé"


def test_array_items() -> None:
    doc: Doc = Doc(client_id=5)
    tags = doc.get("tags", type=Array)
    tags.extend(["a", "b", "c"])
    state = doc.get_state()
    tags.append("d")
    (batch,) = items_of(doc)[:1]
    assert (batch.id, batch.length, batch.parent_root, batch.value) == ((5, 0), 4, "tags", NO_VALUE)
    (pushed,) = items_of(doc, state)
    assert (pushed.id, pushed.length, pushed.origin, pushed.value) == ((5, 3), 1, (5, 2), "d")
    state = doc.get_state()
    del tags[1]
    assert decode_update(doc.get_update(state)).delete_set == {5: [(1, 1)]}


def test_nested_types() -> None:
    doc: Doc = Doc(client_id=11)
    fields = doc.get("fields", type=Map)
    fields["meta"] = Map({"a": 1})
    notes = doc.get("notes", type=Array)
    notes.append(Text("hi"))
    items = items_of(doc)
    by_id = {item.id: item for item in items}
    meta, inner, note, note_text = (by_id[(11, c)] for c in (0, 1, 2, 3))
    assert (meta.parent_root, meta.parent_sub, meta.value) == ("fields", "meta", NO_VALUE)
    # An item of a nested type names its parent by id: no root, its own key.
    assert (inner.parent_root, inner.parent_sub, inner.value) == (None, "a", 1)
    assert (note.parent_root, note.value) == ("notes", NO_VALUE)
    assert (note_text.parent_root, note_text.parent_sub, note_text.value) == (None, None, "hi")


def test_xml_fragment() -> None:
    doc: Doc = Doc(client_id=6)
    body = doc.get("body", type=XmlFragment)
    body.children.append(XmlElement("p", {}, [XmlText("hi")]))
    items = items_of(doc)
    assert [(i.id, i.length, i.parent_root) for i in items] == [
        ((6, 0), 1, "body"),
        ((6, 1), 1, None),
        ((6, 2), 2, None),
    ]
    assert items[2].value == "hi"


def test_deleting_a_nested_type_leaves_gc_structs_that_keep_clocks() -> None:
    doc: Doc = Doc(client_id=3)
    fields = doc.get("fields", type=Map)
    fields["nested"] = Map({"a": 1, "b": 2})
    fields["after"] = "x"
    del fields["nested"]
    update = doc.get_update()
    # The children (3,1) and (3,2) became one GC struct (info 0, length 2).
    assert bytes([0x00, 0x02]) in update
    decoded = decode_update(update)
    assert [(i.id, i.length, i.deleted) for i in decoded.items] == [
        ((3, 0), 1, True),
        ((3, 3), 1, False),
    ]
    assert decoded.items[1].parent_sub == "after"
    assert decoded.delete_set == {3: [(0, 3)]}


def test_merged_updates_with_a_gap_carry_a_skip() -> None:
    doc: Doc = Doc(client_id=3)
    fields = doc.get("fields", type=Map)
    fields["a"] = 1
    first = doc.get_update()
    fields["b"] = 2
    state = doc.get_state()
    fields["c"] = 3
    third = doc.get_update(state)
    merged = pycrdt.merge_updates(first, third)
    assert bytes([0x0A, 0x01]) in merged  # Skip, length 1: clock 1 is missing
    items = decode_update(merged).items
    assert [(i.id, i.parent_sub, i.value) for i in items] == [((3, 0), "a", 1), ((3, 2), "c", 3)]


# -- content refs 1-9, GC and Skip (as yjs testStructReferences pins `contentRefs`) ------------

# ref -> (name in Yjs, info byte, body after the info byte, (length, value, deleted)).
# The bytes follow yjs src/structs/Item.js `contentRefs` and each content's `write`; each
# case was checked with Yjs 13.6 `Y.decodeUpdate` (tests/interop/node_modules/yjs).
CONTENT_REFS: list[tuple[int, str, int, bytes, tuple[int, Any, bool]]] = [
    (1, "ContentDeleted", 0x21, MAP_PARENT + var_uints(3), (3, NO_VALUE, True)),
    (
        2,
        "ContentJSON",
        0x22,
        MAP_PARENT + var_uints(1) + var_strings('{"a":[1,2]}'),
        (1, {"a": [1, 2]}, False),
    ),
    (3, "ContentBinary", 0x23, MAP_PARENT + var_uints(2) + b"\x01\x02", (1, b"\x01\x02", False)),
    (4, "ContentString", 0x04, TEXT_PARENT + var_strings("hé😀"), (4, "hé😀", False)),
    (5, "ContentEmbed", 0x05, TEXT_PARENT + var_strings('{"img":"x"}'), (1, {"img": "x"}, False)),
    (6, "ContentFormat", 0x06, TEXT_PARENT + var_strings("bold", "true"), (1, NO_VALUE, False)),
    (7, "ContentType", 0x27, MAP_PARENT + var_uints(1), (1, NO_VALUE, False)),  # YMap
    (8, "ContentAny", 0x28, MAP_PARENT + var_uints(1, 0x77) + var_strings("v"), (1, "v", False)),
    (
        9,
        "ContentDoc",
        0x29,
        MAP_PARENT + var_strings("guid-1") + bytes([0x76]) + var_uints(0),
        (1, NO_VALUE, False),
    ),
]


def test_content_refs_table_is_complete() -> None:
    assert [ref for ref, *_ in CONTENT_REFS] == list(range(1, 10))


@pytest.mark.parametrize(
    ("ref", "name", "info", "body", "expected"), CONTENT_REFS, ids=[c[1] for c in CONTENT_REFS]
)
def test_content_ref(
    ref: int, name: str, info: int, body: bytes, expected: tuple[int, Any, bool]
) -> None:
    assert info & 0x1F == ref
    item = only_item(one_struct(info, body, client=42, clock=5))
    assert item.id == (42, 5)
    assert (item.length, item.value, item.deleted) == expected
    assert item.parent_root == ("fields" if info & 0x20 else "t")
    assert item.parent_sub == ("k" if info & 0x20 else None)


@pytest.mark.parametrize(
    ("body", "length", "value"),
    [
        (var_uints(2) + var_strings("1", '"x"'), 2, NO_VALUE),  # two values: no single value
        (var_uints(1) + var_strings("undefined"), 1, None),
        (var_uints(1) + var_strings("null"), 1, None),
    ],
)
def test_json_content_values(body: bytes, length: int, value: Any) -> None:
    item = only_item(one_struct(0x22, MAP_PARENT + body))
    assert (item.length, item.value) == (length, value)


@pytest.mark.parametrize(
    ("type_ref", "extra"),
    [
        (0, b""),
        (1, b""),
        (2, b""),
        (3, var_strings("p")),
        (4, b""),
        (5, var_strings("hook")),
        (6, b""),
    ],
    ids=["YArray", "YMap", "YText", "YXmlElement", "YXmlFragment", "YXmlHook", "YXmlText"],
)
def test_type_content_reads_a_name_only_for_xml_element_and_hook(
    type_ref: int, extra: bytes
) -> None:
    item = only_item(one_struct(0x27, MAP_PARENT + var_uints(type_ref) + extra))
    assert (item.length, item.value) == (1, NO_VALUE)


ANY_VALUES = [
    (bytes([0x77]) + var_strings("s"), "s"),
    (bytes([0x7D]) + var_uints(0x45), -5),  # varInt: sign bit 0x40, value 5
    (bytes([0x7D, 0x85, 0x01]), 69),  # varInt of two bytes: 5 | 1 << 6
    (bytes([0x7B]) + struct.pack(">d", 2.5), 2.5),
    (bytes([0x7C]) + struct.pack(">f", 0.5), 0.5),
    (bytes([0x7A]) + struct.pack(">q", -(2**60)), -(2**60)),
    (bytes([0x79]), False),
    (bytes([0x78]), True),
    (bytes([0x7E]), None),  # null
    (bytes([0x7F]), None),  # undefined
    (bytes([0x76]) + var_uints(1) + var_strings("a") + bytes([0x78]), {"a": True}),
    (bytes([0x75]) + var_uints(2) + bytes([0x79, 0x7E]), [False, None]),
    (bytes([0x74]) + var_uints(2) + b"\xff\x00", b"\xff\x00"),
]


@pytest.mark.parametrize(("encoded", "value"), ANY_VALUES)
def test_any_tags(encoded: bytes, value: Any) -> None:
    item = only_item(one_struct(0x28, MAP_PARENT + var_uints(1) + encoded))
    assert item.value == value
    assert type(item.value) is type(value)


def test_gc_and_skip_advance_the_clock_without_an_item() -> None:
    gc = bytes([0x00]) + var_uints(4)  # GC, clocks 10..13
    skip = bytes([0x0A]) + var_uints(2)  # Skip, clocks 14..15
    item = bytes([0x28]) + MAP_PARENT + var_uints(1, 0x78)  # Any true at clock 16
    body = gc + skip + item
    update = var_uints(1, 3, 42, 10) + body + var_uints(0)
    assert [(i.id, i.value) for i in decode_update(update).items] == [((42, 16), True)]


def test_origins_and_right_origins() -> None:
    body = var_uints(42, 1) + var_uints(42, 9) + var_strings("x")  # 0x80 origin, 0x40 right
    item = only_item(one_struct(0xC4, body, clock=5))
    assert (item.origin, item.right_origin) == ((42, 1), (42, 9))
    assert (item.parent_root, item.parent_sub) == (None, None)


def test_parent_given_by_id() -> None:
    body = var_uints(0, 42, 0) + var_strings("key") + bytes([0x01, 0x78])  # parent item (42, 0)
    item = only_item(one_struct(0x28, body, clock=1))
    assert (item.parent_root, item.parent_sub, item.value) == (None, "key", True)


def test_delete_set_of_several_clients() -> None:
    update = var_uints(0, 2, 5, 2, 0, 1, 4, 3, 1_000_000, 1, 7, 100)
    assert decode_update(update) == DecodedUpdate(
        items=[], delete_set={5: [(0, 1), (4, 3)], 1_000_000: [(7, 100)]}
    )


@pytest.mark.parametrize("ref", [*range(11, 32)])
def test_unknown_content_ref_is_undecodable(ref: int) -> None:
    with pytest.raises(UndecodableUpdate, match=f"unknown content ref {ref}"):
        decode_update(one_struct(0x20 | ref, MAP_PARENT + var_uints(1)))


def test_unknown_any_tag_is_undecodable() -> None:
    with pytest.raises(UndecodableUpdate, match="tag 100"):
        decode_update(one_struct(0x28, MAP_PARENT + var_uints(1) + bytes([100])))


def test_invalid_json_content_is_undecodable() -> None:
    with pytest.raises(UndecodableUpdate, match="JSON"):
        decode_update(one_struct(0x22, MAP_PARENT + var_uints(1) + var_strings("{nope")))


def test_invalid_utf8_key_is_undecodable() -> None:
    body = var_uints(1) + var_strings("fields") + var_uints(2) + b"\xc3\x28" + var_uints(1, 0x78)
    with pytest.raises(UndecodableUpdate, match="UTF-8"):
        decode_update(one_struct(0x28, body))


def _nested_any(depth: int) -> bytes:
    return one_struct(0x28, MAP_PARENT + var_uints(1) + bytes([0x75, 0x01]) * depth + b"\x7e")


def test_deep_but_reasonable_nesting_decodes() -> None:
    item = only_item(_nested_any(200))
    depth = 0
    value = item.value
    while isinstance(value, list):
        (value,) = value
        depth += 1
    assert (depth, value) == (200, None)


@pytest.mark.parametrize("kind", ["any", "json"])
def test_absurdly_deep_nesting_is_undecodable(kind: str) -> None:
    depth = 5000
    if kind == "any":
        update = _nested_any(depth)
        Doc().apply_update(update)  # pycrdt takes it: the room would go on to decode it
    else:
        text = "[" * depth + "]" * depth
        update = one_struct(0x22, MAP_PARENT + var_uints(1) + var_strings(text))
    with pytest.raises(UndecodableUpdate):
        decode_update(update)


# -- truncated and garbage input: UndecodableUpdate, nothing else ------------------------------

edits = st.lists(
    st.one_of(
        st.tuples(
            st.just("set"),
            st.sampled_from(["status", "step", "tags"]),
            st.one_of(st.integers(-(2**53), 2**53), st.floats(allow_nan=False), st.text()),
        ),
        st.tuples(st.just("text"), st.text(max_size=6), st.integers(min_value=0, max_value=50)),
        st.tuples(st.just("del"), st.integers(min_value=0, max_value=50), st.integers(1, 4)),
        st.tuples(st.just("push"), st.text(max_size=4), st.booleans()),
    ),
    min_size=1,
    max_size=12,
)


def _byte_offset(text: Text, code_points: int) -> int:
    """pycrdt's Text offsets count UTF-8 bytes; an offset inside a character makes yrs panic."""
    return len(str(text)[:code_points].encode())


def _build(client_id: int, script: list[tuple[Any, ...]]) -> Doc:
    doc: Doc = Doc(client_id=client_id)
    fields = doc.get("fields", type=Map)
    text = doc.get("title", type=Text)
    tags = doc.get("tags", type=Array)
    for op, a, b in script:
        if op == "set":
            fields[a] = b
        elif op == "text":
            text.insert(_byte_offset(text, b), a)
        elif op == "del" and len(text):
            start = min(a, len(str(text)) - 1)
            del text[_byte_offset(text, start) : _byte_offset(text, start + b)]
        elif op == "push":
            tags.append({"tag": a} if b else a)
    return doc


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.integers(min_value=0, max_value=2**53 - 1), edits)
def test_pycrdt_updates_decode_with_contiguous_clocks(client_id: int, script: list[Any]) -> None:
    doc = _build(client_id, script)
    decoded = decode_update(doc.get_update())
    clock = 0
    for item in decoded.items:
        assert item.id == (client_id, clock)  # one client, no GC: the items tile its clocks
        clock += item.length
    assert decode_state_vector(doc.get_state()).get(client_id, 0) == clock


@FUZZ
@given(st.integers(min_value=1, max_value=2**32 - 1), edits, st.data())
def test_every_truncation_is_undecodable(client_id: int, script: list[Any], data: Any) -> None:
    update = _build(client_id, script).get_update()
    cut = data.draw(st.integers(min_value=0, max_value=len(update) - 1))
    with pytest.raises(UndecodableUpdate):
        decode_update(update[:cut])


@FUZZ
@given(st.binary(max_size=64))
def test_garbage_raises_only_undecodable_update(garbage: bytes) -> None:
    try:
        decoded = decode_update(garbage)
    except UndecodableUpdate:
        return
    assert isinstance(decoded, DecodedUpdate)


@FUZZ
@given(edits, st.data())
def test_corrupted_updates_raise_only_undecodable_update(script: list[Any], data: Any) -> None:
    update = bytearray(_build(1234, script).get_update())
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        position = data.draw(st.integers(min_value=0, max_value=len(update) - 1))
        update[position] = data.draw(st.integers(min_value=0, max_value=255))
    with contextlib.suppress(UndecodableUpdate):
        decode_update(bytes(update))


# -- first_client_id ---------------------------------------------------------------------------


@pytest.mark.parametrize("client_id", [0, 1, 127, 128, 2**31, 2**32 - 1, 2**53 - 1])
def test_first_client_id(client_id: int) -> None:
    doc: Doc = Doc(client_id=client_id)
    doc.get("fields", type=Map)["k"] = 1
    assert first_client_id(doc.get_update()) == client_id


def _first_client_id_read(update: bytes) -> int | None:
    """What `first_client_id` answers, read through the `Reader` alone (its fallback)."""
    reader = Reader(update)
    if reader.read_var_uint() == 0:
        return None
    reader.read_var_uint()
    return reader.read_var_uint()


def _answer(read: Callable[[bytes], int | None], update: bytes) -> object:
    try:
        return read(update)
    except ProtocolError as error:
        return type(error)


@pytest.mark.parametrize("groups", [0, 1, 2, 127, 128, 300])
@pytest.mark.parametrize("structs", [1, 127, 128])
@pytest.mark.parametrize(
    "client_id", [0, 1, 127, 128, 2**28 - 1, 2**28, 2**32 - 1, 2**35, 2**53 - 1]
)
def test_first_client_id_inline_reads_as_the_reader(
    groups: int, structs: int, client_id: int
) -> None:
    """The inline read of the commonest shape gives the `Reader`'s answer for every count and
    id length, cut short anywhere, padded (over-long varUints) and followed by anything."""
    head = var_uints(groups, structs, client_id)
    for update in (
        head + b"\x00\x84\x01x",
        *(head[:cut] for cut in range(len(head))),
        var_uints(groups, structs) + bytes([0x80 | (client_id & 0x7F)]) + b"\x80" * 5 + b"\x00",
        var_uints(groups, structs) + b"\xff" * 9 + b"\x01",
    ):
        assert _answer(first_client_id, update) == _answer(_first_client_id_read, update), update


@given(st.binary(max_size=12))
@settings(max_examples=2000)
def test_first_client_id_on_any_bytes_is_the_readers(update: bytes) -> None:
    assert _answer(first_client_id, update) == _answer(_first_client_id_read, update)


def test_first_client_id_of_a_delete_only_update_is_none() -> None:
    doc: Doc = Doc(client_id=5)
    doc.get("fields", type=Map)["k"] = 1
    state = doc.get_state()
    del doc.get("fields", type=Map)["k"]
    update = doc.get_update(state)
    assert decode_update(update).items == []
    assert first_client_id(update) is None


def test_first_client_id_is_the_first_group() -> None:
    a: Doc = Doc(client_id=10)
    b: Doc = Doc(client_id=20)
    a.get("fields", type=Map)["x"] = 1
    b.get("fields", type=Map)["y"] = 2
    merged = pycrdt.merge_updates(a.get_update(), b.get_update())
    groups = [item.id[0] for item in decode_update(merged).items]
    assert set(groups) == {10, 20}
    assert first_client_id(merged) == groups[0]


def test_first_client_id_of_a_truncated_update_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        first_client_id(b"\x01\x01")
