"""draftsync served by uvicorn inside the test's own event loop, for tests that read the
server's structures (its tables, its free lists, what a storm of connections leaves behind)
while real WebSocket clients on loopback drive it. Every wait is bounded in count and time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from crdt.protocol import SyncStep1, SyncStep2, encode_message
from server.app import create_app
from server.config import Settings
from server.service import Service
from server.sync.wsprotocol import LeanWebSocketProtocol
from tests.support.raw_client import RawClient, connect_raw
from tests.support.server_process import SECRET, free_port

__all__ = ["InProcessServer", "serving_in_process", "synced_client", "until"]


async def until(ready: Callable[[], bool], what: str, *, tries: int = 1000) -> None:
    """Wait until `ready()`, polling every 20 ms, at most `tries` times (~20 s)."""
    for _ in range(tries):
        if ready():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within the bound: {what}")


@dataclass(frozen=True, slots=True)
class InProcessServer:
    ws_url: str  # the y-websocket endpoint, ws://127.0.0.1:PORT/ws
    service: Service
    uvicorn_server: uvicorn.Server


@contextlib.asynccontextmanager
async def serving_in_process(data_dir: Path, **overrides: Any) -> AsyncIterator[InProcessServer]:
    """The app `draftsync serve` builds (SQLite store, a short room grace), on a free port,
    with draftsync's WebSocket protocol; stopped on the way out. `overrides` are `Settings`
    fields (what serve's flags set)."""
    settings = Settings(data_dir=data_dir, secret=SECRET, room_grace_seconds=0.1, **overrides)
    app = create_app(settings)
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        ws=LeanWebSocketProtocol,
        ws_per_message_deflate=False,
        log_level="warning",
        log_config=None,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        await until(lambda: server.started or serving.done(), "the server listens")
        assert server.started, "the server did not start"
        yield InProcessServer(f"ws://127.0.0.1:{port}/ws", app.state.service, server)
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 30)


async def synced_client(ws_url: str, draft: str, token: str) -> RawClient:
    """A y-websocket client that sent its (empty) state and got the server's answer."""
    client = await connect_raw(ws_url, draft, token)
    await client.send(encode_message(SyncStep1(b"\x00")))
    await client.next_message(SyncStep2)
    return client
