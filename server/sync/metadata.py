"""Per-draft metadata, kept without re-reading whole texts on each keystroke.

    what                                   kept by                              cost per update
    version, last modified, contributors   trigger on `updates` (the commit's   two upserts
                                           own transaction, so never stale)
    word count, completion, conflicts      `crdt.metadata` over the doc, when   none
                                           read (REST) or when a room unloads

A loaded draft's figures come from its room's doc, cached by room version, so a read with no
edit in between costs nothing. When a room unloads, its figures are saved (`draft_meta`) with
the version they were counted at. A draft whose saved figures are older than its log (a crash
before the unload, a draft created over REST, another schema) is rebuilt from the store once,
on a worker thread, at its next read, and saved.

The commit listener keeps each loaded room's committed version: a REST read of a live doc is
answered only once the version it shows is committed (durable before visible, design.md). Every
read of a live doc (the draft, its figures in stats and summaries) first waits for a write held
for its review turn (`reviewed`): it may be dropped, and a count cached at this version would
outlive it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from typing import TypeGuard

from crdt.content import DraftContent, FieldSpec, read_content
from crdt.history import rebuild
from crdt.metadata import ContentMeta, content_meta
from server.errors import StoreError
from server.store.api import Store
from server.store.records import DraftState, SavedMeta
from server.sync.gate import GateClosed
from server.sync.room import Room, RoomState

__all__ = ["COMMIT_WAIT_SECONDS", "DraftView", "MetadataTracker", "fields_key"]

logger = logging.getLogger("draftsync.metadata")

COMMIT_WAIT_SECONDS = 10.0


def fields_key(fields: tuple[FieldSpec, ...]) -> str:
    """A short fingerprint of a schema's fields: saved figures counted against another are stale."""
    text = ",".join(f"{spec.name}:{spec.kind}:{spec.initial!r}:{spec.filled!r}" for spec in fields)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class DraftView:
    """A draft's content at `version`, with what it says about the draft."""

    version: int
    content: DraftContent
    meta: ContentMeta
    synced: bool  # nothing it accepted is waiting for its commit


