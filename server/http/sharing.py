"""`PUT /api/drafts/{id}/access {"user", "role"}`: share a draft, change or remove a role.
`GET /api/drafts/{id}/access`: who has access, `{"items": [{"user", "role"}]}` by user.

Owners only (others who reach the draft: 403; strangers: 404). `role` is `owner`, `editor`,
`viewer` or `none` (removes the user's access). A change that would leave the draft without an
owner is 409. The change reaches the user's live connections at once (`server.sync.sharing`),
and their drafts feed (`server.sync.feed`): a new role is a summary, a removed one `removed`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from starlette.requests import Request
from starlette.responses import Response

from server.access import Role
from server.errors import Conflict
from server.http.answers import Answer, respond
from server.http.common import endpoint, reach, read_json, require_owner
from server.sync.sharing import apply_role

if TYPE_CHECKING:
    from server.service import Service

__all__ = ["AccessChange", "AccessChanged", "AccessEntry", "AccessList", "get_access", "put_access"]

logger = logging.getLogger("draftsync.api")


class AccessChange(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    user: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    role: Literal["owner", "editor", "viewer", "none"]

    @field_validator("user")
    @classmethod
    def _storable(cls, value: str) -> str:
        # PostgreSQL's text holds no U+0000: the store failed, answered 503 ("retry"), which
        # never helps; SQLite kept a name that no PostgreSQL deployment could. A 422 on both.
        if "\x00" in value:
            raise ValueError("a user name cannot hold the NUL character (U+0000)")
        return value


class AccessChanged(Answer):
    user: str
    role: Literal["owner", "editor", "viewer", "none"]
    live_connections: int = Field(description="The user's open connections the change reached.")


class AccessEntry(Answer):
    user: str
    role: Literal["owner", "editor", "viewer"]


class AccessList(Answer):
    items: list[AccessEntry] = Field(description="Everyone with a stored role, by user.")


@endpoint
async def get_access(request: Request, service: Service, user: str) -> Response:
    draft_id = request.path_params["draft_id"]
    require_owner(await reach(service, draft_id, user), "see who has access")
    access = await service.store.access_list(draft_id)
    items = [AccessEntry(user=name, role=role) for name, role in access.items()]  # type: ignore[arg-type]
    return respond(AccessList(items=items))


@endpoint
async def put_access(request: Request, service: Service, user: str) -> Response:
    draft_id = request.path_params["draft_id"]
    require_owner(await reach(service, draft_id, user), "change who has access")
    change = await read_json(request, AccessChange)
    role = None if change.role == "none" else Role(change.role)
    if not await service.store.set_role(draft_id, change.user, role.value if role else None):
        raise Conflict("the draft would have no owner left: make another user an owner first")
    live = apply_role(service.rooms, draft_id, change.user, role)
    if service.fanout is not None:  # and on every other instance
        service.fanout.access_changed(draft_id, change.user, role)
    if role is None:
        service.feed.removed(draft_id, [change.user])
    service.feed.changed(draft_id)  # the invited user's list, the others' collaborators
    logger.info(
        "access changed draft=%s by=%s user=%s role=%s live=%d",
        draft_id,
        user,
        change.user,
        change.role,
        live,
    )
    return respond(AccessChanged(user=change.user, role=change.role, live_connections=live))
