"""The serving process's cyclic GC (server/admission/collector.py): start frozen, and a heap
that grows by idle connections' objects is not walked whole every ~70,000 of them. Run in a
fresh interpreter each, so that pytest's own heap and thresholds are not what is measured."""

from __future__ import annotations

import subprocess
import sys

from server.admission.collector import FULL_COLLECTION_AFTER

_GROW = """
import gc
{settle}
before = gc.get_stats()[2]["collections"]
kept = [[n] for n in range(200_000)]  # tracked objects that stay, as idle connections' do
print(gc.get_freeze_count() > 0, gc.get_threshold()[2], gc.get_stats()[2]["collections"] - before)
"""


def _grow(settle: str) -> tuple[str, str, int]:
    out = subprocess.run(
        [sys.executable, "-c", _GROW.format(settle=settle)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    return out[0], out[1], int(out[2])


def test_a_settled_collector_runs_no_full_collection_while_the_heap_grows() -> None:
    settled = _grow("from server.admission.collector import settle_collector; settle_collector()")
    assert settled == ("True", str(FULL_COLLECTION_AFTER), 0)


def test_without_it_the_same_growth_is_walked_whole() -> None:
    # The comparison that makes the test above mean something: CPython's own policy runs
    # full collections for this growth.
    frozen, threshold, full = _grow("gc.collect(); gc.freeze()")
    assert (frozen, threshold) == ("True", "10") and full >= 1
