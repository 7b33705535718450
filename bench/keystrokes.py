"""Real single-character Yjs updates, made ahead of time by pycrdt docs (one doc a typist).

The persistence bench measures the store, so the updates are generated before the clock starts;
they are nonetheless real pycrdt output (the bytes a y-websocket client sends for a keystroke),
so row sizes and the cost of applying them match what the server sees.

A typist types words at a cursor and now and then clicks elsewhere (`jump_every`), so that the
document is not one run of consecutive items: that would make snapshots and rebuilds look
cheaper than a real draft's.
"""

from __future__ import annotations

import random
import string

from pycrdt import Doc, Text, TransactionEvent

from bench.replay import TEXT

__all__ = ["typed_updates"]

_ALPHABET = string.ascii_lowercase + " "


def typed_updates(count: int, *, seed: int, jump_every: int = 40) -> tuple[list[bytes], str]:
    """`count` one-character inserts by one typist, and the text they make together."""
    rng = random.Random(seed)
    doc: Doc = Doc()
    text = doc.get(TEXT, type=Text)
    updates: list[bytes] = []

    def capture(event: TransactionEvent) -> None:
        updates.append(event.update)

    subscription = doc.observe(capture)
    cursor = 0
    for i in range(count):
        if jump_every and i and i % jump_every == 0:
            cursor = rng.randint(0, i)  # the text has i characters (ASCII: bytes == chars)
        text.insert(cursor, rng.choice(_ALPHABET))
        cursor += 1
    doc.unobserve(subscription)
    return updates, str(text)
