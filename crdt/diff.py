"""A structured diff between two versions of a draft's content (`DraftContent.as_json()`).

Per changed field: text as inline operations ({op: equal|insert|delete, text}), values as old
and new, lists as the items added and removed (as multisets: a duplicate added counts).

Text: the common prefix and suffix are cut first (linear; an edit in one place leaves a small
middle), then the middle is compared with `difflib` — whose worst case is quadratic — by
characters when it is short (`CHAR_LIMIT`), by words when its words are few enough
(`WORD_LIMIT`), else by lines, and past `LINE_LIMIT` characters not at all (the old middle
deleted, the new inserted). `granularity` says which; line and whole are the size bound
(`bounded` in the answer): bounded work whatever a draft holds.

Rich text: given both versions' formatting (`crdt.content.FormatRun`), the text kept by the
comparison ("equal") is split where its marks or block type differ between the two, and those
pieces become `format` ops (`added`, `removed`, `changed` mark names; `block` [old, new] when the
block type changed). Insertions and deletions stay as the text comparison found them. The walk
steps run by run (two cursors that only move forward), not character by character: its cost is
the number of ops plus formatting runs, and each piece is sliced out once. What a format op
lists besides its text (mark names, block paths) is repeated in every piece of a run, so a
hostile run's megabytes of names would be copied a thousand times: past `FORMAT_LIMIT`
characters of them in one answer, kept text is left `equal` and the answer is `bounded`.
"""

from __future__ import annotations

import difflib
import json
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

from crdt.content import FormatRun

__all__ = ["CHAR_LIMIT", "FORMAT_LIMIT", "LINE_LIMIT", "WORD_LIMIT", "diff_content", "diff_text"]

CHAR_LIMIT = 2_000  # characters of the old + new middle compared character by character
WORD_LIMIT = 4_000  # words and spaces of the old + new middle compared word by word
LINE_LIMIT = 2_000_000  # characters of the old + new middle compared line by line
FORMAT_LIMIT = 1_000_000  # characters of mark names and block paths in one answer's format ops
_FORMAT_OP_COST = 16  # what a format op counts against FORMAT_LIMIT besides its names
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


