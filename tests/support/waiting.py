"""Waiting on state held by another process (a Node client, the server) without bare sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

__all__ = ["eventually"]


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout: float = 10, interval: float = 0.05
) -> None:
    """Poll `check` until it is true; TimeoutError after `timeout` seconds.

    Polling is the only way to observe a Node client's doc, which lives in another process.
    """
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 - the state is in another process
            await asyncio.sleep(interval)
