"""Rebuilding a document from the store's pieces: a snapshot and the updates after it.

Updates are applied one at a time to a fresh `Doc`; a flat `merge_updates` over a long log is
superlinear in pycrdt (8,000 updates: 217 ms) while applying stays linear (~2 us an update).
"""

from __future__ import annotations

from collections.abc import Iterable

from pycrdt import Doc

__all__ = ["compact", "rebuild"]


def rebuild(snapshot: bytes | None, tail: Iterable[bytes]) -> Doc:
    doc: Doc = Doc()
    if snapshot is not None:
        doc.apply_update(snapshot)
    for update in tail:
        doc.apply_update(update)
    return doc


def compact(snapshot: bytes | None, tail: Iterable[bytes]) -> bytes:
    """The merged state of a snapshot and the updates after it, as one Yjs update."""
    return rebuild(snapshot, tail).get_update()
