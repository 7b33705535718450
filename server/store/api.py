"""The store interface every backend implements (SQLite `Store`, PostgreSQL `PostgresStore`).

Why a Protocol: every module names this `Store` in its hints, whichever backend runs; it is the
one list of what a backend must provide, checked structurally, not by inheritance.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from crdt.journal import JournalEvent
from server.errors import StoreError
from server.store.outbox import Attempt, Delivery, OutboxEvent, PendingChange
from server.store.records import (
    DraftRecord,
    DraftState,
    DraftSummary,
    LoggedUpdate,
    SavedMeta,
    StoredEvent,
    UpdateRecord,
)

__all__ = ["Store"]


class Store(Protocol):
    webhook_urls: tuple[str, ...]  # none: no webhook outbox rows are written

    async def close(self) -> None: ...
    def writes_refused(self) -> StoreError | None: ...
    async def role_of(self, draft_id: str, user: str) -> str | None: ...
    async def draft_exists(self, draft_id: str) -> bool: ...
    async def drafts_owned(self, user: str) -> int: ...
    async def create_draft(
        self, draft_id: str, owner: str, *, now: float, max_owned: int | None = None
    ) -> bool: ...
    async def append_updates(
        self, records: Sequence[UpdateRecord], events: Sequence[JournalEvent] = ()
    ) -> list[UpdateRecord] | None: ...
    def append_updates_now(
        self, records: Sequence[UpdateRecord], events: Sequence[JournalEvent] = ()
    ) -> bool: ...
    async def last_version(self, draft_id: str) -> int: ...
    async def updates_between(self, draft_id: str, after: int, upto: int) -> list[bytes]: ...
    async def load(self, draft_id: str, *, at_version: int | None = None) -> DraftState: ...
    # A joiner's stored role and, when they have one, the draft at its latest version with
    # its journal watermark, read together: a cold room's opening in one store call.
    async def read_opening(
        self, draft_id: str, user: str
    ) -> tuple[str | None, DraftState | None]: ...
    async def snapshot_versions(self, draft_id: str) -> list[int]: ...
    async def save_snapshot(
        self, draft_id: str, version: int, data: bytes, *, now: float, drop: Sequence[int] = ()
    ) -> None: ...
    async def append_events(
        self, events: Sequence[JournalEvent], *, watermark: tuple[str, int] | None = None
    ) -> None: ...
    async def journal_watermark(self, draft_id: str) -> int: ...
    async def events_page(self, draft_id: str, *, after: int, limit: int) -> list[StoredEvent]: ...
    async def text_events_since(
        self, draft_id: str, version: int
    ) -> list[tuple[str, dict[str, Any]]]: ...
    async def events_of_type(
        self, draft_id: str, type: str, *, limit: int
    ) -> list[StoredEvent]: ...  # newest first
    async def event_counts(self, draft_id: str) -> dict[str, int]: ...  # by type
    async def updates_with_origin(
        self, draft_id: str, after: int, upto: int
    ) -> list[LoggedUpdate]: ...
    async def users_between(self, draft_id: str, after: int, upto: int) -> list[str]: ...  # sorted
    async def draft_record(self, draft_id: str) -> DraftRecord | None: ...
    async def create_draft_with(
        self,
        draft_id: str,
        owner: str,
        *,
        now: float,
        first: UpdateRecord | None,
        max_owned: int | None = None,
    ) -> bool: ...
    async def reachable_drafts(
        self, user: str, *, after: str = "", limit: int = ...
    ) -> list[DraftSummary]: ...
    async def reachable_conflict_fields(self, user: str) -> dict[str, int]: ...  # opened, by field
    async def access_list(self, draft_id: str) -> dict[str, str]: ...
    async def set_role(self, draft_id: str, user: str, role: str | None) -> bool: ...
    async def tombstone(self, draft_id: str, *, now: float) -> bool: ...
    async def purge_content(self, draft_id: str) -> None: ...
    async def contributors(self, draft_id: str) -> list[str]: ...
    async def save_meta(self, draft_id: str, meta: SavedMeta) -> None: ...
    # The webhook outbox (server/store/outbox.py)
    async def webhook_pending_changes(
        self, draft_ids: Sequence[str] | None = None
    ) -> list[PendingChange]: ...
    async def webhook_record_change(
        self, draft_id: str, after: int, upto: int, event: OutboxEvent
    ) -> bool: ...
    async def webhook_claim(
        self,
        *,
        now: float,
        lease_until: float,
        limit: int,
        url: str | None = None,
        other_than: Sequence[str] = (),
    ) -> list[Delivery]: ...
    # The outcome only while the claim's lease (`lease_until`, the claim's `next_attempt_at`)
    # is still the row's; False: dropped, the delivery was claimed again (or removed).
    async def webhook_attempted(
        self,
        delivery_id: int,
        attempt: Attempt | None,
        *,
        status: str,
        next_attempt_at: float,
        lease_until: float,
    ) -> bool: ...
    async def webhook_deliveries(
        self, draft_id: str, *, after: int, limit: int
    ) -> list[Delivery]: ...
    async def webhook_forget(self, *, before: float, limit: int) -> int: ...
