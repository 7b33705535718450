"""`bench layers`: what the per-update layers (semantic fields, journal) cost in the room pipeline.

Updates/s through a real Room (`bench.harness`, as `bench.tracerun` does it: `Update` messages
from one editor, one observer connection relaying, the clock stops when the last update is
committed) with `Settings.layers` set four ways: all on, semantic fields off, journal off, both
off. Two workloads, both made by one pycrdt producer doc before any clock starts:

    text   the first N txns of the automerge-paper trace, one update per txn
    mix    the same text edits with one write to the `fields` map after every 50 of them
           (`current_step`, `status`, `category` in turn; sequential valid values, so the
           server never has to revert or open a conflict)

Targets: issue 5 (semantic fields) wants all-on within 5 % of semantic-off on text and within
15 % on the mix; issue 6 (journal) wants all-on within 10 % of journal-off on text. A ratio is
all-on updates/s over the other configuration's (1.0: the layer is free; target met when the
ratio is at least 0.95 / 0.85 / 0.90).

The machine is shared and noisy, so each configuration runs `runs` times, alternated (round r
runs the four configurations rotated by r, so none always goes first), and the figures are
medians. Two corroborating figures come with each ratio: the median of the per-round ratios
(paired: same round, same conditions) and the ratio of process CPU time per update (event loop,
SQLite and snapshot threads: less sensitive than wall time to the machine's other load).
Every run checks the room's text and fields against the producer's and that each update was
committed once and nothing else was written.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from pycrdt import Doc, Map, Text, TransactionEvent

from bench.commitstats import commit_totals
from bench.harness import open_room
from bench.plots import _pairs
from bench.replay import TEXT, ReplayMismatch
from bench.report import Column, format_table, publish
from bench.runtime import environment, median, progress
from bench.traces import DEFAULT_TRACES_DIR, LICENCE, SOURCE, credit, load_trace, traces_dir
from crdt.protocol import Update
from server.argtypes import positive_int
from server.config import Layers

__all__ = ["CONFIGS", "LayersOptions", "add_command", "plot_layers", "run_layers"]

TRACE = "sequential/automerge-paper"
MAP_EVERY = 50  # one `fields` write per this many text updates in the mix
FIELDS = "fields"


@dataclass(frozen=True, slots=True)
class Sizes:
    txns: int  # first N txns of the trace
    runs: int  # runs per configuration and workload (medians)


FULL = Sizes(20_000, 9)
QUICK = Sizes(4_000, 3)

CONFIGS: dict[str, Layers] = {
    "all on": Layers(semantic_fields=True, journal=True),
    "semantic off": Layers(semantic_fields=False, journal=True),
    "journal off": Layers(semantic_fields=True, journal=False),
    "both off": Layers(semantic_fields=False, journal=False),
}

# name -> (workload, the configuration all-on is compared with, the lowest acceptable ratio)
TARGETS: dict[str, tuple[str, str, float]] = {
    "semantic_text": ("text", "semantic off", 0.95),
    "semantic_mix": ("mix", "semantic off", 0.85),
    "journal_text": ("text", "journal off", 0.90),
}


@dataclass(frozen=True, slots=True)
class LayersOptions:
    out: Path
    quick: bool
    traces_dir: Path
    txns: int | None
    runs: int | None
    progress: bool


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    updates: list[bytes]
    text: str
    fields: dict[str, Any]
    map_writes: int


def _map_write(fields: Map[Any], i: int) -> None:
    """The i-th `fields` write: valid, sequential moves on three fields of the default schema."""
    which = i % 3
    if which == 0:
        fields["current_step"] = 2 + i // 3  # rule max: only ever grows
    elif which == 1:
        # rule transition, from the initial CREATING: DRAFT, then IN_REVIEW <-> DRAFT
        fields["status"] = "DRAFT" if (i // 3) % 2 == 0 else "IN_REVIEW"
    else:
        fields["category"] = ("education", "health", "environment")[(i // 3) % 3]  # lww


def produce(trace_txns: tuple[Any, ...], *, map_every: int | None) -> tuple[list[bytes], str, dict]:
    """The txns as updates from one producer doc, with a `fields` write after every
    `map_every` text updates (None: text only); the producer's final text and fields."""
    doc: Doc = Doc(client_id=1)
    text = doc.get(TEXT, type=Text)
    fields = doc.get(FIELDS, type=Map)
    updates: list[bytes] = []

    def capture(event: TransactionEvent) -> None:
        updates.append(event.update)

    subscription = doc.observe(capture)
    text_updates = writes = 0
    for txn in trace_txns:
        before = len(updates)
        with doc.transaction():
            for pos, delete_count, insert_text in txn.patches:
                if delete_count:
                    del text[pos : pos + delete_count]
                if insert_text:
                    text.insert(pos, insert_text)
        text_updates += len(updates) - before
        if map_every and len(updates) > before and text_updates % map_every == 0:
            with doc.transaction():
                _map_write(fields, writes)
            writes += 1
    doc.unobserve(subscription)
    return updates, str(text), fields.to_py() or {}


