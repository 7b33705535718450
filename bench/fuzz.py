"""`bench fuzz`: a long mutation run over the pure decoders (issue 21, point 5).

Each input is a real frame, update or awareness payload (`bench.fuzz_corpus`) with one to four
mutations drawn from a seeded `random.Random`, fed to one decoder in turn (`TARGETS`). The
contract (README, "Connecting") is that bad input raises only `crdt.errors.ProtocolError`
subclasses: anything else is a finding, kept with its input (hex) in the JSON. Figures: inputs,
inputs/s, outcomes by exception type per decoder, max RSS, and the slowest input (time and
size), the cheap sign of a decoder that is not linear. The test suite runs the same targets,
shorter, with hypothesis (`tests/fuzz/`).

Run it under an address-space limit, so that a decoder that allocates without bound fails
with MemoryError (a finding) rather than taking the machine::

    prlimit --as=4000000000 python -m bench fuzz --inputs 1000000 --out bench-results
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import random
import resource
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from bench.fuzz_corpus import (
    TARGETS,
    awareness_payloads,
    frames,
    mutate,
    random_ops,
    update_frame,
    updates,
)
from bench.report import Column, format_table, publish
from bench.runtime import environment, progress
from crdt.errors import ProtocolError
from server.argtypes import positive_int, positive_seconds

__all__ = ["FuzzOptions", "add_command", "plot_fuzz", "run_fuzz"]

FULL_INPUTS = 1_000_000
QUICK_INPUTS = 20_000
MAX_FINDINGS = 50  # inputs kept per run: the first of each kind is what a fix needs
SLOW_KEPT = 20  # the slowest inputs of the run, timed again: the slowest of those is reported
INPUT_TIMEOUT = 2.0  # seconds: an input that takes longer is a finding (a hang, cut off)


class InputTimeout(BaseException):
    """Raised by the SIGALRM handler inside a decoder that runs past INPUT_TIMEOUT."""


def _on_alarm(_signum: int, _frame: object) -> None:
    raise InputTimeout(f"over {INPUT_TIMEOUT} s")


@dataclass(frozen=True, slots=True)
class FuzzOptions:
    out: Path
    quick: bool
    inputs: int | None
    seed: int
    max_seconds: float | None
    progress: bool
    engine: str = "mutate"


def seeds_for(target: str) -> tuple[bytes, ...]:
    """The corpus a decoder starts from: what the server hands it."""
    if target == "decode_message":
        return frames()
    if target == "decode_awareness_update":
        return awareness_payloads() + frames()
    return updates()


def _draw(rng: random.Random, target: str) -> bytes:
    seeds = seeds_for(target)
    data = mutate(rng.choice(seeds), random_ops(rng), seeds)
    if target == "decode_message" and rng.random() < 0.3:
        # a well-framed update with a mutated payload: gets past the framing
        data = update_frame(mutate(rng.choice(updates()), random_ops(rng), updates()))
    return data


def run_inputs(
    inputs: int,
    *,
    seed: int,
    max_seconds: float | None = None,
    show: bool = False,
    targets: dict[str, Callable[[bytes], object]] = TARGETS,
) -> dict[str, Any]:
    """Feed `inputs` mutated inputs round-robin to `targets`; return the figures."""
    rng = random.Random(seed)
    names = list(targets)
    outcomes: dict[str, Counter[str]] = {name: Counter() for name in names}
    findings: list[dict[str, Any]] = []
    candidates: list[tuple[float, int, str, bytes]] = []  # heap of the SLOW_KEPT slowest
    largest = 0
    started = time.perf_counter()
    done = 0
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    try:
        for i in progress(range(inputs), desc="fuzz", unit="in", enabled=show):
            name = names[i % len(names)]
            data = _draw(rng, name)
            largest = max(largest, len(data))
            t0 = time.perf_counter()
            signal.setitimer(signal.ITIMER_REAL, INPUT_TIMEOUT)
            try:
                targets[name](data)
                outcome = "accepted"
            except ProtocolError as error:
                outcome = type(error).__name__
            except BaseException as error:  # the finding: any other exception, PanicException too
                if isinstance(error, KeyboardInterrupt):
                    raise
                outcome = f"FINDING {type(error).__name__}"
                if len(findings) < MAX_FINDINGS:
                    findings.append(
                        {"target": name, "error": repr(error)[:300], "input": data.hex()}
                    )
            elapsed = time.perf_counter() - t0
            outcomes[name][outcome] += 1
            if not outcome.startswith("FINDING"):
                slow = (elapsed, i, name, data)
                if len(candidates) < SLOW_KEPT:
                    heapq.heappush(candidates, slow)
                elif elapsed > candidates[0][0]:
                    heapq.heapreplace(candidates, slow)
            done = i + 1
            if max_seconds is not None and time.perf_counter() - started > max_seconds:
                break
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    seconds = time.perf_counter() - started
    slowest = {"seconds": 0.0, "target": "", "bytes": 0, "input": ""}
    for _, _, name, data in candidates:
        retimed = _retime(targets[name], data)
        if retimed > slowest["seconds"]:
            slowest = {"seconds": retimed, "target": name, "bytes": len(data), "input": data.hex()}
    return {
        "engine": "mutate",
        "seed": seed,
        "inputs": done,
        "seconds": seconds,
        "inputs_per_second": done / seconds if seconds else 0.0,
        "largest_input_bytes": largest,
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "slowest": slowest,
        "outcomes": {name: dict(counts.most_common()) for name, counts in outcomes.items()},
        "findings": findings,
    }


def _retime(target: Callable[[bytes], object], data: bytes) -> float:
    """The best of five runs: one slow run is as often the machine (two shared cores, a GC
    pass) as the input, so each of the run's slowest inputs is timed again."""
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        with contextlib.suppress(ProtocolError):  # counted in the run: only the time matters
            target(data)
        best = min(best, time.perf_counter() - t0)
    return best


