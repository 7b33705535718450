"""A reader of the drafts change feed `GET /api/drafts/feed` (server-sent events): one open
stream, read event by event, each within `WAIT` seconds."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from tests.support.rest import as_user
from tests.support.server_process import ServerProcess

__all__ = ["WAIT", "Feed", "feed"]

WAIT = 10.0


class Feed:
    """One open stream, read event by event."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self) -> tuple[str, dict[str, Any]]:
        kind, data = "message", ""
        async with asyncio.timeout(WAIT):
            async for line in self._lines:
                if line.startswith(":"):
                    continue  # keep-alive comment
                if line.startswith("event:"):
                    kind = line.removeprefix("event:").strip()
                elif line.startswith("data:"):
                    data += line.removeprefix("data:").strip()
                elif line == "" and data:
                    return kind, json.loads(data)
        raise AssertionError("the feed ended")

    async def until(self, kind: str, draft: str) -> dict[str, Any]:
        """The next `kind` event about `draft`; others before it are collected in `seen`."""
        for _ in range(100):
            got, data = await self.next()
            self.seen.append((got, data))
            if got == kind and data.get("id") == draft:
                return data
        raise AssertionError(f"no {kind} of {draft} in 100 events")

    seen: list[tuple[str, dict[str, Any]]]


@asynccontextmanager
async def feed(server: ServerProcess, user: str) -> AsyncIterator[Feed]:
    async with (
        as_user(server, user) as client,
        client.stream("GET", "/api/drafts/feed") as response,
    ):
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        reader = Feed(response)
        reader.seen = []
        assert (await reader.next())[0] == "ready"
        yield reader
