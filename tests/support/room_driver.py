"""The real room of one draft, driven in process by simulated editors (`SimClient`s,
`tests.support.semantic_clients`).

`open_driver` builds the server as `draftsync serve` does (`server.app.Service`: a SQLite `Store`
in a directory, the group commit, the registry that loads the draft), except that the socket
of each connection is a `ClientSocket` that hands what the room sends to the editor's doc, the
registry builds the draft's doc with the client id (and `skip_gc`) the test asks for
(`_Rebuild`: a scenario decides how the server's own writes order against the clients'), and
the room stays loaded while every editor is offline (`room_grace_seconds`).

An editor joins with `reconnect` (a real `Connection`, joined through the registry: the room
sends its sync step 1, the editor answers with sync step 2 holding what the server lacks, then
sends its own sync step 1 and applies the room's sync step 2) and leaves with `go_offline`
(what the WebSocket endpoint does when a peer goes). Every method returns once what it caused
is committed and delivered: each online editor sends a write acknowledgement (message 102),
which the room releases behind everything accepted before it, on the same FIFO send queue.

The driver takes no part in the rules: it only watches. `reviews` are what the real
`SemanticFields.review` returned (a spy that calls through); `server_writes` are the map sets
of the room's "rules" changes as committed (a commit listener), with the server's state vector
just before each (its causal past), as `SimClient.writes` are for the editors.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

from pycrdt import Array, Doc, Map

from crdt import history
from crdt.origins import SERVER_USER
from crdt.protocol import (
    Message,
    SyncStep1,
    SyncStep2,
    Update,
    WriteAck,
    decode_message,
)
from crdt.schema import DEFAULT_SCHEMA, Schema
from crdt.semantics import Review
from crdt.updates import decode_update
from server.config import Settings
from server.service import Service
from server.store.records import UpdateRecord
from server.store.sqlite import SqliteStore
from server.sync.connection import Connection
from server.sync.room import Room, RoomState
from tests.support.semantic_clients import SimClient, Write, decode_state_vector

__all__ = ["DRAFT_ID", "ClientSocket", "RoomDriver", "open_driver"]

DRAFT_ID = "model"
OWNER = "owner"
TIMEOUT = 10.0


class ClientSocket:
    """The WebSocket of one editor: every frame the room sends is decoded and handled as a
    y-websocket client would (updates and sync step 2 applied to its doc), and kept."""

    def __init__(self, client: SimClient) -> None:
        self.client = client
        self.messages: list[Message] = []
        self.server_states: deque[bytes] = deque()  # the room's sync step 1, not answered yet
        self.acks: set[bytes] = set()
        self.arrived = asyncio.Event()
        self.closed: tuple[int, str | None] | None = None

    async def send_bytes(self, data: bytes) -> None:
        message = decode_message(data)
        self.messages.append(message)
        if isinstance(message, SyncStep1):
            self.server_states.append(message.state_vector)
        elif isinstance(message, SyncStep2 | Update):
            self.client.doc.apply_update(message.update)
        elif isinstance(message, WriteAck):
            self.acks.add(message.payload)
        self.arrived.set()

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed = (code, reason)
        self.arrived.set()

    async def wait_for(self, ready: Callable[[], bool]) -> None:
        async with asyncio.timeout(TIMEOUT):
            while not ready():
                self.arrived.clear()
                await self.arrived.wait()


@dataclasses.dataclass
class _Link:
    conn: Connection
    socket: ClientSocket
    writer: asyncio.Task[None]


class RoomDriver:
    def __init__(self, service: Service, room: Room) -> None:
        self.service = service
        self.room = room
        self.reviews: list[Review] = []
        self.server_writes: list[Write] = []
        self._links: dict[SimClient, _Link] = {}
        self._to_write: deque[tuple[Review, dict[int, int]]] = deque()  # reviews that write
        self._acks = itertools.count()
        assert room.semantics is not None
        review = room.semantics.review

        def spy(*args: Any, **kwargs: Any) -> Review:
            result = review(*args, **kwargs)
            self.reviews.append(result)
            if result.writes_doc:  # the room writes it next: its past is the doc as it is now
                self._to_write.append((result, decode_state_vector(room.doc.get_state())))
            return result

        room.semantics.review = spy  # type: ignore[method-assign]
        room.commit_listeners.append(self._on_commit)

    # -- what the room holds ----------------------------------------------------------------

    @property
    def doc(self) -> Doc:
        return self.room.doc

    @property
    def fields(self) -> Map:
        return self.doc.get("fields", type=Map)

    @property
    def conflicts(self) -> Map:
        return self.doc.get("conflicts", type=Map)

    @property
    def tags(self) -> Array:
        return self.doc.get("tags", type=Array)

    def is_online(self, client: SimClient) -> bool:
        return client in self._links

    # -- editors ------------------------------------------------------------------------------

    async def reconnect(self, client: SimClient) -> Review | None:
        """The editor comes back: it sends what the server lacks (its answer to the room's sync
        step 1), then gets what it lacks (the room's answer to its sync step 1). Returns the
        review of what it sent, if it touched semantic fields."""
        assert client not in self._links, f"{client.name} is online already"
        socket = ClientSocket(client)
        conn = Connection(
            socket,
            user=client.name,
            session=f"session-{client.name}",
            can_write=True,
            max_messages=self.service.settings.send_queue_messages,
            max_bytes=self.service.settings.send_queue_bytes,
        )
        self.service.track(conn)
        room = await self.service.rooms.join(DRAFT_ID, conn)
        assert room is self.room, "the draft was loaded again"
        link = self._links[client] = _Link(conn, socket, self.service.spawn_writer(conn))
        await link.socket.wait_for(lambda: bool(socket.server_states))
        server_state = socket.server_states.popleft()
        reviewed = len(self.reviews)
        await self.room.receive(conn, SyncStep2(client.doc.get_update(server_state)))
        await self.room.receive(conn, SyncStep1(client.doc.get_state()))
        await self.settle()
        return self._review_since(reviewed)

    async def send(self, client: SimClient, update: bytes) -> Review | None:
        """An online editor sends `update` (one update frame); returns its review, if any."""
        reviewed = len(self.reviews)
        await self.room.receive_run(self._links[client].conn, [update])
        await self.settle()
        return self._review_since(reviewed)

    async def send_changes(self, client: SimClient) -> Review | None:
        """An online editor sends what the room lacks of its doc."""
        return await self.send(client, client.doc.get_update(self.doc.get_state()))

    async def go_offline(self, client: SimClient) -> None:
        """The editor's connection goes, as the WebSocket endpoint ends one
        (`server/sync/endpoint.py`)."""
        link = self._links.pop(client, None)
        if link is None:
            return
        self.service.rooms.leave(self.room, link.conn)
        link.conn.close(1000, "")
        await link.writer
        self.service.untrack(link.conn)

    async def settle(self) -> None:
        """Return once everything accepted is committed and sent to every online editor: each
        one acknowledges a write (message 102), which the room sends after all it accepted,
        behind everything queued for it before."""
        for link in self._links.values():
            await self._acknowledged(link)
        await self.room.gate.until_committed()
        assert self.room.state is RoomState.OPEN, self.room.state
        # Committed: a review still waiting changed nothing (a map set always does).
        assert not [review for review, _ in self._to_write if review.values], self._to_write
        self._to_write.clear()

    async def _acknowledged(self, link: _Link) -> None:
        payload = str(next(self._acks)).encode()
        await self.room.receive(link.conn, WriteAck(payload))
        await link.socket.wait_for(lambda: payload in link.socket.acks)

    async def close_all(self) -> None:
        for client in list(self._links):
            await self.go_offline(client)

    # -- watching -----------------------------------------------------------------------------

    def _review_since(self, count: int) -> Review | None:
        reviews = self.reviews[count:]
        assert len(reviews) <= 1, reviews
        return reviews[0] if reviews else None

    def _on_commit(self, room: Room, record: UpdateRecord) -> None:
        """A committed "rules" change: the room's `_apply_review` sets `review.values` first,
        one item (one clock) per key, in order, right after the review."""
        if record.user != SERVER_USER or record.session != "rules":
            return
        review, past = self._to_write.popleft()
        server_id = room.doc.client_id
        clock = past.get(server_id, 0)
        written = {item.id for item in decode_update(record.data).items}
        for offset, (key, value) in enumerate(review.values.items()):
            item_id = (server_id, clock + offset)
            assert item_id in written, f"server write {key}={value!r} not at {item_id}"
            self.server_writes.append(Write("server", key, value, item_id, past))


class _Rebuild:
    """The registry's `rebuild` (crdt/history.py), building the doc with `server_id` instead
    of a random one, and keeping deleted content when `skip_gc`. Remembers the docs it built,
    so that the driver can tell the room's doc is one of them."""

    def __init__(self, server_id: int | None, *, skip_gc: bool) -> None:
        self.server_id = server_id
        self.skip_gc = skip_gc
        self.built: list[Doc] = []

    def __call__(
        self, snapshot: bytes | None, tail: Iterable[bytes], *, client_id: int | None = None
    ) -> Doc:
        chosen = client_id if self.server_id is None else self.server_id
        if self.skip_gc:
            doc: Doc = Doc(client_id=chosen, skip_gc=True)
            for update in (snapshot, *tail):
                if update is not None:
                    doc.apply_update(update)
        else:
            doc = history.rebuild(snapshot, tail, client_id=chosen)
        self.built.append(doc)
        return doc


@contextlib.asynccontextmanager
async def open_driver(
    directory: Path,
    *,
    server_id: int | None = None,
    skip_gc: bool = False,
    schema: Schema = DEFAULT_SCHEMA,
) -> AsyncIterator[RoomDriver]:
    """The open room of the draft stored in `directory/draftsync.db` (created if new); on exit
    the editors' connections end and the service stops gracefully (a restart is another
    `open_driver` on the same directory)."""
    settings = Settings(
        data_dir=directory,
        secret="test",
        schema=schema,
        room_grace_seconds=3600.0,  # the room stays loaded while every editor is offline
    )
    rebuild = _Rebuild(server_id, skip_gc=skip_gc)
    store = await SqliteStore.open(settings.database_path)
    service = Service(settings, store, build_doc=rebuild)
    service.start()
    try:
        await store.create_draft(DRAFT_ID, OWNER, now=time.time())
        driver = RoomDriver(service, await service.rooms.open(DRAFT_ID))
        assert rebuild.built and driver.doc is rebuild.built[-1], "the registry's doc"
        try:
            yield driver
        finally:
            await driver.close_all()
    finally:
        await service.stop()
