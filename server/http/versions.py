"""Comparing versions, and the versions people name on purpose.

    GET  /api/drafts/{id}/diff?from=V1&to=V2  -> what changed from V1 to V2 (to: the current)
    GET  /api/drafts/{id}/versions            -> the named versions, newest first
    POST /api/drafts/{id}/versions {label}    -> names the draft's current committed version

The diff is computed here, where versions are rebuilt already (the nearest snapshot plus the
log after it, `history._rebuilt`), off the event loop, with `crdt.diff` (bounded work for huge
texts: the answer's `bounded` says a comparison by lines, or none, was used). A named version is a
journal event (`VERSION_NAMED`: version, user, label): no content is copied, the version is
rebuilt like any other when it is previewed or restored. Viewers can compare and list, not
name: naming writes to the draft's history that everyone with access sees (403).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator
from starlette.requests import Request
from starlette.responses import Response

from crdt.content import fields_of, read_content
from crdt.diff import diff_content
from crdt.history import rebuild
from crdt.journal import EventType, JournalEvent
from server.access import Role
from server.errors import BadRequest, NotPermitted, ValidationFailed
from server.http.answers import Answer, omitted_when_none, respond
from server.http.common import committed, endpoint, finite, iso, reach, read_json, read_query
from server.http.history import _MAX_INTEGER, _stored_at, in_worker
from server.http.longjson import respond_long

if TYPE_CHECKING:
    from server.service import Service

__all__ = [
    "DiffQuery",
    "DraftDiff",
    "FieldChange",
    "NameVersion",
    "NamedVersion",
    "NamedVersionList",
    "TextOp",
    "diff_versions",
    "draft_diff",
    "list_named_versions",
    "name_version",
]

_MAX_LABEL = 100
_MAX_NAMED_LISTED = 1000


class DiffQuery(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=False)

    from_version: int = Field(alias="from", ge=0, le=_MAX_INTEGER, description="The older side.")
    to_version: int | None = Field(
        default=None, alias="to", ge=0, le=_MAX_INTEGER, description="Default: the current."
    )


class TextOp(Answer):
    """`format`: text kept whose formatting changed (rich text): the mark names `added`,
    `removed` and `changed` (a link's address), and `block` [old, new] when its block type
    changed ("paragraph", "heading 2", "bulletList / listItem / paragraph")."""

    op: Literal["equal", "insert", "delete", "format"]
    text: str
    added: list[str] | None = omitted_when_none()
    removed: list[str] | None = omitted_when_none()
    changed: list[str] | None = omitted_when_none()
    block: list[str] | None = omitted_when_none()


class FieldChange(Answer):
    """One changed field. Text: `ops` (inline), `granularity` (char or word; line or whole
    past the size bound) and counts in characters (`formatted`: rich text only); value: `old`
    and `new`; list: `added`, `removed` (and the whole `old` and `new` lists)."""

    field: str
    kind: Literal["text", "value", "list"]
    ops: list[TextOp] | None = omitted_when_none()
    granularity: Literal["char", "word", "line", "whole"] | None = omitted_when_none()
    inserted: int | None = omitted_when_none()
    deleted: int | None = omitted_when_none()
    formatted: int | None = omitted_when_none()
    old: Any = None
    new: Any = None
    added: list[Any] | None = omitted_when_none()
    removed: list[Any] | None = omitted_when_none()


class DraftDiff(Answer):
    id: str
    from_version: int
    to_version: int
    changes: list[FieldChange] = Field(description="Changed fields only; empty: the same.")
    bounded: bool = Field(
        description="A text was too long to compare by characters, or a rich text's "
        "formatting changes too many to tell all (the rest are left as kept text)."
    )


class NameVersion(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    label: StrictStr = Field(min_length=1, max_length=_MAX_LABEL)

    @field_validator("label")
    @classmethod
    def _visible(cls, value: str) -> str:
        value = " ".join(value.split())
        if not value or not value.isprintable():
            raise ValueError("a label needs visible characters")
        return value


class NamedVersion(Answer):
    version: int
    label: str
    user: str | None
    at: str = Field(description="ISO 8601, UTC.")


class NamedVersionList(Answer):
    items: list[NamedVersion] = Field(description="Newest first.")


@endpoint
async def diff_versions(request: Request, service: Service, user: str) -> Response:
    draft_id = request.path_params["draft_id"]
    await reach(service, draft_id, user)
    try:
        query = read_query(request, DiffQuery)
    except ValidationFailed as error:
        raise BadRequest(str(error)) from None
    with service.rebuilds.slot(user):  # 503 / 429 over the rebuilds under way
        compare = await _comparison(service, draft_id, query.from_version, query.to_version)
        # The JSON too: a 5 MB text compared is a 5 MB answer, ~17 ms to encode.
        return await in_worker(lambda: respond_long(compare()))


async def draft_diff(
    service: Service, draft_id: str, from_version: int, to_version: int | None
) -> DraftDiff:
    """What the endpoint answers, once the caller may read the draft (`bench history` times
    this very function): `to_version` None is the current committed version."""
    return await in_worker(await _comparison(service, draft_id, from_version, to_version))


async def _comparison(
    service: Service, draft_id: str, from_version: int, to_version: int | None
) -> Callable[[], DraftDiff]:
    """Both versions read from the store (the nearest snapshot and the log after it), and the
    work that rebuilds and compares them, to run on a worker thread (`in_worker`)."""
    if to_version is None:
        room = service.rooms.get(draft_id)
        if room is not None:
            await committed(room)
        to_version = await service.store.last_version(draft_id)
    old_state = await _stored_at(service, draft_id, from_version)
    new_state = await _stored_at(service, draft_id, to_version)
    fields = fields_of(service.settings.schema)
    newer = to_version

    def compare() -> DraftDiff:
        old = rebuild(old_state.snapshot, old_state.tail)
        new = rebuild(new_state.snapshot, new_state.tail)
        before, after = (
            read_content(old, fields, formats=True),
            read_content(new, fields, formats=True),
        )
        changes, bounded = diff_content(
            finite(before.as_json()),
            finite(after.as_json()),
            formats=(before.formats, after.formats),
        )
        return DraftDiff(
            id=draft_id,
            from_version=from_version,
            to_version=newer,
            changes=[FieldChange.model_validate(change) for change in changes],
            bounded=bounded,
        )

    return compare


@endpoint
async def list_named_versions(request: Request, service: Service, user: str) -> Response:
    draft_id = request.path_params["draft_id"]
    await reach(service, draft_id, user)
    events = await service.store.events_of_type(
        draft_id, str(EventType.VERSION_NAMED), limit=_MAX_NAMED_LISTED
    )
    items = [
        NamedVersion(
            version=e.version, label=str(e.data.get("label", "")), user=e.user, at=iso(e.at)
        )
        for e in events
    ]
    return respond(NamedVersionList(items=items))


@endpoint
async def name_version(request: Request, service: Service, user: str) -> Response:
    draft_id = request.path_params["draft_id"]
    role = await reach(service, draft_id, user)
    if role is Role.VIEWER:
        raise NotPermitted("viewers cannot name a version")
    body = await read_json(request, NameVersion)
    room = service.rooms.get(draft_id)
    if room is not None:  # the version named is one the log holds
        await committed(room)
    version = await service.store.last_version(draft_id)
    now = time.time()
    event = JournalEvent(
        EventType.VERSION_NAMED, draft_id, version, user, "rest", None, now, {"label": body.label}
    )
    await service.store.append_events([event])
    named = NamedVersion(version=version, label=body.label, user=user, at=iso(now) or "")
    return respond(named, status_code=201)
