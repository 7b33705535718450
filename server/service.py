"""The service: what the app's endpoints share for its lifetime (Starlette lifespan).

`Service` owns the store, the group-commit task, the snapshotter and the room registry;
`shutdown()` is the graceful stop that SIGTERM runs: refuse new connections, commit what was
accepted, flush every send queue, close with 1001. Every long-lived task runs under the
`Supervisor` (server/supervisor.py): a crash is logged, closes what it affected with 1011,
turns `/healthz` to 503, and the task is restarted. A module of its own so that the endpoints
can name it without importing the app that mounts them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from crdt.content import fields_of
from crdt.history import rebuild
from server import metrics
from server.access import Role, resolve_role, strongest
from server.admission.authfailures import AuthFailures
from server.admission.caps import ConnectionCaps
from server.admission.connects import ConnectRate
from server.admission.quotas import RequestGate
from server.admission.rebuilds import RebuildSlots
from server.auth import Claims
from server.config import Settings
from server.errors import CloseCode
from server.identity.caller import Authenticate, Callers
from server.identity.tokens import verifier_for
from server.store.api import Store
from server.store.commits import CommitPipeline
from server.store.records import UpdateRecord
from server.store.snapshots import Snapshotter
from server.supervisor import Supervisor
from server.sync.connection import Connection
from server.sync.feed import DraftFeed
from server.sync.journal import JournalCloser
from server.sync.metadata import MetadataTracker
from server.sync.registry import DocBuilder, Preload, RoomRegistry
from server.sync.room import Room
from server.sync.summaries import Summarizer
from server.webhooks.changes import ChangeScanner
from server.webhooks.deliverer import Deliverer
from server.webhooks.retention import OutboxRetention

if TYPE_CHECKING:
    from server.cluster.fanout import Fanout

__all__ = ["SHUTDOWN_FLUSH_SECONDS", "Service"]

logger = logging.getLogger("draftsync.service")

SHUTDOWN_FLUSH_SECONDS = 10.0


class Service:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        build_doc: DocBuilder = rebuild,
        authenticate: Authenticate | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        # Tokens of ours and of the app (server/identity/tokens.py); an embedding host's
        # `authenticate` names the caller of a request that has no token (identity/caller.py).
        self.signer = verifier_for(settings)
        # Failed sign-ins per client address (server/admission/authfailures.py): counted and
        # refused where every endpoint identifies its caller.
        self.auth_failures = AuthFailures(
            rate=settings.address_auth_failures_per_second,
            burst=settings.address_auth_failure_burst,
        )
        self.callers = Callers(
            self.signer, authenticate, settings.allowed_origins, failures=self.auth_failures
        )
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
        self.snapshotter.on_crash = functools.partial(self.supervisor.report, "snapshotter")
        self.rooms = RoomRegistry(
            store,
            self.pipeline,
            self.snapshotter,
            self.journal_closer,
            settings,
            build_doc=build_doc,
        )
        self.rooms.on_crash = functools.partial(self.supervisor.report, "rooms")
        # Word count and completion are counted against the schema's fields.
        self.metadata = MetadataTracker(store, fields_of(settings.schema))
        self.rooms.on_open.append(self.metadata.room_opened)
        self.rooms.on_unload.append(self.metadata.room_unloading)
        # The dashboard (server/sync/summaries.py) and its change feed (server/sync/feed.py):
        # a commit marks its draft changed; summaries follow, for subscribers only.
        self.summaries = Summarizer(store, self.rooms, self.metadata)
        self.feed = DraftFeed(
            summarize=self.summaries.of_draft,
            access_of=store.access_list,
            max_per_user=settings.max_feeds_per_user,
            queue_events=settings.feed_queue_events,
        )
        self.rooms.on_open.append(self._watch_commits)
        self.rooms.on_unload.append(self.summaries.room_unloading)
        metrics.COMMIT_QUEUE.set_function(lambda: len(self.pipeline))
        self.shutting_down = False
        self._connections: set[Connection] = set()
        # Admission (server/admission/): WebSocket caps and joins a second, REST rate and requests
        # under way.
        self.caps = ConnectionCaps(
            max_connections=settings.max_connections,
            max_unauthenticated=settings.max_unauthenticated,
            max_per_user=settings.max_connections_per_user,
            max_per_draft=settings.max_connections_per_draft,
        )
        self.connects = ConnectRate(
            rate=settings.user_connects_per_second, burst=settings.user_connect_burst
        )
        self.requests = RequestGate(
            rate=settings.user_requests_per_second,
            burst=settings.user_request_burst,
            max_in_flight=settings.max_requests,
        )
        self.rebuilds = RebuildSlots(
            max_running=settings.max_rebuilds, max_per_user=settings.max_rebuilds_per_user
        )
        # Several instances on one draft (PostgreSQL store + Redis): server/cluster/fanout.py.
        self.fanout: Fanout | None = None
        if settings.redis_url:
            # Imported here: redis and asyncpg are the `draftsync[cluster]` extra.
            from server.cluster.fanout import Fanout

            self.fanout = Fanout(
                settings.redis_url,
                self.rooms,
                store,
                secret=settings.secret,
                outbox_messages=settings.fanout_outbox_messages,
                outbox_bytes=settings.fanout_outbox_bytes,
            )
        # Webhooks: tasks off the commit path (delivery, changes, retention); the commit only
        # names its drafts.
        self.deliverer: Deliverer | None = None
        self.change_scanner: ChangeScanner | None = None
        self.outbox_retention: OutboxRetention | None = None
        if settings.webhooks is not None:
            self.deliverer = Deliverer(store, settings.webhooks)
            self.outbox_retention = OutboxRetention(store, settings.webhooks.keep_seconds)
            self.change_scanner = ChangeScanner(
                store, settings.webhooks, self.metadata.fields, on_recorded=self.deliverer.wake
            )
            self.pipeline.on_drafts_committed = self.change_scanner.committed

    def start(self) -> None:
        self.supervisor.start("group-commit", self.pipeline.run, on_crash=self.pipeline.crashed)
        self.supervisor.start("journal", self.journal_closer.run)
        if self.deliverer is not None and self.change_scanner is not None:
            self.supervisor.start("webhook-delivery", self.deliverer.run)
            self.supervisor.start("webhook-changes", self.change_scanner.run)
        if self.outbox_retention is not None:
            self.supervisor.start("webhook-retention", self.outbox_retention.run)

    def _watch_commits(self, room: Room) -> None:
        room.commit_listeners.append(self._committed)

    def _committed(self, room: Room, records: Sequence[UpdateRecord]) -> None:
        last = records[-1]  # the dashboard's "last by" is the last writer's
        self.summaries.committed(room.draft_id, last.version, last.user)
        self.feed.changed(room.draft_id)

    async def join_role(self, draft_id: str, claims: Claims) -> Role:
        """The caller's role on a draft they are joining over a socket (y-websocket or
        Hocuspocus: one rule for both), the draft created if unknown (within their quota), and
        the join counted against the per-user and per-draft caps (`CapReached`: 1013)."""
        role = await resolve_role(
            self.store,
            draft_id,
            claims.user,
            now=time.time(),
            granted=claims.grants.get(draft_id),
            max_owned=self.settings.max_drafts_per_user,
        )
        self.caps.join(claims.user, draft_id)
        return role

    async def join_opening(self, draft_id: str, claims: Claims) -> tuple[Role, Preload | None]:
        """`join_role`, reading the draft with the role when its room is not loaded (one store
        call for both: `RoomRegistry.preload`); hand the `Preload` to `rooms.join`. A caller
        with no stored role (a grant, a new draft) takes `join_role`'s way after it."""
        preload = await self.rooms.preload(draft_id, claims.user)
        if preload is None or preload.role is None:
            return await self.join_role(draft_id, claims), None
        role = strongest(Role(preload.role), claims.grants.get(draft_id))
        assert role is not None  # a stored role at least
        self.caps.join(claims.user, draft_id)
        return role, preload

    def track(self, conn: Connection) -> None:
        self._connections.add(conn)

    def untrack(self, conn: Connection) -> None:
        self._connections.discard(conn)
        if not self._connections:
            # A set never shrinks its table: 3,000 connections leave one of 8,192 slots
            # (128 KB) behind. The last one out gives it back (server/sync/memory.py), in
            # place: a new set would be made now, among the storm's objects, and keep one of
            # its pymalloc arenas for as long as the server is quiet.
            self._connections.clear()

    @property
    def connections(self) -> int:
        """Connections open now (tracked until their socket is done)."""
        return len(self._connections)

    def spawn_writer(self, conn: Connection) -> asyncio.Task[None]:
        return asyncio.create_task(conn.run_writer())

    async def shutdown(self) -> None:
        if self.shutting_down:
            return
        self.shutting_down = True
        self.feed.close()  # open streams end, or uvicorn would wait for them
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
            room.snapshot_before_unload()  # the next start loads it without its tail
        await self.snapshotter.wait()

    async def stop(self) -> None:
        await self.shutdown()
        await self.supervisor.stop()
        await self.metadata.save_loaded(self.rooms.rooms())
        if self.fanout is not None:
            await self.fanout.stop()
        await self.store.close()
