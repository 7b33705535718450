"""What keeps a storm's last objects out of its pymalloc arenas (server/sync/arenas.py), each
shown on the structures it changes: which objects a free list hands out next, which pool an
allocation lands in, what a SQLite connection still holds. Nothing is timed.

The release these serve (server/sync/memory.py) is exercised with a real server in
tests/server/test_memory_survivors.py.
"""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import weakref
from pathlib import Path

import pytest
import uvloop

from server.sync.arenas import (
    FREE_LIST_FUTURE_ITERS,
    FREE_LIST_HANDLES,
    FREE_LIST_TIMER_HANDLES,
    Spares,
    drop_cached_statements,
    drop_dead_cursor_references,
)


def _nothing() -> None:
    pass


def _storm_through_the_free_lists(loop: asyncio.AbstractEventLoop) -> None:
    """Many handles and future iterators made and freed: the free lists end up holding the
    last of them, as after a storm of connections."""
    future = loop.create_future()
    handles = [loop.call_soon(_nothing) for _ in range(4 * FREE_LIST_HANDLES)]
    for handle in handles:
        handle.cancel()
    iterators = [future.__await__() for _ in range(4 * FREE_LIST_FUTURE_ITERS)]
    del handles, iterators


def test_a_swap_puts_the_spares_in_the_free_lists_in_place_of_the_storms() -> None:
    """After a swap, the next handles and future iterators the loop makes are the spares made
    at start, not the storm's last objects (which the free lists held before)."""

    async def run() -> tuple[set[int], set[int], list[int], list[int], list[int], list[int]]:
        loop = asyncio.get_running_loop()
        spares = Spares(loop)
        spare_handles = {id(handle) for handle in spares._handles}
        spare_iterators = {id(iterator) for iterator in spares._iterators}
        future = loop.create_future()
        await asyncio.sleep(0)  # the loop lets go of the spares' cancelled handles

        async def next_ones() -> tuple[list[int], list[int]]:
            handles = [loop.call_soon(_nothing) for _ in range(FREE_LIST_HANDLES // 2)]
            iterators = [future.__await__() for _ in range(FREE_LIST_FUTURE_ITERS // 2)]
            ids = [id(h) for h in handles], [id(i) for i in iterators]
            for handle in handles:
                handle.cancel()
            del handles, iterators
            await asyncio.sleep(0)
            return ids

        _storm_through_the_free_lists(loop)
        await asyncio.sleep(0)
        before = await next_ones()  # no swap: the storm's
        _storm_through_the_free_lists(loop)
        await asyncio.sleep(0)
        await spares.swap()
        after = await next_ones()
        assert spares.swaps == 1
        return spare_handles, spare_iterators, *before, *after

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        spare_handles, spare_iterators, *ids = runner.run(run())
    handles_before, iterators_before, handles_after, iterators_after = ids
    assert not spare_handles & set(handles_before)  # the test has teeth: the storm's came
    assert not spare_iterators & set(iterators_before)
    # After the swap (a handle or two of the loop's own may come first):
    assert len(spare_handles & set(handles_after)) >= len(handles_after) - 4
    assert len(spare_iterators & set(iterators_after)) >= len(iterators_after) - 4


def test_spares_are_taken_again_for_the_next_swap() -> None:
    async def run() -> tuple[int, int]:
        spares = Spares(asyncio.get_running_loop())
        await spares.swap()
        emptied = len(spares._handles) + len(spares._timer_handles) + len(spares._iterators)
        spares.take()
        return emptied, len(spares._handles) + len(spares._timer_handles) + len(spares._iterators)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        emptied, taken = runner.run(run())
    assert emptied == 0
    assert taken == FREE_LIST_HANDLES + FREE_LIST_TIMER_HANDLES + FREE_LIST_FUTURE_ITERS


async def _timer_handle_ids(loop: asyncio.AbstractEventLoop, count: int) -> list[int]:
    """The next `count` timer handles the loop makes (made, then cancelled and let go of)."""
    handles = [loop.call_later(60.0, _nothing) for _ in range(count)]
    ids = [id(handle) for handle in handles]
    for handle in handles:
        handle.cancel()
    del handles
    await asyncio.sleep(0)  # the cancelled handles' libuv timers close: they let go
    await asyncio.sleep(0)
    return ids


def test_a_swap_puts_spare_timer_handles_in_place_of_the_storms() -> None:
    """uvloop's free list of timer handles (a `call_later` each: every deadline, every
    `asyncio.sleep`) held the storm's last ones, which kept up to 2 arenas of `bench relay` N3000
    after the release. After a swap, the next timer handles are the spares made at start."""

    async def run() -> tuple[set[int], list[int], list[int]]:
        loop = asyncio.get_running_loop()
        spares = Spares(loop)
        spare_ids = {id(handle) for handle in spares._timer_handles}
        await _timer_handle_ids(loop, 4 * FREE_LIST_TIMER_HANDLES)  # a storm through the list
        before = await _timer_handle_ids(loop, FREE_LIST_TIMER_HANDLES // 2)  # no swap
        await _timer_handle_ids(loop, 4 * FREE_LIST_TIMER_HANDLES)
        await spares.swap()
        after = await _timer_handle_ids(loop, FREE_LIST_TIMER_HANDLES // 2)
        return spare_ids, before, after

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        spare_ids, before, after = runner.run(run())
    assert not spare_ids & set(before)  # the test has teeth: the storm's came
    assert len(spare_ids & set(after)) >= len(after) - 4


def test_spare_timer_handles_taken_again_keep_the_floats_of_the_last_ones() -> None:
    """A timer handle holds a float made with it (`when()`): spares made anew would hold 250
    new floats wherever floats land next (a storm's pool). Taken after a full collection, the
    spares reuse the floats of the spares the swap gave to the free list."""

    async def run() -> tuple[set[int], set[int]]:
        spares = Spares(asyncio.get_running_loop())
        await spares.swap()
        kept = {id(when) for when in spares._whens}
        gc.collect()  # empties the float free list, as a release's settling does
        spares.take()
        return kept, {id(handle.when()) for handle in spares._timer_handles}

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        kept, whens = runner.run(run())
    assert len(kept) == FREE_LIST_TIMER_HANDLES
    assert len(whens & kept) >= FREE_LIST_TIMER_HANDLES - 4


def _cursor_references(connection: sqlite3.Connection) -> list[weakref.ref[object]]:
    lists = [held for held in gc.get_referents(connection) if type(held) is list and held]
    assert len(lists) == 1
    return lists[0]


def test_dead_cursor_references_are_dropped_and_live_ones_kept(tmp_path: Path) -> None:
    connection = sqlite3.connect(tmp_path / "c.sqlite3")
    try:
        for _ in range(150):  # fewer than sqlite3's pruning period (200)
            connection.execute("SELECT 1").fetchall()
        live = connection.cursor()
        assert len(_cursor_references(connection)) == 151
        assert drop_dead_cursor_references(connection) == 150
        references = _cursor_references(connection)
        assert [ref() for ref in references] == [live]
        assert drop_dead_cursor_references(connection) == 0
        live.execute("SELECT 2")  # the connection works on
        assert live.fetchall() == [(2,)]
    finally:
        connection.close()


def test_cached_statements_are_dropped_and_compiled_again(tmp_path: Path) -> None:
    connection = sqlite3.connect(tmp_path / "s.sqlite3")
    try:
        for value in range(20):
            connection.execute(f"SELECT {value}").fetchall()
        [cache] = [held for held in gc.get_referents(connection) if hasattr(held, "cache_info")]
        assert cache.cache_info().currsize == 20
        running = connection.execute("SELECT 7 UNION ALL SELECT 8")  # a cursor mid-way
        assert running.fetchone() == (7,)
        drop_cached_statements(connection)
        assert cache.cache_info().currsize == 0
        assert running.fetchone() == (8,)  # its statement is its own
        assert connection.execute("SELECT 3").fetchall() == [(3,)]
        assert cache.cache_info().currsize == 1
    finally:
        connection.close()


@pytest.mark.parametrize("bad", [None, 3, "x"])
def test_the_sqlite_helpers_refuse_what_is_no_connection(bad: object) -> None:
    with pytest.raises(TypeError):
        drop_dead_cursor_references(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        drop_cached_statements(bad)  # type: ignore[arg-type]
