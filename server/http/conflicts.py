"""Resolving a `manual` conflict: `POST /api/drafts/{id}/conflicts/{conflict_id}/resolve`.

    {"value": V}  -> 200 {"id", "conflictId", "field", "value", "version"}

V must be one of the conflict's candidate values and fit the field's type (else 422). The
server writes the value and removes the conflict in one change of its own, stored, journaled
(`CONFLICT_RESOLVED`) and relayed like any update, so it is gone from every editor at once.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from crdt.errors import RuleError
from crdt.journal import EventType, JournalEvent
from server.access import Role
from server.errors import NotPermitted, UnknownConflict
from server.http.answers import Answer, respond
from server.http.common import committed, endpoint, reach, read_json
from server.http.values import Scalar

if TYPE_CHECKING:
    from pycrdt import Doc

    from server.service import Service

__all__ = ["Resolution", "Resolved", "resolve_conflict"]


class Resolution(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    value: Scalar


class Resolved(Answer):
    id: str
    conflict_id: str
    field: str
    value: Scalar = Field(description="The value written: one of the conflict's candidates.")
    version: int | None = Field(description="The version of the server's resolving change.")


@endpoint
async def resolve_conflict(request: Request, service: Service, user: str) -> Response:
    draft_id = request.path_params["draft_id"]
    conflict_id = request.path_params["conflict_id"]
    role = await reach(service, draft_id, user)
    if role is Role.VIEWER:
        raise NotPermitted("viewers cannot resolve conflicts")
    body = await read_json(request, Resolution)
    room = await service.rooms.open(draft_id)
    try:
        assert room.semantics is not None
        entry = room.semantics.conflicts.get(conflict_id)
        if not isinstance(entry, dict):
            raise UnknownConflict(f"no open conflict {conflict_id!r} in this draft")
        field = str(entry.get("field"))
        spec = service.settings.schema.values.get(field)
        if spec is not None and not spec.accepts(body.value):
            raise RuleError(
                f"{body.value!r} is not a valid {spec.type.value if spec.type else ''} for {field}"
            )
        candidates = [c.get("value") for c in entry.get("candidates", []) if isinstance(c, dict)]
        if not any(_same(body.value, c) for c in candidates):
            raise RuleError(f"{body.value!r} is not one of the candidates {candidates!r}")
        now = time.time()

        def write(doc: Doc) -> None:
            room.semantics.fields[field] = body.value  # type: ignore[union-attr]
            del room.semantics.conflicts[conflict_id]  # type: ignore[union-attr]

        def resolved(version: int) -> list[JournalEvent]:
            data: dict[str, Any] = {"conflict_id": conflict_id, "field": field, "value": body.value}
            return [
                JournalEvent(
                    EventType.CONFLICT_RESOLVED, draft_id, version, user, "rest", None, now, data
                )
            ]

        written = room.write_as_server("resolve", write, events=resolved)
    finally:
        service.rooms.release(room)
    await committed(room)
    # Read once committed: the version the store gave it (another instance's write may
    # have taken the one the room gave), as the journal's event names it.
    version = None if written is None else written.version
    return respond(
        Resolved(
            id=draft_id, conflict_id=conflict_id, field=field, value=body.value, version=version
        )
    )


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b)
