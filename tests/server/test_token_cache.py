"""`TokenSigner.claims` answers a token verified before from memory (server/auth.py), and that
changes no verdict: an expired token is still refused, a bad one still is, the memory is
bounded. (Real tokens, real PyJWT; the WebSocket side is in test_token_expiry.py.)"""

from __future__ import annotations

import time

import pytest

from server.auth import _VERIFIED_MAX, TokenSigner
from server.errors import InvalidToken

SECRET = "token-cache-test-secret-0123456789abcdef-0123456789"


def test_a_token_verified_twice_gives_the_same_claims() -> None:
    signer = TokenSigner(SECRET)
    token = signer.issue("alice", ttl_seconds=3600, now=time.time())
    first = signer.claims(token)
    assert signer.claims(token) == first
    assert first.user == "alice"


def test_a_remembered_token_is_refused_once_it_expires() -> None:
    signer = TokenSigner(SECRET)
    token = signer.issue("alice", ttl_seconds=1, now=time.time())
    claims = signer.claims(token)
    deadline = time.monotonic() + 5
    while time.time() < claims.expires_at + 0.05 and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(InvalidToken, match="token expired"):
        signer.claims(token)


def test_bad_tokens_are_refused_and_not_remembered() -> None:
    signer = TokenSigner(SECRET)
    forged = TokenSigner("another-secret-0123456789abcdef-0123456789abcdef").issue(
        "mallory", ttl_seconds=3600, now=time.time()
    )
    for bad in (forged, "not.a.token", "x" * 5000):
        for _ in range(2):
            with pytest.raises(InvalidToken, match="invalid token"):
                signer.claims(bad)
    with pytest.raises(InvalidToken, match="missing token"):
        signer.claims("")
    assert not signer._verified


def test_the_memory_is_bounded() -> None:
    signer = TokenSigner(SECRET)
    now = time.time()
    tokens = [
        signer.issue(f"user{n}", ttl_seconds=3600, now=now) for n in range(_VERIFIED_MAX + 50)
    ]
    for token in tokens:
        signer.claims(token)
    assert len(signer._verified) == _VERIFIED_MAX
    assert signer.claims(tokens[0]).user == "user0"  # forgotten, verified again
