"""The `draftsync` command: `serve` runs the server, `token` prints an access token."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import logging
import os
import socket
import sys
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from starlette.applications import Starlette

from crdt.errors import SchemaError
from crdt.limits import DEFAULT_LIMITS, UpdateLimits
from crdt.schema import DEFAULT_SCHEMA, load_schema
from server import logs
from server.admission.collector import settle_collector
from server.admission.fdlimit import raise_nofile, socket_budget
from server.admission.sockets import SocketGuard, guarded_protocol
from server.app import create_app
from server.argtypes import (
    OneLineParser,
    nonnegative_seconds,
    port,
    positive_float,
    positive_int,
    positive_seconds,
    user_name,
)
from server.auth import TokenSigner, load_secret
from server.config import Durability, Settings
from server.identity.keys import load_public_key
from server.store import private_files
from server.store import retention as snapshot_retention
from server.store.factory import is_postgres_url
from server.store.reserve import DEFAULT_RESERVE_BYTES
from server.supervisor import EXIT_SOFTWARE
from server.sync import memory, presence, tables
from server.sync.wsprotocol import LeanWebSocketProtocol
from server.webhooks.settings import KEEP_SECONDS, WebhookSettings, check_secret

__all__ = ["DEFAULT_TTL", "main"]

logger = logging.getLogger("draftsync")

DEFAULT_TTL = 7 * 24 * 3600


class _GracefulServer(uvicorn.Server):
    """uvicorn closes WebSockets with 1012 on SIGTERM before the app hears of it; we first
    commit what was accepted, flush every send queue and close with 1001 (design.md)."""

    def __init__(self, config: uvicorn.Config, app: Starlette) -> None:
        super().__init__(config)
        self._app = app  # config.loaded_app is wrapped in uvicorn's middleware
        self._draining = False

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # What start made is frozen out of the cyclic GC's way, and full collections are
        # spaced (server/admission/collector.py). `bench relay` N3000, five alternated pairs
        # on a busy machine, freezing alone: the server's CPU for 3,000 connects 1.8-2.5 s
        # with, 2.2-2.7 s without (4 wins, 1 tie).
        settle_collector()

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
        type=positive_int,
        default=DEFAULT_LIMITS.structs,
        metavar="N",
        help="structs (items, GC and skip runs) in one update; 100,000 that each split an "
        "item of the doc take yrs ~0.6 s (%(default)s)",
    )
    limits.add_argument(
        "--max-update-keys",
        type=positive_int,
        default=DEFAULT_LIMITS.keys,
        metavar="N",
        help="new map keys (of any map, XML attributes included) in one update (%(default)s)",
    )
    limits.add_argument(
        "--max-update-field-writes",
        type=positive_int,
        default=DEFAULT_LIMITS.field_writes,
        metavar="N",
        help="new keys of the semantic `fields` map, and overwrites of them in the same "
        "update; the rules review each in Python on the event loop, ~50 us a write "
        "(%(default)s)",
    )
    limits.add_argument(
        "--max-insert-elements",
        type=positive_int,
        default=DEFAULT_LIMITS.elements,
        metavar="N",
        help="array/map values (Any and JSON content, nested values included) in one update "
        "(%(default)s)",
    )
    limits.add_argument(
        "--max-update-deletes",
        type=positive_int,
        default=DEFAULT_LIMITS.delete_ranges,
        metavar="N",
        help="ranges in one update's delete set; yrs's time grows with the square of the "
        "ranges that split items (1,000,000 took 67 s) (%(default)s)",
    )
    limits.add_argument(
        "--max-update-merge-bytes",
        type=positive_int,
        default=DEFAULT_LIMITS.merge_bytes,
        metavar="BYTES",
        help="bytes yrs copies to squash chained items (each one continuing the one before, "
        "as typed text or pushed values): a chain of N items of C bytes costs N*C, and about "
        "half that in memory, so this bounds a cost that grows with the square of the chain "
        "(%(default)s)",
    )
    limits.add_argument(
        "--max-update-clients",
        type=positive_int,
        default=DEFAULT_LIMITS.clients,
        metavar="N",
        help="distinct clients one update names (its struct groups and delete set): yrs's "
        "time grows with the square of clients whose items depend on each other's, and past "
        "~87,000 it overflows the stack and crashes the server (%(default)s)",
    )


def _add_log_arguments(serve: argparse.ArgumentParser) -> None:
    """How the log is written (server/logs.py); every line escapes what clients chose."""
    group = serve.add_argument_group("logs")
    group.add_argument(
        "--log-format",
        choices=logs.LOG_FORMATS,
        default="text",
        help="text: one line a record, a traceback indented under it; json: one JSON object "
        "a line (time, level, logger, message, extra fields, exc_info) for log shippers; "
        "either way control characters are escaped and tokens redacted (%(default)s)",
    )


def _add_disk_arguments(serve: argparse.ArgumentParser) -> None:
    """Disk full (server/store/reserve.py): the reserve that lets SQLite get out of it."""

    def reserve_bytes(text: str) -> int:
        value = int(text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"must be 0 or more bytes, got {text}")
        return value

    disk = serve.add_argument_group(
        "disk full",
        "joins and reads need no write; when a write meets a full disk, the reserve is freed "
        "so that SQLite can checkpoint, and writes are refused (1013, 503) until there is "
        "room for the reserve and as much again, then resume without a restart",
    )
    disk.add_argument(
        "--disk-reserve-bytes",
        type=reserve_bytes,
        default=DEFAULT_RESERVE_BYTES,
        metavar="BYTES",
        help="bytes kept allocated in DATA/draftsync.reserve; 0 disables the reserve and the "
        "refusing (SQLite only: ignored with --store postgresql://) (%(default)s)",
    )


def _limits_from(args: argparse.Namespace) -> UpdateLimits:
    return UpdateLimits(
        structs=args.max_update_structs,
        keys=args.max_update_keys,
        field_writes=args.max_update_field_writes,
        elements=args.max_insert_elements,
        delete_ranges=args.max_update_deletes,
        merge_bytes=args.max_update_merge_bytes,
        clients=args.max_update_clients,
    )


def _add_identity_arguments(serve: argparse.ArgumentParser) -> None:
    """The app's own JWTs (server/identity/), accepted besides draftsync's HS256 tokens."""
    identity = serve.add_argument_group(
        "the app's own tokens (JWT)",
        "verify JWTs your identity provider signs (RS256, ES256 or EdDSA, chosen by the key's "
        "type), besides draftsync's own tokens; wrong issuer, audience, algorithm, key id or "
        "an expired token is refused with 4401 / 401 and the reason",
    )
    source = identity.add_mutually_exclusive_group()
    source.add_argument(
        "--jwt-public-key", type=Path, metavar="FILE.pem", help="the app's public key (PEM)"
    )
    source.add_argument(
        "--jwks-url",
        metavar="URL",
        help="the app's JWKS (https://.../.well-known/jwks.json); tokens name their key by "
        "`kid`, and a new key is fetched when a token first uses it (no restart)",
    )
    identity.add_argument("--jwt-issuer", metavar="ISS", help="the `iss` tokens must carry")
    identity.add_argument(
        "--jwt-audience",
        metavar="AUD",
        help="the `aud` tokens must carry (needed if they carry one)",
    )
    identity.add_argument(
        "--jwt-user-claim",
        default="sub",
        metavar="CLAIM",
        help="the claim that names the user (%(default)s)",
    )
    identity.add_argument(
        "--jwt-roles-claim",
        metavar="CLAIM",
        help='a claim granting draft roles by itself, {"DRAFT_ID": "owner"|"editor"|"viewer"}: '
        "for that token, on top of the stored roles (default: none)",
    )
    identity.add_argument(
        "--jwks-max-age",
        type=positive_seconds,
        default=300.0,
        metavar="SECONDS",
        help="fetch the JWKS again when it is older than this (%(default)s)",
    )
    identity.add_argument(
        "--jwks-cooldown",
        type=positive_seconds,
        default=30.0,
        metavar="SECONDS",
        help="at most one JWKS fetch per SECONDS for key ids it does not hold (%(default)s)",
    )


def _identity_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The Settings fields of `_add_identity_arguments`; ValueError saying what is wrong."""
    has_source = args.jwt_public_key is not None or args.jwks_url is not None
    for flag, given in (
        ("--jwt-issuer", args.jwt_issuer is not None),
        ("--jwt-audience", args.jwt_audience is not None),
        ("--jwt-roles-claim", args.jwt_roles_claim is not None),
        ("--jwt-user-claim", args.jwt_user_claim != "sub"),
    ):
        if given and not has_source:
            raise ValueError(f"{flag} needs --jwt-public-key or --jwks-url")
    if args.jwt_public_key is not None:
        load_public_key(args.jwt_public_key)  # a bad file stops here, not at the first token
    if args.jwks_url is not None and not args.jwks_url.startswith(("https://", "http://")):
        raise ValueError(f"--jwks-url takes an http(s):// URL, not {args.jwks_url!r}")
    if not args.jwt_user_claim or args.jwt_roles_claim == "":
        raise ValueError("--jwt-user-claim and --jwt-roles-claim take a claim name")
    return {
        "jwt_public_key": args.jwt_public_key,
        "jwks_url": args.jwks_url,
        "jwt_issuer": args.jwt_issuer,
        "jwt_audience": args.jwt_audience,
        "jwt_user_claim": args.jwt_user_claim,
        "jwt_roles_claim": args.jwt_roles_claim,
        "jwks_max_age_seconds": args.jwks_max_age,
        "jwks_cooldown_seconds": args.jwks_cooldown,
    }


