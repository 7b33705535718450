"""`Deadlines`: many deadlines on one loop timer (server/sync/deadlines.py), on a real loop.

What matters: each callback runs once, in deadline order, never after `cancel()`; a callback
that raises does not stop the others; cancelled entries do not pile up.
"""

from __future__ import annotations

import asyncio

import pytest

from server.sync.deadlines import Deadlines, deadlines


async def _until(done: asyncio.Future[None]) -> None:
    await asyncio.wait_for(done, 5)


async def test_callbacks_run_once_in_deadline_order() -> None:
    timers = Deadlines(asyncio.get_running_loop())
    ran: list[int] = []
    done = asyncio.get_running_loop().create_future()
    for n, delay in enumerate((0.03, 0.01, 0.02, 0.0)):
        timers.call_later(delay, lambda n=n: ran.append(n))
    timers.call_later(0.04, lambda: done.set_result(None))
    await _until(done)
    assert ran == [3, 1, 2, 0]
    assert len(timers) == 0


async def test_a_cancelled_deadline_never_runs() -> None:
    timers = Deadlines(asyncio.get_running_loop())
    ran: list[str] = []
    done = asyncio.get_running_loop().create_future()
    first = timers.call_later(0.0, lambda: ran.append("first"))
    timers.call_later(0.01, lambda: ran.append("second"))
    first.cancel()
    first.cancel()  # twice is harmless
    assert first.cancelled()
    timers.call_later(0.02, lambda: done.set_result(None))
    await _until(done)
    assert ran == ["second"]


async def test_a_callback_that_raises_goes_to_the_loop_handler_and_the_rest_run() -> None:
    loop = asyncio.get_running_loop()
    seen: list[object] = []
    loop.set_exception_handler(lambda _loop, context: seen.append(context["exception"]))
    try:
        timers = Deadlines(loop)
        done = loop.create_future()

        def fail() -> None:
            raise ValueError("boom")

        timers.call_later(0.0, fail)
        timers.call_later(0.0, lambda: done.set_result(None))
        await _until(done)
    finally:
        loop.set_exception_handler(None)
    assert [type(error) for error in seen] == [ValueError]


async def test_a_callback_may_arm_the_next_deadline() -> None:
    timers = Deadlines(asyncio.get_running_loop())
    ran: list[int] = []
    done = asyncio.get_running_loop().create_future()

    def tick() -> None:
        ran.append(len(ran))
        if len(ran) < 3:
            timers.call_later(0.0, tick)
        else:
            done.set_result(None)

    timers.call_later(0.0, tick)
    await _until(done)
    assert ran == [0, 1, 2]


async def test_cancelled_deadlines_do_not_pile_up() -> None:
    """A churn of connections with day-long tokens: each cancels its deadline on leaving."""
    timers = Deadlines(asyncio.get_running_loop())
    kept = timers.call_later(3600, lambda: None)
    for _ in range(10_000):
        timers.call_later(86_400, lambda: None).cancel()
    assert len(timers) == 1
    assert len(timers._heap) <= 200  # rebuilt whenever cancelled entries pass half of it
    kept.cancel()
    assert len(timers) == 0


async def test_each_running_loop_has_its_own() -> None:
    assert deadlines() is deadlines()
    other = await asyncio.to_thread(lambda: asyncio.run(_own()))
    assert other is not deadlines()


async def test_the_loop_asked_about_last_does_not_answer_for_another() -> None:
    mine = deadlines()
    other = await asyncio.to_thread(lambda: asyncio.run(_own()))  # asked about last
    assert deadlines() is mine and other is not mine
    again = await asyncio.to_thread(lambda: asyncio.run(_own()))
    assert again is not other and again is not mine  # a new loop gets deadlines of its own


async def _own() -> Deadlines:
    return deadlines()


def test_outside_a_running_loop_there_are_none() -> None:
    with pytest.raises(RuntimeError):
        deadlines()
