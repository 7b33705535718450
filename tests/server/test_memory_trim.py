"""After rooms unload, their memory goes back to the system once per burst
(server/sync/memory.py): a full collection, then glibc's `malloc_trim` where there is one."""

from __future__ import annotations

import asyncio
import gc
import platform
import weakref

import pytest

from server.sync import memory
from server.sync.arenas import FREE_LIST_FUTURE_ITERS, FREE_LIST_HANDLES
from server.sync.memory import MemoryTrimmer

GLIBC = platform.libc_ver()[0] == "glibc"


async def _until(ready: object) -> None:
    for _ in range(500):  # at most ~5 s
        if ready():  # type: ignore[operator]
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not within the bound")


async def test_a_burst_of_unloads_is_released_once_and_a_later_unload_again() -> None:
    trimmer = MemoryTrimmer(quiet=0.02, wait_at_most=1.0)
    for _ in range(5):  # a burst of unloads: one release covers them
        trimmer.room_unloaded()
        await asyncio.sleep(0)
    await _until(lambda: trimmer.releases == 1)
    await asyncio.sleep(0.1)
    assert trimmer.releases == 1
    assert trimmer.trims == (1 if GLIBC else 0)
    trimmer.room_unloaded()  # a later unload releases again
    await _until(lambda: trimmer.releases == 2)
    assert trimmer.trims == (2 if GLIBC else 0)


async def test_unloads_that_never_pause_are_released_within_the_bound() -> None:
    trimmer = MemoryTrimmer(quiet=10.0, wait_at_most=0.05)
    for _ in range(200):  # an unload every 10 ms: never quiet for 10 s
        trimmer.room_unloaded()
        if trimmer.releases:
            break
        await asyncio.sleep(0.01)
    assert trimmer.releases >= 1


class _Cycle:
    def __init__(self) -> None:
        self.me = self


async def test_a_release_collects_cyclic_garbage() -> None:
    trimmer = MemoryTrimmer(quiet=0.01, wait_at_most=0.05)
    gc.disable()  # only the release may collect it
    try:
        cycle = _Cycle()
        ref = weakref.ref(cycle)
        del cycle
        assert ref() is not None
        trimmer.room_unloaded()
        await _until(lambda: trimmer.releases == 1)
        assert ref() is None
    finally:
        gc.enable()


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
async def test_a_future_iterator_held_across_a_release_goes_back_once_freed() -> None:
    """A periodic task's await (uvicorn's tick, the journal closer's sleep) holds a future
    iterator made during the storm while the release swaps the free lists. Freed after it,
    that iterator must go back to pymalloc: the release leaves the spares in the list (full)
    until it settles. Taken at once, they would leave the list empty, and the task's next
    await would get the storm's iterator back, and keep it for good."""
    trimmer = MemoryTrimmer(quiet=0.01, wait_at_most=0.05, settle_after=600.0)
    assert trimmer.spares is not None
    spares = {id(iterator) for iterator in trimmer.spares._iterators}
    future = asyncio.get_running_loop().create_future()
    storm = [future.__await__() for _ in range(4 * FREE_LIST_FUTURE_ITERS)]
    del storm  # the free list holds the storm's last ones
    held = future.__await__()
    stale = id(held)
    assert stale not in spares
    trimmer.room_unloaded()
    await _until(lambda: trimmer.releases == 1)
    assert trimmer.settles == 0
    del held  # the task's await ends: into a full list, so freed
    again = future.__await__()  # its next await
    assert id(again) != stale
    assert id(again) in spares
    future.cancel()


async def test_a_release_settles_and_takes_its_spares_again() -> None:
    trimmer = MemoryTrimmer(quiet=0.01, wait_at_most=0.05, settle_after=0.01)
    assert trimmer.spares is not None
    trimmer.room_unloaded()
    await _until(lambda: trimmer.settles == 1)
    assert trimmer.releases == 1
    assert len(trimmer.spares._handles) == FREE_LIST_HANDLES  # ready for the next swap
    assert len(trimmer.spares._iterators) == FREE_LIST_FUTURE_ITERS
    trimmer.room_unloaded()  # the next release swaps them in again
    await _until(lambda: trimmer.settles == 2)
    assert trimmer.spares.swaps == 2


def test_configure_fixes_glibc_thresholds() -> None:
    # Idempotent and process-wide: glibc's starting values, with its dynamic raise turned off.
    assert memory.configure() is True
    assert memory.configure() is True


def test_release_now_collects_at_once() -> None:
    gc.disable()
    try:
        cycle = _Cycle()
        ref = weakref.ref(cycle)
        del cycle
        memory.release_now()
        assert ref() is None
    finally:
        gc.enable()
