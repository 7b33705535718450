"""`bench history`: rebuilding a past version of a long draft, as `GET .../versions/{v}` does.

A draft of `updates` single-character inserts (`bench.keystrokes`: real pycrdt keystrokes, with
cursor jumps) is typed through a real Room (`bench.harness`), so its log and its snapshots are
exactly what the server makes: a snapshot requested every `Settings.snapshot_every_updates`
(the default) and taken by the `Snapshotter` in the background. The same draft is built a second
time with snapshots disabled (a `snapshot_every_updates` no draft reaches), for contrast.

With the service still running (a warm store, as a live server has), each version is rebuilt
`runs` times by `server.http.history._rebuilt` itself (flush, last version, `store.load(draft,
at_version=v)`, `crdt.history.rebuild` on a worker thread): `total_ms`, the median, is what the
endpoint pays before it serializes the draft. `load_ms` and `rebuild_ms` split it (the two
steps timed separately, inline, medians of their own runs). Versions: N/2 (issue 6's figure),
the one with the longest tail the kept snapshots leave (a draft keeps at most
`Settings.snapshots_kept`, spread over its history: past that, the gaps widen), N and 1,000.
Every rebuilt doc is checked against the text the first v updates make.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from pycrdt import Doc

from bench.harness import DRAFT_ID, RoomHarness, open_room
from bench.keystrokes import typed_updates
from bench.plots import _pairs
from bench.replay import ReplayMismatch, text_of
from bench.report import Column, format_table, publish
from bench.runtime import environment, median, percentile, progress
from crdt.history import rebuild
from crdt.protocol import Update
from server.argtypes import positive_int
from server.config import Settings
from server.http.history import _rebuilt
from server.http.versions import draft_diff

__all__ = ["HistoryOptions", "add_command", "plot_history", "run_history"]

SEED = 6
NO_SNAPSHOTS = 2**62  # a snapshot interval (updates and bytes) no draft reaches


@dataclass(frozen=True, slots=True)
class Sizes:
    updates: int
    runs: int


FULL = Sizes(20_000, 15)
QUICK = Sizes(20_000, 5)


@dataclass(frozen=True, slots=True)
class HistoryOptions:
    out: Path
    quick: bool
    updates: int | None
    runs: int | None
    progress: bool


def _versions(n: int, kept: list[int]) -> list[int]:
    """N/2 first (the issue's figure), then the version with the longest tail the `kept`
    snapshots leave (the last one before the far end of the widest gap between them), N and
    1,000 for comparison."""
    bounds = [0, *kept, n + 1]
    _, far_end = max(pairwise(bounds), key=lambda gap: gap[1] - gap[0])
    wanted = (n // 2, far_end - 1, n, min(1_000, n))
    return list(dict.fromkeys(v for v in wanted if v > 0))


def _expected(updates: list[bytes], versions: list[int]) -> dict[int, str]:
    """The text right after each version: the first v updates applied to a fresh doc."""
    doc: Doc = Doc()
    texts: dict[int, str] = {}
    wanted = set(versions)
    for v, update in enumerate(updates, start=1):
        doc.apply_update(update)
        if v in wanted:
            texts[v] = text_of(doc)
    return texts


async def _type_draft(harness: RoomHarness, updates: list[bytes], *, show: bool, desc: str) -> None:
    """Send every keystroke through the room; return once all are committed and the
    snapshots they asked for are taken.

    At each snapshot interval the typist waits until the room has committed and snapshotted,
    as a person's typing pace lets it: flooded, the `Snapshotter` coalesces requests made
    while one runs (measured: snapshots at 1,000, 8,000, 14,000, 20,000), and where they
    land would depend on the machine."""
    writer, _ = await harness.connect("typist")
    assert harness.room is not None
    room = harness.room
    every = harness.settings.snapshot_every_updates
    for i, update in enumerate(progress(updates, desc=desc, unit="upd", enabled=show), 1):
        await room.receive(writer, Update(update))
        await asyncio.sleep(0)  # the server's reader awaits the next frame here
        if i % every == 0:
            await harness.committed()
            await harness.service.snapshotter.wait()
    await harness.committed()
    await harness.service.snapshotter.wait()
    if writer.committed != len(updates) or room.version != len(updates):
        raise AssertionError(f"{writer.committed} of {len(updates)} keystrokes were committed")


def _snapshots(database: Path) -> list[int]:
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT version FROM snapshots WHERE draft_id = ? ORDER BY version", (DRAFT_ID,)
        ).fetchall()
    return [int(v) for (v,) in rows]


async def _time_version(
    harness: RoomHarness, version: int, expected: str, runs: int
) -> dict[str, Any]:
    service = harness.service
    store = service.store
    totals, loads, rebuilds = [], [], []
    await _rebuilt(service, DRAFT_ID, version)  # warm-up: first query plans, first pages
    for _ in range(runs):
        started = time.perf_counter()
        doc = await _rebuilt(service, DRAFT_ID, version)
        totals.append(1000 * (time.perf_counter() - started))
        if text_of(doc) != expected:
            raise ReplayMismatch(f"version {version}: the rebuilt text is not the typed one")
    for _ in range(runs):
        started = time.perf_counter()
        state = await store.load(DRAFT_ID, at_version=version)
        loaded = time.perf_counter()
        doc = rebuild(state.snapshot, state.tail)
        rebuilds.append(1000 * (time.perf_counter() - loaded))
        loads.append(1000 * (loaded - started))
        if text_of(doc) != expected:
            raise ReplayMismatch(f"version {version}: the rebuilt text is not the typed one")
    return {
        "version": version,
        "snapshot_version": state.snapshot_version,
        "tail_updates": len(state.tail),
        "snapshot_bytes": len(state.snapshot or b""),
        "load_ms": median(loads),
        "rebuild_ms": median(rebuilds),
        "total_ms": median(totals),
        "runs_total_ms": totals,
        "verified": True,
    }


def _diff_pairs(n: int) -> list[tuple[int, int | None]]:
    """(from, to) pairs the diff endpoint is timed on, to None: the current draft. Fifty
    keystrokes near N/2 (cursor jumps: a middle of thousands of characters, compared by
    words), half the draft, nearly all of it, and the last keystroke (one character; the rest
    is cut as common prefix and suffix)."""
    pairs: list[tuple[int, int | None]] = [
        (max(1, n // 2 - 50), n // 2),
        (n // 2, None),
        (min(1_000, n), n),
        (max(0, n - 1), None),
    ]
    return list(dict.fromkeys(pairs))


async def _time_diff(
    harness: RoomHarness, pair: tuple[int, int | None], runs: int
) -> dict[str, Any]:
    """`GET /api/drafts/{id}/diff` without HTTP: `server.http.versions.draft_diff` itself (two
    rebuilds from their nearest snapshots, the comparison on a worker thread)."""
    service = harness.service
    first, second = pair
    diff = await draft_diff(service, DRAFT_ID, first, second)  # warm-up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        diff = await draft_diff(service, DRAFT_ID, first, second)
        times.append(1000 * (time.perf_counter() - started))
    granularity = ",".join(sorted({c.granularity or "-" for c in diff.changes})) or "-"
    return {
        "from": first,
        "to": diff.to_version,
        "to_current": second is None,
        "granularity": granularity,
        "bounded": diff.bounded,
        "inserted": sum(c.inserted or 0 for c in diff.changes),
        "deleted": sum(c.deleted or 0 for c in diff.changes),
        "p50_ms": median(times),
        "p99_ms": percentile(times, 99),
        "runs_ms": times,
    }


async def _measure(options: HistoryOptions) -> dict[str, Any]:
    sizes = QUICK if options.quick else FULL
    n = options.updates or sizes.updates
    runs = options.runs or sizes.runs
    show = options.progress
    env = environment()  # before: the load average is the one the run started under
    defaults = Settings(data_dir=Path("."), secret="-")
    default_every, kept = defaults.snapshot_every_updates, defaults.snapshots_kept
    updates, final = typed_updates(n, seed=SEED)
    cases: dict[str, dict[str, int]] = {
        f"every {default_every:,}, keep {kept}": {},
        "no snapshots": {
            "snapshot_every_updates": NO_SNAPSHOTS,
            "snapshot_every_bytes": NO_SNAPSHOTS,
        },
    }
    rows: list[dict[str, Any]] = []
    diffs: list[dict[str, Any]] = []
    snapshots: dict[str, list[int]] = {}
    versions: list[int] = []
    expected: dict[int, str] = {}
    with tempfile.TemporaryDirectory(prefix="draftsync-bench-") as tmp:
        for i, (case, overrides) in enumerate(cases.items()):
            directory = Path(tmp) / str(i)
            async with open_room(directory, **overrides) as harness:
                await _type_draft(harness, updates, show=show, desc=f"typing ({case})")
                snapshots[case] = _snapshots(harness.settings.database_path)
                if not versions:  # the first case's snapshots choose them
                    versions = _versions(n, snapshots[case])
                    expected = _expected(updates, versions)
                    if expected[n] != final:
                        raise ReplayMismatch("the keystrokes replayed differ from the typist's")
                for version in progress(versions, desc=f"rebuild ({case})", enabled=show):
                    row = await _time_version(harness, version, expected[version], runs)
                    rows.append({"case": case, "updates": n, **row})
                if i == 0:  # the diff endpoint, on the draft as the server keeps it
                    for pair in progress(_diff_pairs(n), desc="diff", enabled=show):
                        diffs.append({"case": case, **await _time_diff(harness, pair, runs)})
    first_case = [row for row in rows if row["case"] == rows[0]["case"]]
    headline, worst = rows[0], max(first_case, key=lambda row: row["tail_updates"])
    return {
        "bench": "history",
        "quick": options.quick,
        "environment": env,
        "settings": {
            "updates": n,
            "runs": runs,
            "versions": versions,
            "snapshot_every_updates": default_every,
            "snapshots_kept": kept,
            "seed": SEED,
        },
        "snapshots": snapshots,
        "headline": {
            "what": f"rebuild of version {headline['version']:,} of a {n:,}-update draft, "
            f"{headline['case']} (median ms)",
            "version": headline["version"],
            "total_ms": headline["total_ms"],
            "worst_tail_version": worst["version"],
            "worst_tail_total_ms": worst["total_ms"],
            "diff_p50_ms": median([t for d in diffs for t in d["runs_ms"]]),
            "diff_p99_ms": percentile([t for d in diffs for t in d["runs_ms"]], 99),
        },
        "rows": rows,
        "diffs": diffs,
    }


def _diff_table(result: Mapping[str, Any]) -> str:
    headline = result["headline"]
    return format_table(
        "History: the diff endpoint (GET /api/drafts/{id}/diff?from=&to=)",
        [
            Column("from", "from"),
            Column("to", "to"),
            Column("granularity", "compared by"),
            Column("inserted", "+chars"),
            Column("deleted", "-chars"),
            Column("p50_ms", "p50 ms"),
            Column("p99_ms", "p99 ms"),
        ],
        result["diffs"],
        footer=f"server.http.versions.draft_diff, {result['settings']['runs']} runs a pair; "
        f"over all: p50 {headline['diff_p50_ms']:.2f} ms, p99 {headline['diff_p99_ms']:.2f} ms",
    )


def _table(result: Mapping[str, Any]) -> str:
    settings = result["settings"]
    snapshots = result["snapshots"]
    first = next(iter(snapshots.values()))
    shown = ", ".join(f"{v:,}" for v in first[:4]) + (", ..." if len(first) > 4 else "")
    footer = "\n".join(
        [
            f"A {settings['updates']:,}-keystroke draft typed through a real room; "
            f"median of {settings['runs']} runs per row.",
            "total: server.http.history._rebuilt (flush, last version, store.load(at_version), "
            "rebuild on a worker thread);",
            "load / rebuild: the two steps timed separately, inline.",
            f"Snapshots the server kept: {len(first)} ({shown}); "
            f"none in the contrast draft ({len(list(snapshots.values())[-1])}).",
            f"Headline: {result['headline']['what']}: {result['headline']['total_ms']:.2f} ms; "
            f"version {result['headline']['worst_tail_version']:,} (longest tail): "
            f"{result['headline']['worst_tail_total_ms']:.2f} ms",
        ]
    )
    return format_table(
        "History: rebuilding a past version (GET /api/drafts/{id}/versions/{v})",
        [
            Column("case", "case"),
            Column("version", "version"),
            Column("snapshot_version", "snapshot at"),
            Column("tail_updates", "tail"),
            Column("load_ms", "load ms"),
            Column("rebuild_ms", "rebuild ms"),
            Column("total_ms", "total ms"),
            Column("verified", "text ok"),
        ],
        result["rows"],
        footer=footer,
    )


def plot_history(result: Mapping[str, Any], path: Path) -> None:
    rows = result["rows"]
    cases = list(dict.fromkeys(r["case"] for r in rows))
    versions = list(dict.fromkeys(r["version"] for r in rows))
    total = {(r["case"], r["version"]): r["total_ms"] for r in rows}
    fig, ax = plt.subplots(figsize=(9, 1.8 + 0.8 * len(versions)), layout="constrained")
    colors = ("tab:blue", "tab:gray")
    _pairs(
        ax,
        [f"version {v:,}" for v in versions],
        *((c, [total[(c, v)] for v in versions], colors[i % 2]) for i, c in enumerate(cases)),
    )
    ax.set_xscale("log")
    ax.set_title(
        f"Rebuild a past version of a {result['settings']['updates']:,}-update draft "
        f"(median of {result['settings']['runs']})"
    )
    ax.set_xlabel("ms, log scale (lower is better)")
    ax.legend(loc="best")
    fig.savefig(path, dpi=110)
    plt.close(fig)


async def run_history(options: HistoryOptions) -> dict[str, Any]:
    result = await _measure(options)
    publish(
        result, options.out, "history", plot_history, _table(result) + "\n" + _diff_table(result)
    )
    return result


def add_command(
    commands: Any, common: Callable[[argparse.ArgumentParser, str], None]
) -> argparse.ArgumentParser:
    """`bench history` on the CLI's sub-parsers (`common` adds --quick, --out, --no-progress)."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "history",
        help="time to rebuild a past version of a 20,000-update draft, and to diff two",
        description="A 20,000-keystroke draft typed through a real room (snapshots at the "
        "server's default interval), then the time GET /api/drafts/{id}/versions/{v} takes to "
        "rebuild version N/2 (and N, and 1,000): nearest snapshot at or before v plus the log "
        "after it. The same draft without snapshots, for contrast. Every rebuild verified. "
        "Then GET /api/drafts/{id}/diff between pairs of versions (p50, p99).",
    )
    common(parser, f"{QUICK.runs} runs per version instead of {FULL.runs} (about 5 s)")
    parser.add_argument(
        "--updates",
        type=positive_int,
        metavar="N",
        help=f"keystrokes in the draft (default {FULL.updates:,})",
    )
    parser.add_argument(
        "--runs",
        type=positive_int,
        metavar="R",
        help=f"runs per version (default {FULL.runs}; --quick {QUICK.runs})",
    )

    async def command(args: argparse.Namespace) -> None:
        await run_history(
            HistoryOptions(args.out, args.quick, args.updates, args.runs, not args.no_progress)
        )

    parser.set_defaults(command_runner=command)
    return parser
