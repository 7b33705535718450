"""Rebuilding a document from the store's pieces: a snapshot and the updates after it.

Updates are applied one at a time to a fresh `Doc`; a flat `merge_updates` over a long log is
superlinear in pycrdt (8,000 updates: 217 ms) while applying stays linear (~2 us an update).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from pycrdt import Doc

__all__ = ["compact", "rebuild"]

_UPDATES_A_TRANSACTION = 128


def rebuild(snapshot: bytes | None, tail: Iterable[bytes], *, client_id: int | None = None) -> Doc:
    """A fresh doc holding the snapshot and the tail; `client_id` is the id the doc writes
    with (the server passes a 32-bit one, as Yjs clients use, to keep its updates small)."""
    doc: Doc = Doc(client_id=client_id)
    if snapshot is not None:
        doc.apply_update(snapshot)
    # The tail in transactions of `_UPDATES_A_TRANSACTION`: yrs commits (cleans up, squashes)
    # each one, and ~400 keystrokes applied one transaction each were most of a cold load
    # (issue 24; 2.3x less this way), while thousands in one grow superlinearly (8,000: 51 ms
    # in one, 16 ms by 64-256, 38 ms one by one).
    updates = iter(tail)
    while batch := list(itertools.islice(updates, _UPDATES_A_TRANSACTION)):
        with doc.transaction():
            for update in batch:
                doc.apply_update(update)
    return doc


def compact(snapshot: bytes | None, tail: Iterable[bytes]) -> bytes:
    """The merged state of a snapshot and the updates after it, as one Yjs update."""
    return rebuild(snapshot, tail).get_update()
