"""Restoring an old version as a *forward* change: edit the current doc until it equals the old.

Clients keep their CRDT history: nothing is replaced wholesale, so an offline client that
reconnects merges into the restored state instead of duplicating it. Texts get the smallest
single splice (common prefix and suffix kept); `fields` keys are set or removed; lists and the
`conflicts` map are rewritten only where they differ. Rich text (XmlFragment) is not restored.
"""

from __future__ import annotations

from pycrdt import Array, Doc, Map, Text

from crdt.schema import Kind, Schema

__all__ = ["restore_into"]


def restore_into(doc: Doc, old: Doc, schema: Schema) -> None:
    """Make `doc` equal `old` on every root the schema names (call inside a transaction)."""
    for spec in schema.kind_of(Kind.TEXT):
        _splice_text(doc.get(spec.name, type=Text), str(old.get(spec.name, type=Text)))
    for spec in schema.kind_of(Kind.LIST):
        array = doc.get(spec.name, type=Array)
        wanted = old.get(spec.name, type=Array).to_py() or []
        if (array.to_py() or []) != wanted:
            array.clear()
            array.extend(wanted)
    for root in ("fields", "conflicts"):
        _restore_map(doc.get(root, type=Map), old.get(root, type=Map).to_py() or {})


def _splice_text(text: Text, wanted: str) -> None:
    current = str(text)
    if current == wanted:
        return
    start = 0
    limit = min(len(current), len(wanted))
    while start < limit and current[start] == wanted[start]:
        start += 1
    end = 0
    while end < limit - start and current[-1 - end] == wanted[-1 - end]:
        end += 1
    # pycrdt's Text indexes UTF-8 bytes, Python strings count code points.
    offset = len(current[:start].encode())
    removed = len(current[start : len(current) - end].encode())
    if removed:
        del text[offset : offset + removed]
    inserted = wanted[start : len(wanted) - end]
    if inserted:
        text.insert(offset, inserted)


def _restore_map(current: Map, wanted: dict[str, object]) -> None:
    for key in list(current.keys()):
        if key not in wanted:
            del current[key]
    for key, value in wanted.items():
        if current.get(key) != value:
            current[key] = value
