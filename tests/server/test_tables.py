"""The hash tables a storm of connections grew are rebuilt at their size once it is gone
(server/sync/tables.py, issue 24 point 5).

A real server (uvicorn, the app `draftsync serve` builds, a SQLite store) runs in this process
so that its tables can be read; the clients are real WebSocket clients on loopback. Nothing is
timed: the waits are bounded in count and time.
"""

from __future__ import annotations

import asyncio
import sys
import time
import weakref
from collections.abc import Callable

import pytest
import uvicorn
import uvloop

from crdt.protocol import SyncStep1, SyncStep2, encode_message
from server.app import create_app
from server.auth import TokenSigner
from server.config import Settings
from server.sync import tables
from server.sync.wsprotocol import LeanWebSocketProtocol
from tests.support.raw_client import RawClient, connect_raw
from tests.support.server_process import SECRET, free_port

CONNECTIONS = 400  # enough for every table below to pass tables.MIN_BYTES
AT_ONCE = 50


class _Referent:
    pass


def test_a_mostly_empty_set_is_rebuilt_in_place_with_its_entries() -> None:
    table = set(range(3000))
    for number in range(2995):
        table.discard(number)
    grown = sys.getsizeof(table)
    same = table
    assert tables.shrink(table)
    assert table is same
    assert table == {2995, 2996, 2997, 2998, 2999}
    assert sys.getsizeof(table) < tables.MIN_BYTES < grown


def test_a_mostly_empty_dict_is_rebuilt_in_place_with_its_entries_and_order() -> None:
    table = {number: str(number) for number in range(3000)}
    for number in range(2990):
        del table[number]
    table[1] = "late"
    assert tables.shrink(table)
    assert list(table.items()) == [(n, str(n)) for n in range(2990, 3000)] + [(1, "late")]
    assert sys.getsizeof(table) < tables.MIN_BYTES


def test_weak_tables_keep_their_live_entries_and_still_drop_the_dead() -> None:
    held = [_Referent() for _ in range(3000)]
    by_key = weakref.WeakValueDictionary(enumerate(held))
    members = weakref.WeakSet(held)
    del held[3:]
    assert tables.shrink(by_key.data) and tables.shrink(members.data)
    assert sys.getsizeof(by_key.data) < tables.MIN_BYTES
    assert sys.getsizeof(members.data) < tables.MIN_BYTES
    assert [by_key[n] for n in range(3)] == held and set(members) == set(held)
    del held[0]  # its weak references' callbacks still find the rebuilt tables
    assert len(by_key) == 2 and len(members) == 2


def test_full_and_small_tables_are_left_alone() -> None:
    full = set(range(3000))
    small = set(range(10))
    before = sys.getsizeof(full), sys.getsizeof(small)
    assert not tables.shrink(full) and not tables.shrink(small) and not tables.shrink({})
    assert (sys.getsizeof(full), sys.getsizeof(small)) == before


@pytest.mark.parametrize("bad", [[1, 2], (1,), frozenset({1}), "text", None])
def test_anything_but_a_set_or_dict_is_refused(bad: object) -> None:
    with pytest.raises(TypeError):
        tables.shrink(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        tables.watch(bad)  # type: ignore[arg-type]


def test_the_loop_tables_of_uvloop_and_of_asyncio_are_found() -> None:
    async def found() -> list[int]:
        return [id(table) for table in tables.loop_tables(asyncio.get_running_loop())]

    for run in (uvloop.run, asyncio.run):
        ids = run(found())
        assert id(asyncio.tasks._all_tasks.data) in ids  # type: ignore[attr-defined]
        assert len(ids) >= 2, "the loop's transports by descriptor were not found"


async def _until(ready: Callable[[], bool], what: str, *, tries: int = 1000) -> None:
    for _ in range(tries):  # at most ~20 s
        if ready():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within the bound: {what}")


async def _synced(ws_url: str, token: str) -> RawClient:
    client = await connect_raw(ws_url, "storm", token)
    await client.send(encode_message(SyncStep1(b"\x00")))
    await client.next_message(SyncStep2)
    return client


async def test_a_release_rebuilds_the_tables_a_storm_grew(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """uvicorn's sets of connections and tasks (registered as `draftsync serve` does), the
    loop's transports and asyncio's set of tasks: grown past MIN_BYTES by the storm, under it
    once the room has unloaded and its release has run."""
    settings = Settings(data_dir=tmp_path, secret=SECRET, room_grace_seconds=0.1)
    app = create_app(settings)
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        ws=LeanWebSocketProtocol,
        ws_per_message_deflate=False,
        log_level="warning",
        log_config=None,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    state = server.server_state
    tables.watch(state.connections)
    tables.watch(state.tasks)
    serving = asyncio.create_task(server.serve())
    token = TokenSigner(SECRET).issue("storm", ttl_seconds=3600, now=time.time())
    try:
        await _until(lambda: server.started or serving.done(), "the server listens")
        assert server.started, "the server did not start"
        service = app.state.service
        grown = [state.connections, state.tasks, *tables.loop_tables(asyncio.get_running_loop())]
        clients: list[RawClient] = []
        for _ in range(CONNECTIONS // AT_ONCE):
            url = f"ws://127.0.0.1:{port}/ws"
            clients += await asyncio.gather(*(_synced(url, token) for _ in range(AT_ONCE)))
        await _until(lambda: service.connections == CONNECTIONS, "every connection tracked")
        assert all(sys.getsizeof(table) >= tables.MIN_BYTES for table in grown)
        memory = service.rooms.memory
        releases = memory.releases
        await asyncio.gather(*(client.socket.close() for client in clients))
        clients.clear()  # their transports and tasks share this loop's tables
        await _until(lambda: service.rooms.get("storm") is None, "the room unloaded")
        await _until(lambda: memory.releases > releases, "the unload's release ran")
        sizes = [sys.getsizeof(table) for table in grown]
        assert all(size < tables.MIN_BYTES for size in sizes), sizes
        assert memory.tables_shrunk >= len(grown)
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 30)
        tables.unwatch(state.connections)
        tables.unwatch(state.tasks)
