"""One client typing into a draft's text: the Yjs updates a real editor sends, one a keystroke."""

from __future__ import annotations

from pycrdt import Doc, Text

__all__ = ["keystrokes"]


def keystrokes(count: int) -> list[bytes]:
    """`count` one-character edits by one client to `description`, one Yjs update each."""
    doc: Doc = Doc()
    text = doc.get("description", type=Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    for i in range(count):
        text += str(i % 10)
    return updates
