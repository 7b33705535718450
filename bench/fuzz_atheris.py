"""`bench fuzz --engine atheris`: one coverage-guided libFuzzer run per decoder.

Atheris instruments `crdt` so that libFuzzer keeps the inputs that reach new branches, starting
from the same real corpus as the mutation engine (`bench.fuzz_corpus`). libFuzzer ends the
process itself (it never returns to Python), so this module runs as a child process, one per
decoder, and writes its figures to a JSON file every `FLUSH_EVERY` inputs and on its last one;
an exception other than a ProtocolError is a crash: libFuzzer stops there and saves the input
as `crash-*` under the artifact prefix.

    python -m bench.fuzz_atheris TARGET RUNS SECONDS OUT_DIR
"""

from __future__ import annotations

import contextlib
import json
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import atheris

with atheris.instrument_imports(include=["crdt"]):
    import crdt.awareness
    import crdt.fields
    import crdt.lib0
    import crdt.limits
    import crdt.protocol
    import crdt.updates  # noqa: F401  (instrumented here, before anything else imports them)

from bench.fuzz import seeds_for
from bench.fuzz_corpus import TARGETS
from crdt.errors import ProtocolError

__all__ = ["main"]

FLUSH_EVERY = 20_000


def _timed(target: Any, data: bytes) -> float:
    t0 = time.perf_counter()
    with contextlib.suppress(ProtocolError):
        target(data)
    return time.perf_counter() - t0


def main(argv: list[str]) -> None:
    name, runs, seconds, out = argv[0], int(argv[1]), int(argv[2]), Path(argv[3])
    target = TARGETS[name]
    counts: Counter[str] = Counter()
    state: dict[str, Any] = {"done": 0, "slowest": 0.0, "slowest_bytes": 0}
    started = time.perf_counter()
    figures = out / f"atheris-{name}.json"

    def flush() -> None:
        figures.write_text(
            json.dumps(
                {
                    "target": name,
                    "inputs": state["done"],
                    "seconds": time.perf_counter() - started,
                    "outcomes": dict(counts.most_common()),
                    "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                    "slowest_seconds": state["slowest"],
                    "slowest_bytes": state["slowest_bytes"],
                }
            )
        )

    def one(data: bytes) -> None:
        t0 = time.perf_counter()
        try:
            target(data)
            counts["accepted"] += 1
        except ProtocolError as error:
            counts[type(error).__name__] += 1
        elapsed = time.perf_counter() - t0
        if elapsed > state["slowest"]:
            # timed again, best of three: one slow run is as often the shared machine
            elapsed = min(elapsed, *(_timed(target, data) for _ in range(3)))
            if elapsed > state["slowest"]:
                state["slowest"], state["slowest_bytes"] = elapsed, len(data)
        state["done"] += 1
        if state["done"] % FLUSH_EVERY == 0 or state["done"] >= runs:
            flush()

    seeds = Path(tempfile.mkdtemp(prefix=f"atheris-{name}-"))
    for i, seed in enumerate(seeds_for(name)):
        (seeds / f"seed-{i}").write_bytes(seed)
    flush()
    options = [
        f"-runs={runs}",
        f"-max_total_time={seconds}",
        "-timeout=2",  # seconds for one input: a hang is a crash
        "-rss_limit_mb=3000",
        "-max_len=4096",
        f"-artifact_prefix={out}/{name}-",
        "-print_final_stats=1",
    ]
    atheris.Setup([sys.argv[0], *options, str(seeds)], one)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv[1:])
