"""The journal and past versions of a draft.

    GET  /api/drafts/{id}/events?after=&limit=  -> {"items": [event...], "next": id | null}
    GET  /api/drafts/{id}/versions/{version}    -> the draft right after that version
    POST /api/drafts/{id}/restore {version}     -> a new forward change equal to that version
                                                   (none if equal already: nothing written)

An event as read: {"id", "type", "version", "user", "session", "clientId", "at", ...data}
(`FIELD_UPDATED` adds field, kind and old/new, or for text inserted/deleted and
from_version/to_version). Version 0 is the empty draft; a version past the last is 404.
A past version is rebuilt from the nearest snapshot at or before it plus the log after it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from pycrdt import XmlFragment
from pydantic import BaseModel, ConfigDict, Field, StrictInt
from starlette.requests import Request
from starlette.responses import Response

from crdt.content import fields_of, read_content
from crdt.history import rebuild
from crdt.journal import EventType, JournalEvent
from crdt.restore import restored_update
from crdt.richtext import node_data
from crdt.schema import Kind
from server import faults
from server.access import Role
from server.errors import (
    BadRequest,
    NotPermitted,
    StoreError,
    UnknownVersion,
    ValidationFailed,
)
from server.http.answers import Answer, respond
from server.http.common import (
    committed,
    endpoint,
    finite,
    iso,
    reach,
    read_json,
    read_query,
)
from server.http.drafts import DraftState
from server.http.longjson import respond_long
from server.sync.journal import recover_journal
from server.sync.room import RoomState

if TYPE_CHECKING:
    from pycrdt import Doc

    from server.service import Service
    from server.store.records import DraftState as StoredState

__all__ = [
    "DraftVersion",
    "Event",
    "EventList",
    "EventPage",
    "RestoreBody",
    "Restored",
    "get_version",
    "in_worker",
    "list_events",
    "restore_version",
]

logger = logging.getLogger("draftsync.api")

T = TypeVar("T")


# Versions and event ids are SQLite/PostgreSQL 64-bit integers: a larger one is a bad request.
_MAX_INTEGER = 2**63 - 1


class EventPage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    after: int = Field(default=0, ge=0, le=_MAX_INTEGER)
    limit: int = Field(default=100, ge=1, le=1000)


class RestoreBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    version: StrictInt = Field(ge=0, le=_MAX_INTEGER)


class Event(Answer):
    """A journal event; its type's own data follows as further keys (snake_case, as stored):
    `FIELD_UPDATED` adds field, kind and old/new, or for text inserted/deleted and
    from_version/to_version; `RESTORED` adds from_version; `CONFLICT_RESOLVED` adds
    conflict_id, field and value."""

    model_config = ConfigDict(extra="allow", validate_by_name=False)

    id: int = Field(description="Grows per draft: pass the last one seen as `after=`.")
    type: str = Field(description="FIELD_UPDATED, CONFLICT_OPENED, CONFLICT_RESOLVED, ...")
    version: int = Field(description="The version of the update the event comes from.")
    user: str | None
    session: str | None
    client_id: int | None = Field(description="The Yjs client id of the update, if any.")
    at: str = Field(description="ISO 8601, UTC.")


class EventList(Answer):
    items: list[Event]
    next: int | None = Field(description="Pass as `after=` for the next page; null: the last.")


class DraftVersion(Answer):
    """The draft right after one version (`GET /api/drafts/{id}/versions/{version}`)."""

    id: str
    version: int
    state: DraftState
    conflicts: dict[str, Any] = Field(description="Open manual conflicts at that version, by id.")
    richtext: dict[str, Any] = Field(
        default_factory=dict,
        description="Each rich-text field's structure (its text is in `state.texts`): blocks "
        "{type, attrs, content}, a text as [[insert, marks | null], ...] runs.",
    )


class Restored(Answer):
    id: str
    restored_from: int = Field(description="The version whose content was restored.")
    version: int = Field(
        description="The draft's version in the store once the restore is committed (its "
        "change's, or the last one if it changed nothing)."
    )


@endpoint
async def list_events(request: Request, service: Service, user: str) -> Response:
    draft_id = request.path_params["draft_id"]
    await reach(service, draft_id, user)
    try:
        page = read_query(request, EventPage)
    except ValidationFailed as error:
        raise BadRequest(str(error)) from None  # a bad query parameter is a bad request
    room = service.rooms.get(draft_id)
    if room is None or room.state is not RoomState.OPEN:
        # Bursts open when the process last died are journaled before anyone reads; a read
        # needs no write, so one that cannot be stored (a full disk) is left for later (the
        # recovered events get ids after the cursor: a reader paging on finds them).
        try:
            await recover_journal(service.store, draft_id, service.settings.schema)
        except StoreError as error:
            logger.warning("journal recovery deferred draft=%s error=%s", draft_id, error)
    events = await service.store.events_page(draft_id, after=page.after, limit=page.limit + 1)
    more = len(events) > page.limit
    events = events[: page.limit]
    items = [
        Event.model_validate(
            {
                "id": e.id,
                "type": e.type,
                "version": e.version,
                "user": e.user,
                "session": e.session,
                "clientId": e.client_id,
                "at": iso(e.at),
                **finite(e.data),
            }
        )
        for e in events
    ]
    return respond(EventList(items=items, next=events[-1].id if more else None))


@endpoint
async def get_version(request: Request, service: Service, user: str) -> Response:
    draft_id = request.path_params["draft_id"]
    await reach(service, draft_id, user)
    version = _version_param(request.path_params["version"])
    schema = service.settings.schema
    with service.rebuilds.slot(user):  # 503 / 429 over the rebuilds under way
        state = await _stored_at(service, draft_id, version)

        def answer() -> Response:
            doc = rebuild(state.snapshot, state.tail)
            content = read_content(doc, fields_of(schema))
            richtext = {
                spec.name: node_data(doc.get(spec.name, type=XmlFragment))
                for spec in schema.kind_of(Kind.RICHTEXT)
            }
            return respond_long(
                DraftVersion(
                    id=draft_id,
                    version=version,
                    state=finite(content.as_json()),
                    conflicts=finite(content.conflicts),
                    richtext=finite(richtext),
                )
            )

        return await in_worker(answer)


@endpoint
async def restore_version(request: Request, service: Service, user: str) -> Response:
    draft_id = request.path_params["draft_id"]
    role = await reach(service, draft_id, user)
    if role is Role.VIEWER:
        raise NotPermitted("viewers cannot restore a version")
    body = await read_json(request, RestoreBody)
    schema = service.settings.schema
    with service.rebuilds.slot(user):  # 503 / 429 over the rebuilds under way
        old = await _rebuilt(service, draft_id, body.version)
        room = await service.rooms.open(draft_id)
        try:
            # Computed off the event loop on a copy (a big list took seconds on the loop),
            # then applied as the server's change; edits that land meanwhile merge with it.
            state = room.doc.get_update()
            update = await asyncio.to_thread(restored_update, state, old, schema)
            now = time.time()

            def restored(version: int) -> list[JournalEvent]:
                data: dict[str, Any] = {"from_version": body.version}
                return [
                    JournalEvent(
                        EventType.RESTORED, draft_id, version, user, "rest", None, now, data
                    )
                ]

            written = None
            if update is not None:  # write_as_server refuses (503) if the room closed meanwhile
                written = room.write_as_server(
                    "restore", lambda doc: doc.apply_update(update), events=restored
                )
        finally:
            service.rooms.release(room)
    await committed(room)
    # Read once committed: the version the store gave it (another instance's write may
    # have taken the one the room gave), as the journal's RESTORED event names it. A restore
    # that changed nothing wrote nothing: the draft's version is the store's last, as
    # `name_version` reads it, not the room's count (another instance's writes may not
    # have reached this room yet).
    if written is not None:
        version = written.version
    else:
        version = await service.store.last_version(draft_id)
    return respond(Restored(id=draft_id, restored_from=body.version, version=version))


def _version_param(raw: str) -> int:
    # ASCII digits only: "²".isdigit() is true and int() refuses it; and at most what the
    # store's integers hold (a longer one failed in SQLite, or in int() past 4300 digits).
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19 or int(raw) > _MAX_INTEGER:
        raise BadRequest(f"version must be a non-negative integer below 2**63, got {raw[:32]!r}")
    return int(raw)


async def _stored_at(service: Service, draft_id: str, version: int) -> StoredState:
    """The nearest snapshot at or before `version` and the log after it, up to `version`
    (404 past the draft's last), once what the draft's room accepted is committed."""
    room = service.rooms.get(draft_id)
    if room is not None:  # what this draft accepted is in the log before we read it
        await committed(room)
    last = await service.store.last_version(draft_id)
    if version > last:
        raise UnknownVersion(f"version {version} is out of range: this draft has 0..{last}")
    return await service.store.load(draft_id, at_version=version)


async def _rebuilt(service: Service, draft_id: str, version: int) -> Doc:
    state = await _stored_at(service, draft_id, version)
    return await in_worker(lambda: rebuild(state.snapshot, state.tail))


async def in_worker(work: Callable[[], T]) -> T:
    """`work()` on a worker thread: a rebuild, the reading of its content and the JSON of the
    answer grow with the draft (a 5 MB one: ~25 ms, the JSON encode most of it), and on the
    event loop they stalled every other draft's relays for as long. pycrdt holds the GIL
    inside each call, so the loop still waits for the longest single one (a 5 MB snapshot
    applied or text read: ~5 ms), not for the sum; long texts are encoded a slice at a time
    for that reason (`server/http/longjson.py`). The `rebuild` hold point
    (server/faults.py) lets a test keep such work under way."""

    def run() -> T:
        result = work()
        if faults.HELD:
            faults.pause("rebuild")
        return result

    return await asyncio.to_thread(run)
