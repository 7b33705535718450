"""Prometheus metrics (prometheus_client, the default registry), served at `/metrics`.

Labels never carry draft ids or user names: metrics are unauthenticated.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "BYTES_RECEIVED",
    "BYTES_SENT",
    "COMMIT_BATCH_SIZE",
    "COMMIT_FAILURES",
    "COMMIT_QUEUE",
    "COMMIT_SECONDS",
    "CONNECTIONS",
    "CONNECTIONS_CLOSED",
    "HTTP_REQUESTS",
    "JOURNAL_LAG",
    "LIVE_ACCESS_CHANGES",
    "ROOMS_LOADED",
    "UPDATES_DROPPED",
    "UPDATES_RECEIVED",
    "UPDATES_RELAYED",
    "UPDATES_STORED",
]

CONNECTIONS = Gauge("draftsync_connections", "Open WebSocket connections")
CONNECTIONS_CLOSED = Counter(
    "draftsync_connections_closed", "Closed WebSocket connections by close code", ["code"]
)
ROOMS_LOADED = Gauge("draftsync_rooms_loaded", "Drafts loaded in memory")
UPDATES_RECEIVED = Counter("draftsync_updates_received", "Yjs updates received from clients")
UPDATES_RELAYED = Counter("draftsync_updates_relayed", "Update frames queued to other clients")
UPDATES_STORED = Counter("draftsync_updates_stored", "Updates committed to the store")
BYTES_RECEIVED = Counter("draftsync_bytes_received", "Bytes of binary frames received")
COMMIT_BATCH_SIZE = Histogram(
    "draftsync_commit_batch_size",
    "Updates per group commit",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048),
)
COMMIT_SECONDS = Histogram(
    "draftsync_commit_seconds",
    "Time of one group commit",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
COMMIT_FAILURES = Counter("draftsync_commit_failures", "Group commits the store refused")
COMMIT_QUEUE = Gauge("draftsync_commit_queue", "Accepted updates waiting for the group commit")
UPDATES_DROPPED = Counter(
    "draftsync_updates_dropped",
    "Queued updates dropped before their commit because their room had failed",
)
BYTES_SENT = Counter("draftsync_bytes_sent", "Bytes of binary frames sent to clients")
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
