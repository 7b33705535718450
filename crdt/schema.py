"""The draft schema: each field's name, kind (how it is stored in Yjs) and, for semantic kinds,
its type and merge rule. Loaded from TOML (`draftsync serve --schema FILE.toml`).

    kind      Yjs shape                         rules
    text      root Y.Text named after the field  none, ever: text merges through the CRDT
    richtext  root Y.XmlFragment                 none, ever
    value     key of the root Y.Map "fields"     lww max min precedence transition manual
    list      root Y.Array named after the field union lww

When a value field counts as *filled* (completion, `crdt.metadata`) is its `filled` key:
"moved" (the default when it has an `initial` value: filled once its value differs from it,
so a new draft's status CREATING is not yet a choice), "set" (the default otherwise: filled
when it holds a value, the initial one included), or a list of the values that count.

A schema that breaks a rule fails with `SchemaError` naming the field and the problem.
"""

from __future__ import annotations

import datetime as dt
import math
import tomllib
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from crdt.errors import SchemaError

__all__ = [
    "DEFAULT_SCHEMA",
    "DEFAULT_SCHEMA_TOML",
    "RESERVED_ROOTS",
    "Field",
    "Kind",
    "Rule",
    "Schema",
    "ValueType",
    "load_schema",
    "parse_schema",
]

RESERVED_ROOTS = frozenset({"fields", "conflicts"})


class Kind(Enum):
    TEXT = "text"
    RICHTEXT = "richtext"
    VALUE = "value"
    LIST = "list"


class ValueType(Enum):
    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATE = "date"  # an ISO 8601 date or date-time string

    def accepts(self, value: Any) -> bool:
        if self is ValueType.STRING:
            return isinstance(value, str)
        if self is ValueType.BOOLEAN:
            return isinstance(value, bool)
        if isinstance(value, bool):
            return False
        if self is ValueType.INTEGER:
            # Yjs numbers arrive in pycrdt as floats: 3 and 3.0 are the same integer.
            return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        if self is ValueType.NUMBER:
            return isinstance(value, int | float) and math.isfinite(value)
        return isinstance(value, str) and _is_iso_date(value)


def _is_iso_date(text: str) -> bool:
    try:
        dt.datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


class Rule(Enum):
    LWW = "lww"
    MAX = "max"
    MIN = "min"
    PRECEDENCE = "precedence"
    TRANSITION = "transition"
    MANUAL = "manual"
    UNION = "union"


_VALUE_RULES = {Rule.LWW, Rule.MAX, Rule.MIN, Rule.PRECEDENCE, Rule.TRANSITION, Rule.MANUAL}
_LIST_RULES = {Rule.UNION, Rule.LWW}
_ORDERED_TYPES = {ValueType.INTEGER, ValueType.NUMBER, ValueType.DATE}
_FIELD_KEYS = {"kind", "type", "rule", "initial", "transitions", "precedence", "filled"}
_FILLED_WAYS = ("moved", "set")


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    kind: Kind
    type: ValueType | None = None
    rule: Rule | None = None
    initial: Any = None
    transitions: dict[Any, tuple[Any, ...]] = field(default_factory=dict)
    precedence: tuple[Any, ...] = ()
    filled: str | tuple[Any, ...] = "set"  # "moved", "set" or the values that count as filled

    def accepts(self, value: Any) -> bool:
        return self.type is not None and self.type.accepts(value)

    def rank(self, value: Any) -> int:
        """Position in `precedence` (higher wins); values not listed rank lowest."""
        try:
            return self.precedence.index(value)
        except ValueError:
            return -1


@dataclass(frozen=True, slots=True)
class Schema:
    fields: dict[str, Field]

    def kind_of(self, kind: Kind) -> list[Field]:
        return [f for f in self.fields.values() if f.kind is kind]

    @property
    def values(self) -> dict[str, Field]:
        return {f.name: f for f in self.kind_of(Kind.VALUE)}


def load_schema(path: Path) -> Schema:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SchemaError(f"cannot read schema {path}: {exc}") from exc
    return parse_schema(data)


def parse_schema(data: dict[str, Any]) -> Schema:
    unknown = set(data) - {"fields"}
    if unknown:
        raise SchemaError(f"unknown top-level keys {sorted(unknown)}: only [fields.NAME] tables")
    tables = data.get("fields")
    if not isinstance(tables, dict) or not tables:
        raise SchemaError("a schema needs at least one [fields.NAME] table")
    return Schema({name: _parse_field(name, table) for name, table in tables.items()})


