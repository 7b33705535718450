"""crdt/content.py and crdt/metadata.py: a draft as JSON, its first update, its figures."""

from __future__ import annotations

from typing import Any

import pytest
from pycrdt import Array, Doc, Map, Text, XmlElement, XmlFragment, XmlText

from crdt.content import (
    DraftContent,
    FieldSpec,
    fields_of,
    initial_problems,
    initial_update,
    read_content,
)
from crdt.metadata import content_meta, count_words
from crdt.schema import DEFAULT_SCHEMA
from crdt.updates import decode_update

FIELDS = fields_of(DEFAULT_SCHEMA)


def test_fields_follow_the_schema() -> None:
    assert FIELDS[:3] == (
        FieldSpec("title", "text"),
        FieldSpec("description", "text"),
        FieldSpec("status", "value", "CREATING", "moved"),
    )
    assert FieldSpec("tags", "list") in FIELDS
    assert len(FIELDS) == len(DEFAULT_SCHEMA.fields)


def test_initial_update_loads_like_any_update_and_reads_back() -> None:
    update = initial_update(
        client_id=123_456,
        fields=FIELDS,
        title="Hello there",
        values={"description": "More words", "status": "DRAFT", "tags": ["a", "b"], "x": 1},
    )
    assert update is not None
    doc: Doc = Doc()
    doc.apply_update(update)
    content = read_content(doc, FIELDS)
    assert content.texts == {"title": "Hello there", "description": "More words"}
    assert content.values == {"status": "DRAFT", "x": 1}
    assert content.lists == {"tags": ["a", "b"]}
    assert content.conflicts == {}
    # One writer: the 32-bit client id given.
    other: Doc = Doc()
    assert set(_clients(doc)) == {123_456}
    assert read_content(other, FIELDS).texts == {"title": "", "description": ""}


def test_an_empty_start_writes_nothing() -> None:
    assert initial_update(client_id=1, fields=FIELDS, title=None, values={}) is None
    assert initial_update(client_id=1, fields=FIELDS, title="", values={}) is None


def test_richtext_reads_as_its_blocks_without_formatting() -> None:
    doc: Doc = Doc()
    fragment = doc.get("description", type=XmlFragment)
    paragraph = fragment.children.append(XmlElement("paragraph"))
    text = paragraph.children.append(XmlText("hello big"))
    text.insert(9, " world", attrs={"bold": True})
    fragment.children.append(XmlElement("paragraph")).children.append(XmlText("second one"))
    fields = (FieldSpec("title", "text"), FieldSpec("description", "richtext"))
    content = read_content(doc, fields)
    assert content.texts["description"] == "hello big world\nsecond one"
    assert content_meta(content, fields).word_count == 5


def test_conflicts_and_values_are_read_whole() -> None:
    doc: Doc = Doc()
    doc.get("conflicts", type=Map)["c1"] = {"field": "goal_amount", "candidates": []}
    doc.get("fields", type=Map)["goal_amount"] = 10
    doc.get("tags", type=Array).append("x")
    doc.get("title", type=Text).insert(0, "t")
    content = read_content(doc, FIELDS)
    meta = content_meta(content, FIELDS)
    assert content.conflicts == {"c1": {"field": "goal_amount", "candidates": []}}
    assert (meta.open_conflicts, meta.filled_fields, meta.total_fields) == (1, 3, 8)
    assert meta.completion == 37.5
    assert not meta.complete


@pytest.mark.parametrize(
    ("texts", "values", "lists", "filled"),
    [
        ({"title": "   \n"}, {}, {}, 0),
        ({"title": "x"}, {"status": "", "category": None}, {"tags": []}, 1),
        ({}, {"current_step": 0, "goal_amount": 0.0}, {"tags": ["a"]}, 3),
    ],
)
def test_what_counts_as_filled(
    texts: dict[str, str], values: dict[str, Any], lists: dict[str, list[Any]], filled: int
) -> None:
    meta = content_meta(DraftContent(texts=texts, values=values, lists=lists), FIELDS)
    assert meta.filled_fields == filled


def test_words_are_runs_of_non_space() -> None:
    assert count_words("") == 0
    assert count_words("  one\ttwo\n\nthree  ") == 3
    assert count_words("don't stop-me now") == 3
    meta = content_meta(DraftContent(texts={"title": "a b", "description": "c"}), FIELDS)
    assert meta.word_count == 3


def test_a_schema_with_no_fields_is_complete() -> None:
    assert content_meta(DraftContent(), ()).completion == 100.0


@pytest.mark.parametrize(
    ("title", "values", "problem"),
    [
        ("t", {"title": "u"}, "twice"),
        (None, {"tags": "a"}, "list field"),
        (None, {"description": 3}, "text field"),
        (None, {"status": ["DRAFT"]}, "one value"),
        (None, {"current_step": "two"}, "integer"),
        (None, {"tags": ["a", 1]}, "string"),
        (None, {"status": "PUBLISHED"}, "may start as"),
        (None, {"deadline": "soon"}, "date"),
    ],
)
def test_initial_problems_name_the_field(
    title: str | None, values: dict[str, Any], problem: str
) -> None:
    problems = initial_problems(DEFAULT_SCHEMA, title, values)
    assert len(problems) == 1
    assert problem in problems[0]


def test_initial_values_that_fit_have_no_problems() -> None:
    values = {
        "status": "DRAFT",
        "current_step": 3,
        "goal_amount": 10.5,
        "deadline": "2026-01-31",
        "tags": ["a"],
        "description": "d",
        "not_in_schema": True,
    }
    assert initial_problems(DEFAULT_SCHEMA, "title", values) == []
    assert initial_problems(DEFAULT_SCHEMA, None, {"status": "CREATING"}) == []


def _clients(doc: Doc) -> list[int]:
    return sorted({item.id[0] for item in decode_update(doc.get_update()).items})
