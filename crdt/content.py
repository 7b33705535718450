"""A draft's content as plain JSON, and a new draft's first update, by the fields of its schema.

Where each field lives in the Yjs document (design.md, "The draft document")::

    kind      root                      as JSON
    text      Y.Text named after it     "plain text"
    richtext  Y.XmlFragment named so    "its text, paragraphs joined by newlines"
    value     key of the Y.Map fields   the value (string, number, bool)
    list      Y.Array named after it    [values]

plus the server's `conflicts` map (conflict id -> JSON object). A root's type is not in the
update format, so only the roots the schema names are read as texts or lists; every key of
`fields` is read. `read_content` never writes: reading a root does not create an update.

`read_content(..., formats=True)` also gives each rich-text field's formatting as runs aligned
with its plain text (`FormatRun`), from the same walk, so that a diff can see a change of marks
or block type that leaves the text as it was: one run per formatted chunk yrs already yields.
That walk runs in one transaction (a version rebuilt for the diff: nobody observes it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pycrdt import Array, Doc, Map, Text, XmlElement, XmlFragment, XmlText

from crdt.bulk_array import array_values, fill_start
from crdt.schema import Kind, Rule, Schema

__all__ = [
    "CONFLICTS_ROOT",
    "FIELDS_ROOT",
    "DraftContent",
    "FieldSpec",
    "FormatRun",
    "fields_of",
    "initial_problems",
    "initial_update",
    "read_content",
]

FIELDS_ROOT = "fields"
CONFLICTS_ROOT = "conflicts"


class FieldSpec(NamedTuple):
    name: str
    kind: str  # "text", "richtext", "value" or "list", as `crdt.schema.Kind` values
    initial: Any = None  # a value field's initial value (shown until one is set)
    filled: str | tuple[Any, ...] = "set"  # when a value field counts as filled (crdt.schema)


class FormatRun(NamedTuple):
    """`length` characters of a rich text's plain text with one formatting: `block` the path of
    the elements holding them ("heading 2", "bulletList / listItem / paragraph"; "" for the
    newline between blocks) and `marks` their marks (None: none)."""

    length: int
    block: str
    marks: dict[str, Any] | None


def fields_of(schema: Schema) -> tuple[FieldSpec, ...]:
    return tuple(
        FieldSpec(f.name, f.kind.value, f.initial, f.filled) for f in schema.fields.values()
    )


@dataclass(frozen=True, slots=True)
class DraftContent:
    texts: dict[str, str] = field(default_factory=dict)  # text and richtext fields
    values: dict[str, Any] = field(default_factory=dict)  # the whole `fields` map
    lists: dict[str, list[Any]] = field(default_factory=dict)
    conflicts: dict[str, Any] = field(default_factory=dict)
    formats: dict[str, list[FormatRun]] = field(default_factory=dict)  # asked for: rich texts

    def as_json(self) -> dict[str, Any]:
        return {"texts": self.texts, "fields": self.values, "lists": self.lists}


def read_content(doc: Doc, fields: tuple[FieldSpec, ...], *, formats: bool = False) -> DraftContent:
    texts: dict[str, str] = {}
    lists: dict[str, list[Any]] = {}
    runs: dict[str, list[FormatRun]] = {}
    for spec in fields:
        if spec.kind == "text":
            texts[spec.name] = str(doc.get(spec.name, type=Text))
        elif spec.kind == "richtext":
            blocks: list[str] = []
            if formats:
                # one transaction for the walk: each attribute read would open its own (~3 us)
                field_runs: list[FormatRun] = []
                with doc.transaction():
                    _xml_texts(doc.get(spec.name, type=XmlFragment), "", blocks, field_runs)
                runs[spec.name] = field_runs
            else:
                _xml_texts(doc.get(spec.name, type=XmlFragment), "", blocks, None)
            texts[spec.name] = "\n".join(blocks)
        elif spec.kind == "list":
            # One pass: `to_py` walks from the start per element (quadratic in items).
            lists[spec.name] = array_values(doc.get(spec.name, type=Array))
    values = doc.get(FIELDS_ROOT, type=Map).to_py() or {}
    conflicts = doc.get(CONFLICTS_ROOT, type=Map).to_py() or {}
    return DraftContent(
        texts=texts, values=dict(values), lists=lists, conflicts=dict(conflicts), formats=runs
    )


def _xml_texts(
    node: XmlFragment | XmlElement, block: str, blocks: list[str], runs: list[FormatRun] | None
) -> None:
    """The text of each block of a ProseMirror-style fragment into `blocks` (formatting left
    out), and into `runs`, when asked, the formatting of those texts joined by newlines."""
    for child in node.children:
        if isinstance(child, XmlText):
            chunks = child.diff()
            if runs is not None:
                if blocks:  # the newline that will join it to the block before
                    runs.append(FormatRun(1, "", None))
                for chunk, attrs in chunks:
                    if isinstance(chunk, str) and chunk:
                        runs.append(FormatRun(len(chunk), block, _marks(attrs)))
            blocks.append("".join(c for c, _ in chunks if isinstance(c, str)))
        elif isinstance(child, XmlElement):
            inner = _block_path(block, child) if runs is not None else ""
            _xml_texts(child, inner, blocks, runs)


def _marks(attrs: dict[str, Any] | None) -> dict[str, Any] | None:
    """A run's marks; a mark set to None (how a removed one may read) is no mark."""
    if not attrs:
        return None
    return {key: value for key, value in attrs.items() if value is not None} or None