def _add_webhook_arguments(serve: argparse.ArgumentParser) -> None:
    """Webhooks (server/webhooks/, README "Webhooks"): events written to the store's outbox
    in the transaction of what they describe, delivered signed by a background task."""
    hooks = serve.add_argument_group(
        "webhooks",
        "POST signed events (Standard Webhooks) to the app: draft.created, draft.changed, "
        "conflict.opened, conflict.resolved, access.changed, draft.deleted; at least once, "
        "retried with exponential backoff",
    )
    hooks.add_argument(
        "--webhook",
        action="append",
        default=[],
        type=_webhook_url,
        metavar="URL",
        help="an http(s) URL that receives every event (repeat for several)",
    )
    hooks.add_argument(
        "--webhook-secret",
        default=os.environ.get("DRAFTSYNC_WEBHOOK_SECRET") or None,
        metavar="whsec_BASE64",
        help="the signing secret, whsec_ + base64 of 16+ random bytes; prefer the environment "
        "(env DRAFTSYNC_WEBHOOK_SECRET), a command line is visible to every local user",
    )
    hooks.add_argument(
        "--webhook-debounce",
        type=positive_seconds,
        default=2.0,
        metavar="SECONDS",
        help="draft.changed is sent once a draft has had no new version for this long, "
        "at most 60 s after its first unannounced one (%(default)s)",
    )
    hooks.add_argument(
        "--webhook-include-text",
        action="store_true",
        help="put the text fields' content in draft.changed (default: semantic values only)",
    )
    hooks.add_argument(
        "--webhook-max-attempts",
        type=positive_int,
        default=12,
        metavar="N",
        help="attempts before a delivery is marked failed (%(default)s)",
    )
    hooks.add_argument(
        "--webhook-retry-base",
        type=positive_seconds,
        default=2.0,
        metavar="SECONDS",
        help="delay after the first failed attempt, doubled after each, with jitter (%(default)s)",
    )
    hooks.add_argument(
        "--webhook-retry-max",
        type=positive_seconds,
        default=3600.0,
        metavar="SECONDS",
        help="longest delay between attempts (%(default)s)",
    )
    hooks.add_argument(
        "--webhook-timeout",
        type=positive_seconds,
        default=10.0,
        metavar="SECONDS",
        help="one attempt, connecting included; slower is a failed attempt (%(default)s)",
    )
    hooks.add_argument(
        "--webhook-keep-seconds",
        type=positive_seconds,
        default=KEEP_SECONDS,
        metavar="SECONDS",
        help="a delivered or failed delivery and its attempts are removed from the store this "
        "long after its last attempt; pending ones are kept (%(default)s: 7 days)",
    )


