"""Fan-out messages as a test publishes them on Redis itself: signed as the instances sign
them (server/cluster/signing.py, keyed from the test servers' secret), or taken apart."""

from __future__ import annotations

import time

from server.cluster.signing import STAMP_BYTES, TAG_BYTES, MessageSigner
from tests.support.server_process import SECRET

__all__ = ["signed", "unsigned"]

_SIGNER = MessageSigner(SECRET)


def signed(
    channel: str, message: bytes, *, secret: str | None = None, sent: float | None = None
) -> bytes:
    """`message` signed for `channel` as an instance with `secret` (the test servers' by
    default) publishes it at `sent` (now by default)."""
    signer = _SIGNER if secret is None else MessageSigner(secret)
    return signer.sign(channel, message, time.time() if sent is None else sent)


def unsigned(published: bytes) -> bytes:
    """The framed message (header line, payload) of a published one, its tag and send time
    cut off."""
    return published[TAG_BYTES + STAMP_BYTES :]
