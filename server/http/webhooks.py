"""`GET /api/drafts/{id}/webhooks?after=&limit=`: a draft's webhook deliveries (owners only).

    -> {"items": [delivery...], "next": id | null}

A delivery is one event for one URL (README "Webhooks")::

    {"id", "eventId", "type", "url", "status": "pending" | "delivered" | "failed",
     "attempts", "createdAt", "nextAttemptAt" (pending only), "lastError", "payload",
     "attemptLog": [{"attempt", "at", "statusCode", "error", "durationMs"}]}

Owners only: the payloads carry the draft's values and who changed it, and the URLs are the
operator's. Others who reach the draft get 403, strangers 404. A deleted draft has no owner
left, so its `draft.deleted` deliveries are not listed here (the server log has them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.errors import BadRequest, ValidationFailed
from server.http.common import endpoint, iso, reach, read_query, require_owner
from server.store.outbox import Delivery

if TYPE_CHECKING:
    from server.service import Service

__all__ = ["DeliveryPage", "delivery_json", "list_deliveries"]


class DeliveryPage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    after: int = Field(default=0, ge=0)
    limit: int = Field(default=50, ge=1, le=200)


@endpoint
async def list_deliveries(request: Request, service: Service, user: str) -> Response:
    draft_id = request.path_params["draft_id"]
    require_owner(await reach(service, draft_id, user), "see its webhook deliveries")
    try:
        page = read_query(request, DeliveryPage)
    except ValidationFailed as error:
        raise BadRequest(str(error)) from None  # a bad query parameter is a bad request
    rows = await service.store.webhook_deliveries(draft_id, after=page.after, limit=page.limit + 1)
    items = [delivery_json(row) for row in rows[: page.limit]]
    more = len(rows) > page.limit
    return JSONResponse({"items": items, "next": items[-1]["id"] if more else None})


def delivery_json(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "eventId": delivery.event_id,
        "type": delivery.type,
        "url": delivery.url,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "createdAt": iso(delivery.created_at),
        "nextAttemptAt": iso(delivery.next_attempt_at) if delivery.status == "pending" else None,
        "lastError": delivery.last_error,
        "payload": delivery.payload_json(),
        "attemptLog": [
            {
                "attempt": a.attempt,
                "at": iso(a.at),
                "statusCode": a.status_code,
                "error": a.error,
                "durationMs": round(a.seconds * 1000, 1),
            }
            for a in delivery.log
        ],
    }
