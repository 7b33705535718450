"""Signed fan-out messages: only an instance holding the service's secret can speak on Redis.

Why: the receiving instance applies the next version a message names at once (fanout.py), so
without a signature anything that can PUBLISH on Redis could put text into every client of
every instance. The store check (`Fanout._catch_up`) only catches versions the store never
gave; a forged *next* version would be applied before any read.

Every message (updates, journal events, awareness, access changes, heartbeats) leaves as
`tag + message`, the tag an HMAC-SHA256 (stdlib `hmac`, 32 raw bytes) over the channel and the
whole framed message: a message signed for one draft's channel is refused on another's. The
key is derived from `Settings.secret` (the one that signs tokens, shared by every instance of
a service) for this purpose only, HMAC(secret, PURPOSE), so a tag never serves as, or reveals
anything about, a token signature. Receivers check the tag before they parse anything else;
instances with different secrets cannot hear each other (fanout.py logs why).

Copies published again (a lost reply) carry the same tag and are still dropped by their
number (`Fanout._heard`)."""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["PURPOSE", "TAG_BYTES", "MessageSigner"]

PURPOSE = b"draftsync fan-out v1"
"""What the fan-out key is derived for: a new format takes a new purpose (a new key)."""

TAG_BYTES = hashlib.sha256().digest_size  # 32


class MessageSigner:
    """Signs and checks fan-out messages with the key derived from the service's secret.

    The key is kept in a slot and never shown (`repr` names no key): it must not reach a
    log line."""

    __slots__ = ("_key",)

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("the fan-out needs the service's secret")
        self._key = hmac.digest(secret.encode(), PURPOSE, "sha256")

    def __repr__(self) -> str:
        return "MessageSigner(<key hidden>)"

    def _tag(self, channel: bytes, message: bytes) -> bytes:
        # The channel, then a NUL (no channel of ours holds one), then the message.
        return hmac.digest(self._key, channel + b"\0" + message, "sha256")

    def sign(self, channel: str, message: bytes) -> bytes:
        """`message` as it is published on `channel`: its tag, then the message."""
        return self._tag(channel.encode(), message) + message

    def verify(self, channel: bytes, signed: bytes) -> bytes | None:
        """The message a signed one carries, or None if its tag is missing or wrong (forged,
        corrupted, or signed with another secret). Constant-time in the tag's bytes."""
        if len(signed) < TAG_BYTES:
            return None
        message = signed[TAG_BYTES:]
        if not hmac.compare_digest(signed[:TAG_BYTES], self._tag(channel, message)):
            return None
        return message
