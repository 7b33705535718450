"""The command line of `draftsync bench` (which forwards its argv here) and `python -m bench`.

    draftsync bench persistence [--quick] [--out DIR] [--fsync]
    draftsync bench merge [--quick] [--out DIR] [--traces DIR] [--trace NAME ...] [--limit N]
                          [--snapshot-keep N]
    draftsync bench relay [--quick] [--out DIR] [--servers A,B] [--scenario S ...]
    draftsync bench relay --instances 2 [--quick] [--out DIR]
    draftsync bench durability [--quick] [--out DIR] [--servers A,B] [--kill-after S] [--repeats N]

    draftsync bench layers [--quick] [--out DIR] [--traces DIR] [--txns N] [--runs R]
    draftsync bench history [--quick] [--out DIR] [--updates N] [--runs R]
    draftsync bench fuzz [--quick] [--out DIR] [--inputs N] [--seed S] [--max-seconds S]
                         [--engine mutate|atheris]
    draftsync bench hostile [--quick] [--out DIR] [--round-trips N]

Each command prints a table, writes `DIR/<command>.json` and draws `DIR/<command>.png`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.crash import CRASH_SERVERS, CrashOptions, run_crash
from bench.fuzz import add_command as add_fuzz
from bench.history import add_command as add_history
from bench.hostile import add_command as add_hostile
from bench.layers import add_command as add_layers
from bench.merge import QUICK_LIMIT, TRACE_FILES, MergeOptions, run_merge
from bench.nodeclient import ClientFailed
from bench.persistence import PersistenceOptions, run_persistence
from bench.relay import GROUPS, SCENARIOS, RelayOptions, run_relay
from bench.replay import ReplayMismatch
from bench.runtime import out_dir, run
from bench.servers import SERVERS
from bench.traces import DEFAULT_TRACES_DIR, traces_dir
from server.argtypes import OneLineParser, positive_int, positive_seconds
from server.store.retention import KEEP

__all__ = ["main"]

DEFAULT_OUT = Path("bench-results")


def _server_list(known: tuple[str, ...]) -> object:
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(n.strip() for n in text.split(",") if n.strip())
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"pick from {', '.join(known)}; got {text!r}")
        return names

    return parse


def _common(parser: argparse.ArgumentParser, quick_help: str) -> None:
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument(
        "--out",
        type=out_dir,
        default=DEFAULT_OUT,
        metavar="DIR",
        help="where the JSON and PNG go (%(default)s/)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bars on stderr (CI logs)"
    )


def _build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="draftsync bench",  # `python -m bench` runs the same command line
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
        type=traces_dir,
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
        type=positive_int,
        metavar="N",
        help="replay only the first N txns of sequential traces",
    )
    merge.add_argument(
        "--snapshot-keep",
        type=positive_int,
        default=KEEP,
        metavar="N",
        help="the snapshots each replay's draft keeps, as `draftsync serve --snapshot-keep` "
        "(%(default)s): a large N shows what the snapshots of a long history weigh unthinned",
    )
    relay = commands.add_parser(
        "relay",
        help="draftsync vs pycrdt-websocket vs the Node reference server, real Yjs clients",
        description="Start each server as a real process on loopback (draftsync durable and "
        "relaxed, pycrdt-websocket with SQLiteYStore, @y/websocket-server 0.1.1 in memory) and "
        "drive it with the same Node WebsocketProviders (bench/node/client.mjs); "
        "draftsync-hocuspocus (draftsync's /hocuspocus) and hocuspocus-server (@hocuspocus/server "
        "4.7.0 with its SQLite extension) are driven by HocuspocusProviders instead. Reports "
        "typed->visible latency p50/p95/p99 from Yjs ids, delivered/sent, server CPU seconds and "
        "peak RSS, and draftsync's ratio to each peer. Needs `npm ci` in bench/node.",
    )
    _common(
        relay,
        "S1, S2, a short S4r, capacity at 200 and 400 edits/s and 200 connections, a few "
        "seconds each (under 3 minutes)",
    )
    relay.add_argument(
        "--servers",
        type=_server_list(SERVERS),
        metavar="A,B",
        help=f"comma-separated, from: {', '.join(SERVERS)} (all)",
    )
    relay.add_argument(
        "--scenario",
        action="append",
        default=[],
        choices=[*SCENARIOS, *GROUPS],
        help="run only this scenario (repeatable): %(choices)s; `capacity` and `connections` "
        "run those scenarios' steps (the --quick ones with --quick)",
    )
    relay.add_argument(
        "--instances",
        type=positive_int,
        default=1,
        metavar="N",
        help="N >= 2: instead of comparing servers, run S2 (1 room x 50 clients) against "
        "draftsync (durable) on SQLite, on PostgreSQL + Redis with one instance, and on the same "
        "PostgreSQL + Redis with N instances, the clients dealt round-robin over their ports "
        "(25/25 for N=2); reports each row's latency, delivery, CPU and RSS summed over "
        "instances, and the N-instance/one-instance ratio. Starts its own throwaway PostgreSQL "
        "and redis-server (Debian's packages; make services). Not with --servers or --scenario.",
    )

    crash = commands.add_parser(
        "durability",
        help="kill -9 a server mid-flood, restart it: did every relayed edit survive?",
        description="Two Node writers flood a room (one more client observes); the server gets "
        "SIGKILL mid-stream and is restarted on its data; reports the share of relayed edits "
        "(ones another client had received) found after the restart. Goal: 100 % for draftsync.",
    )
    _common(crash, "one run per server")
    crash.add_argument(
        "--servers",
        type=_server_list(CRASH_SERVERS),
        default=CRASH_SERVERS,
        metavar="A,B",
        help=f"comma-separated, from: {', '.join(CRASH_SERVERS)} (all)",
    )
    crash.add_argument(
        "--kill-after",
        type=positive_seconds,
        default=1.5,
        metavar="SECONDS",
        help="seconds of flooding before the kill (%(default)s)",
    )
    crash.add_argument(
        "--repeats", type=positive_int, default=3, metavar="N", help="runs per server (3)"
    )
    add_layers(commands, _common)
    add_history(commands, _common)
    add_fuzz(commands, _common)
    add_hostile(commands, _common)
    return parser


async def _dispatch(args: argparse.Namespace) -> None:
    if getattr(args, "command_runner", None) is not None:  # layers, history, fuzz: own modules
        await args.command_runner(args)
        return
    progress = not args.no_progress
    if args.command == "persistence":
        await run_persistence(PersistenceOptions(args.out, args.quick, args.fsync, progress))
    elif args.command == "relay":
        scenarios = tuple(dict.fromkeys(args.scenario))
        options = RelayOptions(
            args.out, args.quick, args.servers or SERVERS, scenarios, progress, args.instances
        )
        await run_relay(options)
    elif args.command == "durability":
        repeats = 1 if args.quick else args.repeats
        await run_crash(
            CrashOptions(args.out, args.quick, args.servers, args.kill_after, repeats, progress)
        )
    else:
        options = MergeOptions(
            args.out,
            args.quick,
            args.traces,
            tuple(args.trace),
            args.limit,
            progress,
            snapshots_kept=args.snapshot_keep,
        )
        await run_merge(options)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command == "relay" and args.instances > 1 and (args.servers or args.scenario):
        parser.error("relay --instances runs draftsync on S2 only: drop --servers and --scenario")
    # The server logs every room load and snapshot at INFO; a bench wants only its table.
    logging.basicConfig(level=logging.WARNING)
    try:
        run(_dispatch(args))
    except ReplayMismatch as error:
        print(f"REPLAY MISMATCH: {error}", file=sys.stderr)
        return 1
    except ClientFailed as error:
        print(f"BENCH CLIENT FAILED: {error}", file=sys.stderr)
        return 1
    return 0
