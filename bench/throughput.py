"""Durable updates/s into one room from concurrent writers, at the store: the commit policy alone.

Writers are asyncio tasks that submit exactly as `server/sync/room.py` does (`wait_for_space`, then
`submit(PendingWrite)` with the next version, no await in between) and then yield, as the
server's reader does while it awaits the next frame. The clock runs from the first submit until
the last `on_committed`. Modes:

    group     the real CommitPipeline: everything queued while a commit runs goes in the next
    each      one `Store.append_updates([record])` per update (one transaction each)
    relaxed   the same pipeline as group: relaxed durability only moves the relay to before the
              commit, so for the store it *is* group commit; measured again to show the noise.
              What relaxed buys is seen end to end, in `bench.durability`.

Each run gets a fresh database file; modes are interleaved run by run so that a noisy neighbour
hits them alike; the median run is reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from bench.commitstats import commit_totals
from bench.runtime import median, progress
from server.config import Settings
from server.errors import StoreError
from server.store.commits import CommitPipeline, PendingWrite
from server.store.records import UpdateRecord
from server.store.sqlite import SqliteStore

__all__ = ["MODES", "ThroughputConfig", "run_throughput"]

DRAFT_ID = "bench"
MODES = ("group", "each", "relaxed")
_NOTES = {
    "group": "CommitPipeline (server defaults)",
    "each": "one transaction per update",
    "relaxed": "= group at the store (relaxed moves only the relay)",
}
_TICK = 512


@dataclass(frozen=True, slots=True)
class ThroughputConfig:
    updates: list[list[bytes]]  # per writer, pre-generated
    repeats: int
    fsync: bool
    progress: bool


class _Target:
    """The room side of the pipeline, reduced to counting (a `CommitTarget`)."""

    def __init__(self, total: int, bar: tqdm[None]) -> None:
        self.accepts_commits = True
        self.committed = 0
        self.error: StoreError | None = None
        self.done = asyncio.Event()
        self._total = total
        self._bar = bar

    def on_committed(self, writes: Sequence[PendingWrite]) -> None:
        for _ in writes:
            self.committed += 1
            if self.committed % _TICK == 0:
                self._bar.update(_TICK)
            if self.committed == self._total:
                self.done.set()

    def on_commit_failed(self, error: Exception, **_: object) -> None:
        self.error = error
        self.done.set()


def _record(version: int, data: bytes, writer: int) -> UpdateRecord:
    return UpdateRecord(
        draft_id=DRAFT_ID,
        version=version,
        data=data,
        user=f"writer{writer}",
        session=f"s{writer}",
        client_id=None,
        created_at=time.time(),
    )


async def _through_pipeline(
    store: SqliteStore, updates: list[list[bytes]], bar: tqdm[None]
) -> float:
    settings = Settings(data_dir=store.path.parent, secret="bench")
    pipeline = CommitPipeline(
        store, max_queued=settings.commit_queue_updates, max_batch=settings.max_batch_updates
    )
    target = _Target(sum(map(len, updates)), bar)
    versions = itertools.count(1)

    async def writer(index: int, mine: list[bytes]) -> None:
        for data in mine:
            await pipeline.wait_for_space()
            record = _record(next(versions), data, index)
            pipeline.submit(PendingWrite(target=target, sender=index, record=record))
            await asyncio.sleep(0)

    committer = asyncio.create_task(pipeline.run())
    started = time.perf_counter()
    try:
        await asyncio.gather(*(writer(i, mine) for i, mine in enumerate(updates)))
        await target.done.wait()
        elapsed = time.perf_counter() - started
    finally:
        committer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await committer
    if target.error is not None:
        raise target.error
    return elapsed


async def _one_by_one(store: SqliteStore, updates: list[list[bytes]], bar: tqdm[None]) -> float:
    versions = itertools.count(1)
    done = 0

    async def writer(index: int, mine: list[bytes]) -> None:
        nonlocal done
        for data in mine:
            await store.append_updates([_record(next(versions), data, index)])
            done += 1
            if done % _TICK == 0:
                bar.update(_TICK)

    started = time.perf_counter()
    await asyncio.gather(*(writer(i, mine) for i, mine in enumerate(updates)))
    return time.perf_counter() - started


_RUNNERS: dict[str, Callable[[SqliteStore, list[list[bytes]], tqdm[None]], Awaitable[float]]] = {
    "group": _through_pipeline,
    "each": _one_by_one,
    "relaxed": _through_pipeline,
}


async def _measure(
    mode: str, config: ThroughputConfig, path: Path
) -> tuple[float, dict[str, object]]:
    store = await SqliteStore.open(path, fsync=config.fsync)
    try:
        await store.create_draft(DRAFT_ID, "bench", now=time.time())
        total = sum(map(len, config.updates))
        bar = progress(desc=f"store {mode}", total=total, unit="upd", enabled=config.progress)
        before = commit_totals()
        elapsed = await _RUNNERS[mode](store, config.updates, bar)
        stats = (commit_totals() - before).as_dict()
        bar.close()
        if await store.last_version(DRAFT_ID) != total:
            raise AssertionError(f"{mode}: the log does not hold all {total} updates")
    finally:
        await store.close()
    if mode == "each":
        stats = {"commits": total, "mean_batch": 1.0, "mean_commit_ms": 1000 * elapsed / total}
    return elapsed, stats


async def run_throughput(config: ThroughputConfig) -> list[dict[str, object]]:
    total = sum(map(len, config.updates))
    runs: dict[str, list[float]] = {mode: [] for mode in MODES}
    stats: dict[str, dict[str, object]] = {}  # batching of each mode's last run
    with tempfile.TemporaryDirectory(prefix="draftsync-bench-") as tmp:
        for repeat in range(config.repeats):
            for mode in MODES:
                path = Path(tmp) / f"{mode}-{repeat}.db"
                elapsed, stats[mode] = await _measure(mode, config, path)
                runs[mode].append(total / elapsed)
    return [
        {
            "mode": mode,
            "writers": len(config.updates),
            "updates": total,
            "updates_per_s": median(runs[mode]),
            "runs_updates_per_s": runs[mode],
            **stats[mode],
            "note": _NOTES[mode],
        }
        for mode in MODES
    ]