def _webhook_url(text: str) -> str:
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"must be an http:// or https:// URL, got {text!r}")
    return text


def _webhooks_from(args: argparse.Namespace) -> WebhookSettings | None:
    """The webhook settings, or None without --webhook; ValueError for a missing or bad secret."""
    if not args.webhook:
        return None
    if args.webhook_secret is None:
        raise ValueError("--webhook needs --webhook-secret or DRAFTSYNC_WEBHOOK_SECRET")
    return WebhookSettings(
        urls=tuple(dict.fromkeys(args.webhook)),
        secret=check_secret(args.webhook_secret),
        debounce_seconds=args.webhook_debounce,
        include_text=args.webhook_include_text,
        max_attempts=args.webhook_max_attempts,
        retry_base_seconds=args.webhook_retry_base,
        retry_max_seconds=args.webhook_retry_max,
        timeout_seconds=args.webhook_timeout,
        keep_seconds=args.webhook_keep_seconds,
    )


_DEFAULT = Settings(data_dir=Path("data"), secret="")  # admission defaults live in Settings


def _add_feed_arguments(serve: argparse.ArgumentParser) -> None:
    """The drafts change feed, `GET /api/drafts/feed` (server/sync/feed.py)."""
    group = serve.add_argument_group("drafts feed", "the dashboard's live change feed")
    group.add_argument(
        "--max-feeds-per-user",
        type=positive_int,
        default=_DEFAULT.max_feeds_per_user,
        metavar="N",
        help="feed streams one user may hold open; a new one over it is 503 (%(default)s)",
    )
    group.add_argument(
        "--feed-queue-events",
        type=positive_int,
        default=_DEFAULT.feed_queue_events,
        metavar="N",
        help="events queued for one feed reader before they are dropped for one `resync` "
        "(%(default)s)",
    )


