"""Which of a draft's snapshots to keep: at most N, spread over its whole history.

A snapshot is the whole state at its version, so keeping one every 1,000 updates makes the
snapshots of a long-lived draft grow with the square of its history: typed one keystroke a
version through a room (`bench merge --snapshot-keep 1000000`), automerge-paper's 259,778
keystrokes (a 105 KB paper) leave a 3.8 MB log but 30.9 MB of snapshots, 248 of them; with the
default 32 kept, 4.1 MB. The log is what history needs; snapshots only make loading and
rebuilding fast. Loading needs the newest one alone, and rebuilding a past version needs one
not far before it. So a draft keeps at most `keep` snapshots: they then take at most `keep`
times its state, however long its history, and rebuilding version v replays at most the gap
around v.

Which one goes when there are too many: the one whose removal leaves the smallest gap between
its neighbours (the empty doc at version 0 counts as the first), the older one on a tie, never
the newest. As a draft grows, its snapshots thin out evenly, the gaps staying within about
twice the history's length over `keep`.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["KEEP", "snapshots_to_drop"]

# The default: rebuilding any version of automerge-paper's 259,778 keystrokes replays at most
# ~16,000 updates (~45 ms at `bench history`'s 3,999 updates in 11 ms), and its snapshots take
# 32 states instead of 248.
KEEP = 32


def snapshots_to_drop(versions: Sequence[int], keep: int) -> list[int]:
    """The versions to delete from a draft's snapshot `versions` (ascending, distinct) so that
    at most `keep` (>= 1) remain."""
    if keep < 1:
        raise ValueError(f"keep must be at least 1, not {keep}")
    kept = list(versions)
    dropped: list[int] = []
    while len(kept) > keep:
        # The gap removing kept[i] leaves: from the one before it (or version 0) to the next.
        gone = min(range(len(kept) - 1), key=lambda i: kept[i + 1] - (kept[i - 1] if i else 0))
        dropped.append(kept.pop(gone))
    return dropped
