"""Fan-out messages as a test publishes them on Redis itself: signed as the instances sign
them (server/cluster/signing.py, keyed from the test servers' secret), or taken apart."""

from __future__ import annotations

from server.cluster.signing import TAG_BYTES, MessageSigner
from tests.support.server_process import SECRET

__all__ = ["signed", "unsigned"]

_SIGNER = MessageSigner(SECRET)


def signed(channel: str, message: bytes, *, secret: str | None = None) -> bytes:
    """`message` signed for `channel` as an instance with `secret` (the test servers' by
    default) publishes it."""
    signer = _SIGNER if secret is None else MessageSigner(secret)
    return signer.sign(channel, message)


def unsigned(published: bytes) -> bytes:
    """The framed message (header line, payload) of a published one, its tag cut off."""
    return published[TAG_BYTES:]
