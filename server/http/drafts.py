"""`/api/drafts`: create, list, read and delete drafts.

    POST   /api/drafts               {"id"?, "title"?, "fields"?: {...}}  -> 201 the draft; 409
    GET    /api/drafts?limit=&cursor=                                     -> {"items", "next"}
    GET    /api/drafts/{id}                                               -> the draft
    DELETE /api/drafts/{id}          owner only                           -> 204

A draft as read::

    {"id", "role", "version",
     "state": {"texts": {"title": "..."}, "fields": {...}, "lists": {"tags": [...]}},
     "conflicts": {...},
     "metadata": {"owner", "createdAt", "lastModified", "contributors", "wordCount",
                  "completion", "filledFields", "totalFields", "openConflicts", "sync"},
     "access": {user: role}}                                  (owners only)

Fields are checked against the schema (`crdt.content.initial_problems`: kind, type, and for a
`transition` field a start allowed from its initial value): 422 naming each problem. A body is
bounded (`BodyLimits`): at most `--max-body-elements` elements a list
and `--max-body-fields` keys, else 422 naming the limit; over 1 MiB it is 413.
A new draft's title and fields are written as one Yjs update by a fresh 32-bit client id and
stored as version 1 in the transaction that creates the draft, so it loads like any update.
Deleting tombstones the id (never reusable), closes live connections with 4404 and removes the
content once the room's accepted updates are committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema
from starlette.requests import Request
from starlette.responses import Response

from crdt.content import initial_problems, initial_update
from crdt.journal import EventType
from server.access import Role, check_draft_quota
from server.errors import Conflict, UnknownDraft
from server.http.answers import Answer, omitted_when_none, respond
from server.http.common import (
    decode_cursor,
    encode_cursor,
    endpoint,
    finite,
    iso,
    reach,
    read_json,
    read_query,
    require_owner,
)
from server.http.values import FieldValue
from server.store.records import UpdateRecord
from server.sync.gate import GateClosed
from server.sync.room import RoomState
from server.sync.sharing import close_deleted

if TYPE_CHECKING:
    from server.config import Settings
    from server.service import Service

__all__ = [
    "DELETE_DRAIN_SECONDS",
    "REST_SESSION",
    "BodyLimits",
    "Draft",
    "DraftList",
    "DraftListItem",
    "DraftMetadata",
    "DraftState",
    "FieldName",
    "NewDraft",
    "Page",
    "RoleName",
    "create_draft",
    "delete_draft",
    "draft_json",
    "get_draft",
    "list_drafts",
]

logger = logging.getLogger("draftsync.api")

DELETE_DRAIN_SECONDS = 10.0
REST_SESSION = "rest"

FieldName = Annotated[str, StringConstraints(min_length=1, max_length=128)]


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """How much one REST create may write: elements a list field (`--max-body-elements`) and
    keys of `fields` (`--max-body-fields`), so that building its update stays within tens of
    milliseconds (off the event loop) whatever the body. WebSocket updates have their own
    limits, checked on their bytes."""

    max_elements: int
    max_fields: int

    @classmethod
    def of(cls, settings: Settings) -> BodyLimits:
        return cls(settings.max_body_elements, settings.max_body_fields)

    def problems(self, fields: dict[str, Any]) -> list[str]:
        found = []
        if len(fields) > self.max_fields:
            found.append(
                f"`fields` has {len(fields)} keys: at most {self.max_fields} (--max-body-fields)"
            )
        for name, value in fields.items():
            if isinstance(value, list) and len(value) > self.max_elements:
                found.append(
                    f"`{name}` has {len(value)} elements: at most {self.max_elements} "
                    "a list (--max-body-elements)"
                )
        return found


class NewDraft(BaseModel):
    """The body of `POST /api/drafts`; validated against the schema given as context."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,128}$")] | None = None
    title: str | None = None
    fields: dict[FieldName, FieldValue] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _fits_schema(self, info: ValidationInfo) -> Self:
        context = info.context or {}
        problems = context["limits"].problems(self.fields)  # before any per-value work
        if not problems:
            problems = initial_problems(context["schema"], self.title, self.fields)
        if problems:
            raise ValueError("; ".join(problems))
        return self


