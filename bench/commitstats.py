"""How many group commits a run made and how big they were, from the server's own metrics.

`server.store.commits` counts every batch and its duration in `server.metrics.COMMITS` (served as
`draftsync_commit_batch_size` and `draftsync_commit_seconds`); reading those totals before and
after a run tells how the pipeline batched without wrapping or patching anything in the server.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def commit_totals() -> CommitStats:
    """Totals since the process started; subtract two of them to get one run's."""
    tally = metrics.COMMITS
    return CommitStats(tally.commits, tally.updates, tally.seconds_total)
