"""A structured diff between two versions of a draft's content (`DraftContent.as_json()`).

Per changed field: text as inline operations ({op: equal|insert|delete, text}), values as old
and new, lists as the items added and removed (as multisets: a duplicate added counts).

Text: the common prefix and suffix are cut first (linear; an edit in one place leaves a small
middle), then the middle is compared with `difflib` — whose worst case is quadratic — by
characters when it is short (`CHAR_LIMIT`), by words when its words are few enough
(`WORD_LIMIT`), else by lines, and past `LINE_LIMIT` characters not at all (the old middle
deleted, the new inserted). `granularity` says which; line and whole are the size bound
(`bounded` in the answer): bounded work whatever a draft holds.
"""

from __future__ import annotations

import difflib
import json
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

__all__ = ["CHAR_LIMIT", "LINE_LIMIT", "WORD_LIMIT", "diff_content", "diff_text"]

CHAR_LIMIT = 2_000  # characters of the old + new middle compared character by character
WORD_LIMIT = 4_000  # words and spaces of the old + new middle compared word by word
LINE_LIMIT = 2_000_000  # characters of the old + new middle compared line by line
_WORDS = re.compile(r"\w+|\s+|[^\w\s]", re.UNICODE)
_COARSE = ("line", "whole")  # the granularities of the size bound


def diff_text(old: str, new: str) -> tuple[list[dict[str, str]], str]:
    """Inline operations turning `old` into `new`, and the granularity used."""
    start = 0
    limit = min(len(old), len(new))
    while start < limit and old[start] == new[start]:
        start += 1
    end = 0
    while end < limit - start and old[-1 - end] == new[-1 - end]:
        end += 1
    size = len(old) + len(new) - 2 * (start + end)
    if start == len(old) or start == len(new) or size <= CHAR_LIMIT:
        return _around(old, new, start, end, list, autojunk=False), "char"
    if size > LINE_LIMIT:
        return _around(old, new, start, end, _whole, autojunk=False), "whole"
    # whole words, whole lines: the cut prefix and suffix end and start at a boundary
    w_start, w_end = _widen(old, start, end, _not_word)
    a, b = old[w_start : len(old) - w_end], new[w_start : len(new) - w_end]
    if len(_WORDS.findall(a)) + len(_WORDS.findall(b)) <= WORD_LIMIT:
        return _around(old, new, w_start, w_end, _WORDS.findall, autojunk=True), "word"
    l_start, l_end = _widen(old, start, end, _newline)
    return _around(old, new, l_start, l_end, _lines, autojunk=False), "line"


def _around(
    old: str, new: str, start: int, end: int, split: Callable[[str], list[str]], *, autojunk: bool
) -> list[dict[str, str]]:
    """The common prefix, the middle compared token by token, the common suffix."""
    a, b = old[start : len(old) - end], new[start : len(new) - end]
    ops: list[dict[str, str]] = [{"op": "equal", "text": old[:start]}] if start else []
    ops += _ops(split(a), split(b), autojunk=autojunk)
    if end:
        ops.append({"op": "equal", "text": old[len(old) - end :]})
    return ops


def _widen(old: str, start: int, end: int, is_break: Callable[[str], bool]) -> tuple[int, int]:
    while start > 0 and not is_break(old[start - 1]):
        start -= 1
    while end > 0 and not is_break(old[len(old) - end - 1]):
        end -= 1
    return start, end


def _not_word(char: str) -> bool:
    return not (char.isalnum() or char == "_")


def _newline(char: str) -> bool:
    return char == "\n"


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _whole(text: str) -> list[str]:
    return [text] if text else []


def _ops(a: list[str], b: list[str], *, autojunk: bool) -> list[dict[str, str]]:
    # autojunk (words): a token in over 1 % of a long text (a space, "the") does not start a
    # match, which keeps the comparison near-linear; characters would all be junk, so not there
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=autojunk)
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
        bounded |= granularity in _COARSE
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
