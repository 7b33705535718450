"""Settings of one server process, filled by the CLI (`draftsync serve --help` explains each)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from crdt.limits import DEFAULT_LIMITS, UpdateLimits
from crdt.schema import DEFAULT_SCHEMA, Schema
from server.store import retention as snapshot_retention
from server.store.reserve import DEFAULT_RESERVE_BYTES
from server.sync import presence
from server.webhooks.settings import WebhookSettings

__all__ = ["ALL_LAYERS", "Durability", "Layers", "Settings"]


class Durability(Enum):
    """When a received update becomes visible to other clients."""

    DURABLE = "durable"  # committed to the store first, then relayed (the default and the promise)
    RELAXED = "relaxed"  # relayed at once, committed right after (a crash may lose the last batch)


@dataclass(frozen=True, slots=True)
class Layers:
    """Per-update layers a room runs besides the CRDT and the store. Both are always on in
    `draftsync serve`; the benchmarks turn one off to measure what it costs."""

    semantic_fields: bool = True
    journal: bool = True


ALL_LAYERS = Layers()


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path
    secret: str
    host: str = "127.0.0.1"
    port: int = 8000
    max_message_bytes: int = 16 * 1024 * 1024
    # A REST create may give a list field at most this many elements (server/api/drafts.py) ...
    max_body_elements: int = 10_000
    # ... and at most this many keys of `fields`.
    max_body_fields: int = 1_000
    durability: Durability = Durability.DURABLE
    schema: Schema = DEFAULT_SCHEMA
    # A snapshot is taken when a draft has this many updates, or bytes, since its last one.
    snapshot_every_updates: int = 1000
    snapshot_every_bytes: int = 4 * 1024 * 1024
    # A draft keeps at most this many snapshots, spread over its history (snapshot_retention).
    snapshots_kept: int = snapshot_retention.KEEP
    # A room with no connections is unloaded after this many seconds.
    room_grace_seconds: float = 5.0
    # Per-connection send queue bounds; a reader that falls further behind is closed with 4408.
    send_queue_messages: int = 65_536  # ~4 s of a 16,000 edits/s flood; the bytes bound caps memory
    send_queue_bytes: int = 32 * 1024 * 1024
    # Awareness of one connection (server/sync/presence.py): client ids it may own, bytes of their
    # states (more: closed with 4400), relays a second (more are coalesced, server/sync/pacing.py).
    awareness_max_states: int = presence.MAX_STATES
    awareness_max_bytes: int = presence.MAX_BYTES
    awareness_rate: int = presence.RATE
    # Updates waiting for the group commit, across all rooms; readers wait when it is full.
    fsync: bool = False  # SQLite synchronous=FULL instead of NORMAL
    commit_queue_updates: int = 20_000
    max_batch_updates: int = 2_000
    layers: Layers = ALL_LAYERS
    # What one run of updates may ask of a doc, checked before it is applied (crdt/limits.py).
    update_limits: UpdateLimits = DEFAULT_LIMITS
    # None: SQLite at `database_path`; a postgresql:// URL: PostgreSQL (server/store/postgres.py).
    store_url: str | None = None
    # A redis:// URL: relay updates, awareness and access changes to other instances.
    redis_url: str | None = None
    # Messages and bytes waiting for Redis at most; the oldest are dropped beyond (while Redis
    # is away): the fan-out's OUTBOX_MESSAGES and OUTBOX_BYTES (server/cluster/fanout.py).
    fanout_outbox_messages: int = 10_000
    fanout_outbox_bytes: int = 64 * 1024 * 1024
    # The app's own JWTs (server/identity/), verified besides draftsync's HS256 tokens: its
    # public key (a PEM file) or its JWKS URL, the issuer and audience they must carry when
    # given, the claim naming the user, and the claim granting draft roles (None: no grants).
    jwt_public_key: Path | None = None
    jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_user_claim: str = "sub"
    jwt_roles_claim: str | None = None
    # The JWKS is fetched again when older than this, and for an unknown key id at most once
    # per cooldown.
    jwks_max_age_seconds: float = 300.0
    jwks_cooldown_seconds: float = 30.0
    # Webhooks (--webhook URL ...; server/webhooks/): None: no events are written or sent.
    webhooks: WebhookSettings | None = None
    # Disk full (server/store/reserve.py): bytes kept allocated in DATA/draftsync.reserve and
    # freed when the disk fills, so that SQLite can checkpoint; writes are refused until there
    # is room for it again. 0: none. SQLite only (PostgreSQL owns its disk).
    disk_reserve_bytes: int = DEFAULT_RESERVE_BYTES
    # Admission (server/admission/, README "Limits and admission"): WebSocket sockets per server
    # and those not yet authenticated; connections (a draft open on a socket) per user and per
    # draft (over any: 1013); drafts a user opens on sockets a second (a token bucket: 1013,
    # server/admission/connects.py); failed sign-ins per client address (1013 / 429); REST
    # requests under way (503) and per user a second (429); drafts a user may own (403).
    max_connections: int = 10_000
    max_unauthenticated: int = 512
    max_connections_per_user: int = 500
    max_connections_per_draft: int = 1_000
    # 100 at once: every draft of a user with many open reconnects after a restart or a network
    # drop, and a page may open many together; 10 a second after: ~1 % of a core per user
    # (a join costs ~1 ms); a stock provider refused backs off (y-websocket from 200 ms to
    # 2.5 s, Hocuspocus from 1 s to 30 s), so it is admitted again within seconds.
    user_connects_per_second: float = 10.0
    user_connect_burst: int = 100
    # Failed sign-ins per client address (server/admission/authfailures.py, a token bucket): a
    # token that does not verify or has expired, or none where one is required, spends one;
    # an address with none left is refused before its token is read (1013 / 429). 60 at once:
    # an office behind one NAT whose tabs all hold an expired token, or a page's first
    # requests before it is signed in, never meet it; 2 a second after: a stock y-websocket
    # provider with a stale token retries forever every 2.5 s at its slowest, so five such
    # tabs behind one address are tolerated, while a loop from one address costs at most
    # ~2 ms of the event loop a second (a failure costs ~0.5-1 ms).
    address_auth_failures_per_second: float = 2.0
    address_auth_failure_burst: int = 60
    max_requests: int = 256
    user_requests_per_second: float = 50.0
    user_request_burst: int = 200
    max_drafts_per_user: int = 10_000
    # Past versions rebuilt at once (versions, diffs, restores: server/admission/rebuilds.py),
    # server-wide (over it: 503) and per user (over it: 429).
    max_rebuilds: int = 8
    max_rebuilds_per_user: int = 4
    # A `/hocuspocus` socket with no document authorised this many seconds after it opened is
    # closed with 4408 (server/sync/hocuspocus.py): its token comes in a message after the
    # WebSocket handshake, so `--handshake-timeout` cannot bound it. 60 s, as Hocuspocus.
    hocuspocus_auth_timeout: float = 60.0
    # The drafts change feed (server/sync/feed.py, README "Dashboard and sharing"): streams a
    # user may hold open (over it: 503), events queued a stream before it is told to resync.
    max_feeds_per_user: int = 8
    feed_queue_events: int = 256
    # Embedded with `authenticate` (server/identity/origin.py): origins (`https://app.example`)
    # whose pages may write or open a WebSocket on the host's session besides the server's
    # own; any other origin, or Sec-Fetch-Site: cross-site, is refused (403 / 4403).
    allowed_origins: tuple[str, ...] = ()

    @property
    def database_path(self) -> Path:
        return self.data_dir / "draftsync.db"
