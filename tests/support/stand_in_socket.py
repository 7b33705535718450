"""Stand-ins for the socket a `Connection` writes to (the ASGI transport: uvicorn's, not ours),
for tests of the connection's own ordering, back-pressure and close logic. The real endpoint is
exercised end to end by the relay, admission and wsprotocol tests."""

from __future__ import annotations

import asyncio

__all__ = ["PromptSocket", "StandInSocket"]


class StandInSocket:
    """Records frames and closes; sends wait while `writable` is clear; `broken` fails them."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.writable = asyncio.Event()
        self.writable.set()
        self.broken: Exception | None = None
        self.closes: list[tuple[int, str | None]] = []

    async def send_bytes(self, data: bytes) -> None:
        await self.writable.wait()
        if self.broken is not None:
            raise self.broken
        self.frames.append(data)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closes.append((code, reason))


class PromptSocket(StandInSocket):
    """One that can also send on the caller's turn (`send_now`, as draftsync's own protocol can:
    server/sync/wsprotocol.py), unless it pushes back; counts the sends that were awaited."""

    def __init__(self) -> None:
        super().__init__()
        self.awaited = 0

    def send_now(self, data: bytes) -> bool:
        if not self.writable.is_set() or self.broken is not None:
            return False
        self.frames.append(data)
        return True

    async def send_bytes(self, data: bytes) -> None:
        self.awaited += 1
        await super().send_bytes(data)