def diff_content(
    old: dict[str, Any],
    new: dict[str, Any],
    *,
    formats: tuple[dict[str, list[FormatRun]], dict[str, list[FormatRun]]] | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """The changed fields between two contents, in field-name order per kind; and whether any
    text was compared more coarsely than by characters, or formatting left untold (the size
    bounds). `formats`: the rich texts' formatting of `old` and `new` (`DraftContent.formats`),
    to report its changes too."""
    changes: list[dict[str, Any]] = []
    bounded = False
    budget = FORMAT_LIMIT
    old_texts, new_texts = old.get("texts", {}), new.get("texts", {})
    old_formats, new_formats = formats or ({}, {})
    for name in sorted(set(old_texts) | set(new_texts)):
        before, after = old_texts.get(name, ""), new_texts.get(name, "")
        old_runs, new_runs = old_formats.get(name), new_formats.get(name)
        rich = old_runs is not None and new_runs is not None
        if before == after and (not rich or _same_formats(old_runs or [], new_runs or [])):
            continue
        ops, granularity = diff_text(before, after)
        bounded |= granularity in _COARSE
        if rich:
            ops, budget, cut = _formatted(ops, old_runs or [], new_runs or [], budget)
            bounded |= cut
        change: dict[str, Any] = {
            "field": name,
            "kind": "text",
            "ops": ops,
            "granularity": granularity,
            "inserted": sum(len(o["text"]) for o in ops if o["op"] == "insert"),
            "deleted": sum(len(o["text"]) for o in ops if o["op"] == "delete"),
        }
        if rich:
            change["formatted"] = sum(len(o["text"]) for o in ops if o["op"] == "format")
        changes.append(change)
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


def _same_formats(old: list[FormatRun], new: list[FormatRun]) -> bool:
    """Whether two formattings of the same text agree (yrs may split a run differently)."""
    return old == new or _merged(old) == _merged(new)


def _merged(runs: list[FormatRun]) -> list[list[Any]]:
    merged: list[list[Any]] = []
    for run in runs:
        if merged and merged[-1][1] == run.block and merged[-1][2] == run.marks:
            merged[-1][0] += run.length
        else:
            merged.append([run.length, run.block, run.marks])
    return merged


def _formatted(
    ops: list[dict[str, Any]],
    old_runs: list[FormatRun],
    new_runs: list[FormatRun],
    budget: int,
) -> tuple[list[dict[str, Any]], int, bool]:
    """`ops` with each equal op split into equal and `format` pieces where the formatting of
    its text differs between `old_runs` and `new_runs`; the `budget` left of FORMAT_LIMIT, and
    whether it ran out (format pieces from then on left `equal`)."""
    old_at, new_at = _Cursor(old_runs), _Cursor(new_runs)
    out: list[dict[str, Any]] = []
    cut = False
    for op in ops:
        text = op["text"]
        if op["op"] == "insert":
            new_at.skip(len(text))
            out.append(op)
            continue
        if op["op"] == "delete":
            old_at.skip(len(text))
            out.append(op)
            continue
        pieces: list[tuple[int, int, tuple[Any, Any] | None]] = []  # start, end, (old, new)
        position = 0
        while position < len(text):
            old_run, old_left = old_at.current()
            new_run, new_left = new_at.current()
            step = min(old_left, new_left, len(text) - position)
            before = (old_run.block, old_run.marks) if old_run else ("", None)
            after = (new_run.block, new_run.marks) if new_run else ("", None)
            key = None if before == after else (before, after)
            if pieces and pieces[-1][2] == key:
                pieces[-1] = (pieces[-1][0], position + step, key)
            else:
                pieces.append((position, position + step, key))
            old_at.skip(step)
            new_at.skip(step)
            position += step
        for start, end, key in pieces:
            piece = text if (start, end) == (0, len(text)) else text[start:end]
            told = None if key is None or cut else _format_op(piece, *key)
            if told is not None:
                budget -= _FORMAT_OP_COST + sum(
                    len(name)
                    for part in ("added", "removed", "changed", "block")
                    for name in told.get(part, ())
                )
                cut = budget < 0
            out.append({"op": "equal", "text": piece} if told is None or cut else told)
    return out, max(budget, 0), cut


def _format_op(text: str, old: tuple[str, Any], new: tuple[str, Any]) -> dict[str, Any]:
    """A `format` op: the mark names added, removed and changed (a link's address), and the
    block type's old and new paths when it changed."""
    old_marks, new_marks = old[1] or {}, new[1] or {}
    op: dict[str, Any] = {
        "op": "format",
        "text": text,
        "added": sorted(set(new_marks) - set(old_marks)),
        "removed": sorted(set(old_marks) - set(new_marks)),
        "changed": sorted(
            k for k in set(old_marks) & set(new_marks) if old_marks[k] != new_marks[k]
        ),
    }
    if old[0] != new[0]:
        op["block"] = [old[0], new[0]]
    return op


class _Cursor:
    """A position in formatting runs that moves forward by lengths, a run at a time."""

    __slots__ = ("_index", "_runs", "_used")

    def __init__(self, runs: list[FormatRun]) -> None:
        self._runs = runs
        self._index = 0
        self._used = 0

    def current(self) -> tuple[FormatRun | None, int]:
        """The run at the position and how much of it is left (past the end: none, unbounded)."""
        while self._index < len(self._runs):
            run = self._runs[self._index]
            if self._used < run.length:
                return run, run.length - self._used
            self._index += 1
            self._used = 0
        return None, 1 << 62

    def skip(self, length: int) -> None:
        while length > 0 and self._index < len(self._runs):
            left = self._runs[self._index].length - self._used
            if length < left:
                self._used += length
                return
            length -= left
            self._index += 1
            self._used = 0


def _counted(items: list[Any]) -> Counter[str]:
    return Counter(json.dumps(item, sort_keys=True) for item in items)


def _items(counter: Counter[str]) -> list[Any]:
    return [json.loads(key) for key, count in counter.items() for _ in range(count)]
