"""`Inbox`: a look at what has arrived, without losing, reordering or doubling a message.

The receive here is an `asyncio.Queue`'s `get`, which is what uvicorn's WebSocket `receive`
awaits; the server-level behaviour is in test_runs.py.
"""

from __future__ import annotations

import asyncio

import pytest

from server.sync.inbox import Inbox


def message(n: int) -> dict[str, object]:
    return {"type": "websocket.receive", "bytes": bytes([n])}


async def test_ready_returns_what_has_arrived_and_none_after_it() -> None:
    queue: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    inbox = Inbox(queue.get)
    for n in range(3):
        queue.put_nowait(message(n))
    assert [inbox.ready() for _ in range(4)] == [message(0), message(1), message(2), None]
    assert inbox.ready() is None  # still waiting: asking again starts no second receive


async def test_a_message_that_comes_after_a_look_is_the_next_one() -> None:
    queue: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    inbox = Inbox(queue.get)
    assert inbox.ready() is None
    later = asyncio.get_running_loop().call_later(0.01, queue.put_nowait, message(7))
    assert await asyncio.wait_for(inbox.next(), 1) == message(7)
    later.cancel()
    queue.put_nowait(message(8))
    assert await inbox.next() == message(8)
    assert queue.empty()


async def test_a_message_given_back_is_read_first() -> None:
    queue: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    inbox = Inbox(queue.get)
    queue.put_nowait(message(1))
    queue.put_nowait(message(2))
    first = inbox.ready()
    assert first == message(1)
    inbox.give_back(first)
    assert inbox.ready() == message(1)
    assert await inbox.next() == message(2)


async def test_cancelling_a_reader_that_waits_after_a_look_loses_no_message() -> None:
    queue: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    inbox = Inbox(queue.get)
    assert inbox.ready() is None
    reader = asyncio.ensure_future(inbox.next())  # an awaitable, not a coroutine
    await asyncio.sleep(0.01)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    queue.put_nowait(message(3))
    # the cancelled receive left the queue: a fresh one gets the message
    assert await asyncio.wait_for(Inbox(queue.get).next(), 1) == message(3)
