"""The snapshotter (server/store/snapshots.py): a draft's snapshots are stored one at a time, and
the newest one asked for is always stored, however its request falls between the others."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from server.store.snapshots import Snapshotter
from server.store.sqlite import SqliteStore


async def test_the_newest_snapshot_asked_for_is_stored_whenever_it_is_asked(
    tmp_path: Path,
) -> None:
    """Requests land at every step of the previous save (0 to 5 loop steps apart), including
    the step in which the draft's last save finishes."""
    store = await SqliteStore.open(tmp_path / "draftsync.db")
    await store.create_draft("d", "alice", now=time.time())
    snapshotter = Snapshotter(store, every_updates=1, every_bytes=1, keep=1)
    try:
        for steps in range(6):
            for round_ in range(20):
                version = steps * 100 + round_ + 1
                snapshotter.save("d", version, f"state {version}".encode())
                for _ in range(steps):
                    await asyncio.sleep(0)
            await snapshotter.wait()
            state = await store.load("d")
            assert state.snapshot_version == version, f"{steps} steps apart"
            assert state.snapshot == f"state {version}".encode()
    finally:
        await store.close()
