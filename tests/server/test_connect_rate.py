"""The per-user rate of opening drafts (server/admission/connects.py), with a given `now`: the
refusal and its reason. Its 1013 on both endpoints is tested with a real server
(tests/server/test_admission.py)."""

from __future__ import annotations

import pytest

from server.admission.connects import ConnectRate
from server.errors import CloseCode, RateLimited, close_code_for


def test_joins_over_the_rate_are_refused_with_1013_and_when_to_retry() -> None:
    rate = ConnectRate(rate=0.25, burst=2)
    rate.admit("alice", now=50.0)
    rate.admit("alice", now=50.0)
    with pytest.raises(RateLimited) as refused:
        rate.admit("alice", now=51.0)
    assert close_code_for(refused.value) is CloseCode.TRY_AGAIN_LATER
    assert str(refused.value).startswith("opening drafts too fast, retry in 3 s")
    assert refused.value.retry_after == 3
    rate.admit("bob", now=51.0)  # his own bucket
    rate.admit("alice", now=54.0)  # refilled
