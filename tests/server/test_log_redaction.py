"""Honest logs (issue 27, point 5): no token in any log line (uvicorn logs each WebSocket's path
with its query string, and a y-websocket client sends its token there), and nothing a client
chooses (a user name, a draft id in a path) can forge or break a line, in the text format and
in `--log-format json`, tracebacks included."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from pycrdt import Text
from websockets.exceptions import InvalidStatus

from tests.support.pycrdt_client import PycrdtClient, connect_synced
from tests.support.raw_client import connect_raw
from tests.support.rest import as_user
from tests.support.server_process import ServerProcess
from tests.support.waiting import eventually

MARKER = "FORGED"
FORGED_LINE = f"2026-12-06 12:00:00,000 INFO draftsync.api {MARKER} a line nobody logged"
# Draft ids as WebSocket paths: a NUL, then a carriage return or a newline before a forged
# record. Starlette's `{draft_id:path}` does not match a newline (the upgrade is refused with
# 403, and uvicorn logs the path as sent, percent-encoded); the others reach the endpoint.
FORGED_PATHS = [
    f"evil%00id%0d{FORGED_LINE.replace(' ', '%20')}",
    f"evil%00id%0a{FORGED_LINE.replace(' ', '%20')}",
]


@pytest.fixture(scope="module")
def json_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """`--log-format json`, and a server error on the first update (a traceback to log)."""
    process = ServerProcess(
        tmp_path_factory.mktemp("json-logs"),
        "--log-format",
        "json",
        env={"DRAFTSYNC_FAULTS": "update"},
    )
    process.start()
    yield process
    process.stop()


async def forge(server: ServerProcess) -> tuple[str, str]:
    """Both forgery attempts, and a normal y-websocket session; the token used and the draft."""
    token = server.token("alice")
    async with as_user(server, "alice") as api:
        created = await api.post("/api/drafts", json={})
        assert created.status_code == 201, created.text
        draft = created.json()["id"]
        answer = await api.put(
            f"/api/drafts/{draft}/access",
            # ESC, not NUL: a user name holding NUL is refused 422 (tests/server/test_access.py)
            json={"user": f"bob\n{FORGED_LINE}\x1b", "role": "editor"},
        )
        assert answer.status_code == 200, answer.text
    bad = await connect_raw(server.ws_url, FORGED_PATHS[0], token)
    assert (await bad.wait_closed())[0] == 4400
    with pytest.raises(InvalidStatus):
        await connect_raw(server.ws_url, FORGED_PATHS[1], token)
    client = await PycrdtClient(server.ws_url, draft, token).connect()
    await client.disconnect()
    return token, draft


def assert_not_forged(lines: list[str]) -> None:
    """Each line is a record of its own: none starts with the forged record, nor holds a NUL
    or a carriage return; the values are there, escaped."""
    assert not any(line.startswith(FORGED_LINE[:23]) for line in lines)
    assert not any("\x00" in line or "\r" in line for line in lines)
    text = "\n".join(lines)
    assert f"bob\\x0a{FORGED_LINE}\\x1b" in text  # PUT access, the user's name
    assert f"evil\\x00id\\x0d{FORGED_LINE}" in text  # the endpoint refusing the draft id
    assert "evil%00id%0a" in text  # uvicorn, the refused upgrade's path as sent


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


async def test_a_value_with_a_newline_or_nul_cannot_forge_a_text_log_line(
    server: ServerProcess,
) -> None:
    token, _ = await forge(server)

    async def logged() -> bool:
        return server.log().count(MARKER) >= 4

    await eventually(logged)
    log = server.log()
    assert_not_forged(log.splitlines())
    assert token not in log


async def test_json_log_lines_each_parse_carry_no_token_and_escape_what_clients_chose(
    json_server: ServerProcess,
) -> None:
    token, draft = await forge(json_server)
    writer = await connect_synced(json_server, draft)  # its first update trips the fault
    try:
        await writer.edit(lambda doc: doc.get("title", type=Text).insert(0, "x"))
        await writer.wait_for(lambda: writer.closed.is_set())
    finally:
        await writer.disconnect()

    def records() -> list[dict[str, object]]:
        lines = json_server.log().splitlines()
        # Not log records: stdout's one line (the editor's URL), which shares the file with
        # the log (stderr) here, and the test-only fault switch's warning at import, before
        # the log is configured (Python's last-resort handler).
        skip = ("draftsync on http", "fault injection armed")
        return [json.loads(line) for line in lines if not line.startswith(skip)]

    async def traceback_logged() -> bool:
        return any("exc_info" in record for record in records())

    await eventually(traceback_logged)
    parsed = records()
    log = json_server.log()
    assert token not in log
    for record in parsed:
        assert {"time", "level", "logger", "message"} <= record.keys(), record
    assert_not_forged([str(record["message"]) for record in parsed])
    assert any(record["logger"] == "uvicorn.error" for record in parsed)
    failures = [record for record in parsed if "exc_info" in record]
    assert failures and all(record["level"] == "ERROR" for record in failures)
    assert all("InjectedFault" in str(record["exc_info"]) for record in failures)
