"""`server.metrics.COMMITS`: the group commit's figures kept as plain numbers, served as the
prometheus_client objects they replaced would serve them (`draftsync_commit_batch_size`,
`draftsync_commit_seconds`, `draftsync_updates_stored`)."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.registry import Collector

from server import metrics
from server.metrics import CommitTally


def _served(collector: Collector) -> set[str]:
    registry = CollectorRegistry()
    registry.register(collector)
    return {
        line
        for line in generate_latest(registry).decode().splitlines()
        if "_created" not in line  # prometheus_client's own objects add their creation time
    }


@pytest.mark.parametrize("seed", range(3))
def test_the_tally_is_served_as_prometheus_clients_histograms_and_counter(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    rng = random.Random(seed)
    tally = CommitTally()
    monkeypatch.setattr(metrics, "COMMITS", tally)
    reference = CollectorRegistry()
    sizes = Histogram(
        "draftsync_commit_batch_size",
        "Updates per group commit",
        buckets=CommitTally.BATCH_BUCKETS,
        registry=reference,
    )
    seconds = Histogram(
        "draftsync_commit_seconds",
        "Time of one group commit",
        buckets=CommitTally.SECONDS_BUCKETS,
        registry=reference,
    )
    stored = Counter(
        "draftsync_updates_stored", "Updates committed to the store", registry=reference
    )
    # every bound, just above and below it, none, past the last, and anything between
    bounds = [*CommitTally.BATCH_BUCKETS, 3, 5, 2049, 10_000]
    times = [*CommitTally.SECONDS_BUCKETS, 0.0, 0.000099, 0.00010001, 2.5]
    for _ in range(2000):
        size = rng.choice(bounds) if rng.random() < 0.5 else rng.randint(1, 4000)
        took = rng.choice(times) if rng.random() < 0.5 else rng.uniform(0, 1.2)
        tally.record(size, took)
        sizes.observe(size)
        seconds.observe(took)
        stored.inc(size)
    served = _served(metrics._CommitCollector())
    assert served == {
        line for line in generate_latest(reference).decode().splitlines() if "_created" not in line
    }


def test_an_empty_tally_serves_zeros(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "COMMITS", CommitTally())
    served = _served(metrics._CommitCollector())
    assert "draftsync_updates_stored_total 0.0" in served
    assert 'draftsync_commit_batch_size_bucket{le="+Inf"} 0.0' in served
    assert "draftsync_commit_seconds_count 0.0" in served