class Page(BaseModel):
    model_config = ConfigDict(extra="ignore")

    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | SkipJsonSchema[None] = Field(
        default=None, description="The `next` of the previous page."
    )


RoleName = Literal["owner", "editor", "viewer"]


class DraftListItem(Answer):
    """A draft as `GET /api/drafts` lists it."""

    id: str
    role: RoleName = Field(description="The caller's role on the draft.")
    owner: str = Field(description="The user who created it.")
    version: int = Field(description="The number of updates stored for it.")
    created_at: str = Field(description="ISO 8601, UTC.")
    last_modified: str = Field(description="ISO 8601, UTC: its last stored update.")


class DraftList(Answer):
    items: list[DraftListItem]
    next: str | None = Field(description="Pass as `cursor=` for the next page; null: the last.")


class DraftState(Answer):
    """The content: text fields as plain text, value fields, list fields. Values and list
    items are whatever JSON the editors stored (non-finite numbers read as null)."""

    texts: dict[str, str]
    fields: dict[str, Any]
    lists: dict[str, list[Any]]


class DraftMetadata(Answer):
    owner: str
    created_at: str = Field(description="ISO 8601, UTC.")
    last_modified: str = Field(description="ISO 8601, UTC.")
    contributors: list[str] = Field(description="Users who stored an update, in order.")
    word_count: int
    completion: float = Field(description="Percent of the schema's fields filled, 0-100.")
    filled_fields: int
    total_fields: int
    open_conflicts: int
    sync: Literal["synced", "pending"] = Field(
        description="`pending` while an accepted update waits for its commit."
    )
    manual_save_count: int = Field(description="Versions a person named (`POST .../versions`).")
    auto_save_count: int = Field(
        description="Versions saved automatically: every accepted change is one (the version)."
    )
    session_count: int = Field(description="Editing sessions that ended (journal `SESSION`).")


class Draft(Answer):
    """A draft as read (`GET /api/drafts/{id}`, and `POST /api/drafts` answers it too)."""

    id: str
    role: RoleName = Field(description="The caller's role on the draft.")
    version: int
    state: DraftState
    conflicts: dict[str, Any] = Field(
        description="Open manual conflicts by id: "
        '{"field", "candidates": [{"value", "user", "client_id", "at"}], "opened_at"}.'
    )
    metadata: DraftMetadata
    access: dict[str, RoleName] | SkipJsonSchema[None] = omitted_when_none()


@endpoint
async def create_draft(request: Request, service: Service, user: str) -> Response:
    fields = service.metadata.fields
    settings = service.settings
    context = {"schema": settings.schema, "limits": BodyLimits.of(settings)}
    body = await read_json(request, NewDraft, context=context)
    await check_draft_quota(service.store, user, settings.max_drafts_per_user)
    # A generated id that happens to be taken is retried; a given one is the caller's to change.
    # Hex: never starts with "-", which command lines would take for an option.
    candidates = [body.id] if body.id is not None else [secrets.token_hex(8) for _ in range(3)]
    for draft_id in candidates:
        now = time.time()
        client_id = secrets.randbits(32)
        # Off the event loop: bounded by BodyLimits, but still up to tens of milliseconds.
        update = await asyncio.to_thread(
            functools.partial(
                initial_update,
                client_id=client_id,
                fields=fields,
                title=body.title,
                values=body.fields,
            )
        )
        first = None
        if update is not None:
            first = UpdateRecord(draft_id, 1, update, user, REST_SESSION, client_id, now)
        created = await service.store.create_draft_with(
            draft_id, user, now=now, first=first, max_owned=settings.max_drafts_per_user
        )
        if created:
            logger.info("draft created draft=%s user=%s", draft_id, user)
            service.feed.changed(draft_id)
            return respond(await draft_json(service, draft_id, Role.OWNER), status_code=201)
    raise Conflict("a draft with this id already exists")