# A block path names what a reader recognises ("bulletList / listItem / paragraph"); a hostile
# doc's tag or attribute may be megabytes and its nesting deep, and each element builds its own
# path, which each format op of the diff repeats: so a path is short whatever the doc holds.
_LABEL_CHARS = 40  # of a tag or an attribute value in a path
_PATH_CHARS = 200  # of a whole path, its innermost part kept (what the text is in)


def _block_path(parent: str, element: XmlElement) -> str:
    """ "heading 2": an element's tag and its attribute values (2.0, as Yjs numbers read, as 2)."""
    values = [
        str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)
        for _, v in sorted(element.attributes)
        if v is not None
    ]
    label = " ".join(_clipped(part) for part in [str(element.tag), *values])
    path = f"{parent} / {label}" if parent else label
    if len(path) <= _PATH_CHARS:
        return path
    tail = path[4 - _PATH_CHARS :]  # from the first whole label on: "… / listItem / paragraph"
    return "… / " + tail[tail.find(" / ") + 3 :] if " / " in tail else "… / " + tail


def _clipped(text: str) -> str:
    return text if len(text) <= _LABEL_CHARS else text[: _LABEL_CHARS - 1] + "…"


def initial_problems(schema: Schema, title: str | None, values: dict[str, Any]) -> list[str]:
    """Why `values` cannot start a draft (empty: they can). A text field takes a string, a list
    field a list, a value field one value; values and list items must be of the field's type,
    and a `transition` field may start only at its initial value or a move allowed from it."""
    problems = []
    for name, value in values.items():
        field = schema.fields.get(name)
        kind = field.kind if field is not None else Kind.VALUE
        if name == "title" and title is not None:
            problems.append("`title` is given twice, as `title` and in `fields`")
        elif kind is Kind.RICHTEXT:
            problems.append(f"`{name}` is a rich-text field: edit it in the editor")
        elif kind is Kind.TEXT and not isinstance(value, str):
            problems.append(f"`{name}` is a text field: give a string")
        elif kind is Kind.LIST and not isinstance(value, list):
            problems.append(f"`{name}` is a list field: give a list")
        elif kind is Kind.VALUE and isinstance(value, list):
            problems.append(f"`{name}` takes one value, not a list")
        elif field is None or kind is Kind.TEXT:
            continue
        elif not all(field.accepts(v) for v in (value if kind is Kind.LIST else [value])):
            problems.append(f"`{name}` takes {field.type.value if field.type else '?'} values")
        elif field.rule is Rule.TRANSITION and field.initial is not None:
            allowed = (field.initial, *field.transitions.get(field.initial, ()))
            if value not in allowed:
                problems.append(f"`{name}` may start as one of {list(allowed)}, not {value!r}")
    return problems


def initial_update(
    *,
    client_id: int,
    fields: tuple[FieldSpec, ...],
    title: str | None,
    values: dict[str, Any],
) -> bytes | None:
    """A new draft's first content as one Yjs update written by `client_id` (None if empty).

    `title` goes to the root Y.Text `title`; each of `values` goes where its field's kind says
    (a text field to its Y.Text, a list field to its Y.Array, anything else to the `fields`
    map). The caller checks shapes first; richtext fields cannot be given here.
    """
    kinds = {spec.name: spec.kind for spec in fields}
    doc: Doc = Doc(client_id=client_id)
    with doc.transaction():
        if title:
            doc.get("title", type=Text).insert(0, title)
        for name, value in values.items():
            kind = kinds.get(name, "value")
            if kind == "text":
                if value:
                    doc.get(name, type=Text).insert(0, value)
            elif kind == "list":
                fill_start(doc, name, list(value))  # linear; Array.extend is quadratic
            elif kind == "value":
                doc.get(FIELDS_ROOT, type=Map)[name] = value
            else:
                raise ValueError(f"field {name!r} of kind {kind} cannot be given at creation")
    update = doc.get_update()
    return update if update != b"\x00\x00" else None
