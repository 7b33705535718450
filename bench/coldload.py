"""Cold load of a long draft: what opening it costs right after a restart.

One draft of `updates` single-character updates (`bench.keystrokes`) is stored three times,
as three drafts of one database, differing only in their snapshots:

    snapshot   a snapshot at the last version, taken by the server's `Snapshotter`
    tail       a snapshot `snapshot_every - 1` updates before the end: the worst case the
               server's default cadence (a snapshot every N updates) can leave
    none       no snapshot: the whole log is replayed

Each run opens a fresh `Store` (as after a restart: SQLite's page cache is the OS's, nothing is
in the process), then times `store.load(draft)` and `crdt.history.rebuild(...)` separately, the
two steps of `RoomRegistry._load` (which runs rebuild on a worker thread; here it runs inline
so the figure has no thread hand-off in it). Median of `runs`.

Memory, per case, of this process (it is the loader, as the server is): RSS before the case's
first open (idle), its peak while the case's runs load and rebuild (VmHWM, reset before the
case), and after them, once the store is closed, the docs dropped and released as the server
releases an unloaded room's (`server.sync.memory`: a collection, then `malloc_trim`). The
allocator is configured as `draftsync serve` configures it.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.replay import text_of
from bench.runtime import median, progress
from crdt.history import rebuild
from server.config import Settings
from server.store.records import UpdateRecord
from server.store.retention import KEEP
from server.store.snapshots import Snapshotter
from server.store.sqlite import SqliteStore
from server.sync import memory

__all__ = ["ColdLoadConfig", "run_cold_load"]

_BATCH = 1_000


@dataclass(frozen=True, slots=True)
class ColdLoadConfig:
    updates: list[bytes]
    text: str  # what the updates make: every rebuild is checked against it
    runs: int
    progress: bool


def _records(draft_id: str, updates: list[bytes]) -> list[UpdateRecord]:
    now = time.time()
    return [
        UpdateRecord(draft_id, version, data, "typist", "s", None, now)
        for version, data in enumerate(updates, start=1)
    ]


async def _prepare(path: Path, config: ColdLoadConfig, every: int) -> dict[str, int]:
    """Store the three drafts; their snapshot versions by case."""
    total = len(config.updates)
    cases = {"snapshot": total, "tail": total - (every - 1), "none": 0}
    store = await SqliteStore.open(path)
    try:
        snapshotter = Snapshotter(store, every_updates=every, every_bytes=2**62, keep=KEEP)
        for case, at in cases.items():
            await store.create_draft(case, "typist", now=time.time())
            records = _records(case, config.updates)
            for start in range(0, total, _BATCH):
                await store.append_updates(records[start : start + _BATCH])
            if at:
                snapshotter.request(case, at)
                await snapshotter.wait()
                state = await store.load(case)
                if state.snapshot_version != at:
                    raise AssertionError(f"{case}: the snapshot is at {state.snapshot_version}")
    finally:
        await store.close()
    return cases


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> None:
    """VmHWM starts again from the current RSS (Linux: clear_refs 5); left as is elsewhere."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


async def _time_once(path: Path, draft_id: str, expected: str) -> tuple[float, float, int, int]:
    store = await SqliteStore.open(path)
    try:
        started = time.perf_counter()
        state = await store.load(draft_id)
        loaded = time.perf_counter()
        doc = rebuild(state.snapshot, state.tail)
        rebuilt = time.perf_counter()
    finally:
        await store.close()
    if text_of(doc) != expected:
        raise AssertionError(f"{draft_id}: the rebuilt draft differs from what was typed")
    return loaded - started, rebuilt - loaded, len(state.tail), len(state.snapshot or b"")


async def run_cold_load(config: ColdLoadConfig) -> list[dict[str, object]]:
    every = Settings(data_dir=Path("."), secret="-").snapshot_every_updates
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="draftsync-bench-") as tmp:
        path = Path(tmp) / "draftsync.db"
        cases = await _prepare(path, config, every)
        bar = progress(desc="cold load", total=config.runs * len(cases), enabled=config.progress)
        memory.configure()
        for case, at in cases.items():
            loads, rebuilds, totals = [], [], []
            memory.release_now()  # the previous case's memory is not this one's
            idle = _status_mb("VmRSS:")
            _reset_peak()
            for _ in range(config.runs):
                load, build, tail, snapshot_bytes = await _time_once(path, case, config.text)
                loads.append(1000 * load)
                rebuilds.append(1000 * build)
                totals.append(1000 * (load + build))
                bar.update(1)
            peak = _status_mb("VmHWM:")
            memory.release_now()
            after = _status_mb("VmRSS:")
            rows.append(
                {
                    "case": case,
                    "updates": len(config.updates),
                    "snapshot_version": at,
                    "tail_updates": tail,
                    "snapshot_bytes": snapshot_bytes,
                    "load_ms": median(loads),
                    "rebuild_ms": median(rebuilds),
                    "total_ms": median(totals),
                    "runs_total_ms": totals,
                    "idle_rss_mb": idle,
                    "peak_rss_mb": peak,
                    "after_rss_mb": after,
                }
            )
        bar.close()
    return rows
