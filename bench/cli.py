"""The command line of `python -m bench` and `draftsync bench` (which forwards its argv here).

    python -m bench persistence [--quick] [--out DIR] [--fsync]
    python -m bench merge [--quick] [--out DIR] [--traces DIR] [--trace NAME ...] [--limit N]

Each command prints a table, writes `DIR/<command>.json` and draws `DIR/<command>.png`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.merge import QUICK_LIMIT, TRACE_FILES, MergeOptions, run_merge
from bench.persistence import PersistenceOptions, run_persistence
from bench.replay import ReplayMismatch
from bench.runtime import run
from bench.traces import DEFAULT_TRACES_DIR

__all__ = ["main"]

DEFAULT_OUT = Path("bench-results")


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _common(parser: argparse.ArgumentParser, quick_help: str) -> None:
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        metavar="DIR",
        help="where the JSON and PNG go (%(default)s/)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bars on stderr (CI logs)"
    )


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="draftsync benchmarks: in-process, against the real server classes. "
        "Results: a table on stdout, JSON and PNG in --out.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    persistence = commands.add_parser(
        "persistence",
        help="durable updates/s by commit policy; durability modes end to end; cold load",
        description="Durable updates/s committed into one room from 4 writers (group commit, "
        "one commit per update, relaxed), the same three modes end to end through a real "
        "room (time until another client has an update), and the cold load of a "
        "20,000-update draft with and without a snapshot. Targets: >= 20,000 updates/s "
        "with group commit, <= 5 ms cold load with a snapshot.",
    )
    _common(persistence, "small sizes, one run each (about 10 s)")
    persistence.add_argument(
        "--fsync", action="store_true", help="SQLite synchronous=FULL, as `serve --fsync`"
    )

    merge = commands.add_parser(
        "merge",
        help="editing traces through a bare pycrdt Doc vs through draftsync's room",
        description="Replay real editing traces (josephg/editing-traces, CC BY 4.0): updates/s "
        "applying them to a bare pycrdt Doc (a) and through a real Room until committed (b), "
        "and b/a. Every replay is checked against the trace's final text.",
    )
    _common(
        merge,
        f"the first {QUICK_LIMIT:,} txns of two sequential traces and one concurrent trace",
    )
    merge.add_argument(
        "--traces",
        type=Path,
        default=DEFAULT_TRACES_DIR,
        metavar="DIR",
        help="the traces directory (%(default)s)",
    )
    merge.add_argument(
        "--trace",
        action="append",
        default=[],
        metavar="NAME",
        choices=sorted(f.split("/", 1)[1] for f in TRACE_FILES),
        help="replay only this trace (repeatable): %(choices)s",
    )
    merge.add_argument(
        "--limit",
        type=_positive_int,
        metavar="N",
        help="replay only the first N txns of sequential traces",
    )
    return parser


async def _dispatch(args: argparse.Namespace) -> None:
    progress = not args.no_progress
    if args.command == "persistence":
        await run_persistence(PersistenceOptions(args.out, args.quick, args.fsync, progress))
    else:
        options = MergeOptions(
            args.out, args.quick, args.traces, tuple(args.trace), args.limit, progress
        )
        await run_merge(options)


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    # The server logs every room load and snapshot at INFO; a bench wants only its table.
    logging.basicConfig(level=logging.WARNING)
    try:
        run(_dispatch(args))
    except ReplayMismatch as error:
        print(f"REPLAY MISMATCH: {error}", file=sys.stderr)
        return 1
    return 0
