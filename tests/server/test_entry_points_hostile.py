"""What one client sends at the entry points hurts no one else (review of the entry points).

Each test: a real server, real sockets; the hostile connection gets its documented close code,
and the server (its health, the other clients) is as it was.
"""

from __future__ import annotations

import uuid

import httpx

from crdt.awareness import AwarenessEntry, encode_awareness_update
from crdt.protocol import Awareness, SyncStep1, encode_message
from server.sync.presence import MAX_BYTES
from tests.support.raw_client import connect_raw
from tests.support.server_process import ServerProcess

TIMEOUT = 10


def new_draft() -> str:
    return f"d-{uuid.uuid4().hex[:12]}"


async def test_a_deeply_nested_awareness_state_closes_4400_and_leaves_the_server_healthy(
    server: ServerProcess,
) -> None:
    """Valid JSON nested deeper than Python's recursion limit, under `--awareness-max-bytes`:
    `json.loads` raises RecursionError, not ValueError. It is bad input (4400), not a server
    fault: a fault is 1011, turns /healthz 503 and, five in a minute, stops the server."""
    depth = 20_000
    state = "[" * depth + "]" * depth
    assert len(state) < MAX_BYTES
    attack = encode_message(Awareness(encode_awareness_update([AwarenessEntry(4242, 1, state)])))
    draft = new_draft()
    client = await connect_raw(server.ws_url, draft, server.token("alice"))
    try:
        await client.next_message(SyncStep1, timeout=TIMEOUT)
        await client.send(attack)
        code, reason = await client.wait_closed(timeout=TIMEOUT)
    finally:
        await client.close()
    assert code == 4400, (code, reason)
    assert reason
    async with httpx.AsyncClient() as http:
        health = await http.get(f"{server.http_url}/healthz")
    assert health.status_code == 200, health.text