def _add_admission_arguments(serve: argparse.ArgumentParser) -> None:
    """Timeouts before trust, caps and quotas (server/admission/, README "Limits and
    admission"): over a cap a new WebSocket is closed with 1013, REST answers 503 or 429 with
    Retry-After; what is already open is never disturbed."""
    group = serve.add_argument_group(
        "limits and admission",
        "sockets before trust, caps per server, user and draft, per-user quotas",
    )
    group.add_argument(
        "--handshake-timeout",
        type=positive_seconds,
        default=5.0,
        metavar="SECONDS",
        help="a socket must send a request's complete headers (a WebSocket: its upgrade) "
        "within this many seconds of connecting, else it is closed (%(default)s)",
    )
    group.add_argument(
        "--hocuspocus-auth-timeout",
        type=positive_seconds,
        default=_DEFAULT.hocuspocus_auth_timeout,
        metavar="SECONDS",
        help="a /hocuspocus socket must have a document authorised (its token comes after the "
        "upgrade) within this many seconds of opening, else it is closed with 4408; it counts "
        "as unauthenticated until then (%(default)s)",
    )
    group.add_argument(
        "--keep-alive-timeout",
        type=positive_seconds,
        default=5.0,
        metavar="SECONDS",
        help="an HTTP connection idle this long between requests is closed (%(default)s)",
    )
    group.add_argument(
        "--max-header-bytes",
        type=positive_int,
        default=16 * 1024,
        metavar="BYTES",
        help="request line and headers; more is answered 431 and closed (%(default)s)",
    )
    group.add_argument(
        "--reserved-fds",
        type=positive_int,
        default=128,
        metavar="N",
        help="file descriptors kept free below the file limit (raised to its hard limit at "
        "start) for the store, logs and /healthz; sockets use the rest (%(default)s)",
    )
    group.add_argument(
        "--max-connections",
        type=positive_int,
        default=_DEFAULT.max_connections,
        metavar="N",
        help="WebSockets open at once, both endpoints (at most 3/4 of the sockets the file "
        "limit allows); more: 1013 (%(default)s)",
    )
    group.add_argument(
        "--max-unauthenticated",
        type=positive_int,
        default=_DEFAULT.max_unauthenticated,
        metavar="N",
        help="WebSockets open whose token is not accepted yet (at most 1/8 of the sockets the "
        "file limit allows); more: 1013 (%(default)s)",
    )
    group.add_argument(
        "--max-connections-per-user",
        type=positive_int,
        default=_DEFAULT.max_connections_per_user,
        metavar="N",
        help="drafts open at once by one user, over all sockets; more: 1013 (%(default)s)",
    )
    group.add_argument(
        "--max-connections-per-draft",
        type=positive_int,
        default=_DEFAULT.max_connections_per_draft,
        metavar="N",
        help="connections open at once to one draft; more: 1013 (%(default)s)",
    )
    group.add_argument(
        "--user-connects-per-second",
        type=positive_float,
        default=_DEFAULT.user_connects_per_second,
        metavar="RATE",
        help="drafts one user may open a second on average, over all sockets (a y-websocket "
        'connection, a Hocuspocus document); more: 1013 "opening drafts too fast, retry in '
        'N s" (%(default)s)',
    )
    group.add_argument(
        "--user-connect-burst",
        type=positive_int,
        default=_DEFAULT.user_connect_burst,
        metavar="N",
        help="... and at once after a quiet spell (the token bucket's size) (%(default)s)",
    )
    group.add_argument(
        "--address-auth-failures-per-second",
        type=positive_float,
        default=_DEFAULT.address_auth_failures_per_second,
        metavar="RATE",
        help="failed sign-ins (a token that does not verify or has expired, or none where one "
        "is required) one client address may make a second on average, over both WebSocket "
        "endpoints and REST; more: every sign-in from it, good tokens too, is refused with 1013 "
        '"too many failed sign-ins from this address, retry in N s" (REST: 429 with '
        "Retry-After) until one is back. The address is the TCP peer's, or the one a proxy "
        "at an address in $FORWARDED_ALLOW_IPS (default 127.0.0.1,::1) puts in "
        "X-Forwarded-For: set it to your proxy's address, or every client shares the proxy's "
        "(%(default)s)",
    )
    group.add_argument(
        "--address-auth-failure-burst",
        type=positive_int,
        default=_DEFAULT.address_auth_failure_burst,
        metavar="N",
        help="... and at once after a quiet spell (the token bucket's size) (%(default)s)",
    )
    group.add_argument(
        "--max-requests",
        type=positive_int,
        default=_DEFAULT.max_requests,
        metavar="N",
        help="REST requests under way at once (at most 1/8 of the sockets the file limit "
        "allows); more: 503 with Retry-After (%(default)s)",
    )
    group.add_argument(
        "--user-requests-per-second",
        type=positive_float,
        default=_DEFAULT.user_requests_per_second,
        metavar="RATE",
        help="REST requests a second one user may make on average; more: 429 with "
        "Retry-After (%(default)s)",
    )
    group.add_argument(
        "--user-request-burst",
        type=positive_int,
        default=_DEFAULT.user_request_burst,
        metavar="N",
        help="... and at once after a quiet spell (the token bucket's size) (%(default)s)",
    )
    group.add_argument(
        "--max-drafts-per-user",
        type=positive_int,
        default=_DEFAULT.max_drafts_per_user,
        metavar="N",
        help="drafts one user may own; creating more (REST or by connecting) is refused, "
        "403 / 4403, until some are deleted (%(default)s)",
    )
    group.add_argument(
        "--max-rebuilds",
        type=positive_int,
        default=_DEFAULT.max_rebuilds,
        metavar="N",
        help="past versions rebuilt at once, server-wide (a version read, a diff, a restore); "
        "more: 503 with Retry-After (%(default)s)",
    )
    group.add_argument(
        "--max-rebuilds-per-user",
        type=positive_int,
        default=_DEFAULT.max_rebuilds_per_user,
        metavar="N",
        help="past versions one user may have rebuilt at once; more: 429 with Retry-After "
        "(%(default)s)",
    )


