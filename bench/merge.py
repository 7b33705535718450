"""`bench merge`: real editing traces through a bare pycrdt Doc and through draftsync's room.

Issue "benchmarks": updates/s of each trace applied to a bare Doc (a) and through the room's
pipeline up to the commit (b: frames in runs, as from a flooding client; c: frame by frame),
and the ratios b/a and c/a (`bench.tracerun` says how). Sequential traces
and the two concurrent ones; `--quick` replays the first `QUICK_LIMIT` txns of two sequential
traces and one whole concurrent trace (a concurrent prefix has no reference text to check).

The traces are CC BY 4.0: the JSON and the table footer credit their authors.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.plots import plot_merge
from bench.report import Column, format_table, publish
from bench.runtime import environment, progress
from bench.tracerun import time_trace
from bench.traces import LICENCE, SOURCE, credit, load_trace
from server.store.retention import KEEP

__all__ = ["QUICK_LIMIT", "QUICK_TRACES", "TRACE_FILES", "MergeOptions", "run_merge"]

# Every trace the bench knows, in table order (relative to the traces directory).
TRACE_FILES: tuple[str, ...] = (
    "sequential/automerge-paper",
    "sequential/seph-blog1",
    "sequential/friendsforever_flat",
    "sequential/clownschool_flat",
    "sequential/rustcode",
    "sequential/sveltecomponent",
    "sequential/json-crdt-patch",
    "sequential/json-crdt-blog-post",
    "concurrent/friendsforever",
    "concurrent/clownschool",
)
QUICK_TRACES = ("sequential/automerge-paper", "sequential/seph-blog1", "concurrent/friendsforever")
QUICK_LIMIT = 5_000


@dataclass(frozen=True, slots=True)
class MergeOptions:
    out: Path
    quick: bool
    traces_dir: Path
    only: tuple[str, ...]  # trace names to run (empty: the default set)
    limit: int | None  # first N txns of sequential traces
    progress: bool
    snapshots_kept: int = KEEP  # per replayed draft, as `draftsync serve --snapshot-keep`

    def files(self) -> tuple[str, ...]:
        if self.only:
            known = {f.split("/", 1)[1]: f for f in TRACE_FILES}
            unknown = [name for name in self.only if name not in known]
            if unknown:
                raise SystemExit(f"unknown trace(s) {unknown}; known: {sorted(known)}")
            return tuple(known[name] for name in self.only)
        return QUICK_TRACES if self.quick else TRACE_FILES

    def txn_limit(self) -> int | None:
        return self.limit if self.limit is not None else QUICK_LIMIT if self.quick else None


async def _measure(options: MergeOptions) -> dict[str, object]:
    files = options.files()
    env = environment()  # before: the load average is the one the run started under
    limit = options.txn_limit()
    rows = []
    with tempfile.TemporaryDirectory(prefix="draftsync-bench-") as tmp:
        for i, name in enumerate(
            progress(files, desc="traces", unit="trace", enabled=options.progress)
        ):
            trace = load_trace(options.traces_dir / f"{name}.json.gz")
            full = len(trace.txns)
            if trace.kind == "sequential":
                trace = trace.prefix(limit)
            row = await time_trace(
                trace,
                Path(tmp) / str(i),
                show=options.progress,
                snapshots_kept=options.snapshots_kept,
            )
            rows.append({**row, "txns_in_trace": full})
    names = [str(row["trace"]) for row in rows]
    return {
        "bench": "merge",
        "quick": options.quick,
        "environment": env,
        "settings": {
            "traces_dir": str(options.traces_dir),
            "traces": list(files),
            "sequential_txn_limit": limit,
            "snapshots_kept": options.snapshots_kept,
        },
        "traces": rows,
        "credits": {
            "source": SOURCE,
            "licence": LICENCE,
            "authors": [credit(name) for name in names],
        },
    }


def _table(result: dict[str, object]) -> str:
    credits = result["credits"]
    assert isinstance(credits, dict)
    footer = "\n".join(
        [
            "(a) bare: updates applied one by one to a fresh pycrdt Doc (median of 3)",
            "b/a cpu: the same ratio of this process's CPU seconds (steadier on a busy machine)",
            "b/a' cpu: the CPU ratio to (a'), the updates applied to a bare Doc in the runs (b)"
            " hands the room, one transaction each",
            "(b) room: the updates through a real Room until all are committed to SQLite, as",
            "    the reader hands a flooding client's frames over: runs of up to "
            f"{result['traces'][0]['room_longest_run'] if result['traces'] else '?'} a transaction",
            "(c) frame by frame: the same, each frame alone (a client typing slower than the room)",
            "snaps, snap MB, log MB: what (c) left in the store: the snapshots kept (at most",
            "    --snapshot-keep of them, spread over the history) and the update log",
            f"Traces from {credits['source']}, {credits['licence']}:",
            *(f"  {line}" for line in credits["authors"]),
        ]
    )
    return format_table(
        "Merge: editing traces, bare pycrdt vs draftsync room",
        [
            Column("trace", "trace"),
            Column("kind", "kind"),
            Column("updates", "updates"),
            Column("bare_updates_per_s", "(a) bare upd/s"),
            Column("room_updates_per_s", "(b) room upd/s"),
            Column("ratio_room_to_bare", "b/a"),
            Column("ratio_room_to_bare_cpu", "b/a cpu"),
            Column("ratio_room_to_bare_runs_cpu", "b/a' cpu"),
            Column("room_us_per_update", "room us/upd"),
            Column("room_mean_batch", "mean batch"),
            Column("frame_by_frame_updates_per_s", "(c) frames upd/s"),
            Column("ratio_frame_by_frame_to_bare", "c/a"),
            Column("stored_snapshots", "snaps"),
            Column("stored_snapshot_mb", "snap MB"),
            Column("stored_log_mb", "log MB"),
            Column("verified", "text ok"),
        ],
        result["traces"],  # type: ignore[arg-type]
        footer=footer,
    )


async def run_merge(options: MergeOptions) -> dict[str, object]:
    result = await _measure(options)
    publish(result, options.out, "merge", plot_merge, _table(result))
    return result
