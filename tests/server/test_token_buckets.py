"""The per-user token buckets of admission (server/admission/buckets.py), shared by the REST rate
and the rate of opening drafts: the arithmetic with a given `now` (no clock, no waiting), and the
table's pruning: full buckets are forgotten as it grows, and a crowd of users costs no scan of
the table per take."""

from __future__ import annotations

from server.admission.buckets import PRUNE_AT, TokenBuckets


class CountingBuckets(TokenBuckets):
    """The real buckets, counting their scans of the table."""

    scans = 0

    def _prune(self, now: float) -> None:
        self.scans += 1
        super()._prune(now)


def crowd(buckets: TokenBuckets, users: range, *, now: float) -> None:
    for user in users:
        assert buckets.take(f"user-{user}", now) == 0


def test_a_burst_is_taken_at_once_then_one_a_refill() -> None:
    buckets = TokenBuckets(rate=0.5, burst=3)
    assert [buckets.take("alice", 100.0) for _ in range(3)] == [0, 0, 0]
    assert buckets.take("alice", 100.0) == 2  # a token every 2 s: retry in 2 s
    assert buckets.take("alice", 101.0) == 1  # half a token back: 1 s more
    assert buckets.take("alice", 102.0) == 0  # one whole token
    assert buckets.take("alice", 102.0) == 2
    assert buckets.take("bob", 102.0) == 0  # each key has its own bucket


def test_wait_says_when_a_token_is_back_and_spends_nothing() -> None:
    buckets = TokenBuckets(rate=0.5, burst=2)
    assert buckets.wait("alice", 100.0) == 0  # no bucket yet: a full one
    assert "alice" not in buckets  # and asking made none
    assert [buckets.take("alice", 100.0) for _ in range(2)] == [0, 0]
    assert buckets.wait("alice", 100.0) == 2
    assert buckets.wait("alice", 100.0) == 2  # asking again spent nothing
    assert buckets.wait("alice", 101.0) == 1
    assert buckets.wait("alice", 102.0) == 0
    assert buckets.take("alice", 102.0) == 0  # the token `wait` saw is there to take


def test_a_refused_take_spends_nothing() -> None:
    buckets = TokenBuckets(rate=1.0, burst=1)
    assert buckets.take("alice", 10.0) == 0
    for tick in range(9):  # retried every 0.1 s: the refill still comes after 1 s
        assert buckets.take("alice", 10.0 + tick / 10) == 1
    assert buckets.take("alice", 11.0) == 0


def test_a_quiet_spell_refills_up_to_the_burst_only() -> None:
    buckets = TokenBuckets(rate=10.0, burst=2)
    assert buckets.take("alice", 0.0) == 0
    assert buckets.take("alice", 0.0) == 0
    assert [buckets.take("alice", 3600.0) for _ in range(3)] == [0, 0, 1]


def test_a_token_given_back_can_be_taken_again_up_to_the_burst() -> None:
    buckets = TokenBuckets(rate=0.001, burst=1)
    assert buckets.take("alice", 0.0) == 0
    buckets.give_back("alice")
    buckets.give_back("alice")  # never more than the burst
    buckets.give_back("nobody")  # no bucket: nothing to do
    assert "nobody" not in buckets
    assert [buckets.take("alice", 0.0) for _ in range(2)] == [0, 1000]


def test_a_crowd_whose_buckets_all_refill_is_scanned_once_per_doubling() -> None:
    buckets = CountingBuckets(rate=1.0, burst=10)
    crowd(buckets, range(3 * PRUNE_AT), now=100.0)  # each took a token: none is full
    # It was a scan per request past the bound (20,000 here); now one per doubling.
    assert buckets.scans == 2
    assert len(buckets) == 3 * PRUNE_AT  # nothing full, nothing forgotten


def test_full_buckets_are_forgotten_when_the_table_grows() -> None:
    buckets = CountingBuckets(rate=1.0, burst=10)
    crowd(buckets, range(PRUNE_AT), now=100.0)
    # A minute later every one of those buckets is full again: the next growth drops them.
    crowd(buckets, range(PRUNE_AT, PRUNE_AT + 2), now=160.0)
    assert buckets.scans == 1
    assert len(buckets) == 2
    assert f"user-{PRUNE_AT}" in buckets and f"user-{PRUNE_AT + 1}" in buckets


def test_a_key_over_the_rate_is_still_refused_after_a_scan() -> None:
    buckets = CountingBuckets(rate=1.0, burst=2)
    crowd(buckets, range(PRUNE_AT + 1), now=100.0)
    assert buckets.scans == 1
    assert buckets.take("user-0", 100.0) == 0
    assert buckets.take("user-0", 100.0) == 1  # its bucket was not full: kept, and empty now
