"""How a bench runs: on the server's event loop, with progress bars, and what it ran on.

The server runs under uvicorn, which picks uvloop when it is installed; the benches do the same
so that per-await costs (every update awaits at least once) match production.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import sqlite3
import statistics
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from tqdm import tqdm

__all__ = [
    "environment",
    "event_loop_name",
    "median",
    "out_dir",
    "percentile",
    "progress",
    "run",
]

T = TypeVar("T")


def _loop_factory() -> tuple[Callable[[], asyncio.AbstractEventLoop] | None, str]:
    try:
        import uvloop
    except ImportError:
        return None, "asyncio"
    return uvloop.new_event_loop, "uvloop"


def event_loop_name() -> str:
    return _loop_factory()[1]


def run(coro: Coroutine[Any, Any, T]) -> T:
    factory, _ = _loop_factory()
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


def progress(
    iterable: Iterable[T] | None = None,
    *,
    desc: str,
    total: int | None = None,
    unit: str = "it",
    enabled: bool = True,
) -> tqdm[T]:
    """A tqdm bar on stderr that goes away when done (the table is what stays)."""
    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=False, disable=not enabled)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), nearest rank: a value that was actually observed."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return float(ordered[rank])


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def environment() -> dict[str, object]:
    """What the figures were measured on: compare results only within one environment."""
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "event_loop": event_loop_name(),
        "pycrdt": _version("pycrdt"),
        "aiosqlite": _version("aiosqlite"),
        "sqlite": sqlite3.sqlite_version,
        # A shared 2-core machine: a high load means figures to compare only within this run.
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def out_dir(text: str) -> Path:
    """argparse type for --out: a directory, made when missing; a file there is refused now
    rather than after the run, when the results would have nowhere to go."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} exists and is not a directory")
    return path