class MetadataTracker:
    def __init__(self, store: Store, fields: tuple[FieldSpec, ...]) -> None:
        self.store = store
        self.fields = fields
        self.fields_key = fields_key(fields)
        self._cache: dict[str, tuple[int, ContentMeta]] = {}
        self._saving: set[asyncio.Task[None]] = set()

    # -- room lifecycle (registry hooks) -----------------------------------------------------

    def room_opened(self, room: Room) -> None:
        """Nothing to set up: figures are counted when read, and cached by version."""

    def room_unloading(self, room: Room) -> None:
        """The room is drained and its doc still there: count once more and save it."""
        meta = self.live_meta(room)
        self._cache.pop(room.draft_id, None)
        task = asyncio.create_task(self._save(room.draft_id, room.version, meta))
        self._saving.add(task)
        task.add_done_callback(self._saving.discard)

    async def wait_committed(self, room: Room, ticket: int) -> None:
        """Return once the room's gate `ticket` is committed; StoreError if the room fails
        first or the store stays too slow."""
        try:
            async with asyncio.timeout(COMMIT_WAIT_SECONDS):
                await room.gate.until_committed(ticket)
        except GateClosed:
            raise StoreError("the draft's updates could not be committed, retry") from None
        except TimeoutError:
            raise StoreError("the draft's updates are not committed yet, retry") from None

    # -- reading ------------------------------------------------------------------------------

    async def reviewed(self, room: Room) -> bool:
        """Return once `room`'s doc holds no write waiting for its review turn (several
        instances): such a write is not stored and may be dropped, so no read of the doc may
        show it, its figures included. False if the room is no longer open then (it reloaded:
        read the store); StoreError if the turn takes longer than a commit may."""
        try:
            async with asyncio.timeout(COMMIT_WAIT_SECONDS):
                await room.until_reviewed()
        except TimeoutError:
            raise StoreError("the draft's updates are not committed yet, retry") from None
        return room.state is RoomState.OPEN

    @staticmethod
    def shows_live(room: Room | None) -> TypeGuard[Room]:
        """Whether a summary or a total may count `room`'s doc now, without waiting: it is open
        and holds no write waiting for its review turn. Such a write may be dropped, and its
        turn may take seconds (another instance holds the draft's lock): the stored figures
        stand for the draft meanwhile, and its commit marks the draft changed again. A
        listing or the change feed never waits on one draft's turn, which would hold up every
        other draft behind it (the feed publishes one draft after another)."""
        return room is not None and room.state is RoomState.OPEN and room.is_reviewed

    def live_meta(self, room: Room) -> ContentMeta:
        """A loaded draft's figures from its doc (cached by room version); a reader that may
        run while a write waits for its review turn calls `reviewed` first."""
        cached = self._cache.get(room.draft_id)
        if cached is not None and cached[0] == room.version:
            return cached[1]
        return self._count(room, read_content(room.doc, self.fields))

    async def read_live(self, room: Room) -> DraftView:
        """The loaded draft as its room holds it, answered once what it shows is committed
        (the gate's ticket of this moment, server/sync/gate.py), never before. A write held for
        its review turn (several instances) has no ticket yet and may be dropped (its sender
        lost the right): the read waits for the turn, and reads the store if the room reloaded."""
        if not await self.reviewed(room):
            return await self.read_stored(room.draft_id)
        version = room.version
        ticket = room.gate.accepted
        content = read_content(room.doc, self.fields)
        meta = self._count(room, content)
        await self.wait_committed(room, ticket)
        return DraftView(version, content, meta, synced=room.is_drained)

    async def read_stored(self, draft_id: str) -> DraftView:
        """An unloaded draft, rebuilt from the store (its figures saved if they were stale)."""
        state = await self.store.load(draft_id)
        content, meta = await asyncio.to_thread(self._rebuild_and_count, state)
        await self._save(draft_id, state.version, meta)
        return DraftView(state.version, content, meta, synced=True)

    async def stored_meta(
        self, draft_id: str, version: int, saved: SavedMeta | None
    ) -> ContentMeta:
        """An unloaded draft's figures: the saved ones if they are of `version`, else counted."""
        if saved is not None and saved.version >= version and saved.fields_key == self.fields_key:
            return ContentMeta(
                word_count=saved.word_count,
                filled_fields=saved.filled_fields,
                total_fields=len(self.fields),
                open_conflicts=saved.open_conflicts,
            )
        if version == 0:
            return content_meta(DraftContent(), self.fields)
        return (await self.read_stored(draft_id)).meta

    async def save_loaded(self, rooms: list[Room]) -> None:
        """At shutdown: save the figures of every drained room, so no rebuild is needed."""
        for room in rooms:
            if room.state is RoomState.OPEN and room.is_drained:
                await self._save(room.draft_id, room.version, self.live_meta(room))
        if self._saving:
            await asyncio.gather(*self._saving, return_exceptions=True)

    # -- helpers ------------------------------------------------------------------------------

    def _count(self, room: Room, content: DraftContent) -> ContentMeta:
        meta = content_meta(content, self.fields)
        self._cache[room.draft_id] = (room.version, meta)
        return meta

    def _rebuild_and_count(self, state: DraftState) -> tuple[DraftContent, ContentMeta]:
        content = read_content(rebuild(state.snapshot, state.tail), self.fields)
        return content, content_meta(content, self.fields)

    async def _save(self, draft_id: str, version: int, meta: ContentMeta) -> None:
        saved = SavedMeta(
            version=version,
            fields_key=self.fields_key,
            word_count=meta.word_count,
            filled_fields=meta.filled_fields,
            open_conflicts=meta.open_conflicts,
        )
        try:
            await self.store.save_meta(draft_id, saved)
        except StoreError as error:  # figures are derived: the next read counts them again
            logger.warning("saving metadata failed draft=%s error=%s", draft_id, error)