def _admission_from(args: argparse.Namespace, sockets: int) -> dict[str, int | float]:
    """The admission fields of `Settings`, the socket caps shared out of the socket budget:
    WebSockets at most 3/4 of it, unauthenticated ones and REST requests under way at most 1/8
    each. What no cap can take (at least 1/8) is left to sockets that have not sent a request
    yet, which make room for each other: so `/healthz` always finds a socket."""

    def within(option: str, wanted: int, share: int) -> int:
        allowed = min(wanted, max(1, share))
        if allowed < wanted:
            logger.warning(
                "%s lowered from %d to %d: the file limit allows %d sockets",
                option,
                wanted,
                allowed,
                sockets,
            )
        return allowed

    return {
        "max_connections": within("--max-connections", args.max_connections, sockets * 3 // 4),
        "max_unauthenticated": within(
            "--max-unauthenticated", args.max_unauthenticated, sockets // 8
        ),
        "max_connections_per_user": args.max_connections_per_user,
        "max_connections_per_draft": args.max_connections_per_draft,
        "user_connects_per_second": args.user_connects_per_second,
        "user_connect_burst": args.user_connect_burst,
        "address_auth_failures_per_second": args.address_auth_failures_per_second,
        "address_auth_failure_burst": args.address_auth_failure_burst,
        "max_requests": within("--max-requests", args.max_requests, sockets // 8),
        "user_requests_per_second": args.user_requests_per_second,
        "user_request_burst": args.user_request_burst,
        "max_drafts_per_user": args.max_drafts_per_user,
        "max_rebuilds": args.max_rebuilds,
        "max_rebuilds_per_user": args.max_rebuilds_per_user,
    }


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
    serve.add_argument("--port", type=port, default=8000, help="port to listen on (%(default)s)")
    serve.add_argument(
        "--data", type=Path, default=Path("data"), help="data directory (%(default)s)"
    )
    serve.add_argument(
        "--max-message-bytes",
        type=positive_int,
        default=16 * 1024 * 1024,
        help="largest WebSocket message accepted; bigger ones close with 1009 (%(default)s)",
    )
    serve.add_argument(
        "--max-body-elements",
        type=positive_int,
        default=10_000,
        metavar="N",
        help="most elements one list field may hold: a REST create with a longer list is "
        "refused with 422 before any document work, a WebSocket write that makes one longer "
        "with 4400 before the rules read it (%(default)s)",
    )
    serve.add_argument(
        "--max-body-fields",
        type=positive_int,
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
        type=positive_int,
        default=1000,
        metavar="N",
        help="fold the update log into a snapshot every N updates of a draft (%(default)s)",
    )
    serve.add_argument(
        "--snapshot-bytes",
        type=positive_int,
        default=4 * 1024 * 1024,
        metavar="BYTES",
        help="... or every BYTES of updates, whichever comes first (%(default)s)",
    )
    serve.add_argument(
        "--snapshot-keep",
        type=positive_int,
        default=snapshot_retention.KEEP,
        metavar="N",
        help="keep at most N snapshots a draft, spread evenly over its history, so that they "
        "take at most N times its state; a past version is rebuilt from the nearest one at "
        "or before it plus the log after it (%(default)s)",
    )
    serve.add_argument(
        "--room-grace",
        type=nonnegative_seconds,
        default=5.0,
        metavar="SECONDS",
        help="unload a draft this long after its last client left (%(default)s)",
    )
    serve.add_argument(
        "--send-queue-messages",
        type=positive_int,
        default=65_536,
        metavar="N",
        help="messages queued for one client before it is closed as too slow, 4408 (%(default)s)",
    )
    serve.add_argument(
        "--send-queue-bytes",
        type=positive_int,
        default=32 * 1024 * 1024,
        metavar="BYTES",
        help="bytes queued for one client before it is closed as too slow, 4408 (%(default)s)",
    )
    _add_limit_arguments(serve)
    _add_log_arguments(serve)
    _add_webhook_arguments(serve)
    _add_disk_arguments(serve)
    _add_admission_arguments(serve)
    _add_feed_arguments(serve)
    serve.add_argument(
        "--awareness-max-states",
        type=positive_int,
        default=presence.MAX_STATES,
        metavar="N",
        help="awareness client ids one connection may introduce (a stock client has one); "
        "a connection sets or removes only its own, and one that would pass N is closed "
        "with 4400 (%(default)s)",
    )
    serve.add_argument(
        "--awareness-max-bytes",
        type=positive_int,
        default=presence.MAX_BYTES,
        metavar="BYTES",
        help="bytes of awareness state (JSON) one connection may hold, all its ids together; "
        "an update that would pass it closes the connection with 4400 (%(default)s)",
    )
    serve.add_argument(
        "--awareness-rate",
        type=positive_int,
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
        "--fanout-outbox-messages",
        type=positive_int,
        default=10_000,
        metavar="N",
        help="messages waiting for Redis at most; beyond, while Redis is away, the oldest are "
        "dropped and the other instances catch up from the store (%(default)s)",
    )
    serve.add_argument(
        "--fanout-outbox-bytes",
        type=positive_int,
        default=64 * 1024 * 1024,
        metavar="BYTES",
        help="bytes of messages waiting for Redis at most, as --fanout-outbox-messages "
        "(%(default)s)",
    )
    _add_identity_arguments(serve)
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
        "user", type=user_name, metavar="USER", help="the user name the token stands for"
    )
    token.add_argument(
        "--ttl", type=positive_int, default=DEFAULT_TTL, help="lifetime in seconds (%(default)s)"
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
        private_files.make_private(data)  # umask 077: the database, WAL and SHM are 0600
        return load_secret(data)
    except OSError as error:
        return _refuse(f"--data {str(data)!r}: {error.strerror or error}")


def _no_rust_backtraces() -> None:
    """A hostile update can make yrs panic (issue 21, finding 6; the room answers 4400). With
    RUST_BACKTRACE set, Rust's panic hook first captures and symbolizes a backtrace on the
    thread that panicked, the event loop: 0.3-0.8 s per panic on the finding 6 test, which an
    attacker may repeat at will. The close reason and the log line already name the update.
    Rust reads the variable at the first panic, so setting it here, before serving, holds.

    An operator who set it (to anything but 0, which Rust reads as on) to debug a panic learns
    at start that it was turned off: one INFO line, which does not echo the value (nothing
    from the environment goes into a log line)."""
    if os.environ.get("RUST_BACKTRACE", "0") != "0":
        logger.info("RUST_BACKTRACE turned off: a panic's backtrace would stall the event loop")
    os.environ["RUST_BACKTRACE"] = "0"


def _serve(args: argparse.Namespace) -> int:
    logs.configure(args.log_level, args.log_format)
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
    try:
        identity = _identity_settings(args)
        webhooks = _webhooks_from(args)
    except ValueError as error:
        return _refuse(str(error))
    secret = _secret_in(args.data)
    if isinstance(secret, int):
        return secret
    private_files.warn_if_loose(args.data)
    nofile = raise_nofile()
    sockets = socket_budget(nofile, args.reserved_fds)
    guard = SocketGuard(
        handshake_timeout=args.handshake_timeout,
        max_header_bytes=args.max_header_bytes,
        max_sockets=sockets,
    )
    logger.info("file limit %d: at most %d sockets", nofile, sockets)
    _no_rust_backtraces()  # once the arguments passed: a refusal stays one line on stderr
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
        fanout_outbox_messages=args.fanout_outbox_messages,
        fanout_outbox_bytes=args.fanout_outbox_bytes,
        update_limits=_limits_from(args),
        **identity,
        webhooks=webhooks,
        disk_reserve_bytes=args.disk_reserve_bytes,
        **_admission_from(args, sockets),  # type: ignore[arg-type]
        hocuspocus_auth_timeout=args.hocuspocus_auth_timeout,
        max_feeds_per_user=args.max_feeds_per_user,
        feed_queue_events=args.feed_queue_events,
    )
    memory.configure()  # this process owns the allocator: big blocks go back when freed
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        ws=LeanWebSocketProtocol,  # uvicorn's websockets-sansio, leaner (wsprotocol.py)
        # Timeouts before trust (server/admission/sockets.py): httptools plus a handshake
        # deadline, a header limit and the socket budget. h11's own header limit is set to the
        # same in case anyone swaps the protocol back; uvicorn's limit_concurrency stays off:
        # it counts idle sockets too and would refuse /healthz, without Retry-After; our caps
        # answer instead (server/admission/caps.py, quotas.py).
        http=guarded_protocol(guard),
        timeout_keep_alive=args.keep_alive_timeout,  # type: ignore[arg-type]
        h11_max_incomplete_event_size=args.max_header_bytes,
        limit_concurrency=None,
        ws_max_size=args.max_message_bytes,
        ws_per_message_deflate=False,
        log_level=args.log_level.lower(),
        log_config=None,  # uvicorn's loggers write through ours (server/logs.py)
        access_log=False,
        lifespan="on",
    )
    # uvicorn logs every WebSocket's path with its query string, and ours carries the token:
    # any handler on its loggers gets the filter too (the root's has it already).
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access"):
        for handler in logging.getLogger(name).handlers:
            handler.addFilter(logs.safe_record)
    # aiosqlite logs every query with its parameters (draft content) at debug: never wanted.
    logging.getLogger("aiosqlite").setLevel(max(logging.INFO, logging.getLogger().level))
    server = _GracefulServer(config, app)
    # uvicorn's sets of connections and tasks grow with a burst of connections and never
    # shrink by themselves: a memory release rebuilds them (server/sync/tables.py).
    tables.watch(server.server_state.connections)
    tables.watch(server.server_state.tasks)
    print(_start_line(args, secret, interactive=sys.stdout.isatty()), flush=True)
    server.run()
    service = getattr(app.state, "service", None)
    if service is not None and service.supervisor.fatal is not None:
        return EXIT_SOFTWARE  # a component kept crashing: tell the process manager
    return 0


def _start_line(args: argparse.Namespace, secret: str, *, interactive: bool) -> str:
    """The editor's address. On a terminal (`make serve`), a sign-in link with a demo user's
    token, to open at once; elsewhere (a process manager, a container) stdout ends up in a
    log, and a token must never be written to one: the address and how to get a token."""
    address = f"http://{args.host}:{args.port}/"
    if not interactive:
        return f"draftsync on {address} (a sign-in link: draftsync token USER --data {args.data})"
    token = TokenSigner(secret).issue("demo", ttl_seconds=DEFAULT_TTL, now=time.time())
    return f"draftsync on {address}?token={token}"


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