def _parse_field(name: str, table: Any) -> Field:
    def fail(problem: str) -> SchemaError:
        return SchemaError(f"field {name!r}: {problem}")

    if not isinstance(table, dict):
        raise fail("must be a table")
    unknown = set(table) - _FIELD_KEYS
    if unknown:
        raise fail(f"unknown keys {sorted(unknown)}")
    kind = _enum(Kind, table.get("kind"), fail, "kind")
    if kind in (Kind.TEXT, Kind.RICHTEXT):
        extra = sorted(
            set(table) & {"type", "rule", "transitions", "precedence", "initial", "filled"}
        )
        if extra:
            raise fail(f"{kind.value} fields merge through the CRDT and take no {extra}")
        if name in RESERVED_ROOTS:
            raise fail(f"{name!r} is a root the server manages")
        return Field(name, kind)
    value_type = _enum(ValueType, table.get("type"), fail, "type")
    default_rule = Rule.LWW if kind is Kind.VALUE else Rule.UNION
    rule = _enum(Rule, table.get("rule", default_rule.value), fail, "rule")
    allowed = _VALUE_RULES if kind is Kind.VALUE else _LIST_RULES
    if rule not in allowed:
        names = sorted(r.value for r in allowed)
        raise fail(
            f"rule {rule.value!r} does not apply to {kind.value} fields (use one of {names})"
        )
    if kind is Kind.LIST and name in RESERVED_ROOTS:
        raise fail(f"{name!r} is a root the server manages")
    if rule in (Rule.MAX, Rule.MIN) and value_type not in _ORDERED_TYPES:
        raise fail(f"rule {rule.value!r} needs an ordered type (integer, number, date)")

    def checked(value: Any, what: str) -> Any:
        if not value_type.accepts(value):
            raise fail(f"{what} {value!r} is not a {value_type.value}")
        return value

    precedence = tuple(checked(v, "precedence value") for v in table.get("precedence", []))
    if rule is Rule.PRECEDENCE and not precedence:
        raise fail("rule 'precedence' needs a non-empty precedence list")
    transitions: dict[Any, tuple[Any, ...]] = {}
    raw_transitions = table.get("transitions")
    if rule is Rule.TRANSITION:
        if not isinstance(raw_transitions, dict) or not raw_transitions:
            raise fail("rule 'transition' needs a transitions table {STATE = [NEXT, ...]}")
        for state, moves in raw_transitions.items():
            if not isinstance(moves, list):
                raise fail(f"transitions from {state!r} must be a list")
            transitions[checked(state, "state")] = tuple(checked(m, "state") for m in moves)
    elif raw_transitions is not None:
        raise fail("transitions only apply to rule 'transition'")
    initial = table.get("initial")
    if initial is not None:
        checked(initial, "initial value")
    filled: str | tuple[Any, ...] = "moved" if initial is not None else "set"
    raw_filled = table.get("filled")
    if kind is Kind.LIST and raw_filled is not None:
        raise fail("`filled` applies to value fields (a list is filled when it has an item)")
    if isinstance(raw_filled, list):
        filled = tuple(checked(v, "filled value") for v in raw_filled)
    elif raw_filled in _FILLED_WAYS:
        filled = raw_filled
    elif raw_filled is not None:
        raise fail(f"filled {raw_filled!r} is not one of {list(_FILLED_WAYS)} or a list of values")
    if filled == "moved" and initial is None:
        raise fail("filled = 'moved' needs an initial value to move from")
    return Field(name, kind, value_type, rule, initial, transitions, precedence, filled)


def _enum(cls: type[Any], raw: Any, fail: Any, what: str) -> Any:
    try:
        return cls(raw)
    except ValueError:
        options = sorted(member.value for member in cls)
        raise fail(f"{what} {raw!r} is not one of {options}") from None


DEFAULT_SCHEMA_TOML = """
[fields.title]
kind = "text"

[fields.description]
kind = "text"

[fields.status]
kind = "value"
type = "string"
rule = "transition"
initial = "CREATING"
transitions = { CREATING = ["DRAFT", "ARCHIVED"], DRAFT = ["IN_REVIEW", "ARCHIVED"], \
IN_REVIEW = ["DRAFT", "APPROVED", "ARCHIVED"], APPROVED = ["PUBLISHED", "DRAFT", "ARCHIVED"], \
PUBLISHED = ["ARCHIVED"], ARCHIVED = ["DRAFT"] }
precedence = ["CREATING", "DRAFT", "IN_REVIEW", "APPROVED", "PUBLISHED", "ARCHIVED"]

[fields.current_step]
kind = "value"
type = "integer"
rule = "max"
initial = 1

[fields.goal_amount]
kind = "value"
type = "number"
rule = "manual"

[fields.category]
kind = "value"
type = "string"
rule = "lww"

[fields.deadline]
kind = "value"
type = "date"
rule = "manual"

[fields.tags]
kind = "list"
type = "string"
rule = "union"
"""

DEFAULT_SCHEMA = parse_schema(tomllib.loads(DEFAULT_SCHEMA_TOML))
