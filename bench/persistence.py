"""`bench persistence`: the durable store's targets, measured and reported.

Three parts, each its own module: store throughput by commit policy (`bench.throughput`), what
the durability mode means to a client in a real room (`bench.durability`) and the cold load of a
long draft (`bench.coldload`). Targets (issue "durable store"): at least 20,000 durable
updates/s with group commit, and a cold load of a 20,000-update draft in at most 5 ms with a
snapshot. All updates are real pycrdt keystrokes, generated before any clock starts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from bench.coldload import ColdLoadConfig, run_cold_load
from bench.durability import DurabilityConfig, run_durability
from bench.keystrokes import typed_updates
from bench.plots import plot_persistence
from bench.report import Column, format_table, publish
from bench.runtime import environment, progress
from bench.throughput import ThroughputConfig, run_throughput

__all__ = ["PersistenceOptions", "Sizes", "run_persistence"]

TARGET_UPDATES_PER_S = 20_000
TARGET_COLD_LOAD_MS = 5.0
WRITERS = 4


@dataclass(frozen=True, slots=True)
class Sizes:
    per_writer: int  # store throughput
    repeats: int
    flood_per_writer: int  # room durability
    paced_per_writer: int
    paced_rate: float  # updates/s per writer
    durability_repeats: int
    cold_updates: int
    cold_runs: int


FULL = Sizes(10_000, 3, 5_000, 2_000, 1_000.0, 2, 20_000, 9)
QUICK = Sizes(1_000, 1, 500, 250, 1_000.0, 1, 20_000, 3)


@dataclass(frozen=True, slots=True)
class PersistenceOptions:
    out: Path
    quick: bool
    fsync: bool
    progress: bool


async def _measure(options: PersistenceOptions) -> dict[str, object]:
    sizes = QUICK if options.quick else FULL
    env = environment()  # before: the load average is the one the run started under
    show = options.progress
    seeds = progress(range(3 * WRITERS + 1), desc="typing keystrokes", enabled=show)
    typed = [typed_updates(n, seed=seed) for seed, n in zip(seeds, _counts(sizes), strict=True)]
    store_updates = [u for u, _ in typed[:WRITERS]]
    flood = [u for u, _ in typed[WRITERS : 2 * WRITERS]]
    paced = [u for u, _ in typed[2 * WRITERS : 3 * WRITERS]]
    cold_updates, cold_text = typed[-1]

    throughput = await run_throughput(
        ThroughputConfig(store_updates, sizes.repeats, options.fsync, show)
    )
    durability = await run_durability(
        DurabilityConfig(
            flood, paced, sizes.paced_rate, sizes.durability_repeats, options.fsync, show
        )
    )
    cold = await run_cold_load(ColdLoadConfig(cold_updates, cold_text, sizes.cold_runs, show))
    group = next(r for r in throughput if r["mode"] == "group")["updates_per_s"]
    snapshot = next(r for r in cold if r["case"] == "snapshot")["total_ms"]
    assert isinstance(group, float) and isinstance(snapshot, float)
    return {
        "bench": "persistence",
        "quick": options.quick,
        "environment": env,
        "settings": {"writers": WRITERS, "fsync": options.fsync, **asdict(sizes)},
        "targets": {
            "group_commit_updates_per_s": {
                "target": TARGET_UPDATES_PER_S,
                "measured": group,
                "met": group >= TARGET_UPDATES_PER_S,
            },
            "cold_load_ms": {
                "target": TARGET_COLD_LOAD_MS,
                "measured": snapshot,
                "met": snapshot <= TARGET_COLD_LOAD_MS,
            },
        },
        "throughput": throughput,
        "durability": durability,
        "cold_load": cold,
    }


def _counts(sizes: Sizes) -> list[int]:
    return (
        [sizes.per_writer] * WRITERS
        + [sizes.flood_per_writer] * WRITERS
        + [sizes.paced_per_writer] * WRITERS
        + [sizes.cold_updates]
    )


def _rate(result: dict[str, object]) -> str:
    settings = result["settings"]
    assert isinstance(settings, dict)
    return f"{settings['paced_rate']:,.0f}"


def _tables(result: dict[str, object]) -> str:
    targets = result["targets"]
    assert isinstance(targets, dict)
    met = ", ".join(
        f"{name}: {t['measured']:,.1f} vs {t['target']:,} -> {'MET' if t['met'] else 'MISSED'}"
        for name, t in targets.items()
    )
    return "\n\n".join(
        [
            format_table(
                f"Store throughput: {WRITERS} writers into one room (median of runs)",
                [
                    Column("mode", "mode"),
                    Column("updates_per_s", "durable upd/s"),
                    Column("commits", "commits"),
                    Column("mean_batch", "mean batch"),
                    Column("mean_commit_ms", "ms/commit"),
                    Column("note", "note"),
                ],
                result["throughput"],  # type: ignore[arg-type]
            ),
            format_table(
                "Room, end to end: time until another client's send queue has the update",
                [
                    Column("mode", "mode"),
                    Column("flood_updates_per_s", "flood upd/s"),
                    Column("flood_visible_p50_ms", "flood p50 ms"),
                    Column("flood_visible_p99_ms", "flood p99 ms"),
                    Column("paced_visible_p50_ms", "paced p50 ms"),
                    Column("paced_visible_p99_ms", "paced p99 ms"),
                ],
                result["durability"],  # type: ignore[arg-type]
                footer=f"paced: {_rate(result)} updates/s per writer; "
                "flood: as fast as the room takes them",
            ),
            format_table(
                "Cold load (fresh Store, as after a restart; median ms)",
                [
                    Column("case", "case"),
                    Column("updates", "updates"),
                    Column("snapshot_version", "snapshot at"),
                    Column("tail_updates", "tail"),
                    Column("load_ms", "load ms"),
                    Column("rebuild_ms", "rebuild ms"),
                    Column("total_ms", "total ms"),
                    Column("idle_rss_mb", "idle MB"),
                    Column("peak_rss_mb", "peak MB"),
                    Column("after_rss_mb", "after MB"),
                ],
                result["cold_load"],  # type: ignore[arg-type]
                footer=f"Targets: {met}\nidle, peak, after MB: this process's RSS before the "
                "case, at its peak while loading, and once the docs were dropped and released",
            ),
        ]
    )


async def run_persistence(options: PersistenceOptions) -> dict[str, object]:
    result = await _measure(options)
    publish(result, options.out, "persistence", plot_persistence, _tables(result))
    return result
