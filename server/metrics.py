"""Prometheus metrics (prometheus_client, the default registry), served at `/metrics`.

Labels never carry draft ids or user names: metrics are unauthenticated.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "BYTES_RECEIVED",
    "COMMIT_BATCH_SIZE",
    "COMMIT_FAILURES",
    "COMMIT_SECONDS",
    "CONNECTIONS",
    "CONNECTIONS_CLOSED",
    "ROOMS_LOADED",
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
