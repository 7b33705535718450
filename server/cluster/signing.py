"""Signed fan-out messages: only an instance holding the service's secret can speak on Redis.

Why: the receiving instance applies the next version a message names at once (fanout.py), so
without a signature anything that can PUBLISH on Redis could put text into every client of
every instance. The store check (`Fanout._catch_up`) only catches versions the store never
gave; a forged *next* version would be applied before any read.

Every message (updates, journal events, awareness, access changes, heartbeats) leaves as
`tag + sent + message`, the tag an HMAC-SHA256 (stdlib `hmac`, 32 raw bytes) over the channel,
the send time and the whole framed message: a message signed for one draft's channel is
refused on another's. The
key is derived from `Settings.secret` (the one that signs tokens, shared by every instance of
a service) for this purpose only, HMAC(secret, PURPOSE), so a tag never serves as, or reveals
anything about, a token signature. Receivers check the tag before they parse anything else;
instances with different secrets cannot hear each other (fanout.py logs why).

A valid tag says who wrote a message, not when: anything listening on Redis could keep one and
publish it again later (a revocation, a cursor, a heartbeat of a dead instance). So the tag
also covers the time the message was published (`sent`, the sender's clock, 8 bytes before
the message), stamped when it leaves, not when it was queued (a message may wait out a Redis
outage in the outbox). The receiver drops what was sent outside its window, and what it has
heard already from that sender (server/cluster/replay.py)."""

from __future__ import annotations

import hashlib
import hmac
import struct

__all__ = ["PURPOSE", "STAMP_BYTES", "TAG_BYTES", "MessageSigner"]

PURPOSE = b"draftsync fan-out v2"  # v2: the send time is signed
"""What the fan-out key is derived for: a new format takes a new purpose (a new key)."""

TAG_BYTES = hashlib.sha256().digest_size  # 32

_STAMP = struct.Struct("!d")  # the send time: seconds since the epoch, a big-endian double
STAMP_BYTES = _STAMP.size  # 8


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

    def sign(self, channel: str, message: bytes, sent: float) -> bytes:
        """`message` as it is published on `channel` at `sent` (`time.time()`): its tag, the
        time, then the message."""
        stamped = _STAMP.pack(sent) + message
        return self._tag(channel.encode(), stamped) + stamped

    def verify(self, channel: bytes, signed: bytes) -> tuple[float, bytes] | None:
        """The time a signed message was sent and the message, or None if its tag is missing
        or wrong (forged, corrupted, or signed with another secret). Constant-time in the
        tag's bytes."""
        if len(signed) < TAG_BYTES + STAMP_BYTES:
            return None
        stamped = signed[TAG_BYTES:]
        if not hmac.compare_digest(signed[:TAG_BYTES], self._tag(channel, stamped)):
            return None
        return _STAMP.unpack_from(stamped)[0], stamped[STAMP_BYTES:]
