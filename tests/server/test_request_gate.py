"""The REST admission gate (server/admission/quotas.py) over the shared token buckets
(server/admission/buckets.py, whose arithmetic and pruning tests/server/test_token_buckets.py
shows): its two refusals, and a request refused for the server's sake spends no token of the
user's. Its 429 and 503 are tested with a real server (tests/server/test_admission.py)."""

from __future__ import annotations

import pytest

from server.admission.quotas import RequestGate
from server.errors import CapReached, RateLimited


def test_a_user_over_the_rate_is_refused_with_the_seconds_to_wait() -> None:
    gate = RequestGate(rate=0.5, burst=2, max_in_flight=10)
    for _ in range(2):
        gate.admit("alice", now=100.0)
        gate.done()
    with pytest.raises(RateLimited) as refused:
        gate.admit("alice", now=100.0)
    assert refused.value.retry_after == 2
    gate.admit("bob", now=100.0)  # each user has a bucket


def test_a_request_over_the_servers_cap_spends_none_of_the_users_rate() -> None:
    gate = RequestGate(rate=0.001, burst=1, max_in_flight=1)
    gate.admit("bob", now=0.0)  # under way: the server is at its cap
    with pytest.raises(CapReached) as refused:
        gate.admit("alice", now=0.0)
    assert type(refused.value) is CapReached  # 503, not the user's 429
    gate.done()
    gate.admit("alice", now=0.0)  # her one token is still there
