"""The Starlette application: its routes, `/healthz`, `/metrics`, and the lifespan that opens
the store and runs the `Service` (server/service.py) the endpoints share.

`create_app` is also how a host application embeds draftsync (README, "Embedding in your
app"): mount it under a prefix and run its lifespan inside the host's
(`app.router.lifespan_context(app)`); pass `authenticate` to name the caller from the host's
own session (server/identity/caller.py). Every route answers under the mount's `root_path`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send

from server.config import Settings
from server.http.common import http_error
from server.http.feed import routes as feed_routes
from server.http.pages import routes as web_routes
from server.http.rest import routes as api_routes
from server.identity.caller import Authenticate
from server.service import Service
from server.store.factory import open_store
from server.supervisor import Supervisor
from server.sync.endpoint import SyncSocket, serve_sync_socket
from server.sync.hocuspocus import HocuspocusSocket
from server.sync.warmup import warm_up

__all__ = ["create_app", "healthz", "metrics_endpoint"]

logger = logging.getLogger("draftsync.app")


async def healthz(request: Request) -> JSONResponse:
    """200 while every component runs; 503 naming the crashes of the last 30 s (or the one
    that is stopping the server), so that a load balancer and an operator both learn of it."""
    supervisor: Supervisor = request.app.state.service.supervisor
    if supervisor.healthy:
        return JSONResponse({"status": "ok"})
    crashes = supervisor.recent_crashes()
    if supervisor.fatal is not None:
        crashes.append(supervisor.fatal)
    body = {
        "status": "failing" if supervisor.fatal is not None else "degraded",
        "crashes": [{"component": c.component, "error": c.error} for c in crashes],
    }
    return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})


async def metrics_endpoint(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def create_app(settings: Settings, *, authenticate: Authenticate | None = None) -> Starlette:
    """The draftsync application. `authenticate(request_or_websocket) -> user | None` (may be
    async) names the caller of a request that carries no token; tokens work as ever."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = await open_store(settings)
        service = Service(settings, store, authenticate=authenticate)
        await service.signer.start()
        service.start()
        await warm_up(store, service.signer, service.rooms)
        if service.fanout is not None:
            await service.fanout.start(service.supervisor)
        app.state.service = service
        try:
            yield
        finally:
            await service.stop()

    routes = [
        Route("/healthz", healthz),
        Route("/metrics", metrics_endpoint),
        WebSocketRoute("/ws/{draft_id:path}", SyncSocket()),
        WebSocketRoute("/hocuspocus", HocuspocusSocket()),
        *web_routes,
        *feed_routes,
        *api_routes,
    ]
    return _App(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})


class _App(Starlette):
    """Starlette, with `/ws/...` sockets handed to their endpoint without the middleware and
    the router. A connection's coroutine frames live as long as it does: Starlette's chain
    (error and exception middleware, router, route) is ten of them, ~3 KB of every idle
    connection (`bench relay` N3000). Those layers do nothing for this endpoint, which closes
    with its own codes on any error. Mounted under a prefix (`root_path` set), and for a path the
    route would not match, the router routes as ever."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "websocket"
            and (path := scope["path"]).startswith("/ws/")
            and not scope.get("root_path")
            and "\n" not in path  # the route's `{draft_id:path}` (`.*`) stops at a newline
        ):
            scope["app"] = self
            scope["path_params"] = {"draft_id": path[4:]}
            await serve_sync_socket(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
