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
from starlette.responses import Response

from server.http.answers import Answer, respond
from server.http.common import bearer_token, endpoint, iso, reach, read_json

if TYPE_CHECKING:
    from server.service import Service

__all__ = ["RenewedToken", "TokenRenewal", "renew_token"]

logger = logging.getLogger("draftsync.api")


class TokenRenewal(BaseModel):
    """The body of `POST /api/token/renew`; empty, or naming a draft the user must still reach."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    draft_id: str | None = Field(default=None, alias="draftId", max_length=256)


class RenewedToken(Answer):
    token: str = Field(description="A fresh token of the same user and lifetime.")
    user: str
    expires_at: str = Field(description="ISO 8601, UTC.")
    expires_in: int = Field(description="Seconds until it expires.")


@endpoint
async def renew_token(request: Request, service: Service, user: str) -> Response:
    renewal = await read_json(request, TokenRenewal)
    if renewal.draft_id is not None:
        await reach(service, renewal.draft_id, user)
    token, claims = service.signer.renew(bearer_token(request), now=time.time())
    logger.info("token renewed user=%s", user)
    return respond(
        RenewedToken(
            token=token,
            user=claims.user,
            expires_at=iso(claims.expires_at),
            expires_in=int(claims.expires_at - time.time()),
        )
    )
