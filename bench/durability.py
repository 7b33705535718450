"""Durable vs relaxed vs one-commit-per-update, end to end through a real room in-process.

`bench.throughput` shows what the store can take; this shows what a client sees. Four writer
connections and one observer share a room (`bench.harness`: the server's own Service, a stub
socket). Per update the harness notes when the writer handed it to `Room.receive` and when its
relay reached the observer's send queue: that gap is the time until the update is visible to
another client, the thing the durability mode trades against a crash.

    durable   the default: commit (group), then relay
    each      durable with one update per commit (`max_batch_updates=1`): the policy the
              performance notes measured collapsing under load
    relaxed   relay at acceptance, commit right after (a crash may lose what others saw)

Two loads: a flood (every writer sends as fast as the room takes it: throughput, and latency
that is mostly queueing) and a paced load (`rate` updates/s per writer: the latency a typist
sees). Versions map accept to relay: the observer never writes, so its i-th relayed update is
version i in every mode (commits, hence durable relays, run in version order).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.harness import open_room
from bench.replay import text_of
from bench.runtime import median, percentile, progress
from crdt.protocol import Update
from server.config import Durability
from server.sync.connection import Connection
from server.sync.room import Room

__all__ = ["DurabilityConfig", "run_durability"]

_MODES: dict[str, tuple[Durability, int | None]] = {
    "durable": (Durability.DURABLE, None),
    "each": (Durability.DURABLE, 1),
    "relaxed": (Durability.RELAXED, None),
}


@dataclass(frozen=True, slots=True)
class DurabilityConfig:
    flood: list[list[bytes]]  # per writer
    paced: list[list[bytes]]  # per writer
    rate: float  # paced updates/s per writer
    repeats: int
    fsync: bool
    progress: bool


@dataclass
class _Run:
    seconds: float
    latencies_ms: list[float]


async def _writer(
    room: Room, conn: Connection, updates: list[bytes], accepted: dict[int, float], rate: float
) -> None:
    started = time.perf_counter()
    for i, update in enumerate(updates):
        if rate:
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        before = conn.submitted
        sent = time.perf_counter()
        await room.receive(conn, Update(update))
        if conn.submitted == before + 1:
            # Accepted; nothing awaits between numbering it and returning, so it is the
            # room's latest version even if the receive waited for space before that.
            accepted[room.version] = sent
        await asyncio.sleep(0)  # the reader awaits the next frame


async def _one_run(
    mode: str, writers: list[list[bytes]], rate: float, directory: Path, fsync: bool
) -> _Run:
    durability, max_batch = _MODES[mode]
    total = sum(map(len, writers))
    async with open_room(directory, durability=durability, max_batch=max_batch, fsync=fsync) as h:
        observer, _ = await h.connect("observer", clock=True)
        conns = [(await h.connect(f"writer{i}"))[0] for i in range(len(writers))]
        assert h.room is not None
        accepted: dict[int, float] = {}
        started = time.perf_counter()
        await asyncio.gather(
            *(
                _writer(h.room, conn, mine, accepted, rate)
                for conn, mine in zip(conns, writers, strict=True)
            )
        )
        await h.committed()
        seconds = time.perf_counter() - started
        assert h.room is not None
        if len(text_of(h.room.doc)) != total:
            raise AssertionError(f"{mode}: the room holds {len(text_of(h.room.doc))} of {total}")
        relayed = observer.relayed_at  # type: ignore[attr-defined]
        if len(relayed) != total or len(accepted) != total:
            raise AssertionError(f"{mode}: {len(relayed)} relayed, {len(accepted)} accepted")
        latencies = [1000 * (relayed[v - 1] - accepted[v]) for v in range(1, total + 1)]
    return _Run(seconds, latencies)


async def run_durability(config: DurabilityConfig) -> list[dict[str, object]]:
    flood: dict[str, list[_Run]] = {mode: [] for mode in _MODES}
    paced: dict[str, list[_Run]] = {mode: [] for mode in _MODES}
    steps = progress(
        desc="room durability", total=2 * config.repeats * len(_MODES), enabled=config.progress
    )
    with tempfile.TemporaryDirectory(prefix="draftsync-bench-") as tmp:
        for repeat in range(config.repeats):
            for mode in _MODES:
                for load, writers, rate, runs in (
                    ("flood", config.flood, 0.0, flood),
                    ("paced", config.paced, config.rate, paced),
                ):
                    where = Path(tmp) / f"{mode}-{load}-{repeat}"
                    runs[mode].append(await _one_run(mode, writers, rate, where, config.fsync))
                    steps.update(1)
    steps.close()
    flood_total = sum(map(len, config.flood))
    rows: list[dict[str, object]] = []
    for mode in _MODES:
        flood_lat = [x for run in flood[mode] for x in run.latencies_ms]
        paced_lat = [x for run in paced[mode] for x in run.latencies_ms]
        rows.append(
            {
                "mode": mode,
                "writers": len(config.flood),
                "flood_updates": flood_total,
                "flood_updates_per_s": median([flood_total / r.seconds for r in flood[mode]]),
                "flood_visible_p50_ms": percentile(flood_lat, 50),
                "flood_visible_p99_ms": percentile(flood_lat, 99),
                "paced_rate_per_writer": config.rate,
                "paced_updates": sum(map(len, config.paced)),
                "paced_visible_p50_ms": percentile(paced_lat, 50),
                "paced_visible_p99_ms": percentile(paced_lat, 99),
            }
        )
    return rows
