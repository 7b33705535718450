"""The per-user REST rate's table of buckets (server/admission/quotas.py): full buckets are
forgotten as it grows, and a crowd of users costs no scan of the table per request."""

from __future__ import annotations

import pytest

from server.admission.quotas import _PRUNE_AT, RequestGate
from server.errors import RateLimited


class CountingGate(RequestGate):
    """The real gate, counting its scans of the table."""

    scans = 0

    def _prune(self, now: float) -> None:
        self.scans += 1
        super()._prune(now)


def crowd(gate: RequestGate, users: range, *, now: float) -> None:
    for user in users:
        gate.admit(f"user-{user}", now=now)
        gate.done()


def test_a_crowd_whose_buckets_all_refill_is_scanned_once_per_doubling() -> None:
    gate = CountingGate(rate=1.0, burst=10, max_in_flight=10)
    crowd(gate, range(3 * _PRUNE_AT), now=100.0)  # each took a token: none is full
    # It was a scan per request past the bound (20,000 here); now one per doubling.
    assert gate.scans == 2
    assert len(gate._buckets) == 3 * _PRUNE_AT  # nothing full, nothing forgotten


def test_full_buckets_are_forgotten_when_the_table_grows() -> None:
    gate = CountingGate(rate=1.0, burst=10, max_in_flight=10)
    crowd(gate, range(_PRUNE_AT), now=100.0)
    # A minute later every one of those buckets is full again: the next growth drops them.
    crowd(gate, range(_PRUNE_AT, _PRUNE_AT + 2), now=160.0)
    assert gate.scans == 1
    assert sorted(gate._buckets) == [f"user-{_PRUNE_AT}", f"user-{_PRUNE_AT + 1}"]


def test_a_user_over_the_rate_is_still_refused_after_a_scan() -> None:
    gate = CountingGate(rate=1.0, burst=2, max_in_flight=10)
    crowd(gate, range(_PRUNE_AT + 1), now=100.0)
    gate.admit("user-0", now=100.0)
    gate.done()
    with pytest.raises(RateLimited):  # its 429 is tested with a real server (test_rest_limits)
        gate.admit("user-0", now=100.0)
