"""The rich-text diff reports formatting changes (issue 25 point 2): text whose marks or block
type changed between two versions comes out as a `format` op on exactly that text, with the
marks added, removed or changed; insertions and deletions stay as the text comparison found."""

from __future__ import annotations

import json
from typing import Any

from pycrdt import Doc, XmlElement, XmlFragment, XmlText

from crdt.content import FieldSpec, read_content
from crdt.diff import FORMAT_LIMIT, diff_content

FIELDS = (FieldSpec("title", "text"), FieldSpec("body", "richtext"))
LINK = {"link": {"href": "https://example.org", "title": None}}

Block = tuple[str, dict[str, Any], list[tuple[str, dict[str, Any] | None]]]


def _doc(blocks: list[Block]) -> Doc:
    """A fragment as y-prosemirror writes it: one element per block, one XmlText in each."""
    doc: Doc = Doc()
    fragment = doc.get("body", type=XmlFragment)
    for tag, attrs, runs in blocks:
        element = fragment.children.append(XmlElement(tag, attrs))
        text = element.children.append(XmlText())
        for chunk, marks in runs:
            text.insert(len(str(text).encode()), chunk, attrs=marks)
    return doc


def _diff(old: list[Block], new: list[Block]) -> list[dict[str, Any]]:
    before = read_content(_doc(old), FIELDS, formats=True)
    after = read_content(_doc(new), FIELDS, formats=True)
    changes, _ = diff_content(
        before.as_json(), after.as_json(), formats=(before.formats, after.formats)
    )
    return changes


def _para(*runs: tuple[str, dict[str, Any] | None]) -> Block:
    return ("paragraph", {}, list(runs))


def test_bold_added_is_formatting_on_exactly_that_word() -> None:
    changes = _diff(
        [_para(("Hello big world", None))],
        [_para(("Hello ", None), ("big", {"bold": {}}), (" world", None))],
    )
    assert changes == [
        {
            "field": "body",
            "kind": "text",
            "ops": [
                {"op": "equal", "text": "Hello "},
                {"op": "format", "text": "big", "added": ["bold"], "removed": [], "changed": []},
                {"op": "equal", "text": " world"},
            ],
            "granularity": "char",
            "inserted": 0,
            "deleted": 0,
            "formatted": 3,
        }
    ]


def test_italic_removed_and_link_added_are_reported_apart() -> None:
    [change] = _diff(
        [_para(("one ", {"italic": {}}), ("two three", None))],
        [_para(("one two ", None), ("three", LINK))],
    )
    assert change["ops"] == [
        {"op": "format", "text": "one ", "added": [], "removed": ["italic"], "changed": []},
        {"op": "equal", "text": "two "},
        {"op": "format", "text": "three", "added": ["link"], "removed": [], "changed": []},
    ]
    assert change["formatted"] == 9


def test_a_link_address_changed_is_a_changed_mark() -> None:
    other = {"link": {"href": "https://example.com", "title": None}}
    [change] = _diff([_para(("see", LINK))], [_para(("see", other))])
    assert change["ops"] == [
        {"op": "format", "text": "see", "added": [], "removed": [], "changed": ["link"]}
    ]


def test_a_paragraph_made_a_heading_marks_its_text_only() -> None:
    [change] = _diff(
        [_para(("Plan", None)), _para(("Rest", None))],
        [("heading", {"level": 2.0}, [("Plan", None)]), _para(("Rest", None))],
    )
    assert change["ops"] == [
        {
            "op": "format",
            "text": "Plan",
            "added": [],
            "removed": [],
            "changed": [],
            "block": ["paragraph", "heading 2"],
        },
        {"op": "equal", "text": "\nRest"},
    ]


def test_a_pure_insertion_is_unchanged_by_formatting() -> None:
    old = [_para(("Seeds ", None), ("garden", {"bold": {}}))]
    new = [_para(("New Seeds ", None), ("garden", {"bold": {}}))]
    [change] = _diff(old, new)
    assert change["ops"] == [
        {"op": "insert", "text": "New "},
        {"op": "equal", "text": "Seeds garden"},
    ]
    assert (change["inserted"], change["deleted"], change["formatted"]) == (4, 0, 0)
    # and the same texts without formatting compare exactly as before
    plain, _ = diff_content(
        {"texts": {"body": "Seeds garden"}}, {"texts": {"body": "New Seeds garden"}}
    )
    assert plain[0]["ops"] == change["ops"]
    assert "formatted" not in plain[0]


def test_inserted_text_with_marks_is_an_insertion_not_formatting() -> None:
    [change] = _diff(
        [_para(("a c", None))],
        [_para(("a ", None), ("b ", {"bold": {}}), ("c", None))],
    )
    assert [op["op"] for op in change["ops"]] == ["equal", "insert", "equal"]
    assert change["formatted"] == 0