def workloads(traces_dir: Path, txns: int) -> tuple[list[Workload], int]:
    """The text and mix workloads from the first `txns` txns; also the trace's length."""
    trace = load_trace(traces_dir / f"{TRACE}.json.gz")
    if not trace.is_ascii:  # positions are then UTF-8 offsets as well (pycrdt's unit)
        raise ReplayMismatch(f"{trace.name}: the layers bench expects an ASCII trace")
    cut = trace.prefix(txns)
    text_updates, text, _ = produce(cut.txns, map_every=None)
    mix_updates, mix_text, mix_fields = produce(cut.txns, map_every=MAP_EVERY)
    for name, made in (("text", text), ("mix", mix_text)):
        if made != cut.end_content:
            raise ReplayMismatch(f"{trace.name}: the {name} producer ended on a different text")
    made = [
        Workload("text", text_updates, text, {}, 0),
        Workload("mix", mix_updates, mix_text, mix_fields, len(mix_updates) - len(text_updates)),
    ]
    return made, len(trace.txns)


def _room_fields(doc: Doc) -> dict[str, Any]:
    return doc.get(FIELDS, type=Map).to_py() or {}


async def _run_once(
    workload: Workload, layers: Layers, directory: Path, *, limit: int | None = None
) -> dict[str, Any]:
    """One timed run: seconds from the first message to the last commit, and its checks
    (`limit`: only the first updates, unchecked: a warm-up)."""
    async with open_room(directory, layers=layers) as harness:
        sender, _ = await harness.connect("editor")
        await harness.connect("observer")  # every update is relayed to one other client
        assert harness.room is not None
        room = harness.room
        receive = room.receive
        messages = [Update(u) for u in workload.updates[:limit]]
        gc.collect()  # no collection of the previous run's garbage inside this one
        before = commit_totals()
        started = time.perf_counter()
        cpu_started = time.process_time()
        for message in messages:
            await receive(sender, message)
            await asyncio.sleep(0)  # the server's reader awaits the next frame here
        await harness.committed()
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        stats = (commit_totals() - before).as_dict()
        n = len(messages)
        if sender.committed != n:
            raise AssertionError(f"{sender.committed} of {n} updates were committed")
        if limit is not None:
            return {"seconds": elapsed, "cpu_seconds": cpu, **stats}
        if room.version != n:  # the server wrote nothing of its own (no revert, no conflict)
            raise AssertionError(f"the room is at version {room.version} after {n} updates")
        if str(room.doc.get(TEXT, type=Text)) != workload.text:
            raise ReplayMismatch(f"{workload.name}: the room doc ended on a different text")
        if _room_fields(room.doc) != workload.fields:
            raise ReplayMismatch(
                f"{workload.name}: the room's fields {_room_fields(room.doc)} "
                f"differ from the producer's {workload.fields}"
            )
    return {"seconds": elapsed, "cpu_seconds": cpu, **stats}


def _rotated(names: list[str], by: int) -> list[str]:
    k = by % len(names)
    return names[k:] + names[:k]


