"""An `asyncio.Event` without its deque, for objects every connection holds.

An `asyncio.Event` allocates a deque for its waiters when it is made (about 760 bytes, most of
it the deque's first block), and an idle connection held five of them (its writer's wake-up,
its `finished`, and uvicorn's write flag and receive queue). `Flag` makes its one future only
while someone waits.
"""

from __future__ import annotations

import asyncio

__all__ = ["Flag"]


class Flag:
    """`asyncio.Event`'s set/clear/is_set/wait without its deque of waiters: waiters share one
    future, made only while someone waits; a waiter's cancellation does not reach the others."""

    __slots__ = ("_future", "_set")

    def __init__(self) -> None:
        self._set = False
        self._future: asyncio.Future[None] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        future, self._future = self._future, None
        if future is not None and not future.done():
            future.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if self._set:
            return True
        if self._future is None:
            self._future = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._future)
        return True