def _table(result: dict[str, Any]) -> str:
    rows = []
    for name, counts in result["outcomes"].items():
        total = sum(counts.values())
        bad = sum(n for kind, n in counts.items() if kind.startswith("FINDING"))
        kinds = ", ".join(f"{kind} {n:,}" for kind, n in counts.items())
        rows.append({"decoder": name, "inputs": total, "findings": bad, "outcomes": kinds})
    columns = [
        Column("decoder", "decoder"),
        Column("inputs", "inputs"),
        Column("findings", "findings"),
        Column("outcomes", "outcomes"),
    ]
    slow = result["slowest"]
    return format_table("bench fuzz: outcomes per decoder", columns, rows) + (
        f"\n\n{result['inputs']:,} inputs in {result['seconds']:.1f} s "
        f"({result['inputs_per_second']:,.0f}/s), max RSS {result['max_rss_mib']:.0f} MiB, "
        f"slowest input {slow['seconds'] * 1e3:.2f} ms ({slow['target']}, {slow['bytes']} B), "
        f"{len(result['findings'])} findings kept"
    )


def plot_fuzz(result: dict[str, Any], path: Path) -> None:
    """Outcomes per decoder, stacked: accepted, each ProtocolError class, findings."""
    names = list(result["outcomes"])
    kinds = sorted({kind for counts in result["outcomes"].values() for kind in counts})
    fig, ax = plt.subplots(figsize=(9, 4.5))
    bottom = [0] * len(names)
    for kind in kinds:
        heights = [result["outcomes"][name].get(kind, 0) for name in names]
        ax.barh(names, heights, left=bottom, label=kind)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    ax.set_xlabel("inputs")
    ax.set_title(f"bench fuzz: {result['inputs']:,} mutated inputs, seed {result['seed']}")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_atheris(
    inputs: int, *, out: Path, max_seconds: float | None = None, show: bool = False
) -> dict[str, Any]:
    """`inputs` split over the decoders, one coverage-guided atheris child each
    (`bench.fuzz_atheris`); a child that exits non-zero found a crash and saved its input."""
    out.mkdir(parents=True, exist_ok=True)
    names = list(TARGETS)
    seconds = int(max_seconds / len(names)) if max_seconds else 3_600
    outcomes: dict[str, dict[str, int]] = {}
    findings: list[dict[str, Any]] = []
    figures: list[dict[str, Any]] = []
    for name in progress(names, desc="atheris", unit="decoder", enabled=show):
        command = [sys.executable, "-m", "bench.fuzz_atheris", name]
        command += [str(inputs // len(names)), str(seconds), str(out)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        figure = json.loads((out / f"atheris-{name}.json").read_text())
        figures.append(figure)
        outcomes[name] = figure["outcomes"]
        if done.returncode != 0:
            crashes = sorted(out.glob(f"{name}-*"))
            findings.append(
                {
                    "target": name,
                    "error": done.stderr[-1500:],
                    "input": crashes[-1].read_bytes().hex() if crashes else "",
                }
            )
            outcomes[name]["FINDING (libFuzzer crash)"] = 1
    total = sum(f["inputs"] for f in figures)
    spent = sum(f["seconds"] for f in figures)
    slow = max(figures, key=lambda f: f["slowest_seconds"])
    return {
        "engine": "atheris",
        "inputs": total,
        "seconds": spent,
        "inputs_per_second": total / spent if spent else 0.0,
        "largest_input_bytes": 4096,
        "max_rss_mib": max(f["max_rss_mib"] for f in figures),
        "slowest": {
            "seconds": slow["slowest_seconds"],
            "target": slow["target"],
            "bytes": slow["slowest_bytes"],
            "input": "",
        },
        "outcomes": outcomes,
        "findings": findings,
        "seed": "libFuzzer's",
    }


async def run_fuzz(options: FuzzOptions) -> dict[str, Any]:
    inputs = options.inputs or (QUICK_INPUTS if options.quick else FULL_INPUTS)
    if options.engine == "atheris":
        result = run_atheris(
            inputs, out=options.out, max_seconds=options.max_seconds, show=options.progress
        )
    else:
        result = run_inputs(
            inputs, seed=options.seed, max_seconds=options.max_seconds, show=options.progress
        )
    result["environment"] = environment()
    options.out.mkdir(parents=True, exist_ok=True)
    publish(result, options.out, "fuzz", plot_fuzz, _table(result))
    return result


def add_command(
    commands: Any, common: Callable[[argparse.ArgumentParser, str], None]
) -> argparse.ArgumentParser:
    """`bench fuzz` on the CLI's sub-parsers (`common` adds --quick, --out, --no-progress)."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "fuzz",
        help="mutated real frames and updates through the pure decoders",
        description="Real y-protocols frames, Yjs updates and awareness payloads, mutated (bit "
        "flips, inserts, deletes, truncation, splices, varUint blow-ups) from a fixed seed, fed "
        "round-robin to decode_message, decode_awareness_update, decode_update, "
        "first_client_id, check_nesting, FieldIndex and count_update (the pre-scan). Any "
        "exception other than a ProtocolError is a finding, kept with its input. Run under an "
        "address-space limit: prlimit --as=4000000000 python -m bench fuzz.",
    )
    common(parser, f"{QUICK_INPUTS:,} inputs instead of {FULL_INPUTS:,} (a few seconds)")
    parser.add_argument(
        "--inputs", type=positive_int, metavar="N", help=f"inputs (default {FULL_INPUTS:,})"
    )
    parser.add_argument("--seed", type=int, default=0, help="the run's seed (%(default)s)")
    parser.add_argument(
        "--engine",
        choices=("mutate", "atheris"),
        default="mutate",
        help="mutate: seeded mutations, reproducible (default); atheris: coverage-guided "
        "libFuzzer, one child process per decoder (pip install atheris)",
    )
    parser.add_argument(
        "--max-seconds",
        type=positive_seconds,
        metavar="S",
        help="stop after S seconds even if fewer inputs were run",
    )

    async def command(args: argparse.Namespace) -> None:
        options = FuzzOptions(
            args.out,
            args.quick,
            args.inputs,
            args.seed,
            args.max_seconds,
            not args.no_progress,
            args.engine,
        )
        result = await run_fuzz(options)
        if result["findings"]:
            raise SystemExit(1)

    parser.set_defaults(command_runner=command)
    return parser
