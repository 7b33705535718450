"""Rich-text fields (a root `Y.XmlFragment`, as y-prosemirror and Tiptap write it): their
structure as plain data, and the forward edit that makes one fragment equal another.

y-prosemirror stores each ProseMirror block as an `XmlElement` named after its node type (its
attributes are the node's), and the text of a textblock as one `XmlText` whose formatting
attributes are the marks (`{"bold": {}}`, `{"link": {"href": ...}}`).

A restore must stay a *forward* change (an offline editor that reconnects merges into it):
`restore_fragment` aligns the blocks (difflib), keeps every block that did not change, descends
into a changed block whose type and attributes are the same, and splices a text keeping its
common prefix and suffix, then sets the wanted marks on what it inserted. Only blocks with no
counterpart are deleted or built.
"""

from __future__ import annotations

import json
from difflib import SequenceMatcher
from typing import Any

from pycrdt import XmlElement, XmlFragment, XmlText

__all__ = ["node_data", "restore_fragment"]

_Container = XmlFragment | XmlElement
_Node = XmlElement | XmlText


def node_data(node: _Container | XmlText) -> Any:
    """Plain data of a node, for comparing and previews: an element is
    `{"type", "attrs", "content": [...]}`, a text a list of `[insert, attrs | None]` runs."""
    if isinstance(node, XmlText):
        # yrs may split a run where formatting markers were (even ones that changed nothing)
        return _runs(_units([[chunk, attrs] for chunk, attrs in node.diff()]))
    content = [node_data(child) for child in node.children]
    if isinstance(node, XmlFragment):
        return content
    return {"type": node.tag, "attrs": dict(node.attributes), "content": content}


def restore_fragment(current: XmlFragment, wanted: XmlFragment) -> None:
    """Edit `current` (of the doc being written, inside a transaction) until it equals
    `wanted` (of another doc): the smallest edits this block-and-text comparison finds."""
    _restore_children(current, [node_data(child) for child in wanted.children])


def _restore_children(parent: _Container, wanted: list[Any]) -> None:
    """Align the blocks (difflib's matching, as `diff` does lines): equal blocks stay, a
    changed block of the same type is edited in place, the rest are deleted or inserted.
    Applied from the end, so the indexes still to be used do not move."""
    children = list(parent.children)
    have = [node_data(child) for child in children]
    if have == wanted:
        return
    keys = [_key(data) for data in have], [_key(data) for data in wanted]
    opcodes = SequenceMatcher(None, *keys, autojunk=False).get_opcodes()
    for tag, i1, i2, j1, j2 in reversed(opcodes):
        if tag == "equal":
            continue
        paired = min(i2 - i1, j2 - j1)
        for k in range(paired):
            node, data = children[i1 + k], wanted[j1 + k]
            if not _same_shell(node, data):
                del parent.children[i1 + k]
                _insert(parent, i1 + k, data)
            elif isinstance(node, XmlText):
                _restore_text(node, data)
            else:
                _restore_children(node, data["content"])
        for _ in range(i1 + paired, i2):
            del parent.children[i1 + paired]
        for offset, data in enumerate(wanted[j1 + paired : j2]):
            _insert(parent, i1 + paired + offset, data)


def _key(data: Any) -> str:
    return json.dumps(data, sort_keys=True, default=str)


def _same_shell(node: _Node, data: Any) -> bool:
    """Whether `node` can be edited into `data` in place (same kind, type and attributes)."""
    if isinstance(node, XmlText):
        return isinstance(data, list)
    return (
        isinstance(data, dict)
        and node.tag == data["type"]
        and dict(node.attributes) == data["attrs"]
    )


def _insert(parent: _Container, index: int, data: Any) -> None:
    if isinstance(data, list):
        text = parent.children.insert(index, XmlText())
        _write_runs(text, 0, data, keys=_keys(data))
        return
    element = parent.children.insert(index, XmlElement(data["type"], data["attrs"]))
    for position, child in enumerate(data["content"]):
        _insert(element, position, child)


def _restore_text(text: XmlText, wanted: list[list[Any]]) -> None:
    """Splice a formatted text: keep the common prefix and suffix of (character, marks)."""
    have = _units(node_data(text))
    want = _units(wanted)
    start = 0
    limit = min(len(have), len(want))
    while start < limit and have[start] == want[start]:
        start += 1
    end = 0
    while end < limit - start and have[-1 - end] == want[-1 - end]:
        end += 1
    # pycrdt's XmlText indexes UTF-8 bytes (embeds count one), Python strings code points
    offset = sum(_size(unit[0]) for unit in have[:start])
    removed = sum(_size(unit[0]) for unit in have[start : len(have) - end])
    if removed:
        del text[offset : offset + removed]
    runs = _runs(want[start : len(want) - end])
    _write_runs(text, offset, runs, keys=_keys(node_data(text)) | _keys(runs))


def _write_runs(text: XmlText, offset: int, runs: list[list[Any]], *, keys: set[str]) -> None:
    """Insert `runs` at `offset`, each with exactly its marks: a mark of the text around that
    a run lacks is cleared (set to None), so nothing inherits a neighbour's formatting."""
    for insert, attrs in runs:
        marks = {key: None for key in keys} | (attrs or {})
        if isinstance(insert, str):
            text.insert(offset, insert)
        else:
            text.insert_embed(offset, insert)
        size = _size(insert)
        if marks:
            text.format(offset, offset + size, marks)
        offset += size


def _units(runs: list[list[Any]]) -> list[tuple[Any, Any]]:
    """One (character or embed, marks) pair per unit, for a prefix/suffix comparison."""
    units: list[tuple[Any, Any]] = []
    for insert, attrs in runs:
        marks = attrs or None
        if isinstance(insert, str):
            units.extend((char, marks) for char in insert)
        else:
            units.append((insert, marks))
    return units


def _runs(units: list[tuple[Any, Any]]) -> list[list[Any]]:
    runs: list[list[Any]] = []
    for unit, marks in units:
        if isinstance(unit, str) and runs and isinstance(runs[-1][0], str) and runs[-1][1] == marks:
            runs[-1][0] += unit
        else:
            runs.append([unit, marks])
    return runs


def _keys(runs: list[list[Any]]) -> set[str]:
    return {key for _insert, attrs in runs for key in (attrs or {})}


def _size(insert: Any) -> int:
    return len(insert.encode()) if isinstance(insert, str) else 1
