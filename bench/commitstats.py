"""How many group commits a run made and how big they were, from the server's own metrics.

`server.store.commits` observes every batch into `draftsync_commit_batch_size` and its duration into
`draftsync_commit_seconds`; reading those histograms before and after a run tells how the
pipeline batched without wrapping or patching anything in the server.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Histogram

from server import metrics

__all__ = ["CommitStats", "commit_totals"]


@dataclass(frozen=True, slots=True)
class CommitStats:
    commits: int
    updates: float
    seconds: float

    def __sub__(self, earlier: CommitStats) -> CommitStats:
        return CommitStats(
            self.commits - earlier.commits,
            self.updates - earlier.updates,
            self.seconds - earlier.seconds,
        )

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "commits": self.commits,
            "mean_batch": self.updates / self.commits if self.commits else None,
            "mean_commit_ms": 1000 * self.seconds / self.commits if self.commits else None,
        }


def _count_and_sum(histogram: Histogram) -> tuple[int, float]:
    count, total = 0, 0.0
    for family in histogram.collect():
        for sample in family.samples:
            if sample.name.endswith("_count"):
                count = int(sample.value)
            elif sample.name.endswith("_sum"):
                total = float(sample.value)
    return count, total


def commit_totals() -> CommitStats:
    """Totals since the process started; subtract two of them to get one run's."""
    commits, updates = _count_and_sum(metrics.COMMIT_BATCH_SIZE)
    _, seconds = _count_and_sum(metrics.COMMIT_SECONDS)
    return CommitStats(commits, updates, seconds)
