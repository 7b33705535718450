"""crdt.schema: the default schema and the errors a bad schema file gets at start."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from crdt.errors import SchemaError
from crdt.schema import (
    DEFAULT_SCHEMA,
    DEFAULT_SCHEMA_TOML,
    Kind,
    Rule,
    ValueType,
    load_schema,
    parse_schema,
)

# -- the default schema (design.md, "The draft document") ---------------------------------------


def test_default_schema_has_the_campaign_fields() -> None:
    fields = DEFAULT_SCHEMA.fields
    assert list(fields) == [
        "title",
        "description",
        "status",
        "current_step",
        "goal_amount",
        "category",
        "deadline",
        "tags",
    ]
    shape = {name: (f.kind, f.type, f.rule) for name, f in fields.items()}
    assert shape == {
        "title": (Kind.TEXT, None, None),
        "description": (Kind.TEXT, None, None),
        "status": (Kind.VALUE, ValueType.STRING, Rule.TRANSITION),
        "current_step": (Kind.VALUE, ValueType.INTEGER, Rule.MAX),
        "goal_amount": (Kind.VALUE, ValueType.NUMBER, Rule.MANUAL),
        "category": (Kind.VALUE, ValueType.STRING, Rule.LWW),
        "deadline": (Kind.VALUE, ValueType.DATE, Rule.MANUAL),
        "tags": (Kind.LIST, ValueType.STRING, Rule.UNION),
    }
    assert fields["current_step"].initial == 1
    assert fields["goal_amount"].initial is None


def test_default_status_states_and_moves() -> None:
    status = DEFAULT_SCHEMA.fields["status"]
    assert status.initial == "CREATING"
    assert status.precedence == (
        "CREATING",
        "DRAFT",
        "IN_REVIEW",
        "APPROVED",
        "PUBLISHED",
        "ARCHIVED",
    )
    assert status.transitions == {
        "CREATING": ("DRAFT", "ARCHIVED"),
        "DRAFT": ("IN_REVIEW", "ARCHIVED"),
        "IN_REVIEW": ("DRAFT", "APPROVED", "ARCHIVED"),
        "APPROVED": ("PUBLISHED", "DRAFT", "ARCHIVED"),
        "PUBLISHED": ("ARCHIVED",),
        "ARCHIVED": ("DRAFT",),
    }
    assert status.rank("ARCHIVED") > status.rank("PUBLISHED") > status.rank("CREATING")
    assert status.rank("UNKNOWN") == -1


def test_default_schema_views() -> None:
    assert [f.name for f in DEFAULT_SCHEMA.kind_of(Kind.TEXT)] == ["title", "description"]
    assert [f.name for f in DEFAULT_SCHEMA.kind_of(Kind.LIST)] == ["tags"]
    assert list(DEFAULT_SCHEMA.values) == [
        "status",
        "current_step",
        "goal_amount",
        "category",
        "deadline",
    ]


def test_the_design_md_toml_parses_to_the_default_schema(tmp_path: Path) -> None:
    design = Path(__file__).resolve().parents[2] / "docs" / "design.md"
    block = re.search(r"```toml\n(.*?)```", design.read_text(), re.S)
    assert block is not None
    path = tmp_path / "schema.toml"
    path.write_text(block.group(1))
    assert load_schema(path) == DEFAULT_SCHEMA


def test_default_toml_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "schema.toml"
    path.write_text(DEFAULT_SCHEMA_TOML)
    assert load_schema(path) == DEFAULT_SCHEMA


@pytest.mark.parametrize(
    ("value_type", "good", "bad"),
    [
        (ValueType.STRING, ["", "x"], [1, None, True]),
        (ValueType.INTEGER, [0, -3, 4.0, 2**60], [1.5, True, "1", None, float("nan")]),
        (ValueType.NUMBER, [0, 1.5, -2], [True, "1", float("inf"), float("nan"), None]),
        (ValueType.BOOLEAN, [True, False], [0, 1, "true", None]),
        (ValueType.DATE, ["2025-06-30", "2025-06-30T12:00:00+02:00"], ["30/06/2025", "", 20250630]),
    ],
)
def test_value_types(value_type: ValueType, good: list[Any], bad: list[Any]) -> None:
    assert all(value_type.accepts(v) for v in good), good
    assert not any(value_type.accepts(v) for v in bad), bad


# -- bad schemas: SchemaError naming the field and the problem ---------------------------------


def parse(text: str) -> Any:
    return parse_schema(tomllib.loads(text))


BAD_SCHEMAS = [
    pytest.param(
        '[fields.body]\nkind = "html"',
        ["body", "kind", "html"],
        id="unknown-kind",
    ),
    pytest.param('[fields.body]\ntype = "string"', ["body", "kind", "None"], id="missing-kind"),
    pytest.param(
        '[fields.price]\nkind = "value"\ntype = "money"',
        ["price", "type", "money"],
        id="unknown-type",
    ),
    pytest.param('[fields.price]\nkind = "value"', ["price", "type"], id="missing-type"),
    pytest.param(
        '[fields.price]\nkind = "value"\ntype = "number"\nrule = "average"',
        ["price", "rule", "average"],
        id="unknown-rule",
    ),
    pytest.param(
        '[fields.title]\nkind = "text"\nrule = "lww"',
        ["title", "text", "rule"],
        id="rule-on-text",
    ),
    pytest.param(
        '[fields.title]\nkind = "text"\nrule = "max"\ntype = "integer"',
        ["title", "text"],
        id="max-on-text",
    ),
    pytest.param(
        '[fields.body]\nkind = "richtext"\nrule = "manual"',
        ["body", "richtext", "rule"],
        id="rule-on-richtext",
    ),
    pytest.param(
        '[fields.title]\nkind = "text"\ninitial = "Untitled"',
        ["title", "initial"],
        id="initial-on-text",
    ),
    pytest.param(
        '[fields.category]\nkind = "value"\ntype = "string"\nrule = "max"',
        ["category", "max", "ordered type"],
        id="max-on-string",
    ),
    pytest.param(
        '[fields.flag]\nkind = "value"\ntype = "boolean"\nrule = "min"',
        ["flag", "min", "ordered type"],
        id="min-on-boolean",
    ),
    pytest.param(
        '[fields.tags]\nkind = "list"\ntype = "string"\nrule = "max"',
        ["tags", "max", "list"],
        id="value-rule-on-list",
    ),
    pytest.param(
        '[fields.size]\nkind = "value"\ntype = "string"\nrule = "union"',
        ["size", "union", "value"],
        id="list-rule-on-value",
    ),
    pytest.param(
        '[fields.priority]\nkind = "value"\ntype = "string"\nrule = "precedence"',
        ["priority", "precedence", "list"],
        id="precedence-without-list",
    ),
    pytest.param(
        '[fields.priority]\nkind = "value"\ntype = "string"\nrule = "precedence"\nprecedence = []',
        ["priority", "precedence"],
        id="precedence-empty-list",
    ),
    pytest.param(
        '[fields.priority]\nkind = "value"\ntype = "integer"\nrule = "precedence"\n'
        'precedence = ["low", "high"]',
        ["priority", "'low'", "integer"],
        id="precedence-of-wrong-type",
    ),
    pytest.param(
        '[fields.status]\nkind = "value"\ntype = "string"\nrule = "transition"',
        ["status", "transition", "transitions table"],
        id="transition-without-table",
    ),
    pytest.param(
        '[fields.status]\nkind = "value"\ntype = "string"\nrule = "transition"\ntransitions = {}',
        ["status", "transitions table"],
        id="transition-empty-table",
    ),
    pytest.param(
        '[fields.status]\nkind = "value"\ntype = "string"\nrule = "transition"\n'
        'transitions = { A = "B" }',
        ["status", "'A'", "list"],
        id="transition-moves-not-a-list",
    ),
    pytest.param(
        '[fields.status]\nkind = "value"\ntype = "string"\nrule = "transition"\n'
        'transitions = { A = ["B", 3] }',
        ["status", "3", "string"],
        id="transition-state-of-wrong-type",
    ),
    pytest.param(
        '[fields.level]\nkind = "value"\ntype = "integer"\nrule = "transition"\n'
        "transitions = { 1 = [2] }",
        ["level", "'1'", "integer"],
        id="transition-key-of-wrong-type",
    ),
    pytest.param(
        '[fields.status]\nkind = "value"\ntype = "string"\nrule = "lww"\n'
        'transitions = { A = ["B"] }',
        ["status", "transitions", "transition"],
        id="transitions-without-transition-rule",
    ),
    pytest.param(
        '[fields.current_step]\nkind = "value"\ntype = "integer"\nrule = "max"\ninitial = "one"',
        ["current_step", "initial", "'one'", "integer"],
        id="initial-of-wrong-type",
    ),
    pytest.param(
        '[fields.current_step]\nkind = "value"\ntype = "integer"\ninitial = 1.5',
        ["current_step", "initial", "1.5"],
        id="initial-not-an-integer",
    ),
    pytest.param(
        '[fields.current_step]\nkind = "value"\ntype = "integer"\nrule = "max"\ndefault = 1',
        ["current_step", "unknown keys", "default"],
        id="unknown-field-key",
    ),
    pytest.param(
        '[fields.fields]\nkind = "text"',
        ["'fields'", "root"],
        id="reserved-fields-text",
    ),
    pytest.param(
        '[fields.conflicts]\nkind = "richtext"',
        ["'conflicts'", "root"],
        id="reserved-conflicts-richtext",
    ),
    pytest.param(
        '[fields.conflicts]\nkind = "list"\ntype = "string"',
        ["'conflicts'", "root"],
        id="reserved-conflicts-list",
    ),
    pytest.param(
        '[fields.fields]\nkind = "list"\ntype = "string"\nrule = "union"',
        ["'fields'", "root"],
        id="reserved-fields-list",
    ),
    pytest.param('fields = { status = "value" }', ["status", "table"], id="field-not-a-table"),
    pytest.param(
        '[fields.body]\nkind = "richtext"\nfilled = "set"', ["body", "filled"], id="filled-text"
    ),
    pytest.param(
        '[fields.tags]\nkind = "list"\ntype = "string"\nfilled = "set"',
        ["tags", "filled", "value fields"],
        id="filled-list",
    ),
    pytest.param(
        '[fields.s]\nkind = "value"\ntype = "string"\nfilled = "moved"',
        ["'s'", "moved", "initial"],
        id="filled-moved-without-initial",
    ),
    pytest.param(
        '[fields.s]\nkind = "value"\ntype = "string"\nfilled = "sometimes"',
        ["'s'", "sometimes", "moved", "set"],
        id="filled-unknown-way",
    ),
    pytest.param(
        '[fields.n]\nkind = "value"\ntype = "integer"\nfilled = [1, "two"]',
        ["'n'", "filled value", "'two'", "integer"],
        id="filled-value-of-another-type",
    ),
]


def test_filled_defaults_to_moved_with_an_initial_value_and_set_without() -> None:
    schema = parse(
        '[fields.status]\nkind = "value"\ntype = "string"\ninitial = "NEW"\n'
        '[fields.size]\nkind = "value"\ntype = "integer"\n'
        '[fields.step]\nkind = "value"\ntype = "integer"\ninitial = 1\nfilled = "set"\n'
        '[fields.phase]\nkind = "value"\ntype = "string"\nfilled = ["DONE", "SHIPPED"]\n'
    )
    filled = {name: field.filled for name, field in schema.fields.items()}
    assert filled == {
        "status": "moved",
        "size": "set",
        "step": "set",
        "phase": ("DONE", "SHIPPED"),
    }


@pytest.mark.parametrize(("text", "words"), BAD_SCHEMAS)
def test_bad_schema_names_the_field_and_the_problem(text: str, words: list[str]) -> None:
    with pytest.raises(SchemaError) as caught:
        parse(text)
    message = str(caught.value)
    for word in words:
        assert word in message, (word, message)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({}, ["at least one", "[fields.NAME]"]),
        ({"fields": {}}, ["at least one"]),
        ({"fields": "status"}, ["at least one"]),
        ({"field": {"x": {"kind": "text"}}}, ["unknown top-level", "field"]),
        ({"fields": {"x": {"kind": "text"}}, "version": 2}, ["unknown top-level", "version"]),
    ],
    ids=["empty", "empty-fields", "fields-not-a-table", "misspelt-fields", "extra-top-level"],
)
def test_bad_schema_shape(data: dict[str, Any], words: list[str]) -> None:
    with pytest.raises(SchemaError) as caught:
        parse_schema(data)
    for word in words:
        assert word in str(caught.value)


@pytest.mark.parametrize("name", ["fields", "conflicts"])
def test_value_fields_named_like_server_roots_are_map_keys_not_roots(name: str) -> None:
    """A `value` field is a key of the `fields` map, not a root: the name does not clash."""
    schema = parse(f'[fields.{name}]\nkind = "value"\ntype = "string"')
    assert schema.fields[name].kind is Kind.VALUE


def test_load_schema_on_a_toml_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('[fields.status\nkind = "value"\n')
    with pytest.raises(SchemaError) as caught:
        load_schema(path)
    assert str(path) in str(caught.value)
    assert "line 1" in str(caught.value)


def test_load_schema_on_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="cannot read schema"):
        load_schema(tmp_path / "nope.toml")


def test_load_schema_reports_the_first_bad_field(tmp_path: Path) -> None:
    path = tmp_path / "schema.toml"
    path.write_text(DEFAULT_SCHEMA_TOML + '\n[fields.summary]\nkind = "text"\nrule = "lww"\n')
    with pytest.raises(SchemaError, match="'summary'"):
        load_schema(path)


# -- good schemas ---------------------------------------------------------------------------------


def test_minimal_fields_take_defaults() -> None:
    schema = parse(
        '[fields.notes]\nkind = "richtext"\n'
        '[fields.size]\nkind = "value"\ntype = "number"\n'
        '[fields.labels]\nkind = "list"\ntype = "string"\n'
    )
    assert schema.fields["notes"].rule is None
    assert schema.fields["size"].rule is Rule.LWW
    assert schema.fields["labels"].rule is Rule.UNION


def test_every_value_rule_and_list_rule_parses() -> None:
    schema = parse(
        """
[fields.a]
kind = "value"
type = "integer"
rule = "min"
[fields.b]
kind = "value"
type = "date"
rule = "max"
[fields.c]
kind = "value"
type = "string"
rule = "precedence"
precedence = ["x", "y"]
[fields.d]
kind = "value"
type = "boolean"
rule = "manual"
[fields.e]
kind = "list"
type = "number"
rule = "lww"
[fields.f]
kind = "value"
type = "string"
rule = "transition"
transitions = { x = ["y"], y = [] }
"""
    )
    assert {n: f.rule for n, f in schema.fields.items()} == {
        "a": Rule.MIN,
        "b": Rule.MAX,
        "c": Rule.PRECEDENCE,
        "d": Rule.MANUAL,
        "e": Rule.LWW,
        "f": Rule.TRANSITION,
    }
    assert schema.fields["f"].transitions == {"x": ("y",), "y": ()}
