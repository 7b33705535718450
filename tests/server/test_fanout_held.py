"""The updates a room holds past a version gap (server/cluster/fanout.py `_Tracker.hold`):
bounded by HELD_MESSAGES and HELD_BYTES, the rule outcomes a held message carries counted
in the bytes as they are encoded, so the bound is what the held messages really weigh."""

from __future__ import annotations

from typing import cast

from crdt.journal import EventType, JournalEvent
from server.cluster.fanout import HELD_BYTES, _Held, _Tracker
from server.sync.room import Room


def outcome(version: int, weight: int) -> JournalEvent:
    """A rule outcome whose data (the value it rejected) takes about `weight` bytes."""
    return JournalEvent(
        type=EventType.VALUE_REJECTED,
        draft_id="d",
        version=version,
        user="alice",
        session=None,
        client_id=None,
        at=0.0,
        data={"field": "status", "value": "x" * weight},
    )


def tracker() -> _Tracker:
    return _Tracker(room=cast(Room, object()), watermark=0)  # holding reads no room


def test_held_updates_with_large_outcomes_pass_the_byte_bound_and_are_dropped() -> None:
    held = tracker()
    weight = HELD_BYTES // 4  # four such messages pass the bound; their updates are tiny
    kept = []
    for version in range(2, 8):  # version 1 is missing: every one of them is past the gap
        kept.append(held.hold(version, _Held(b"u", None, "other", [outcome(version, weight)])))
        assert held.held_bytes <= HELD_BYTES
    assert kept[:3] == [True, True, True]
    assert False in kept  # the fourth passed HELD_BYTES: all dropped, read by the gap fill
    assert len(held.held) < 4
    assert held.promised == 7  # the gap fill reads up to the highest version named


def test_held_bytes_count_the_outcomes_and_return_to_zero_once_taken() -> None:
    held = tracker()
    assert held.hold(3, _Held(b"abc", None, "other", [outcome(3, 1000)]))
    assert held.held_bytes > 1000 + 3
    assert held.hold(4, _Held(b"abcd", None, "other"))
    entry = held.take(3)
    assert entry is not None and entry.events
    assert held.held_bytes == 4
    assert held.take(4) is not None
    assert held.held_bytes == 0
