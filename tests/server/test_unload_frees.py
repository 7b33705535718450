"""A room that unloads lets go of its doc and of every large object it made (issue 24 point 5).

In process, the way `draftsync serve` builds it (`Service`, a SQLite store in a directory, the
group commit, the registry), with real `Connection`s whose socket keeps what the room sends. A
draft of ~2 MB is written by one editor and read by joiners (empty and non-empty state vectors:
the shared reply of server/sync/replies.py and a diff); once every editor has left and the room
has unloaded, weak references to the room and its doc must be dead and no Python block of
100 KB or more made since the draft was loaded may be alive. Nothing here is timed: the loops
wait, bounded in count and time, for the registry to drop the room.
"""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
import weakref
from collections.abc import Iterable
from pathlib import Path

from pycrdt import Doc, Text

from crdt.history import rebuild
from crdt.protocol import SyncStep1, Update, decode_message
from server.config import Settings
from server.service import Service
from server.store.sqlite import SqliteStore
from server.sync.connection import Connection

DRAFT = "big"
CHUNK = "lorem ipsum dolor sit amet, " * 300  # ~8 KB of text an edit
EDITS = 250  # ~2 MB of text
BIG = 100_000  # bytes: a block this large made for the draft must be gone after the unload


class _Socket:
    """A client's WebSocket: keeps the size of what it was sent, not the frames themselves."""

    def __init__(self) -> None:
        self.received = 0
        self.frames = 0
        self.closed: tuple[int, str | None] | None = None

    async def send_bytes(self, data: bytes) -> None:
        decode_message(data)  # a well-formed frame
        self.received += len(data)
        self.frames += 1

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed = (code, reason)


class _Docs:
    """The registry's doc builder (`rebuild`), keeping a weak reference to each doc it built."""

    def __init__(self) -> None:
        self.built: list[weakref.ref[Doc]] = []

    def __call__(self, snapshot: bytes | None, tail: Iterable[bytes], **kwargs: object) -> Doc:
        doc = rebuild(snapshot, tail, **kwargs)  # type: ignore[arg-type]
        self.built.append(weakref.ref(doc))
        return doc


async def _until(ready: object, what: str) -> None:
    for _ in range(500):  # at most ~10 s
        if ready():  # type: ignore[operator]
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within the bound: {what}")


def _connection(service: Service, user: str) -> tuple[Connection, _Socket]:
    socket = _Socket()
    conn = Connection(
        socket,
        user=user,
        session=f"session-{user}",
        can_write=True,
        max_messages=service.settings.send_queue_messages,
        max_bytes=64 * 2**20,  # the whole draft fits in its queue
    )
    service.track(conn)
    return conn, socket


async def _join_and_leave(service: Service, user: str, state: bytes) -> None:
    """A joiner that sends its sync step 1 (`state`), reads the room's answer, and leaves."""
    conn, socket = _connection(service, user)
    writer = service.spawn_writer(conn)
    room = await service.rooms.join(DRAFT, conn)
    await room.receive(conn, SyncStep1(state))
    await _until(lambda: socket.frames >= 2, f"{user} got its sync step 2")
    service.rooms.leave(room, conn)
    conn.close(1000, "")
    await writer
    service.untrack(conn)


async def test_an_unloaded_room_lets_go_of_its_doc_and_large_objects(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, secret="test", room_grace_seconds=0.05)
    store = await SqliteStore.open(settings.database_path)
    docs = _Docs()
    service = Service(settings, store, build_doc=docs)
    service.start()
    tracing = tracemalloc.is_tracing()
    try:
        await store.create_draft(DRAFT, "owner", now=time.time())
        tracemalloc.start()
        # One editor types the draft, edit by edit (each committed and relayed as usual).
        writer_conn, _ = _connection(service, "typist")
        writer_task = service.spawn_writer(writer_conn)
        room = await service.rooms.join(DRAFT, writer_conn)
        typist = Doc()
        text = typist.get("body", type=Text)
        half = b""
        for edit in range(EDITS):
            before = typist.get_state()
            text += CHUNK
            await room.receive(writer_conn, Update(typist.get_update(before)))
            if edit == EDITS // 2:
                half = typist.get_state()
        await room.gate.until_committed()
        # Joiners: two with nothing (they share one encoded reply), one with half the draft.
        for user, state in (("a", b"\x00"), ("b", b"\x00"), ("c", half)):
            await _join_and_leave(service, user, state)
        service.rooms.leave(room, writer_conn)
        writer_conn.close(1000, "")
        await writer_task
        service.untrack(writer_conn)
        room_ref = weakref.ref(room)
        del room, writer_conn, writer_task, typist, text
        await _until(lambda: service.rooms.get(DRAFT) is None, "the room unloaded")
        await _until(lambda: service.rooms.memory.releases >= 1, "the unload's release ran")
        gc.collect()
        assert docs.built and all(ref() is None for ref in docs.built), "a doc is still alive"
        assert room_ref() is None, "the room is still alive"
        snapshot = tracemalloc.take_snapshot()
        large = [t for t in snapshot.traces if t.size >= BIG]
        assert not large, [(t.size, str(t.traceback)) for t in large]
    finally:
        if not tracing:
            tracemalloc.stop()
        await service.stop()