def test_the_same_formatting_split_differently_is_no_change() -> None:
    old = [_para(("ab", {"bold": {}}))]
    new = [_para(("a", {"bold": {}}), ("b", {"bold": {}}))]
    assert _diff(old, new) == []
    assert _diff(old, old) == []


def test_without_formats_a_rich_text_compares_as_plain_text() -> None:
    before = read_content(_doc([_para(("word", None))]), FIELDS, formats=True)
    after = read_content(_doc([_para(("word", {"bold": {}}))]), FIELDS, formats=True)
    assert diff_content(before.as_json(), after.as_json()) == ([], False)
    assert read_content(_doc([_para(("word", None))]), FIELDS).formats == {}


def test_an_edit_and_a_format_in_one_text_keep_their_places() -> None:
    [change] = _diff(
        [_para(("alpha beta gamma", None))],
        [_para(("alpha ", None), ("beta", {"bold": {}}), (" delta gamma", None))],
    )
    assert change["ops"] == [
        {"op": "equal", "text": "alpha "},
        {"op": "format", "text": "beta", "added": ["bold"], "removed": [], "changed": []},
        {"op": "equal", "text": " "},
        {"op": "insert", "text": "delta "},
        {"op": "equal", "text": "gamma"},
    ]


# -- bounded work on a hostile rich text (the diff runs on a REST request) --------------------


def _alternating(count: int, marks: dict[str, Any]) -> list[tuple[str, dict[str, Any] | None]]:
    """`count` one-letter runs, every other one with `marks`: as many format pieces as runs."""
    return [("x", marks if i % 2 else None) for i in range(count)]


def test_a_huge_block_attribute_is_not_repeated_in_every_format_op() -> None:
    """A block type of megabytes (an attribute's value) changed under 1,000 alternately bolded
    letters was copied into each of their format ops: 1,000 x 2 x the attribute's size."""
    huge_old, huge_new = "a" * 200_000, "b" * 200_000
    old = [("paragraph", {"x": huge_old}, _alternating(1_000, {"italic": {}}))]
    new = [("paragraph", {"x": huge_new}, _alternating(1_000, {"bold": {}}))]
    [change] = _diff(old, new)
    assert len(json.dumps(change)) < 400_000  # was 400 MB: the block paths are short
    assert change["formatted"] == 1_000  # each letter's formatting changed, and is said so
    blocks = {tuple(op["block"]) for op in change["ops"] if op["op"] == "format"}
    assert len(blocks) == 1 and all(len(path) < 300 for path in blocks.pop())


def test_a_huge_nesting_label_is_not_copied_into_every_block_below_it() -> None:
    """One element's huge attribute was copied into the block path of every element inside
    it, each its own string: reading 2,000 paragraphs cost 2,000 x its size."""
    doc: Doc = Doc()
    outer = doc.get("body", type=XmlFragment).children.append(
        XmlElement("div", {"x": "a" * 100_000})
    )
    for _ in range(2_000):
        outer.children.append(XmlElement("paragraph")).children.append(XmlText("word"))
    runs = read_content(doc, FIELDS, formats=True).formats["body"]
    assert max(len(run.block) for run in runs) < 300
    assert {run.block.rsplit(" / ", 1)[-1] for run in runs} == {"paragraph", ""}


def test_huge_mark_names_in_every_format_op_stop_at_the_format_bound() -> None:
    """Mark names are listed in each format op: 100 names of 1,000 characters removed under
    1,000 alternately bolded letters listed 100 MB; past FORMAT_LIMIT characters of names
    and blocks, the rest is left as kept text and the answer says it is bounded."""
    many = {f"{i:04d}" + "m" * 1_000: {} for i in range(100)}
    old = [_para(("x" * 1_000, many))]
    new = [_para(*_alternating(1_000, {"bold": {}}))]
    before = read_content(_doc(old), FIELDS, formats=True)
    after = read_content(_doc(new), FIELDS, formats=True)
    changes, bounded = diff_content(
        before.as_json(), after.as_json(), formats=(before.formats, after.formats)
    )
    assert bounded
    [change] = changes
    assert len(json.dumps(change)) < 3 * FORMAT_LIMIT
    assert "".join(op["text"] for op in change["ops"]) == "x" * 1_000  # all the text, in order
    assert change["ops"][0]["op"] == "format"  # the first ones are still told


def test_a_deep_nesting_keeps_its_innermost_blocks_whole() -> None:
    doc: Doc = Doc()
    node: XmlFragment | XmlElement = doc.get("body", type=XmlFragment)
    for _ in range(12):
        node = node.children.append(XmlElement("bulletList"))
        node = node.children.append(XmlElement("listItem"))
    node.children.append(XmlElement("paragraph")).children.append(XmlText("deep"))
    [run] = read_content(doc, FIELDS, formats=True).formats["body"]
    assert len(run.block) <= 200
    assert run.block.startswith("… / ") and run.block.endswith(" / listItem / paragraph")
    assert set(run.block.split(" / ")[1:]) == {"bulletList", "listItem", "paragraph"}
