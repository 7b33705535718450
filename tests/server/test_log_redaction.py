"""No token in any log line: uvicorn logs each WebSocket's path with its query string, and a
y-websocket client sends its token there (`?token=...`)."""

from __future__ import annotations

import uuid

from tests.support.pycrdt_client import connect_synced
from tests.support.raw_client import connect_raw
from tests.support.rest import as_user
from tests.support.server_process import ServerProcess


async def test_tokens_never_reach_the_log(server: ServerProcess) -> None:
    draft = f"logs-{uuid.uuid4().hex[:8]}"
    token = server.token("alice")
    client = await connect_synced(server, draft, "alice")
    await client.disconnect()
    bad = await connect_raw(server.ws_url, draft, token[:-4] + "AAAA")
    code, _ = await bad.wait_closed()
    assert code == 4401
    log = server.log()
    assert "WebSocket /ws/" in log and "token=[redacted]" in log
    assert token not in log and token[:-4] not in log


async def test_a_value_with_a_newline_or_nul_cannot_forge_a_log_line(server: ServerProcess) -> None:
    async with as_user(server, "alice") as api:
        created = await api.post("/api/drafts", json={})
        assert created.status_code == 201, created.text
        draft = created.json()["id"]
        forged = "bob\nFORGED INFO draftsync.api a line nobody logged\x00"
        answer = await api.put(
            f"/api/drafts/{draft}/access", json={"user": forged, "role": "editor"}
        )
        assert answer.status_code == 200, answer.text
    log = server.log()
    assert "bob\\x0aFORGED" in log  # the value is logged, escaped, on its own line
    assert not any(line.startswith("FORGED") for line in log.splitlines())
    assert "\x00" not in log
