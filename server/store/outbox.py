"""The webhook outbox: what both stores write beside the change an event describes.

Why in the store: an event is delivered at least once only if it is written in the same
transaction as what it describes (the transactional outbox pattern). Each event becomes one
`webhook_outbox` row per configured URL, all with one `event_id` (the Standard Webhooks
`webhook-id`, the same on every attempt, so a receiver can drop duplicates). The body is fixed
when the row is written; the delivery task (`server.webhooks`) only signs and sends it.

    type               written by, in the same transaction as
    draft.created      create_draft / create_draft_with     the draft row
    draft.changed      the change scanner (server/webhooks/changes.py), from committed
                       versions past the draft's `webhook_cursors` row, with the cursor moved
    conflict.opened    the group commit, from CONFLICT_OPENED journal events
    conflict.resolved  the group commit, from CONFLICT_RESOLVED journal events
    access.changed     set_role                              the access row
    draft.deleted      tombstone                             the tombstone
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from crdt.journal import EventType, JournalEvent
from crdt.safe_json import dumps

__all__ = [
    "ACCESS_CHANGED",
    "DRAFT_CHANGED",
    "DRAFT_CREATED",
    "DRAFT_DELETED",
    "JOURNAL_EVENT_TYPES",
    "Attempt",
    "Delivery",
    "OutboxEvent",
    "PendingChange",
    "journal_outbox",
    "outbox_rows",
]

DRAFT_CREATED = "draft.created"
DRAFT_CHANGED = "draft.changed"
DRAFT_DELETED = "draft.deleted"
ACCESS_CHANGED = "access.changed"
JOURNAL_EVENT_TYPES = {
    EventType.CONFLICT_OPENED: "conflict.opened",
    EventType.CONFLICT_RESOLVED: "conflict.resolved",
}


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    type: str
    draft_id: str
    at: float
    data: dict[str, Any] = field(default_factory=dict)

    def body(self) -> str:
        """The request body as Standard Webhooks suggests it: type, timestamp, data."""
        moment = datetime.fromtimestamp(self.at, UTC).isoformat(timespec="milliseconds")
        timestamp = moment.replace("+00:00", "Z")
        return dumps({"type": self.type, "timestamp": timestamp, "data": self.data})

    @classmethod
    def access_changed(cls, draft_id: str, user: str, role: str | None, at: float) -> OutboxEvent:
        return cls(ACCESS_CHANGED, draft_id, at, {"draftId": draft_id, "user": user, "role": role})


@dataclass(frozen=True, slots=True)
class PendingChange:
    """A draft with committed versions no `draft.changed` event covers yet."""

    draft_id: str
    cursor: int  # the last version announced
    last_version: int
    last_at: float  # when the last version was committed
    first_at: float  # when the first version past the cursor was committed


@dataclass(frozen=True, slots=True)
class Attempt:
    attempt: int
    at: float
    status_code: int | None  # None: no answer (refused, timed out)
    error: str | None
    seconds: float


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event for one URL, with what happened to it so far."""

    id: int
    event_id: str
    url: str
    draft_id: str
    type: str
    payload: str
    created_at: float
    status: str  # pending | delivered | failed
    attempts: int
    next_attempt_at: float
    last_error: str | None
    log: tuple[Attempt, ...] = ()

    def payload_json(self) -> Any:
        return json.loads(self.payload)


def journal_outbox(events: Iterable[JournalEvent]) -> list[OutboxEvent]:
    """The outbox events that journal events of a commit stand for (conflicts)."""
    found = []
    for event in events:
        kind = JOURNAL_EVENT_TYPES.get(event.type)
        if kind is not None:
            data = {
                "draftId": event.draft_id,
                "version": event.version,
                "user": event.user,
                "conflict": event.data,
            }
            found.append(OutboxEvent(kind, event.draft_id, event.at, data))
    return found


def outbox_rows(events: Iterable[OutboxEvent], urls: Sequence[str]) -> list[tuple[object, ...]]:
    """Rows of `webhook_outbox`: (event_id, url, draft_id, type, payload, created_at,
    next_attempt_at), one per event and URL; none when no URL is configured."""
    rows: list[tuple[object, ...]] = []
    if not urls:
        return rows
    for event in events:
        event_id = f"msg_{secrets.token_hex(12)}"
        body = event.body()
        for url in urls:
            rows.append((event_id, url, event.draft_id, event.type, body, event.at, event.at))
    return rows
