"""A structured diff between two versions of a draft's content (`DraftContent.as_json()`).

Per changed field: text as inline operations ({op: equal|insert|delete, text}), values as old
and new, lists as the items added and removed (as multisets: a duplicate added counts). Text is
compared by characters with `difflib`, whose worst case is quadratic: past `CHAR_LIMIT`
characters the comparison is by lines (`granularity: "line"`), past `LINE_LIMIT` the whole
old text is deleted and the new inserted (`granularity: "whole"`) — bounded work whatever a
draft holds, and the answer says which it did.
"""

from __future__ import annotations

import difflib
import json
from collections import Counter
from typing import Any

__all__ = ["CHAR_LIMIT", "LINE_LIMIT", "diff_content", "diff_text"]

CHAR_LIMIT = 20_000  # characters of old + new compared character by character
LINE_LIMIT = 2_000_000  # characters of old + new compared line by line


def diff_text(old: str, new: str) -> tuple[list[dict[str, str]], str]:
    """Inline operations turning `old` into `new`, and the granularity used."""
    size = len(old) + len(new)
    if size <= CHAR_LIMIT:
        return _ops(old, new, list(old), list(new)), "char"
    if size <= LINE_LIMIT:
        return _ops(old, new, old.splitlines(keepends=True), new.splitlines(keepends=True)), "line"
    ops = [{"op": "delete", "text": old}] if old else []
    return ops + ([{"op": "insert", "text": new}] if new else []), "whole"


def _ops(old: str, new: str, a: list[str], b: list[str]) -> list[dict[str, str]]:
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    ops: list[dict[str, str]] = []

    def add(op: str, text: str) -> None:
        if not text:
            return
        if ops and ops[-1]["op"] == op:
            ops[-1]["text"] += text
        else:
            ops.append({"op": op, "text": text})

    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            add("equal", "".join(a[i1:i2]))
            continue
        add("delete", "".join(a[i1:i2]))
        add("insert", "".join(b[j1:j2]))
    return ops


def diff_content(old: dict[str, Any], new: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """The changed fields between two contents, in field-name order per kind; and whether any
    text was compared more coarsely than by characters (the size bound)."""
    changes: list[dict[str, Any]] = []
    bounded = False
    old_texts, new_texts = old.get("texts", {}), new.get("texts", {})
    for name in sorted(set(old_texts) | set(new_texts)):
        before, after = old_texts.get(name, ""), new_texts.get(name, "")
        if before == after:
            continue
        ops, granularity = diff_text(before, after)
        bounded |= granularity != "char"
        changes.append(
            {
                "field": name,
                "kind": "text",
                "ops": ops,
                "granularity": granularity,
                "inserted": sum(len(o["text"]) for o in ops if o["op"] == "insert"),
                "deleted": sum(len(o["text"]) for o in ops if o["op"] == "delete"),
            }
        )
    old_values, new_values = old.get("fields", {}), new.get("fields", {})
    for name in sorted(set(old_values) | set(new_values)):
        before, after = old_values.get(name), new_values.get(name)
        if before != after:
            changes.append({"field": name, "kind": "value", "old": before, "new": after})
    old_lists, new_lists = old.get("lists", {}), new.get("lists", {})
    for name in sorted(set(old_lists) | set(new_lists)):
        before_items, after_items = old_lists.get(name, []), new_lists.get(name, [])
        if before_items == after_items:
            continue
        before_count, after_count = _counted(before_items), _counted(after_items)
        changes.append(
            {
                "field": name,
                "kind": "list",
                "added": _items(after_count - before_count),
                "removed": _items(before_count - after_count),
                "old": before_items,
                "new": after_items,
            }
        )
    return changes, bounded


def _counted(items: list[Any]) -> Counter[str]:
    return Counter(json.dumps(item, sort_keys=True) for item in items)


def _items(counter: Counter[str]) -> list[Any]:
    return [json.loads(key) for key, count in counter.items() for _ in range(count)]
