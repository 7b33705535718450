"""No token and no typed text in any log line, at the most verbose levels (issue 26, point 3).

One real session against a server logging at `debug` (and at uvicorn's `trace`, below it): a
y-websocket client with `?token=` types a marker into a text field and sets a semantic field to
another, a Hocuspocus provider authenticates and types a third, REST calls carry Bearer tokens, a
token is renewed and used, forged tokens are refused on each entry point, and error paths
(a rejected value, a malformed frame, a refused REST body, a refused update) are taken; a draft
is also created over REST with typed content. Then
every line the server wrote (stdout and stderr) is searched for each token, each token's
signature, and each marker.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pty
import select
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from server.auth import TokenSigner
from server.logs import safe_record
from tests.support.hocuspocus_client import HocuspocusClient
from tests.support.node_client import NodeClient
from tests.support.raw_client import connect_raw
from tests.support.server_process import ServerProcess, free_port
from tests.support.waiting import eventually


def _marker(kind: str) -> str:
    return f"TYPED{kind}{uuid.uuid4().hex[:10]}"


async def _state(http: httpx.AsyncClient, draft: str) -> dict[str, object]:
    answer = await http.get(f"/api/drafts/{draft}")
    assert answer.status_code == 200, answer.text
    state: dict[str, object] = answer.json()["state"]
    return state


async def _session(server: ServerProcess) -> tuple[list[str], list[str]]:
    """Runs the session; returns the tokens it used and the markers it typed."""
    draft = f"logs-{uuid.uuid4().hex[:8]}"
    alice, bob = server.token("alice"), server.token("bob")
    forged = alice[:-6] + ("AAAAAA" if not alice.endswith("AAAAAA") else "BBBBBB")
    text, value, hp_text, rejected, bad_body, created, bad_start = (_marker(k) for k in "TVHRBCS")
    tokens = [alice, bob, forged]
    markers = [text, value, hp_text, rejected, bad_body, created, bad_start]
    url = server.http_url
    async with (
        httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {alice}"}) as as_alice,
        httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {forged}"}) as as_forged,
    ):
        # y-websocket: the token travels in the query string
        async with await NodeClient.start(server.ws_url, draft, alice, name="alice") as writer:
            await writer.call("wait_synced")
            await writer.call("insert", field="title", index=0, text=text)
            await writer.call("set", key="category", value=value)
            await writer.call("set", key="status", value=rejected)  # not a transition: rejected

            async def typed() -> bool:
                state = await _state(as_alice, draft)
                return text in str(state) and value in str(state)

            await eventually(typed)

            # REST with Bearer: share with bob, read, renew, use the renewed token
            shared = await as_alice.put(
                f"/api/drafts/{draft}/access", json={"user": "bob", "role": "editor"}
            )
            assert shared.status_code == 200, shared.text
            renewed = await as_alice.post("/api/token/renew", json={"draftId": draft})
            assert renewed.status_code == 200, renewed.text
            fresh = renewed.json()["token"]
            tokens.append(fresh)
            again = await as_alice.get(
                f"/api/drafts/{draft}/events", headers={"Authorization": f"Bearer {fresh}"}
            )
            assert again.status_code == 200, again.text
            made = await as_alice.post(
                "/api/drafts", json={"title": created, "fields": {"category": created}}
            )
            assert made.status_code == 201, made.text

            # Hocuspocus: the token travels inside the socket's auth message
            hocuspocus = await HocuspocusClient.launch(f"ws://127.0.0.1:{server.port}/hocuspocus")
            async with hocuspocus:
                await hocuspocus.open("a", draft, bob)
                await hocuspocus.call("wait_synced", doc="a")
                await hocuspocus.call("insert", doc="a", field="description", index=0, text=hp_text)
                await hocuspocus.call("wait_saved", doc="a")
                await hocuspocus.open("b", draft, forged)
                await hocuspocus.wait_doc_event("b", "authenticationFailed")

        # refused: a forged token on each entry point, a bad body, a malformed frame
        assert (await as_forged.get(f"/api/drafts/{draft}")).status_code == 401
        assert (await as_forged.post("/api/token/renew", json={})).status_code == 401
        refused = await connect_raw(server.ws_url, draft, forged)
        assert (await refused.wait_closed())[0] == 4401
        bad = await as_alice.post("/api/drafts", json={"fields": {"current_step": bad_body}})
        assert bad.status_code in (400, 422), bad.text
        bad = await as_alice.post("/api/drafts", json={"fields": {"status": bad_start}})
        assert bad.status_code == 422 and bad_start in bad.text, bad.text  # told, not logged
        unparsable = await as_alice.post(
            "/api/drafts",
            content=f'{{"fields": {{"title": "{bad_body}"',
            headers={"content-type": "application/json"},
        )
        assert unparsable.status_code == 400, unparsable.text
        raw = await connect_raw(server.ws_url, draft, alice)
        await raw.send(bytes([0, 2, 40]) + text.encode() * 3)  # an update that does not decode
        assert (await raw.wait_closed())[0] == 4400
    return tokens, markers


@pytest.mark.parametrize("level", ["debug", "trace"])
async def test_no_token_or_typed_text_in_any_log_line(tmp_path: Path, level: str) -> None:
    server = ServerProcess(tmp_path / "data", "--log-level", level, "--room-grace", "0.2")
    server.start()
    try:
        tokens, markers = await asyncio.wait_for(_session(server), timeout=120)
    finally:
        server.stop()
    log = server.log()
    assert "connection open draft=" in log and "hocuspocus document open" in log
    assert "token=[redacted]" in log  # the query string was there, and redacted
    assert "token renewed user=alice" in log
    lines = log.splitlines()
    assert len(lines) > 20
    # stdout is not a terminal here (a process manager's log): the address, no token
    [start] = [line for line in lines if line.startswith("draftsync on http")]
    assert "token=" not in start and "draftsync token USER" in start, start
    for token in tokens:
        signature = token.rsplit(".", 1)[1]
        leaked = [line for line in lines if token in line or signature in line]
        assert not leaked, leaked[:3]
    for marker in markers:
        as_hex = " ".join(f"{byte:02x}" for byte in marker.encode()[-8:])  # a frame dump's form
        leaked = [line for line in lines if marker in line or as_hex in line]
        assert not leaked, leaked[:3]


@pytest.mark.parametrize(
    ("message", "secret"),
    [
        ("refused: headers={'authorization': 'Bearer %s'}", "tok.en.value"),
        ("Authorization: Basic %s", "YWxpY2U6c2VjcmV0"),
        ("cookie=%s; path=/", "session-abcdef"),
        ("webhook secret %s loaded", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        ("invalid token %s", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"),
    ],
)
def test_secrets_in_a_message_or_a_traceback_are_redacted(message: str, secret: str) -> None:
    """The filter every handler of `draftsync serve` carries, on records as a handler gets them:
    a secret is redacted in the message and in the traceback the formatter prints."""
    try:
        raise ValueError(message % secret)
    except ValueError:
        record = logging.getLogger("draftsync.test").makeRecord(
            "draftsync.test", logging.ERROR, __file__, 1, message, (secret,), sys.exc_info()
        )
    assert safe_record(record)
    line = logging.Formatter("%(levelname)s %(message)s").format(record)
    assert secret not in line and "[redacted]" in line, line
    assert line.count("[redacted]") == 2, line  # the message and the exception's text


def test_on_a_terminal_the_start_line_is_a_sign_in_link(tmp_path: Path) -> None:
    """`make serve` in a terminal: the first line is a link to open at once, with a demo
    user's token (signed with the data directory's secret)."""
    leader, follower = pty.openpty()
    port = free_port()
    command = [sys.executable, "-m", "server", "serve", "--port", str(port)]
    command += ["--data", str(tmp_path / "data")]
    process = subprocess.Popen(command, stdout=follower, stderr=subprocess.DEVNULL)
    os.close(follower)
    try:
        line = b""
        deadline = time.monotonic() + 30
        while b"\n" not in line and time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1.0)
            if ready:
                line += os.read(leader, 4096)
    finally:
        process.terminate()
        process.wait(timeout=30)
        os.close(leader)
    first = line.decode().splitlines()[0]
    prefix = f"draftsync on http://127.0.0.1:{port}/?token="
    assert first.startswith(prefix), first
    secret = (tmp_path / "data" / "secret").read_text().strip()
    assert TokenSigner(secret).verify(first.removeprefix(prefix)) == "demo"
