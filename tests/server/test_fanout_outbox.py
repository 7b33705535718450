"""The fan-out's outbox (server/cluster/fanout.py `Outbox`): bounded by messages and bytes while
Redis is away, the oldest dropped first, what is left leaving in the order it was queued."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from server.cluster.fanout import OUTBOX_BYTES, OUTBOX_MESSAGES, Outbox
from server.config import Settings

OVERHEAD = 64  # what the outbox counts per message besides its channel and body


def size(channel: str, message: bytes) -> int:
    return len(channel) + len(message) + OVERHEAD


def numbers(outbox: Outbox) -> list[int]:
    return [entry[0] for entry in outbox.messages()]


def test_the_oldest_are_dropped_beyond_the_count_and_the_rest_keep_their_order() -> None:
    outbox = Outbox(max_messages=5, max_bytes=1 << 20)
    for n in range(1, 13):
        outbox.put(n, "draftsync:u:d", b"x%d" % n, "update")
        assert len(outbox) <= 5
    assert numbers(outbox) == [8, 9, 10, 11, 12]
    assert outbox.dropped == {"update": 7}
    assert outbox.peak_messages == 5
    assert outbox.bytes == sum(size(ch, m) for _, ch, m, _ in outbox.messages())


def test_bytes_are_accounted_and_bound_the_outbox() -> None:
    channel = "draftsync:u:d"
    one = size(channel, b"a" * 100)
    outbox = Outbox(max_messages=1000, max_bytes=3 * one + 10)
    for n in range(1, 5):
        outbox.put(n, channel, b"a" * 100, "update")
        assert outbox.bytes <= outbox.max_bytes
    assert numbers(outbox) == [2, 3, 4]
    assert outbox.bytes == 3 * one
    # A big message takes the room of several old ones.
    outbox.put(5, channel, b"b" * (2 * one), "update")
    assert numbers(outbox) == [5]
    assert outbox.bytes == size(channel, b"b" * (2 * one))
    # One bigger than the whole bound is dropped itself: never held above the bound.
    outbox.put(6, channel, b"c" * (4 * one), "update")
    assert numbers(outbox) == []
    assert outbox.bytes == 0
    assert outbox.peak_bytes <= outbox.max_bytes
    assert outbox.dropped == {"update": 6}


async def test_published_messages_leave_the_accounts() -> None:
    outbox = Outbox(max_messages=10, max_bytes=1 << 20)
    for n in range(1, 4):
        outbox.put(n, "draftsync:a:d", b"aw", "awareness")
    for n in range(1, 4):
        entry = await outbox.first()
        assert entry[0] == n
        outbox.done(entry)
        outbox.done(entry)  # twice: nothing more leaves
    assert len(outbox) == 0 and outbox.bytes == 0


async def test_a_message_dropped_while_it_is_retried_gives_way_to_the_next() -> None:
    outbox = Outbox(max_messages=3, max_bytes=1 << 20)
    for n in range(1, 4):
        outbox.put(n, "draftsync:u:d", b"u", "update")
    retried = await outbox.first()  # being published, Redis away
    assert retried[0] == 1
    outbox.put(4, "draftsync:u:d", b"u", "update")  # drops it
    outbox.done(retried)  # its publish went through after all: nothing else leaves
    assert numbers(outbox) == [2, 3, 4]
    assert (await outbox.first())[0] == 2


async def test_access_changes_are_dropped_last_and_leave_in_queued_order() -> None:
    outbox = Outbox(max_messages=4, max_bytes=1 << 20)
    outbox.put(1, "draftsync:access", b"revoke", "access", kept=True)
    for n in range(2, 8):
        outbox.put(n, "draftsync:u:d", b"u", "update")
    outbox.put(8, "draftsync:access", b"delete", "access", kept=True)
    assert numbers(outbox) == [1, 6, 7, 8]
    assert outbox.dropped == {"update": 4}
    left = []
    while len(outbox):
        entry = await outbox.first()
        left.append(entry[0])
        outbox.done(entry)
    assert left == [1, 6, 7, 8]
    # Only access changes left: then they go too, the oldest first.
    for n in range(9, 15):
        outbox.put(n, "draftsync:access", b"r", "access", kept=True)
    assert numbers(outbox) == [11, 12, 13, 14]
    assert outbox.dropped == {"update": 4, "access": 2}


def test_an_update_gains_its_events_in_place_and_the_bounds_still_hold() -> None:
    """A write's events join its update's message, the newest queued (`Fanout._events`):
    replaced in place, counted at its new size, dropping the oldest if it no longer fits; an
    update already gone (dropped at once, over the bounds) is not brought back."""
    channel = "draftsync:u:d"
    outbox = Outbox(max_messages=10, max_bytes=3 * size(channel, b"u" * 100))
    for n in range(1, 4):
        outbox.put(n, channel, b"u" * 100, "update")
    assert not outbox.replace(2, b"u" * 100 + b"events")  # not the newest: unchanged
    assert outbox.replace(3, b"u" * 100 + b"events")
    assert numbers(outbox) == [2, 3]  # the bigger message pushed the oldest out
    assert outbox.messages()[-1][2].endswith(b"events")
    assert outbox.bytes == sum(size(ch, m) for _, ch, m, _ in outbox.messages())
    assert outbox.dropped == {"update": 1}
    outbox.put(4, channel, b"x" * outbox.max_bytes, "update")  # dropped at once
    assert not outbox.replace(4, b"x")
    assert 4 not in numbers(outbox)


async def test_first_waits_for_a_message() -> None:
    outbox = Outbox(max_messages=2, max_bytes=1 << 20)
    waiting = asyncio.create_task(outbox.first())
    await asyncio.sleep(0)
    assert not waiting.done()
    outbox.put(1, "draftsync:u:d", b"u", "update")
    assert (await asyncio.wait_for(waiting, 5))[0] == 1


def test_bounds_must_be_positive_and_the_settings_default_to_them() -> None:
    with pytest.raises(ValueError):
        Outbox(max_messages=0)
    with pytest.raises(ValueError):
        Outbox(max_bytes=0)
    settings = Settings(data_dir=Path("unused"), secret="unused")
    assert (settings.fanout_outbox_messages, settings.fanout_outbox_bytes) == (
        OUTBOX_MESSAGES,
        OUTBOX_BYTES,
    )
