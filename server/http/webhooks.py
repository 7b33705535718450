"""`GET /api/drafts/{id}/webhooks?after=&limit=`: a draft's webhook deliveries (owners only).

    -> {"items": [delivery...], "next": id | null}

A delivery is one event for one URL (README "Webhooks")::

    {"id", "eventId", "type", "url", "status": "pending" | "delivered" | "failed",
     "attempts", "createdAt", "nextAttemptAt" (pending only), "lastError", "payload",
     "attemptLog": [{"attempt", "at", "statusCode", "error", "durationMs"}]}

The attempt log agrees with the rest: attempts 1..`attempts`, the last one's error the
`lastError` (an attempt is recorded with its outcome, only under its claim's lease; both read
from one snapshot by `webhook_deliveries`).

Owners only: the payloads carry the draft's values and who changed it, and the URLs are the
operator's. Others who reach the draft get 403, strangers 404. Any user may own a draft, so a
URL is shown without its password and query values (a receiver's basic auth, a `?token=`),
each `[redacted]`. A deleted draft has no owner
left, so its `draft.deleted` deliveries are not listed here (the server log has them).
Finished deliveries are listed until retention removes them, `--webhook-keep-seconds` after
their last attempt (server/webhooks/retention.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from server.errors import BadRequest, ValidationFailed
from server.http.answers import Answer, respond
from server.http.common import endpoint, iso, reach, read_query, require_owner
from server.store.outbox import Delivery

if TYPE_CHECKING:
    from server.service import Service

__all__ = [
    "AttemptAnswer",
    "DeliveryAnswer",
    "DeliveryList",
    "DeliveryPage",
    "delivery_answer",
    "list_deliveries",
    "shown_url",
]


class DeliveryPage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    after: int = Field(default=0, ge=0, le=2**63 - 1)
    limit: int = Field(default=50, ge=1, le=200)


class AttemptAnswer(Answer):
    attempt: int
    at: str | None
    status_code: int | None = Field(description="The receiver's status; null: no answer.")
    error: str | None
    duration_ms: float


class DeliveryAnswer(Answer):
    id: int
    event_id: str
    type: str = Field(examples=["draft.changed"])
    url: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    created_at: str | None
    next_attempt_at: str | None = Field(description="When it is tried next (pending only).")
    last_error: str | None
    payload: Any = Field(description="The event as it is POSTed: {type, timestamp, data}.")
    attempt_log: list[AttemptAnswer]


class DeliveryList(Answer):
    items: list[DeliveryAnswer]
    next: int | None = Field(description="Pass as `after` for the next page; null: no more.")


@endpoint
async def list_deliveries(request: Request, service: Service, user: str) -> Response:
    draft_id = request.path_params["draft_id"]
    require_owner(await reach(service, draft_id, user), "see its webhook deliveries")
    try:
        page = read_query(request, DeliveryPage)
    except ValidationFailed as error:
        raise BadRequest(str(error)) from None  # a bad query parameter is a bad request
    rows = await service.store.webhook_deliveries(draft_id, after=page.after, limit=page.limit + 1)
    items = [delivery_answer(row) for row in rows[: page.limit]]
    more = len(rows) > page.limit
    return respond(DeliveryList(items=items, next=items[-1].id if more else None))


def delivery_answer(delivery: Delivery) -> DeliveryAnswer:
    return DeliveryAnswer(
        id=delivery.id,
        event_id=delivery.event_id,
        type=delivery.type,
        url=shown_url(delivery.url),
        status=delivery.status,
        attempts=delivery.attempts,
        created_at=iso(delivery.created_at),
        next_attempt_at=iso(delivery.next_attempt_at) if delivery.status == "pending" else None,
        last_error=delivery.last_error,
        payload=delivery.payload_json(),
        attempt_log=[
            AttemptAnswer(
                attempt=a.attempt,
                at=iso(a.at),
                status_code=a.status_code,
                error=a.error,
                duration_ms=round(a.seconds * 1000, 1),
            )
            for a in delivery.log
        ],
    )


def shown_url(url: str) -> str:
    """`url` without the secrets an operator may put in it: the password of its user info
    and the value of each query parameter become `[redacted]`."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:[redacted]@{host}"
    query = "&".join(
        f"{name}=[redacted]" if sep else name
        for name, sep, _ in (item.partition("=") for item in parts.query.split("&"))
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query if parts.query else ""))
