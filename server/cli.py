"""The `draftsync` command: `serve` runs the server, `token` prints an access token."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import logging
import math
import os
import re
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import NoReturn

import uvicorn
from starlette.applications import Starlette
from uvicorn.config import TRACE_LOG_LEVEL

from crdt.errors import SchemaError
from crdt.limits import DEFAULT_LIMITS, UpdateLimits
from crdt.schema import DEFAULT_SCHEMA, load_schema
from server.app import create_app
from server.auth import TokenSigner, load_secret
from server.config import Durability, Settings
from server.store import retention as snapshot_retention
from server.store.factory import is_postgres_url
from server.supervisor import EXIT_SOFTWARE
from server.sync import presence

__all__ = ["DEFAULT_TTL", "OneLineParser", "main"]

logger = logging.getLogger("draftsync")

DEFAULT_TTL = 7 * 24 * 3600


class _GracefulServer(uvicorn.Server):
    """uvicorn closes WebSockets with 1012 on SIGTERM before the app hears of it; we first
    commit what was accepted, flush every send queue and close with 1001 (design.md)."""

    def __init__(self, config: uvicorn.Config, app: Starlette) -> None:
        super().__init__(config)
        self._app = app  # config.loaded_app is wrapped in uvicorn's middleware
        self._draining = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit or self._draining:
            self.force_exit = self.force_exit or self._draining
            self.should_exit = True
            return
        self._draining = True
        service = getattr(self._app.state, "service", None)
        loop = asyncio.get_event_loop()

        async def drain() -> None:
            try:
                if service is not None:
                    await service.shutdown()
            finally:
                self.should_exit = True

        loop.call_soon_threadsafe(lambda: loop.create_task(drain()))


# What a log line must never show: a token wherever it travels (a query string, a header, a JWT
# quoted in an error), a webhook secret; each is replaced by [redacted].
_SECRETS = re.compile(
    r"(?P<keep>token=|bearer\s+|(?:authorization|cookie|x-api-key)[\"']?\s*[:=]\s*[\"']?"
    r"(?:(?:bearer|basic|token)\s+)?)"
    r"[^&\s\"',;]+"
    r"|eyJ[\w-]{2,}\.[\w-]{2,}\.[\w-]*"  # a JWT, wherever it is quoted
    r"|whsec_[A-Za-z0-9+/=]+",
    re.IGNORECASE,
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Debug records that carry what clients typed: websockets' frame and header dumps ("< BINARY 00
# 02 ..."), logged through uvicorn's logger, and aiosqlite's, which repeat each query's parameters.
_FRAME_DUMP = ("< ", "> ")
_WEBSOCKETS_DIR = f"{os.sep}websockets{os.sep}"


def _redact(text: str) -> str:
    return _SECRETS.sub(lambda m: f"{m.group('keep') or ''}[redacted]", text)


def _escape(text: str) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _carries_content(record: logging.LogRecord) -> bool:
    if record.levelno > logging.DEBUG:
        return False
    if record.name == "aiosqlite":
        return True
    return (
        _WEBSOCKETS_DIR in record.pathname
        and isinstance(record.msg, str)
        and record.msg.startswith(_FRAME_DUMP)
    )


def _safe_log_line(record: logging.LogRecord) -> bool:
    """A logging filter on every handler, so that no log line, at any level, shows a secret or
    what a client typed: tokens (`token=...`, `Bearer ...`, any JWT) and webhook secrets become
    `[redacted]`, in the message and in a traceback; debug dumps of frames and SQL parameters
    are dropped; and control characters a client put in a value (a user name with a newline, a
    draft id with a NUL) are escaped, so that one log record is one line nobody can forge."""
    if _carries_content(record):
        return False
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = _redact(record.exc_text)
    if record.stack_info:
        record.stack_info = _redact(record.stack_info)
    if record.name == "uvicorn.access" and isinstance(record.args, tuple):
        # uvicorn's access formatter unpacks these five arguments: clean each in place
        record.args = tuple(_redact(_escape(a)) if isinstance(a, str) else a for a in record.args)
        return True
    message = record.getMessage()
    safe = _redact(_escape(message))
    if safe != message:
        record.msg = safe
        record.args = None
    return True


class OneLineParser(argparse.ArgumentParser):
    """A bad argument is one line on stderr and exit status 2, for every command and
    sub-command (argparse's own error prints the whole usage first, which for `serve` is
    a screenful that hides the one line that matters)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a port number, got {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port from 1 to 65535, got {text}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _user_name(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


_LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")  # trace: uvicorn's


def _add_limit_arguments(serve: argparse.ArgumentParser) -> None:
    """Bounded work per update (crdt/limits.py): a run of update frames (one transaction) past
    one of these is refused with 4400 before the doc applies any of it."""
    limits = serve.add_argument_group(
        "update limits",
        "what one update (or run of update frames applied together) may ask of a draft's doc; "
        "past a limit the connection closes with 4400 naming it, before anything is applied",
    )
    limits.add_argument(
        "--max-update-structs",
        type=_positive_int,
        default=DEFAULT_LIMITS.structs,
        metavar="N",
        help="structs (items, GC and skip runs) in one update; 100,000 that each split an "
        "item of the doc take yrs ~0.6 s (%(default)s)",
    )
    limits.add_argument(
        "--max-update-keys",
        type=_positive_int,
        default=DEFAULT_LIMITS.keys,
        metavar="N",
        help="new map keys (of any map, XML attributes included) in one update (%(default)s)",
    )
    limits.add_argument(
        "--max-update-field-writes",
        type=_positive_int,
        default=DEFAULT_LIMITS.field_writes,
        metavar="N",
        help="new keys of the semantic `fields` map, and overwrites of them in the same "
        "update; the rules review each in Python on the event loop, ~50 us a write "
        "(%(default)s)",
    )
    limits.add_argument(
        "--max-insert-elements",
        type=_positive_int,
        default=DEFAULT_LIMITS.elements,
        metavar="N",
        help="array/map values (Any and JSON content, nested values included) in one update "
        "(%(default)s)",
    )
    limits.add_argument(
        "--max-update-deletes",
        type=_positive_int,
        default=DEFAULT_LIMITS.delete_ranges,
        metavar="N",
        help="ranges in one update's delete set; yrs's time grows with the square of the "
        "ranges that split items (1,000,000 took 67 s) (%(default)s)",
    )
    limits.add_argument(
        "--max-update-merge-bytes",
        type=_positive_int,
        default=DEFAULT_LIMITS.merge_bytes,
        metavar="BYTES",
        help="bytes yrs copies to squash chained items (each one continuing the one before, "
        "as typed text or pushed values): a chain of N items of C bytes costs N*C, and about "
        "half that in memory, so this bounds a cost that grows with the square of the chain "
        "(%(default)s)",
    )


def _limits_from(args: argparse.Namespace) -> UpdateLimits:
    return UpdateLimits(
        structs=args.max_update_structs,
        keys=args.max_update_keys,
        field_writes=args.max_update_field_writes,
        elements=args.max_insert_elements,
        delete_ranges=args.max_update_deletes,
        merge_bytes=args.max_update_merge_bytes,
    )


def _build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="draftsync",
        description="Real-time collaboration server for drafts (Yjs / y-websocket compatible).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the server",
        description="Run the sync server: WebSocket at /ws/{draft_id}?token=..., REST under "
        "/api, SQLite at DIR/draftsync.db. SIGTERM commits, flushes and closes with 1001.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    serve.add_argument("--port", type=_port, default=8000, help="port to listen on (%(default)s)")
    serve.add_argument(
        "--data", type=Path, default=Path("data"), help="data directory (%(default)s)"
    )
    serve.add_argument(
        "--max-message-bytes",
        type=_positive_int,
        default=16 * 1024 * 1024,
        help="largest WebSocket message accepted; bigger ones close with 1009 (%(default)s)",
    )
    serve.add_argument(
        "--max-body-elements",
        type=_positive_int,
        default=10_000,
        metavar="N",
        help="most elements one list field may hold: a REST create with a longer list is "
        "refused with 422 before any document work, a WebSocket write that makes one longer "
        "with 4400 before the rules read it (%(default)s)",
    )
    serve.add_argument(
        "--max-body-fields",
        type=_positive_int,
        default=1_000,
        metavar="N",
        help="most keys of `fields` one REST body may set; more is refused with 422 (%(default)s)",
    )
    serve.add_argument(
        "--durability",
        choices=[d.value for d in Durability],
        default=Durability.DURABLE.value,
        help="durable: commit, then relay (default); relaxed: relay, then commit right after "
        "(a crash may lose the last batch that others already saw)",
    )
    serve.add_argument(
        "--schema",
        type=Path,
        metavar="FILE.toml",
        help="draft schema (fields, kinds, rules); default: the campaign draft of design.md",
    )
    serve.add_argument(
        "--snapshot-every",
        type=_positive_int,
        default=1000,
        metavar="N",
        help="fold the update log into a snapshot every N updates of a draft (%(default)s)",
    )
    serve.add_argument(
        "--snapshot-bytes",
        type=_positive_int,
        default=4 * 1024 * 1024,
        metavar="BYTES",
        help="... or every BYTES of updates, whichever comes first (%(default)s)",
    )
    serve.add_argument(
        "--snapshot-keep",
        type=_positive_int,
        default=snapshot_retention.KEEP,
        metavar="N",
        help="keep at most N snapshots a draft, spread evenly over its history, so that they "
        "take at most N times its state; a past version is rebuilt from the nearest one at "
        "or before it plus the log after it (%(default)s)",
    )
    serve.add_argument(
        "--room-grace",
        type=_seconds,
        default=5.0,
        metavar="SECONDS",
        help="unload a draft this long after its last client left (%(default)s)",
    )
    serve.add_argument(
        "--send-queue-messages",
        type=_positive_int,
        default=65_536,
        metavar="N",
        help="messages queued for one client before it is closed as too slow, 4408 (%(default)s)",
    )
    serve.add_argument(
        "--send-queue-bytes",
        type=_positive_int,
        default=32 * 1024 * 1024,
        metavar="BYTES",
        help="bytes queued for one client before it is closed as too slow, 4408 (%(default)s)",
    )
    _add_limit_arguments(serve)
    serve.add_argument(
        "--awareness-max-states",
        type=_positive_int,
        default=presence.MAX_STATES,
        metavar="N",
        help="awareness client ids one connection may introduce (a stock client has one); "
        "a connection sets or removes only its own, and one that would pass N is closed "
        "with 4400 (%(default)s)",
    )
    serve.add_argument(
        "--awareness-max-bytes",
        type=_positive_int,
        default=presence.MAX_BYTES,
        metavar="BYTES",
        help="bytes of awareness state (JSON) one connection may hold, all its ids together; "
        "an update that would pass it closes the connection with 4400 (%(default)s)",
    )
    serve.add_argument(
        "--awareness-rate",
        type=_positive_int,
        default=presence.RATE,
        metavar="N",
        help="awareness relays a second from one connection; what it sends faster is "
        "coalesced, the latest state per client id relayed when the interval ends "
        "(%(default)s)",
    )
    serve.add_argument(
        "--fsync",
        action="store_true",
        help="SQLite synchronous=FULL: commits survive power loss, not only a crash (slower)",
    )
    serve.add_argument(
        "--store",
        default=os.environ.get("DRAFTSYNC_STORE") or None,
        metavar="URL",
        help="postgresql://user@host/db to keep drafts in PostgreSQL (schema created and "
        "migrated at start; needed for several instances); default: SQLite in --data "
        "(env DRAFTSYNC_STORE)",
    )
    serve.add_argument(
        "--redis",
        default=os.environ.get("DRAFTSYNC_REDIS") or None,
        metavar="URL",
        help="redis://host:port: relay updates, awareness and access changes between "
        "instances that share one --store postgresql:// (env DRAFTSYNC_REDIS)",
    )
    serve.add_argument(
        "--log-level",
        type=str.lower,
        choices=_LOG_LEVELS,
        default="info",
        help="logging level (%(default)s); no level logs a token or typed text",
    )

    token = commands.add_parser(
        "token",
        help="print an access token for a user",
        description="Print a signed token (JWT, HS256) for USER. The secret is DRAFTSYNC_SECRET "
        "or DIR/secret (created on first use), so serve and token must share DIR.",
    )
    token.add_argument(
        "user", type=_user_name, metavar="USER", help="the user name the token stands for"
    )
    token.add_argument(
        "--ttl", type=_positive_int, default=DEFAULT_TTL, help="lifetime in seconds (%(default)s)"
    )
    token.add_argument(
        "--data", type=Path, default=Path("data"), help="data directory (%(default)s)"
    )

    serve.set_defaults(command_parser=serve)
    token.set_defaults(command_parser=token)
    # Everything after `bench` is the bench suite's own command line, its --help included.
    bench = commands.add_parser(
        "bench",
        help="run the benchmark suite (see draftsync bench --help)",
        add_help=False,
    )
    bench.add_argument("bench_argv", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def _bench(argv: Sequence[str]) -> int:
    # Imported here: the suite pulls in matplotlib and tqdm (the `draftsync[bench]` extra),
    # which serving never needs.
    try:
        bench_main = importlib.import_module("bench.cli").main  # found at run time
    except ModuleNotFoundError as error:
        if error.name is None or error.name.split(".")[0] in ("bench", "server", "crdt"):
            raise
        return _refuse(f"bench needs {error.name}: pip install 'draftsync[bench]'")
    return int(bench_main(argv))


def _refuse(message: str) -> int:
    """A bad argument found after parsing: one line on stderr, exit status 2 (as argparse)."""
    print(f"draftsync: {message}", file=sys.stderr)
    return 2


def _missing_extra(args: argparse.Namespace) -> str | None:
    """Several instances need the `draftsync[cluster]` extra (asyncpg, redis): say so before
    anything starts instead of an ImportError from deep inside the app."""
    needs = [("--store", args.store, "asyncpg"), ("--redis", args.redis, "redis")]
    for option, value, module in needs:
        if value is not None and importlib.util.find_spec(module) is None:
            return f"{option} needs {module}: pip install 'draftsync[cluster]'"
    return None


def _check_host(host: str, port: int) -> str | None:
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        return f"--host {host!r} is not an address to listen on ({error})"
    return None


def _secret_in(data: Path) -> str | int:
    """The signing secret, or exit status 2 when --data cannot hold it (a file, no rights)."""
    if data.exists() and not data.is_dir():
        return _refuse(f"--data {str(data)!r} is not a directory")
    try:
        return load_secret(data)
    except OSError as error:
        return _refuse(f"--data {str(data)!r}: {error.strerror or error}")


def _serve(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=TRACE_LOG_LEVEL if args.log_level == "trace" else args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    try:
        schema = load_schema(args.schema) if args.schema else DEFAULT_SCHEMA
    except SchemaError as error:
        print(f"draftsync: bad schema: {error}", file=sys.stderr)
        return 2
    if args.store is not None and not is_postgres_url(args.store):
        print(f"draftsync: --store takes a postgresql:// URL, not {args.store!r}", file=sys.stderr)
        return 2
    if args.redis is not None and args.store is None:
        print("draftsync: --redis needs a shared --store postgresql://...", file=sys.stderr)
        return 2
    problem = _missing_extra(args) or _check_host(args.host, args.port)
    if problem is not None:
        return _refuse(problem)
    secret = _secret_in(args.data)
    if isinstance(secret, int):
        return secret
    settings = Settings(
        schema=schema,
        data_dir=args.data,
        secret=secret,
        host=args.host,
        port=args.port,
        max_message_bytes=args.max_message_bytes,
        max_body_elements=args.max_body_elements,
        max_body_fields=args.max_body_fields,
        durability=Durability(args.durability),
        snapshot_every_updates=args.snapshot_every,
        snapshot_every_bytes=args.snapshot_bytes,
        snapshots_kept=args.snapshot_keep,
        room_grace_seconds=args.room_grace,
        send_queue_messages=args.send_queue_messages,
        send_queue_bytes=args.send_queue_bytes,
        awareness_max_states=args.awareness_max_states,
        awareness_max_bytes=args.awareness_max_bytes,
        awareness_rate=args.awareness_rate,
        fsync=args.fsync,
        store_url=args.store,
        redis_url=args.redis,
        update_limits=_limits_from(args),
    )
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        ws="websockets-sansio",
        ws_max_size=args.max_message_bytes,
        ws_per_message_deflate=False,
        log_level=args.log_level.lower(),
        access_log=False,
        lifespan="on",
    )
    # After Config, which configures uvicorn's loggers and handlers: uvicorn logs every
    # WebSocket's path with its query string, and ours carries the token.
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access"):
        for handler in logging.getLogger(name).handlers:
            handler.addFilter(_safe_log_line)
    # aiosqlite logs every query with its parameters (draft content) at debug: never wanted.
    logging.getLogger("aiosqlite").setLevel(max(logging.INFO, logging.getLogger().level))
    server = _GracefulServer(config, app)
    user_token = TokenSigner(secret).issue("demo", ttl_seconds=DEFAULT_TTL, now=time.time())
    print(f"draftsync on http://{args.host}:{args.port}/?token={user_token}", flush=True)
    server.run()
    service = getattr(app.state, "service", None)
    if service is not None and service.supervisor.fatal is not None:
        return EXIT_SOFTWARE  # a component kept crashing: tell the process manager
    return 0


def _token(args: argparse.Namespace) -> int:
    secret = _secret_in(args.data)
    if isinstance(secret, int):
        return secret
    signer = TokenSigner(secret)
    print(signer.issue(args.user, ttl_seconds=args.ttl, now=time.time()))
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    raw = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser()
    args, unknown = parser.parse_known_args(raw)
    if args.command == "bench":
        # argparse would reorder or reject the suite's options: forward them as typed.
        sys.exit(_bench(raw[raw.index("bench") + 1 :]))
    if unknown:  # said by the sub-command's parser, so that the line names `draftsync serve`
        args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    handlers = {"serve": _serve, "token": _token}
    sys.exit(handlers[args.command](args))
