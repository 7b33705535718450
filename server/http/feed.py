"""`GET /api/drafts/feed`: the drafts change feed as server-sent events (`text/event-stream`).

    event: ready     data: {}
    event: summary   data: a `GET /api/dashboard` item (server/http/dashboard.py)
    event: removed   data: {"id"}
    event: resync    data: {}          read `GET /api/dashboard` again

Authenticated like every endpoint (`Authorization: Bearer TOKEN`, which a fetch stream can
send), or with `?token=` for `EventSource`, which cannot send headers: the log filter
(server/logs.py) redacts `token=` values. What is sent and when: server/sync/feed.py. A comment
line every `HEARTBEAT_SECONDS` keeps proxies from closing the stream and finds a reader that
left; the stream ends when the token expires (the client reconnects with its renewed one) and
when the server shuts down. Opening counts as one REST request (the per-user rate), and a user
holds at most `--max-feeds-per-user` streams (over it: 503 with Retry-After).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from server.http.common import bearer_token, endpoint
from server.http.dashboard import summary_item
from server.sync.feed import FeedEvent, Subscription

if TYPE_CHECKING:
    from server.service import Service

__all__ = ["HEARTBEAT_SECONDS", "draft_feed", "feed_route", "routes"]

logger = logging.getLogger("draftsync.api")

HEARTBEAT_SECONDS = 15.0


def _sse(event: FeedEvent) -> str:
    if event.summary is not None and event.role is not None:
        data = summary_item(event.summary, event.role).model_dump()
    elif event.draft_id is not None:
        data = {"id": event.draft_id}
    else:
        data = {}
    return f"event: {event.kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def _events(service: Service, sub: Subscription, until: float) -> AsyncIterator[str]:
    try:
        while True:
            left = until - time.time()
            if left <= 0:
                return  # the token expired: the client reconnects with its renewed one
            try:
                async with asyncio.timeout(min(HEARTBEAT_SECONDS, left)):
                    event = await sub.next()
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            if event is None:
                return
            yield _sse(event)
    finally:
        service.feed.unsubscribe(sub)


@endpoint
async def draft_feed(request: Request, service: Service, user: str) -> Response:
    claims = await service.callers.identify(request, bearer_token(request))
    sub = service.feed.subscribe(user)  # CapReached: 503 with Retry-After
    logger.debug("feed opened user=%s feeds=%d", user, service.feed.subscribers(user))
    return StreamingResponse(
        _events(service, sub, claims.expires_at),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def feed_route(request: Request) -> Response:
    """`draft_feed`, with a `?token=` taken as the bearer token when no header is sent."""
    token = request.query_params.get("token")
    if token and token.isascii() and "authorization" not in request.headers:
        scope = dict(request.scope)
        scope["headers"] = [
            *request.scope["headers"],
            (b"authorization", f"Bearer {token}".encode()),
        ]
        request = Request(scope, request.receive)
    return await draft_feed(request)


# Mounted before the REST routes (`/api/drafts/{draft_id}` would take it), and not among them:
# a stream that never ends is no operation of the OpenAPI description (README, "Dashboard").
routes: list[BaseRoute] = [Route("/api/drafts/feed", feed_route, methods=["GET"])]
