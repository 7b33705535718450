"""Prometheus metrics (prometheus_client, the default registry), served at `/metrics`.

Labels never carry draft ids or user names: metrics are unauthenticated.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = [
    "ADMISSION_REFUSED",
    "COMMITS",
    "COMMIT_FAILURES",
    "COMMIT_LOCK_WAITS",
    "COMMIT_QUEUE",
    "COMPONENT_CRASHES",
    "CONNECTIONS",
    "CONNECTIONS_CLOSED",
    "DISK_FULL",
    "FANOUT_DROPPED",
    "FANOUT_GAPS",
    "FANOUT_HELD",
    "FANOUT_OUTBOX",
    "FANOUT_OUTBOX_BYTES",
    "FANOUT_OUTBOX_PEAK",
    "FANOUT_OUTBOX_PEAK_BYTES",
    "FANOUT_REPLAYED",
    "FANOUT_UNCONFIRMED",
    "FANOUT_UNSIGNED",
    "HELD_BACK_SHEDS",
    "HTTP_REQUESTS",
    "JOURNAL_LAG",
    "LIVE_ACCESS_CHANGES",
    "REQUESTS_IN_FLIGHT",
    "ROOMS_DISCARDED",
    "ROOMS_LOADED",
    "SOCKETS_CLOSED_EARLY",
    "SOCKETS_WAITING",
    "TALLY",
    "UPDATES_DROPPED",
    "WEBHOOK_ATTEMPTS",
    "WEBHOOK_DELIVERIES_FORGOTTEN",
    "WEBHOOK_RETENTION_PASSES",
    "WEBSOCKETS",
    "WEBSOCKETS_UNAUTHENTICATED",
    "CommitTally",
    "Tally",
]

CONNECTIONS = Gauge("draftsync_connections", "Open WebSocket connections")
CONNECTIONS_CLOSED = Counter(
    "draftsync_connections_closed", "Closed WebSocket connections by close code", ["code"]
)
ROOMS_LOADED = Gauge("draftsync_rooms_loaded", "Drafts loaded in memory")
ROOMS_DISCARDED = Counter(
    "draftsync_rooms_discarded",
    "Rooms whose doc was dropped and reloaded from the store (a refused update, a server error)",
)
HELD_BACK_SHEDS = Counter(
    "draftsync_held_back_sheds",
    "Docs copied without what yrs held back for clocks they lack (crdt/heldback.py): a writer "
    "sending deletes or items of clocks no one wrote",
)
COMPONENT_CRASHES = Counter(
    "draftsync_component_crashes",
    "Unexpected errors of a supervised long-lived task (server/supervisor.py), by component",
    ["component"],
)
COMMIT_FAILURES = Counter("draftsync_commit_failures", "Group commits the store refused")
COMMIT_LOCK_WAITS = Counter(
    "draftsync_commit_lock_waits",
    "Writes that found SQLite's write lock held by another connection and waited on a thread",
)
COMMIT_QUEUE = Gauge("draftsync_commit_queue", "Accepted updates waiting for the group commit")
UPDATES_DROPPED = Counter(
    "draftsync_updates_dropped",
    "Queued updates dropped before their commit because their room had failed",
)
# The fan-out's outbox (server/cluster/fanout.py): messages waiting for Redis, bounded; the
# oldest are dropped when it is full (Redis away), the other instances catch up from the store.
FANOUT_OUTBOX = Gauge("draftsync_fanout_outbox", "Fan-out messages waiting to be published")
FANOUT_OUTBOX_BYTES = Gauge(
    "draftsync_fanout_outbox_bytes", "Bytes of fan-out messages waiting to be published"
)
FANOUT_OUTBOX_PEAK = Gauge(
    "draftsync_fanout_outbox_peak", "The most fan-out messages ever waiting at once"
)
FANOUT_OUTBOX_PEAK_BYTES = Gauge(
    "draftsync_fanout_outbox_peak_bytes", "The most bytes of fan-out messages ever waiting at once"
)
FANOUT_DROPPED = Counter(
    "draftsync_fanout_dropped",
    "Fan-out messages dropped unpublished, the outbox full (update, events, awareness, access)",
    ["kind"],
)
# What this instance heard from the others (server/cluster/fanout.py `_Tracker`): versions
# past a gap are held until the gap is filled; a version the store turned out not to have is
# dropped (a corrupted or forged message), and its room's gap closes.
FANOUT_GAPS = Gauge(
    "draftsync_fanout_gaps", "Loaded drafts missing versions the fan-out or this instance named"
)
FANOUT_HELD = Gauge(
    "draftsync_fanout_held", "Other instances' updates held past a gap, waiting for the versions"
)
FANOUT_UNCONFIRMED = Counter(
    "draftsync_fanout_unconfirmed",
    "Fan-out versions dropped because the store did not have them when it was read",
)
FANOUT_REPLAYED = Counter(
    "draftsync_fanout_replayed",
    "Signed fan-out messages dropped as not new: a copy of one heard (published again after "
    "a lost reply, or replayed), or sent outside the window (server/cluster/replay.py)",
)
FANOUT_UNSIGNED = Counter(
    "draftsync_fanout_unsigned",
    "Fan-out messages dropped unread: no valid signature (forged, or another secret)",
)
DISK_FULL = Gauge(
    "draftsync_disk_full",
    "1 while writes are refused because the disk filled and its reserve was freed",
)
JOURNAL_LAG = Gauge(
    "draftsync_journal_lag",
    "Updates whose text changes wait in open bursts, not yet in the journal",
)
LIVE_ACCESS_CHANGES = Counter(
    "draftsync_live_access_changes",
    "Live connections changed by a role change or deletion (revoked, read_only, writable)",
    ["change"],
)
# `route` is the route's template (/api/drafts/{draft_id}), never the path with an id in it.
HTTP_REQUESTS = Counter(
    "draftsync_http_requests", "REST requests answered", ["method", "route", "status"]
)
# Webhook delivery attempts by outcome: delivered, error (retried or failed after it).
WEBHOOK_ATTEMPTS = Counter(
    "draftsync_webhook_attempts", "Webhook delivery attempts (delivered, error)", ["outcome"]
)
# Webhook retention (server/webhooks/retention.py): its passes, and finished deliveries removed.
WEBHOOK_RETENTION_PASSES = Counter(
    "draftsync_webhook_retention_passes", "Passes of the webhook outbox's retention"
)
WEBHOOK_DELIVERIES_FORGOTTEN = Counter(
    "draftsync_webhook_deliveries_forgotten",
    "Finished webhook deliveries removed after --webhook-keep-seconds",
)

# Admission (server/admission/): sockets before trust, caps and quotas.
SOCKETS_WAITING = Gauge(
    "draftsync_sockets_waiting",
    "TCP sockets with no request under way (connecting, part-way through headers, kept alive)",
)
SOCKETS_CLOSED_EARLY = Counter(
    "draftsync_sockets_closed_early",
    "Sockets closed before a request: timeout (handshake), evicted or refused (socket budget), "
    "headers_too_large",
    ["reason"],
)
WEBSOCKETS = Gauge("draftsync_websockets", "Open WebSocket sockets (both endpoints)")
WEBSOCKETS_UNAUTHENTICATED = Gauge(
    "draftsync_websockets_unauthenticated", "Open WebSocket sockets not yet authenticated"
)
REQUESTS_IN_FLIGHT = Gauge("draftsync_requests_in_flight", "REST requests under way")
ADMISSION_REFUSED = Counter(
    "draftsync_admission_refused",
    "Connections and requests refused by a cap or quota "
    "(server, unauthenticated, user, draft, requests, rate, connect-rate, auth-failures, "
    "drafts)",
    ["cap"],
)


class Tally:
    """Per-message counts as plain ints: a prometheus_client Counter takes a lock on every
    increment (~0.8 us), paid once per frame per receiver on the relay path. These are read
    only when /metrics is scraped (`_TallyCollector`), on the event loop that writes them."""

    __slots__ = ("bytes_received", "bytes_sent", "updates_received", "updates_relayed")

    def __init__(self) -> None:
        self.updates_received = 0
        self.updates_relayed = 0
        self.bytes_received = 0
        self.bytes_sent = 0


TALLY = Tally()

_TALLIED = (
    ("draftsync_updates_received", "Yjs updates received from clients", "updates_received"),
    ("draftsync_updates_relayed", "Update frames queued to other clients", "updates_relayed"),
    ("draftsync_bytes_received", "Bytes of binary frames received", "bytes_received"),
    ("draftsync_bytes_sent", "Bytes of binary frames sent to clients", "bytes_sent"),
)


class _TallyCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        for name, documentation, attribute in _TALLIED:
            yield CounterMetricFamily(name, documentation, value=getattr(TALLY, attribute))


REGISTRY.register(_TallyCollector())


class CommitTally:
    """The group commit's figures as plain numbers: `draftsync_updates_stored`,
    `draftsync_commit_batch_size` and `draftsync_commit_seconds`, kept once a commit. As
    prometheus_client objects they were three calls a commit, each taking a lock (~2.2 us
    together, `timeit`), paid once per relayed edit on an idle server (a lone keystroke commits
    alone). Kept and read on the event loop (`record` in server/store/commits.py, the scrape's
    `_CommitCollector`), as `Tally` is."""

    BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
    SECONDS_BUCKETS = (
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0
    )  # fmt: skip

    __slots__ = ("batches", "commits", "seconds", "seconds_total", "updates")

    def __init__(self) -> None:
        self.commits = 0
        self.updates = 0  # updates stored: the batch sizes' sum
        self.seconds_total = 0.0
        # Per bucket, not cumulative (the collector adds them up); the last is +Inf.
        self.batches = [0] * (len(self.BATCH_BUCKETS) + 1)
        self.seconds = [0] * (len(self.SECONDS_BUCKETS) + 1)

    def record(self, size: int, seconds: float) -> None:
        """One commit of `size` updates that took `seconds` (a bucket holds values <= its
        bound, as prometheus_client's `Histogram.observe` counts them)."""
        self.commits += 1
        self.updates += size
        self.seconds_total += seconds
        self.batches[bisect_left(self.BATCH_BUCKETS, size)] += 1
        self.seconds[bisect_left(self.SECONDS_BUCKETS, seconds)] += 1


COMMITS = CommitTally()


def _histogram(
    name: str, documentation: str, bounds: tuple[float, ...], counts: list[int], total: float
) -> HistogramMetricFamily:
    cumulative, buckets = 0, []
    for bound, count in zip((*map(str, map(float, bounds)), "+Inf"), counts, strict=True):
        cumulative += count
        buckets.append((bound, cumulative))
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=total)


class _CommitCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        tally = COMMITS
        yield CounterMetricFamily(
            "draftsync_updates_stored", "Updates committed to the store", value=tally.updates
        )
        yield _histogram(
            "draftsync_commit_batch_size",
            "Updates per group commit",
            tally.BATCH_BUCKETS,
            tally.batches,
            tally.updates,
        )
        yield _histogram(
            "draftsync_commit_seconds",
            "Time of one group commit",
            tally.SECONDS_BUCKETS,
            tally.seconds,
            tally.seconds_total,
        )


REGISTRY.register(_CommitCollector())