async def _measure(options: LayersOptions) -> dict[str, Any]:
    sizes = QUICK if options.quick else FULL
    txns = options.txns or sizes.txns
    runs = options.runs or sizes.runs
    env = environment()  # before: the load average is the one the run started under
    loads, trace_txns = workloads(options.traces_dir, txns)
    names = list(CONFIGS)
    timings: dict[tuple[str, str], list[dict[str, Any]]] = {
        (w.name, c): [] for w in loads for c in names
    }
    total = 1 + runs * len(loads) * len(names)
    bar = progress(desc="layers", total=total, unit="run", enabled=options.progress)
    with tempfile.TemporaryDirectory(prefix="draftsync-bench-") as tmp:
        counter = 0

        def directory() -> Path:
            nonlocal counter
            counter += 1
            return Path(tmp) / str(counter)

        # Warm-up (not counted): the first room of a process pays imports and first calls.
        await _run_once(loads[-1], CONFIGS["all on"], directory(), limit=1_000)
        bar.update(1)
        for r in range(runs):
            for workload in loads:
                for name in _rotated(names, r):
                    run = await _run_once(workload, CONFIGS[name], directory())
                    timings[(workload.name, name)].append(run)
                    bar.update(1)
    bar.close()
    rows = [_row(w, name, timings[(w.name, name)]) for w in loads for name in names]
    return {
        "bench": "layers",
        "quick": options.quick,
        "environment": env,
        "settings": {
            "trace": TRACE,
            "txns": txns,
            "txns_in_trace": trace_txns,
            "runs": runs,
            "map_write_every": MAP_EVERY,
            "order": "alternated: round r runs the configurations rotated by r",
            "configs": {name: asdict(layers) for name, layers in CONFIGS.items()},
        },
        "rows": rows,
        "targets": _targets(rows, timings),
        "credits": {"source": SOURCE, "licence": LICENCE, "authors": [credit(TRACE.split("/")[1])]},
    }


