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

import pytest
import uvloop

from server.auth import TokenSigner
from server.sync import tables
from tests.support.in_process_server import (
    ONE_USERS_STORM,
    serving_in_process,
    synced_client,
    until,
)
from tests.support.raw_client import RawClient
from tests.support.server_process import SECRET

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


async def test_a_release_rebuilds_the_tables_a_storm_grew(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """uvicorn's sets of connections and tasks (registered as `draftsync serve` does), the
    loop's transports and asyncio's set of tasks: grown past MIN_BYTES by the storm, under it
    once the room has unloaded and its release has run."""
    token = TokenSigner(SECRET).issue("storm", ttl_seconds=3600, now=time.time())
    async with serving_in_process(tmp_path, **ONE_USERS_STORM) as served:
        state = served.uvicorn_server.server_state
        tables.watch(state.connections)
        tables.watch(state.tasks)
        try:
            service = served.service
            grown = [
                state.connections,
                state.tasks,
                *tables.loop_tables(asyncio.get_running_loop()),
            ]
            clients: list[RawClient] = []
            for _ in range(CONNECTIONS // AT_ONCE):
                clients += await asyncio.gather(
                    *(synced_client(served.ws_url, "storm", token) for _ in range(AT_ONCE))
                )
            await until(lambda: service.connections == CONNECTIONS, "every connection tracked")
            assert all(sys.getsizeof(table) >= tables.MIN_BYTES for table in grown)
            memory = service.rooms.memory
            releases = memory.releases
            await asyncio.gather(*(client.socket.close() for client in clients))
            clients.clear()  # their transports and tasks share this loop's tables
            await until(lambda: service.rooms.get("storm") is None, "the room unloaded")
            await until(lambda: memory.releases > releases, "the unload's release ran")
            sizes = [sys.getsizeof(table) for table in grown]
            assert all(size < tables.MIN_BYTES for size in sizes), sizes
            assert memory.tables_shrunk >= len(grown)
        finally:
            tables.unwatch(state.connections)
            tables.unwatch(state.tasks)
