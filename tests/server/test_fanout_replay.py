"""What makes a signed fan-out message new (server/cluster/replay.py, signing.py): its signed
send time within the window, and a number past every one heard from its sender, remembered
until every message the sender sent is outside the window. Pure: no Redis (the replay through
Redis is tests/server/test_instances.py)."""

from __future__ import annotations

import math

from server.cluster.replay import FORGET_SECONDS, REPLAY_WINDOW_SECONDS, Senders, fresh
from server.cluster.signing import TAG_BYTES, MessageSigner

NOW = 1_800_000_000.0


def test_the_send_time_is_signed_and_read_back() -> None:
    signer = MessageSigner("secret")
    signed = signer.sign("draftsync:access", b'{"i":"x","n":1}\n', NOW)
    assert signer.verify(b"draftsync:access", signed) == (NOW, b'{"i":"x","n":1}\n')
    restamped = signed[:TAG_BYTES] + MessageSigner("other").sign("c", b"", NOW + 1)[TAG_BYTES:]
    assert signer.verify(b"draftsync:access", restamped + b'{"i":"x","n":1}\n') is None
    assert signer.verify(b"draftsync:access", signed[: TAG_BYTES + 3]) is None


def test_a_message_sent_outside_the_window_is_not_fresh() -> None:
    assert fresh(NOW, NOW)
    assert fresh(NOW - REPLAY_WINDOW_SECONDS, NOW)
    assert not fresh(NOW - REPLAY_WINDOW_SECONDS - 1, NOW)
    assert not fresh(NOW + REPLAY_WINDOW_SECONDS + 1, NOW)
    assert not fresh(math.nan, NOW)


def test_a_number_heard_is_not_new_again_and_heartbeats_count_on_their_own() -> None:
    senders = Senders()
    assert senders.first("a", 1, 0.0)
    assert senders.first("a", 3, 0.0)
    assert not senders.first("a", 3, 0.0)
    assert not senders.first("a", 2, 0.0)  # late, or replayed: dropped either way
    assert senders.first("a", 1, 0.0, beat=True)
    assert not senders.first("a", 1, 0.0, beat=True)
    assert senders.first("b", 1, 0.0)


def test_a_sender_is_forgotten_only_once_its_messages_are_outside_the_window() -> None:
    senders = Senders()
    assert senders.first("a", 5, 100.0)
    senders.forget_silent(100.0 + 2 * REPLAY_WINDOW_SECONDS)
    assert not senders.first("a", 5, 100.0 + 2 * REPLAY_WINDOW_SECONDS)
    senders.forget_silent(100.0 + FORGET_SECONDS)
    assert len(senders) == 0
    assert FORGET_SECONDS > 2 * REPLAY_WINDOW_SECONDS