def _row(workload: Workload, config: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(workload.updates)
    rates = [n / r["seconds"] for r in runs]
    rate = median(rates)
    return {
        "workload": workload.name,
        "config": config,
        **asdict(CONFIGS[config]),
        "updates": n,
        "map_writes": workload.map_writes,
        "updates_per_s": rate,
        "us_per_update": 1e6 / rate,
        # CPU of the whole process (event loop, SQLite and snapshot threads) per update: less
        # sensitive than wall time to what else the shared machine runs.
        "cpu_us_per_update": median([1e6 * r["cpu_seconds"] / n for r in runs]),
        "runs_updates_per_s": rates,
        "min_updates_per_s": min(rates),
        "max_updates_per_s": max(rates),
        "mean_batch": median([r["mean_batch"] or 0.0 for r in runs]),
        "verified": True,
    }


def _targets(
    rows: list[dict[str, Any]], timings: Mapping[tuple[str, str], list[dict[str, Any]]]
) -> dict[str, Any]:
    rate = {(r["workload"], r["config"]): r["updates_per_s"] for r in rows}
    cpu = {(r["workload"], r["config"]): r["cpu_us_per_update"] for r in rows}
    targets = {}
    for name, (workload, other, limit) in TARGETS.items():
        ratio = rate[(workload, "all on")] / rate[(workload, other)]
        # Paired: all-on against the other configuration of the same round (same conditions).
        paired = median(
            [
                b["seconds"] / a["seconds"]
                for a, b in zip(
                    timings[(workload, "all on")], timings[(workload, other)], strict=True
                )
            ]
        )
        targets[name] = {
            "workload": workload,
            "compared_with": other,
            "target": limit,
            "measured": ratio,
            "paired_median_ratio": paired,
            "cpu_ratio": cpu[(workload, other)] / cpu[(workload, "all on")],
            "met": ratio >= limit,
        }
    return targets


def _table(result: Mapping[str, Any]) -> str:
    settings = result["settings"]
    targets = result["targets"]
    lines = [
        f"{name}: all on / {t['compared_with']} on {t['workload']} = {t['measured']:.3f} "
        f"(paired {t['paired_median_ratio']:.3f}, CPU {t['cpu_ratio']:.3f}), "
        f"target >= {t['target']:.2f} -> "
        f"{'MET' if t['met'] else 'MISSED'}"
        for name, t in targets.items()
    ]
    footer = "\n".join(
        [
            f"{settings['txns']:,} txns of {settings['trace']} (text); mix: the same with one "
            f"`fields` write per {settings['map_write_every']} updates.",
            f"Median of {settings['runs']} runs per cell, configurations alternated; "
            "every run's text and fields verified.",
            "ratio: median upd/s of all on / of the other; paired: median of the per-round "
            "ratios; CPU: process CPU per update, other / all on.",
            *lines,
            f"Trace from {result['credits']['source']}, {result['credits']['licence']}: "
            f"{result['credits']['authors'][0]}",
        ]
    )
    return format_table(
        "Layers: updates/s through the room until committed, by Settings.layers",
        [
            Column("workload", "workload"),
            Column("config", "layers"),
            Column("updates", "updates"),
            Column("map_writes", "map writes"),
            Column("updates_per_s", "upd/s (median)"),
            Column("min_updates_per_s", "min"),
            Column("max_updates_per_s", "max"),
            Column("us_per_update", "us/upd"),
            Column("cpu_us_per_update", "CPU us/upd"),
            Column("mean_batch", "mean batch"),
            Column("verified", "text ok"),
        ],
        result["rows"],
        footer=footer,
    )


def plot_layers(result: Mapping[str, Any], path: Path) -> None:
    rows = result["rows"]
    configs = list(dict.fromkeys(r["config"] for r in rows))
    names = list(dict.fromkeys(r["workload"] for r in rows))
    rate = {(r["workload"], r["config"]): r["updates_per_s"] for r in rows}
    fig, (speed, ratio) = plt.subplots(1, 2, figsize=(13, 4), layout="constrained")
    colors = ("tab:blue", "tab:orange")
    _pairs(
        speed,
        configs,
        *((n, [rate[(n, c)] for c in configs], colors[i % 2]) for i, n in enumerate(names)),
    )
    speed.set_title(f"Updates/s through the room (median of {result['settings']['runs']})")
    speed.set_xlabel("updates/s (higher is better)")
    fig.legend(loc="outside upper center", ncols=len(names))
    targets = result["targets"]
    labels = [f"{t['workload']}: all on / {t['compared_with']}" for t in targets.values()]
    values = [t["measured"] for t in targets.values()]
    bars = ratio.barh(
        labels, values, color=["tab:green" if t["met"] else "tab:red" for t in targets.values()]
    )
    ratio.bar_label(bars, labels=[f"{v:.3f}" for v in values], padding=3)
    for i, t in enumerate(targets.values()):
        ratio.plot([t["target"]] * 2, [i - 0.4, i + 0.4], color="black", linestyle="--")
    ratio.invert_yaxis()
    ratio.set_xlim(min(0.7, *values) - 0.05, max(1.1, *values) + 0.05)
    ratio.set_title("Cost of a layer: all on / layer off (dashed: target)")
    ratio.set_xlabel("ratio of updates/s (1.0: the layer is free)")
    fig.savefig(path, dpi=110)
    plt.close(fig)


async def run_layers(options: LayersOptions) -> dict[str, Any]:
    result = await _measure(options)
    publish(result, options.out, "layers", plot_layers, _table(result))
    return result


def add_command(
    commands: Any, common: Callable[[argparse.ArgumentParser, str], None]
) -> argparse.ArgumentParser:
    """`bench layers` on the CLI's sub-parsers (`common` adds --quick, --out, --no-progress)."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "layers",
        help="updates/s through the room with semantic fields and/or the journal turned off",
        description="Updates/s through a real Room until committed, with Settings.layers all "
        "on, semantic fields off, journal off and both off, on a text trace (automerge-paper) "
        f"and on a mix (the same with one `fields` write per {MAP_EVERY} updates). Targets: "
        "all on within 5 % (text) and 15 % (mix) of semantic off (issue 5), within 10 % of "
        "journal off on text (issue 6). Medians of alternated runs; every run verified.",
    )
    common(
        parser,
        f"the first {QUICK.txns:,} txns, {QUICK.runs} runs per configuration (about 15 s)",
    )
    parser.add_argument(
        "--traces",
        type=traces_dir,
        default=DEFAULT_TRACES_DIR,
        metavar="DIR",
        help="the traces directory (%(default)s)",
    )
    parser.add_argument(
        "--txns",
        type=positive_int,
        metavar="N",
        help=f"the first N txns of the trace (default {FULL.txns:,}; --quick {QUICK.txns:,})",
    )
    parser.add_argument(
        "--runs",
        type=positive_int,
        metavar="R",
        help=f"runs per configuration and workload (default {FULL.runs}; --quick {QUICK.runs})",
    )

    async def command(args: argparse.Namespace) -> None:
        await run_layers(
            LayersOptions(
                args.out, args.quick, args.traces, args.txns, args.runs, not args.no_progress
            )
        )

    parser.set_defaults(command_runner=command)
    return parser
