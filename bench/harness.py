"""A real draftsync room in-process, built by the server's own composition root.

`server.app.Service` wires Store (here on a temp SQLite file), CommitPipeline, Snapshotter,
journal, metadata and the room registry exactly as `draftsync serve` does; the room is joined
through the registry (loaded from the store: a fresh Doc for a new draft). Only the WebSocket is
a stub, so a bench through this harness pays everything the server pays per update (apply,
rules and journal observers, numbering, group commit, relay into send queues, merging in the
writers, snapshots every N updates) except framing bytes on a socket. The server's defaults
(`Settings`) size every queue and bound.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from server.config import Durability, Settings
from server.service import Service
from server.store.sqlite import SqliteStore
from server.sync.connection import Connection
from server.sync.room import Room, RoomState

__all__ = ["DRAFT_ID", "RoomHarness", "StubSocket", "open_room"]

DRAFT_ID = "bench"
OWNER = "bench"


class StubSocket:
    """Stands in for Starlette's WebSocket; keeps the frames only when asked (verification)."""

    def __init__(self, *, keep_frames: bool) -> None:
        self.frames: list[bytes] = []
        self.sent = 0
        self.closed: tuple[int, str | None] | None = None
        self._keep = keep_frames

    def send_now(self, data: bytes) -> bool:
        """Sent on the caller's turn, as the server's own socket does while its transport takes
        it (server/sync/endpoint.py `send_now`): `Connection` then sends without a coroutine,
        the path a relay takes in the server. Without it the harness paid a coroutine and its
        wrapper per frame (~1 us) that the server does not."""
        self.sent += 1
        if self._keep:
            self.frames.append(data)
        return True

    async def send_bytes(self, data: bytes) -> None:
        self.sent += 1
        if self._keep:
            self.frames.append(data)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed = (code, reason)


class _RelayClock(Connection):
    """A Connection that notes when each relayed update reaches its send queue."""

    def __init__(self, socket: StubSocket, **kwargs: object) -> None:
        super().__init__(socket, **kwargs)  # type: ignore[arg-type]
        self.relayed_at: list[float] = []

    def send(self, frame: bytes, *, update: bytes | None = None) -> None:
        if update is not None:
            self.relayed_at.append(time.perf_counter())
        super().send(frame, update=update)


@dataclasses.dataclass
class RoomHarness:
    service: Service
    room: Room | None = None  # set by the first `connect` (joining loads the draft)

    @property
    def settings(self) -> Settings:
        return self.service.settings

    async def connect(
        self, user: str, *, keep_frames: bool = False, clock: bool = False
    ) -> tuple[Connection, StubSocket]:
        """A writable connection joined to the room, its writer task running (as ws.py does)."""
        socket = StubSocket(keep_frames=keep_frames)
        cls = _RelayClock if clock else Connection
        conn = cls(
            socket,
            user=user,
            session=user,
            can_write=True,
            max_messages=self.settings.send_queue_messages,
            max_bytes=self.settings.send_queue_bytes,
        )
        self.service.track(conn)
        room = await self.service.rooms.join(DRAFT_ID, conn)
        if self.room is not None and room is not self.room:
            raise RuntimeError("the draft was loaded twice")
        self.room = room
        self.service.spawn_writer(conn)
        return conn, socket

    async def committed(self) -> None:
        """Return once every accepted update is committed."""
        await self.service.pipeline.flush()


@contextlib.asynccontextmanager
async def open_room(
    directory: Path,
    *,
    durability: Durability = Durability.DURABLE,
    max_batch: int | None = None,
    fsync: bool = False,
    **overrides: Any,
) -> AsyncIterator[RoomHarness]:
    """The open room of a new draft on `directory/draftsync.db`; on exit the service stops
    gracefully (commit, flush send queues, journal, snapshots) and the store closes.
    `overrides` replace other `Settings` fields (e.g. `layers`, `snapshot_every_updates`)."""
    settings = Settings(data_dir=directory, secret="bench", durability=durability, fsync=fsync)
    if max_batch is not None:
        settings = dataclasses.replace(settings, max_batch_updates=max_batch)
    if overrides:
        settings = dataclasses.replace(settings, **overrides)
    store = await SqliteStore.open(settings.database_path, fsync=settings.fsync)
    service = Service(settings, store)
    service.start()
    try:
        await store.create_draft(DRAFT_ID, OWNER, now=time.time())
        harness = RoomHarness(service)
        yield harness
        if harness.room is not None and harness.room.state is not RoomState.OPEN:
            raise RuntimeError(f"the room ended {harness.room.state}: a commit was refused")
    finally:
        await service.stop()
