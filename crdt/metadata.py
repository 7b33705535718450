"""What a draft's content says about it: word count, completion, open conflicts.

Computed from `DraftContent` (one read of the doc), so the server does it when someone asks or
when a room unloads, never per keystroke. Words are runs of non-whitespace (`str.split`), as
word processors count them for space-separated scripts.

A field is *filled* when a text (rich text included) has a non-blank character, a list has an
item, and a value as its schema says (`crdt.schema`, `filled`): by default a value with an
`initial` one once it has moved from it, any other once set to something but null or "";
completion is filled fields / schema fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crdt.content import DraftContent, FieldSpec

__all__ = ["ContentMeta", "content_meta", "count_words"]


@dataclass(frozen=True, slots=True)
class ContentMeta:
    word_count: int
    filled_fields: int
    total_fields: int
    open_conflicts: int

    @property
    def completion(self) -> float:
        """Percent of the schema's fields that are filled, 0-100, one decimal."""
        if self.total_fields == 0:
            return 100.0
        return round(100 * self.filled_fields / self.total_fields, 1)

    @property
    def complete(self) -> bool:
        return self.filled_fields >= self.total_fields


def count_words(text: str) -> int:
    return len(text.split())


def content_meta(content: DraftContent, fields: tuple[FieldSpec, ...]) -> ContentMeta:
    words = sum(count_words(text) for text in content.texts.values())
    filled = sum(1 for spec in fields if _filled(content, spec))
    return ContentMeta(
        word_count=words,
        filled_fields=filled,
        total_fields=len(fields),
        open_conflicts=len(content.conflicts),
    )


def _filled(content: DraftContent, spec: FieldSpec) -> bool:
    if spec.kind in ("text", "richtext"):
        return bool(content.texts.get(spec.name, "").strip())
    if spec.kind == "list":
        return bool(content.lists.get(spec.name))
    value: Any = content.values.get(spec.name)
    if value is None or value == "":
        if spec.filled == "moved":
            return False
        value = spec.initial  # unset: the schema's initial value stands
    if isinstance(spec.filled, tuple):
        return value in spec.filled
    if spec.filled == "moved":
        return value != spec.initial
    return value is not None and value != ""
