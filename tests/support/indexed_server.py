"""The harness of the `crdt.fields` and `crdt.rules` tests: a server doc that applies client
updates the way the room does (in a `ClientOrigin` transaction), takes the update pycrdt
integrated (a doc observer's `TransactionEvent.update`) and feeds it to a `FieldIndex`.

Only the index is under test here; the whole pipeline runs against the real sync core
(`tests.support.core_driver`).
"""

from __future__ import annotations

from typing import Any

from pycrdt import Doc, Map, Subscription, TransactionEvent

from crdt.fields import FieldIndex, MapWrite
from crdt.origins import ClientOrigin
from crdt.updates import NO_VALUE, decode_update

__all__ = ["IndexedServer", "sent_values"]


class _Capture:
    """The update of the last transaction on a doc, as the room's `_capture_changes` takes it."""

    def __init__(self, doc: Doc) -> None:
        self.changes: bytes | None = None
        self._subscription: Subscription = doc.observe(self._on_transaction)

    def _on_transaction(self, event: TransactionEvent) -> None:
        self.changes = event.update

    def take(self) -> bytes | None:
        changes, self.changes = self.changes, None
        return changes


def sent_values(update: bytes) -> dict[tuple[int, int], Any]:
    """Item id -> value of what a client sent (what `SemanticFields.review` passes on)."""
    return {i.id: i.value for i in decode_update(update).items if i.value is not NO_VALUE}


class IndexedServer:
    """A server doc applying client updates like the room, indexing what pycrdt integrated."""

    def __init__(self, client_id: int = 4_000_000_000, *, skip_gc: bool = False) -> None:
        self.doc: Doc = Doc(client_id=client_id, skip_gc=skip_gc)
        self.index = FieldIndex()
        self.changes: list[bytes] = []  # every integrated update, in order
        self._capture = _Capture(self.doc)

    @property
    def fields(self) -> Map:
        return self.doc.get("fields", type=Map)

    def receive(self, update: bytes) -> list[MapWrite]:
        with self.doc.transaction(origin=ClientOrigin("user", "session")):
            self.doc.apply_update(update)
        changes = self._capture.take()
        if changes is None:
            return []
        self.changes.append(changes)
        # As the room does: values the integrated update lost come from the client's bytes.
        return self.index.ingest(changes, sent_values(update))
