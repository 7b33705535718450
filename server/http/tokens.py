"""Token renewal: `POST /api/token/renew` exchanges a valid token for a fresh one of the same user.

The editor renews before its token expires, so that an open page never strands work behind an
expired token (an open socket is closed with 4401 once its token expires). A token that has
already expired cannot be renewed: the user needs a new link. With `{"draftId": ...}` in the
body the renewal also checks that the user can still reach that draft, so an editor whose access
was revoked learns it here (404, as for any draft the caller cannot reach).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.http.common import bearer_token, endpoint, iso, reach, read_json

if TYPE_CHECKING:
    from server.service import Service

__all__ = ["renew_token"]

logger = logging.getLogger("draftsync.api")


class _Renewal(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    draft_id: str | None = Field(default=None, alias="draftId", max_length=256)


@endpoint
async def renew_token(request: Request, service: Service, user: str) -> Response:
    renewal = await read_json(request, _Renewal)
    if renewal.draft_id is not None:
        await reach(service, renewal.draft_id, user)
    token, claims = service.signer.renew(bearer_token(request), now=time.time())
    logger.info("token renewed user=%s", user)
    return JSONResponse(
        {
            "token": token,
            "user": claims.user,
            "expiresAt": iso(claims.expires_at),
            "expiresIn": int(claims.expires_at - time.time()),
        }
    )
