"""What a storm of connections leaves behind once they have all gone (issue 24 point 5).

A pymalloc arena (1 MB) goes back to the system only when every object in it is free, so a
few objects made during a storm and kept after it keep whole arenas of freed connections
resident (docs/performance-notes.md, "Memory after a connection storm"). These tests hold the
server to letting go of the ones that are its to drop: the entries of the shared deadline heap,
the table of the service's set of connections, and the attribute names the interpreter's type
cache took during the load (a release clears it).

A real server (uvicorn, the app `draftsync serve` builds, a SQLite store) runs in this process
so that its structures can be read; the clients are real WebSocket clients on loopback. Nothing
is timed: the waits are bounded in count and time.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
import weakref
from pathlib import Path

from prometheus_client import REGISTRY
from pycrdt import Doc, Text

from crdt.protocol import Update, encode_message
from server.auth import TokenSigner
from server.sync.deadlines import deadlines
from server.sync.memory import MemoryTrimmer
from tests.support.in_process_server import (
    ONE_USERS_STORM,
    serving_in_process,
    synced_client,
    until,
)
from tests.support.raw_client import RawClient
from tests.support.server_process import SECRET

CONNECTIONS = 400
AT_ONCE = 50  # connecting at a time: the listen backlog is not what is tested
DRAFT = "storm"


async def test_a_storm_of_connections_leaves_no_deadlines_nor_a_grown_set(
    tmp_path: Path,
) -> None:
    token = TokenSigner(SECRET).issue("storm", ttl_seconds=3600, now=time.time())
    async with serving_in_process(tmp_path, **ONE_USERS_STORM) as served:
        ws_url, service = served.ws_url, served.service
        timers = deadlines()  # the server runs in this loop: its shared deadline heap
        held_before = timers.held
        clients: list[RawClient] = []
        for start in range(0, CONNECTIONS, AT_ONCE):
            batch = range(start, min(start + AT_ONCE, CONNECTIONS))
            clients += await asyncio.gather(*(synced_client(ws_url, DRAFT, token) for _ in batch))
        await until(lambda: service.connections == CONNECTIONS, "every connection tracked")
        # Each open socket has its token's expiry and its next ping in the heap.
        assert timers.held >= held_before + CONNECTIONS
        table = sys.getsizeof(service._connections)  # what the storm grew
        await asyncio.gather(*(client.socket.close() for client in clients))
        await until(lambda: service.connections == 0, "every connection untracked")
        await until(lambda: service.rooms.get(DRAFT) is None, "the room unloaded")
        await until(lambda: service.rooms.memory.releases >= 1, "the unload's release ran")
        assert len(timers) == 0, "a deadline is still pending"
        assert timers.held == 0, "cancelled entries of the storm are still held"
        assert sys.getsizeof(service._connections) < table
        assert sys.getsizeof(service._connections) == sys.getsizeof(set())


async def test_a_release_lets_go_of_the_names_in_the_type_cache() -> None:
    class Tz:
        dst = None

    # A name made at run time, as `PyObject_CallMethod(tzinfo, "dst")` makes one per call:
    # a new string at a new address, which the type cache keeps when it looks it up.
    name = "".join(["ds", "t"])
    unused = sys.getrefcount(name)
    getattr(Tz, name)
    assert sys.getrefcount(name) > unused  # the cache holds it
    trimmer = MemoryTrimmer(quiet=0.01, wait_at_most=0.05)
    trimmer.room_unloaded()
    await until(lambda: trimmer.releases == 1, "the release ran")
    assert sys.getrefcount(name) == unused


def _journal_lag() -> float:
    return REGISTRY.get_sample_value("draftsync_journal_lag") or 0.0


async def test_no_unloaded_room_stays_reachable(tmp_path: Path) -> None:
    """Rooms edited (an open text burst: the journal closer looks at them each tick), then
    left and unloaded one after the other: none of them may be reachable once the last one's
    release has run. The closer's loop used to keep the last room it had looked at."""
    token = TokenSigner(SECRET).issue("storm", ttl_seconds=3600, now=time.time())
    rooms: list[weakref.ref[object]] = []
    async with serving_in_process(tmp_path) as served:
        ws_url, service = served.ws_url, served.service
        for index in range(4):
            draft = f"unloads-{index}"
            await until(lambda: _journal_lag() == 0, "the closer ticked with no room open")
            clients = [await synced_client(ws_url, draft, token) for _ in range(2)]
            edit = Doc()
            edit.get("title", type=Text).insert(0, f"edit {index}")
            await clients[0].send(encode_message(Update(edit.get_update())))
            await clients[1].next_message(Update)  # applied and committed: the burst is open
            room = service.rooms.get(draft)
            assert room is not None
            rooms.append(weakref.ref(room))
            journal = room.journal
            assert journal is not None
            del room
            # The closer's next tick counts the open burst in the journal lag, or, on a machine
            # slow enough that the tick came after the burst's pause, closes it: either way its
            # loop looked at this room.
            await until(
                lambda j=journal: _journal_lag() >= 1 or not j.bursts,
                "the journal closer saw the burst",
            )
            del journal
            await asyncio.gather(*(client.socket.close() for client in clients))
            await until(lambda d=draft: service.rooms.get(d) is None, "the room unloaded")
        await until(lambda: service.rooms.memory.releases >= 1, "a release ran")
        await until(lambda: _journal_lag() == 0, "the closer ticked with no room left")
        gc.collect()
        alive = [ref() for ref in rooms if ref() is not None]
        assert not alive, f"{len(alive)} unloaded room(s) still reachable"


async def test_a_release_swaps_the_free_lists_and_empties_the_stores_sqlite_leftovers(
    tmp_path: Path,
) -> None:
    """After a storm and its release: the free lists were swapped for the spares made at
    start, and the store's SQLite connections hold no dead cursor reference and no statement
    compiled during the storm (server/sync/arenas.py)."""
    token = TokenSigner(SECRET).issue("storm", ttl_seconds=3600, now=time.time())
    async with serving_in_process(tmp_path, **ONE_USERS_STORM) as served:
        ws_url, service = served.ws_url, served.service
        memory = service.rooms.memory
        assert memory.spares is not None  # made with the service, in its loop
        connections = list(memory.sqlite_connections())
        assert connections, "the SQLite store names its connections"
        clients: list[RawClient] = []
        for _ in range(100 // AT_ONCE):
            clients += await asyncio.gather(
                *(synced_client(ws_url, DRAFT, token) for _ in range(AT_ONCE))
            )
        edit = Doc()
        edit.get("title", type=Text).insert(0, "storm")
        await clients[0].send(encode_message(Update(edit.get_update())))
        await clients[1].next_message(Update)
        cached = sum(_cached_statements(connection) for connection in connections)
        releases = memory.releases
        await asyncio.gather(*(client.socket.close() for client in clients))
        await until(lambda: service.rooms.get(DRAFT) is None, "the room unloaded")
        await until(lambda: memory.releases > releases, "the unload's release ran")
        assert memory.spares.swaps >= 1
        for connection in connections:
            references = [
                ref
                for held in gc.get_referents(connection)
                if type(held) is list
                for ref in held
                if type(ref) is weakref.ref
            ]
            assert all(ref() is not None for ref in references), "a dead cursor reference"
        # Emptied at the release; compiled again only by what ran since (the unload's writes
        # ran before it).
        assert sum(_cached_statements(connection) for connection in connections) < cached


def _cached_statements(connection: object) -> int:
    [cache] = [held for held in gc.get_referents(connection) if hasattr(held, "cache_info")]
    return int(cache.cache_info().currsize)
