"""The Starlette application and the service object its endpoints share.

`Service` owns the store, the group-commit task, the snapshotter and the room registry for the
lifetime of the app (Starlette lifespan); `shutdown()` is the graceful stop that SIGTERM runs:
refuse new connections, commit what was accepted, flush every send queue, close with 1001.
Every long-lived task runs under the `Supervisor` (server/supervisor.py): a crash is logged,
closes what it affected with 1011, turns `/healthz` to 503, and the task is restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from crdt.content import fields_of
from crdt.history import rebuild
from server import metrics
from server.api import routes as api_routes
from server.api.common import http_error
from server.auth import TokenSigner
from server.commits import CommitPipeline
from server.config import Settings
from server.connection import Connection
from server.errors import CloseCode
from server.fanout import Fanout
from server.journal import JournalCloser
from server.metadata import MetadataTracker
from server.registry import DocBuilder, RoomRegistry
from server.snapshots import Snapshotter
from server.store import Store
from server.store_factory import open_store
from server.supervisor import Supervisor
from server.web import routes as web_routes
from server.ws import SyncSocket

__all__ = ["Service", "create_app"]

logger = logging.getLogger("draftsync.app")

SHUTDOWN_FLUSH_SECONDS = 10.0


class Service:
    def __init__(
        self, settings: Settings, store: Store, *, build_doc: DocBuilder = rebuild
    ) -> None:
        self.settings = settings
        self.store = store
        self.signer = TokenSigner(settings.secret)
        self.pipeline = CommitPipeline(
            store,
            max_queued=settings.commit_queue_updates,
            max_batch=settings.max_batch_updates,
        )
        self.snapshotter = Snapshotter(
            store,
            every_updates=settings.snapshot_every_updates,
            every_bytes=settings.snapshot_every_bytes,
            keep=settings.snapshots_kept,
        )
        self.journal_closer = JournalCloser(store)
        self.supervisor = Supervisor()
        self.pipeline.on_crash = functools.partial(self.supervisor.report, "group-commit")
        self.rooms = RoomRegistry(
            store,
            self.pipeline,
            self.snapshotter,
            self.journal_closer,
            settings,
            build_doc=build_doc,
        )
        # Word count and completion are counted against the schema's fields.
        self.metadata = MetadataTracker(store, fields_of(settings.schema))
        self.rooms.on_open.append(self.metadata.room_opened)
        self.rooms.on_unload.append(self.metadata.room_unloading)
        metrics.COMMIT_QUEUE.set_function(lambda: len(self.pipeline))
        self.shutting_down = False
        self._connections: set[Connection] = set()
        # Several instances on one draft (PostgreSQL store + Redis): server/fanout.py.
        self.fanout = Fanout(settings.redis_url, self.rooms, store) if settings.redis_url else None

    def start(self) -> None:
        self.supervisor.start("group-commit", self.pipeline.run, on_crash=self.pipeline.crashed)
        self.supervisor.start("journal", self.journal_closer.run)

    def track(self, conn: Connection) -> None:
        self._connections.add(conn)

    def untrack(self, conn: Connection) -> None:
        self._connections.discard(conn)

    def spawn_writer(self, conn: Connection) -> asyncio.Task[None]:
        return asyncio.create_task(conn.run_writer())

    async def shutdown(self) -> None:
        if self.shutting_down:
            return
        self.shutting_down = True
        logger.info(
            "shutting down connections=%d rooms=%d", len(self._connections), len(self.rooms)
        )
        await self.pipeline.flush()
        for conn in list(self._connections):
            conn.close(CloseCode.GOING_AWAY, "server shutting down", flush=True)
        waiting = [asyncio.create_task(c.finished.wait()) for c in self._connections]
        if waiting:
            await asyncio.wait(waiting, timeout=SHUTDOWN_FLUSH_SECONDS)
        for room in self.rooms.rooms():
            await self.journal_closer.flush(room)
        await self.snapshotter.wait()

    async def stop(self) -> None:
        await self.shutdown()
        await self.supervisor.stop()
        await self.metadata.save_loaded(self.rooms.rooms())
        if self.fanout is not None:
            await self.fanout.stop()
        await self.store.close()


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


def create_app(settings: Settings) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = await open_store(settings)
        service = Service(settings, store)
        service.start()
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
        *web_routes,
        *api_routes,
    ]
    return Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error}
    )
