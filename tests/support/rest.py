"""REST clients for tests: httpx against the running server, one client per user."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.support.server_process import ServerProcess

__all__ = ["as_user", "create_draft", "new_id", "rooms_loaded", "scrape"]


def new_id(prefix: str = "d") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def as_user(server: ServerProcess, user: str | None) -> httpx.AsyncClient:
    """A client that sends `user`'s token (none when `user` is None); use with `async with`."""
    headers = {} if user is None else {"Authorization": f"Bearer {server.token(user)}"}
    return httpx.AsyncClient(base_url=server.http_url, headers=headers, timeout=10)


async def create_draft(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    """POST /api/drafts; fails the test unless it answers 201."""
    response = await client.post("/api/drafts", json=body)
    assert response.status_code == 201, response.text
    draft: dict[str, Any] = response.json()
    return draft


async def scrape(server: ServerProcess) -> str:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as client:
        response = await client.get("/metrics")
    response.raise_for_status()
    return response.text


async def rooms_loaded(server: ServerProcess) -> float:
    """How many rooms the server has loaded (`draftsync_rooms_loaded` on /metrics)."""
    for line in (await scrape(server)).splitlines():
        if line.startswith("draftsync_rooms_loaded "):
            return float(line.split()[1])
    raise AssertionError("no draftsync_rooms_loaded in /metrics")
