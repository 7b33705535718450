"""After a room unloads, freed pages go back to the system once (server/sync/memory.py)."""

from __future__ import annotations

import asyncio
import platform

import pytest

from server.sync.memory import MemoryTrimmer


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
async def test_unloads_in_a_row_trim_once_at_a_time() -> None:
    trimmer = MemoryTrimmer()
    for _ in range(5):  # a burst of unloads: the trim under way covers them
        trimmer.room_unloaded()
    for _ in range(100):
        if trimmer.trims:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert trimmer.trims == 1
    trimmer.room_unloaded()  # a later unload trims again
    for _ in range(100):
        if trimmer.trims == 2:
            break
        await asyncio.sleep(0.01)
    assert trimmer.trims == 2
