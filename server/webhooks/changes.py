"""`draft.changed`: derived from committed versions, debounced per draft.

Why derived instead of written per commit: the group commit stays as it was (no row per
keystroke); the versions themselves are the durable record. Each draft created while webhooks
are configured has a cursor (`webhook_cursors`: the last version announced). Once a draft has
had no new version for `debounce_seconds` (or its oldest unannounced one is `max_wait_seconds`
old), one event covers `cursor < v <= last`, and it is written together with the cursor moved
(`Store.webhook_record_change`, a compare-and-set, so two instances never announce a range
twice). A crash at any point loses nothing: the versions are committed, the cursor is not
moved, and the scan after the restart finds them.

Which drafts to look at: those the group commit names (`committed`, in-process), and all of
them at start and every `FULL_SCAN_SECONDS` (the other instances' commits, and anything a
failed scan left).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from crdt.content import FieldSpec, read_content
from crdt.history import rebuild
from server.errors import StoreError
from server.store.api import Store
from server.store.outbox import DRAFT_CHANGED, OutboxEvent, PendingChange
from server.store.records import DraftState
from server.webhooks.settings import WebhookSettings

__all__ = ["FULL_SCAN_SECONDS", "ChangeScanner"]

logger = logging.getLogger("draftsync.webhooks")

FULL_SCAN_SECONDS = 30.0


class ChangeScanner:
    def __init__(
        self,
        store: Store,
        settings: WebhookSettings,
        fields: tuple[FieldSpec, ...],
        *,
        on_recorded: Callable[[], None],
    ) -> None:
        self._store = store
        self._settings = settings
        self._fields = fields
        self._on_recorded = on_recorded
        self._dirty: set[str] = set()
        self._tick = max(0.05, min(0.5, settings.debounce_seconds / 4))

    def committed(self, draft_ids: Iterable[str]) -> None:
        """The group commit stored versions of these drafts (cheap: called per batch)."""
        self._dirty.update(draft_ids)

    async def run(self) -> None:
        next_full_scan = 0.0
        while True:
            if time.monotonic() >= next_full_scan:
                next_full_scan = time.monotonic() + FULL_SCAN_SECONDS
                await self._scan(None)
            elif self._dirty:
                drafts, self._dirty = sorted(self._dirty), set()
                await self._scan(drafts)
            await asyncio.sleep(self._tick)

    async def _scan(self, drafts: list[str] | None) -> None:
        try:
            pending = await self._store.webhook_pending_changes(drafts)
        except StoreError as error:
            logger.warning("webhook change scan failed error=%s", error)
            self._dirty.update(drafts or ())
            return
        now = time.time()
        for change in pending:
            quiet = now - change.last_at >= self._settings.debounce_seconds
            overdue = now - change.first_at >= self._settings.max_wait_seconds
            if not (quiet or overdue):
                self._dirty.add(change.draft_id)  # looked at again next tick
                continue
            try:
                await self._announce(change)
            except StoreError as error:
                logger.warning(
                    "webhook change not recorded draft=%s error=%s", change.draft_id, error
                )
                self._dirty.add(change.draft_id)
            except Exception:
                # One draft that cannot be read (a doc that fails to rebuild) must not stop
                # the others, nor crash the component in a loop: the next full scan retries.
                logger.exception("webhook change failed draft=%s", change.draft_id)

    async def _announce(self, change: PendingChange) -> None:
        state = await self._store.load(change.draft_id, at_version=change.last_version)
        content = await asyncio.to_thread(_content, state, self._fields)
        # who wrote the range, without reading its updates (a busy draft's are megabytes)
        users = await self._store.users_between(change.draft_id, change.cursor, change.last_version)
        data: dict[str, Any] = {
            "draftId": change.draft_id,
            "fromVersion": change.cursor + 1,
            "toVersion": change.last_version,
            "users": users,
            "fields": content["fields"],
            "lists": content["lists"],
        }
        if self._settings.include_text:
            data["texts"] = content["texts"]
        event = OutboxEvent(DRAFT_CHANGED, change.draft_id, change.last_at, data)
        recorded = await self._store.webhook_record_change(
            change.draft_id, change.cursor, change.last_version, event
        )
        if recorded:
            self._on_recorded()


def _content(state: DraftState, fields: tuple[FieldSpec, ...]) -> dict[str, Any]:
    """The draft at the announced version (on a worker thread: rebuilding costs CPU)."""
    doc = rebuild(state.snapshot, state.tail)
    return read_content(doc, fields).as_json()