@endpoint
async def list_drafts(request: Request, service: Service, user: str) -> Response:
    page = read_query(request, Page)
    after = decode_cursor(page.cursor) if page.cursor else ""
    rows = await service.store.reachable_drafts(user, after=after, limit=page.limit + 1)
    items = [
        DraftListItem(
            id=row.id,
            role=row.role,
            owner=row.owner,
            version=row.version,
            created_at=iso(row.created_at),
            last_modified=iso(row.last_modified),
        )
        for row in rows[: page.limit]
    ]
    more = len(rows) > page.limit
    return respond(DraftList(items=items, next=encode_cursor(items[-1].id) if more else None))


@endpoint
async def get_draft(request: Request, service: Service, user: str) -> Response:
    draft_id = request.path_params["draft_id"]
    role = await reach(service, draft_id, user)
    return respond(await draft_json(service, draft_id, role))


@endpoint
async def delete_draft(request: Request, service: Service, user: str) -> Response:
    draft_id = request.path_params["draft_id"]
    require_owner(await reach(service, draft_id, user), "delete it")
    readers = list(await service.store.access_list(draft_id))
    if not await service.store.tombstone(draft_id, now=time.time()):
        raise UnknownDraft("draft not found")
    service.feed.removed(draft_id, readers)
    service.summaries.forget(draft_id)
    closed = close_deleted(service.rooms, draft_id)
    if service.fanout is not None:  # and on every other instance
        service.fanout.draft_deleted(draft_id)
    room = service.rooms.get(draft_id)
    try:  # what was accepted before the tombstone is committed, then removed with it
        async with asyncio.timeout(DELETE_DRAIN_SECONDS):
            if room is not None:
                with contextlib.suppress(GateClosed):  # failed: its writes are not stored
                    await room.gate.until_committed()
            # And whatever room accepted them: a discarded or replaced one is not registered
            # any more, but its accepted writes still commit, after the purge if not waited for.
            await service.pipeline.until_draft_done(draft_id)
    except TimeoutError:
        logger.warning("deleting draft=%s before its writes drained", draft_id)
    await service.store.purge_content(draft_id)
    logger.info("draft deleted draft=%s user=%s closed=%d", draft_id, user, closed)
    return Response(status_code=204)


async def draft_json(service: Service, draft_id: str, role: Role) -> Draft:
    """The draft as `GET /api/drafts/{id}` answers it: from its room if loaded, else the store."""
    room = service.rooms.get(draft_id)
    if room is not None and room.state is RoomState.OPEN:
        view = await service.metadata.read_live(room)
    else:
        view = await service.metadata.read_stored(draft_id)
    record = await service.store.draft_record(draft_id)
    if record is None or record.deleted_at is not None:
        raise UnknownDraft("draft not found")  # deleted while we read it
    meta = view.meta
    counts = await service.store.event_counts(draft_id)
    return Draft(
        id=draft_id,
        role=role.value,
        version=view.version,
        state=finite(view.content.as_json()),
        conflicts=finite(view.content.conflicts),
        metadata=DraftMetadata(
            owner=record.owner,
            created_at=iso(record.created_at),
            last_modified=iso(record.last_modified or record.created_at),
            contributors=await service.store.contributors(draft_id),
            word_count=meta.word_count,
            completion=meta.completion,
            filled_fields=meta.filled_fields,
            total_fields=meta.total_fields,
            open_conflicts=meta.open_conflicts,
            sync="synced" if view.synced else "pending",
            manual_save_count=counts.get(str(EventType.VERSION_NAMED), 0),
            auto_save_count=view.version,
            session_count=counts.get(str(EventType.SESSION), 0),
        ),
        access=await service.store.access_list(draft_id) if role is Role.OWNER else None,
    )
