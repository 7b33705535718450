"""One draft as the dashboard shows it: a summary without its content.

    id, owner, version, createdAt, lastModified, lastUser    the draft's row, its last update
    title, status                                            two short values of the content
    wordCount, completion, filledFields, totalFields,        `server.sync.metadata` (cached by
    openConflicts, sync                                      version, saved when a room unloads)
    contributors                                             users who stored an update

Why a module of its own: the list page (`GET /api/dashboard`) and the change feed
(`server.sync.feed`) send the same summary, and the feed must not read a document per
keystroke. A loaded draft is summarised from its room (metadata cached by room version) when
no write waits there for its review turn (`MetadataTracker.shows_live`; one that waits is
summarised from the store, marked pending, without waiting for the turn); an
unloaded one from its saved figures, its title and status kept here by version (taken when a
room unloads or a summary is made), so a draft is rebuilt from the store at most once per
version it is summarised at, not per page read.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from crdt.content import DraftContent, read_content
from server.store.api import Store
from server.store.records import DraftSummary
from server.sync.metadata import MetadataTracker
from server.sync.registry import RoomRegistry
from server.sync.room import Room

__all__ = ["KEPT_HEADINGS", "STATUS_FIELD", "Summarizer", "Summary"]

logger = logging.getLogger("draftsync.summaries")

STATUS_FIELD = "status"  # the schema's field that says where a draft stands, if it has one
KEPT_HEADINGS = 4096  # (title, status, last user) of drafts kept in memory, least recent out
_TITLE_CHARS = 200  # a summary is a line of a list, not the document


@dataclass(frozen=True, slots=True)
class _Heading:
    version: int
    title: str
    status: str | None
    last_user: str | None


@dataclass(frozen=True, slots=True)
class Summary:
    id: str
    owner: str
    version: int
    created_at: float
    last_modified: float
    last_user: str | None
    title: str
    status: str | None
    word_count: int
    completion: float
    filled_fields: int
    total_fields: int
    open_conflicts: int
    synced: bool
    contributors: list[str]


def _heading(content: DraftContent, version: int, last_user: str | None) -> _Heading:
    status: Any = content.values.get(STATUS_FIELD)
    return _Heading(
        version=version,
        title=content.texts.get("title", "").strip()[:_TITLE_CHARS],
        status=status if isinstance(status, str) else None,
        last_user=last_user,
    )


class Summarizer:
    def __init__(self, store: Store, rooms: RoomRegistry, tracker: MetadataTracker) -> None:
        self.store = store
        self.rooms = rooms
        self.tracker = tracker
        self._headings: OrderedDict[str, _Heading] = OrderedDict()

    # -- hooks: what the server learns anyway -------------------------------------------------

    def room_unloading(self, room: Room) -> None:
        """Keep the heading of a draft whose doc goes away, so a later summary needs no rebuild."""
        before = self._headings.get(room.draft_id)
        last_user = before.last_user if before is not None else None
        self._keep(room.draft_id, _heading(self._content(room), room.version, last_user))

    def committed(self, draft_id: str, version: int, user: str) -> None:
        """Who stored `version` (a room's commit listener): the dashboard's "last by"."""
        # title and status are read again at the next summary (version -1 matches none)
        kept = self._headings.get(draft_id)
        if kept is not None and kept.version == -1 and kept.last_user == user:
            # Once per commit: the same writer again (typing) keeps the heading it made; a
            # frozen dataclass costs ~0.5 us to build, the reuse ~0.1.
            self._headings.move_to_end(draft_id)
            return
        self._keep(draft_id, _Heading(-1, "", None, user))

    def forget(self, draft_id: str) -> None:
        self._headings.pop(draft_id, None)

    # -- summaries ----------------------------------------------------------------------------

    async def of_row(self, row: DraftSummary) -> Summary:
        """The summary of a draft as `Store.reachable_drafts` lists it."""
        room = self.rooms.get(row.id)
        if self.tracker.shows_live(room):
            return await self._live(room, row.owner, row.created_at, row.last_modified)
        meta = await self.tracker.stored_meta(row.id, row.version, row.meta)
        heading = await self._stored_heading(row.id, row.version)
        return Summary(
            id=row.id,
            owner=row.owner,
            version=row.version,
            created_at=row.created_at,
            last_modified=row.last_modified,
            last_user=heading.last_user,
            title=heading.title,
            status=heading.status,
            word_count=meta.word_count,
            completion=meta.completion,
            filled_fields=meta.filled_fields,
            total_fields=meta.total_fields,
            open_conflicts=meta.open_conflicts,
            synced=room is None or room.is_drained,  # a write may wait for its review turn
            contributors=await self.store.contributors(row.id),
        )

    async def of_draft(self, draft_id: str) -> Summary | None:
        """The summary of `draft_id` now (None: deleted or unknown), for the change feed."""
        record = await self.store.draft_record(draft_id)
        if record is None or record.deleted_at is not None:
            return None
        room = self.rooms.get(draft_id)
        last_modified = record.last_modified or record.created_at
        if self.tracker.shows_live(room):
            return await self._live(room, record.owner, record.created_at, last_modified)
        version = await self.store.last_version(draft_id)
        row = DraftSummary(
            draft_id, "", record.owner, record.created_at, version, last_modified, None
        )
        return await self.of_row(row)

    # -- helpers ------------------------------------------------------------------------------

    async def _live(
        self, room: Room, owner: str, created_at: float, last_modified: float
    ) -> Summary:
        meta = self.tracker.live_meta(room)  # cached by room version
        heading = self._headings.get(room.draft_id)
        last_user = heading.last_user if heading is not None else None
        if heading is None or heading.version != room.version:
            heading = _heading(self._content(room), room.version, last_user)
            self._keep(room.draft_id, heading)
        if heading.last_user is None and room.version > 0:
            heading = await self._with_last_user(room.draft_id, heading)
        return Summary(
            id=room.draft_id,
            owner=owner,
            version=room.version,
            created_at=created_at,
            last_modified=last_modified,
            last_user=heading.last_user,
            title=heading.title,
            status=heading.status,
            word_count=meta.word_count,
            completion=meta.completion,
            filled_fields=meta.filled_fields,
            total_fields=meta.total_fields,
            open_conflicts=meta.open_conflicts,
            synced=room.is_drained,
            contributors=await self.store.contributors(room.draft_id),
        )

    async def _stored_heading(self, draft_id: str, version: int) -> _Heading:
        heading = self._headings.get(draft_id)
        if heading is None or heading.version != version:
            last_user = heading.last_user if heading is not None else None
            if version == 0:
                heading = _Heading(0, "", None, None)
            else:  # rebuilt once per version (on a worker thread), its figures saved with it
                view = await self.tracker.read_stored(draft_id)
                heading = _heading(view.content, view.version, last_user)
            self._keep(draft_id, heading)
        if heading.last_user is None and version > 0:
            heading = await self._with_last_user(draft_id, heading)
        return heading

    async def _with_last_user(self, draft_id: str, heading: _Heading) -> _Heading:
        last = await self.store.updates_with_origin(draft_id, heading.version - 1, heading.version)
        if not last:
            return heading
        kept = _Heading(heading.version, heading.title, heading.status, last[-1].user)
        self._keep(draft_id, kept)
        return kept

    def _content(self, room: Room) -> DraftContent:
        return read_content(room.doc, self.tracker.fields)

    def _keep(self, draft_id: str, heading: _Heading) -> None:
        self._headings[draft_id] = heading
        self._headings.move_to_end(draft_id)
        while len(self._headings) > KEPT_HEADINGS:
            self._headings.popitem(last=False)
