"""draftsync embedded in a host application (README, "Embedding in your app"): a Starlette host
mounts `create_app(settings, authenticate=...)` under `/collab`, under a real uvicorn; the
host's own cookie session names the caller of REST, y-websocket, Hocuspocus and the pages,
and draftsync's tokens work beside it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import websockets
from pycrdt import Text

from crdt.hocuspocus import AUTH_AUTHENTICATED, MESSAGE_AUTH, prefix
from crdt.lib0 import Reader, write_var_string
from server.auth import TokenSigner
from server.http.pages import WEB_DIST
from tests.support.embedded_host import COOKIE, PREFIX, EmbeddedHost
from tests.support.pycrdt_client import PycrdtClient
from tests.support.raw_client import connect_raw
from tests.support.server_process import SECRET


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedHost]:
    process = EmbeddedHost(tmp_path_factory.mktemp("embedded")).start()
    yield process
    process.stop()


@contextlib.asynccontextmanager
async def signed_in(host: EmbeddedHost, user: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client holding the host's session cookie for `user` (no draftsync token)."""
    async with httpx.AsyncClient(base_url=host.http_url, timeout=10) as client:
        answer = await client.post(f"/sign-in/{user}")
        assert answer.status_code == 200
        yield client


def token(user: str) -> str:
    return TokenSigner(SECRET).issue(user, ttl_seconds=600, now=time.time())


async def test_rest_and_websocket_sync_work_under_the_prefix_with_the_hosts_session(
    host: EmbeddedHost,
) -> None:
    async with signed_in(host, "alice") as alice:
        assert (await alice.get("/")).text == "the host's own page\n"  # the host's own routes
        created = await alice.post(f"{PREFIX}/api/drafts", json={"title": "Spring"})
        assert created.status_code == 201, created.text
        draft = created.json()["id"]
        listed = await alice.get(f"{PREFIX}/api/drafts")
        assert [(d["id"], d["owner"]) for d in listed.json()["items"]] == [(draft, "alice")]
        shared = await alice.put(
            f"{PREFIX}/api/drafts/{draft}/access", json={"user": "bob", "role": "editor"}
        )
        assert shared.status_code == 200, shared.text
        cookie = {"Cookie": f"{COOKIE}={alice.cookies[COOKIE]}"}

    # alice edits over the WebSocket with her cookie; bob, with a draftsync token, sees it.
    editor = await PycrdtClient(host.ws_url, draft, None, headers=cookie).connect()
    reader = await PycrdtClient(host.ws_url, draft, token("bob")).connect()
    try:
        await asyncio.wait_for(editor.synced.wait(), 10)
        await asyncio.wait_for(reader.synced.wait(), 10)
        assert editor.text("title") == "Spring"
        await editor.edit(lambda doc: doc.get("title", type=Text).insert(6, " fair"))
        await editor.flush()  # committed and relayed (write ack 102)
        await reader.wait_for(lambda: reader.text("title") == "Spring fair")
    finally:
        await editor.disconnect()
        await reader.disconnect()

    # What REST reads is what the socket wrote.
    async with httpx.AsyncClient(base_url=host.http_url, timeout=10) as bob:
        got = await bob.get(
            f"{PREFIX}/api/drafts/{draft}", headers={"Authorization": f"Bearer {token('bob')}"}
        )
        assert got.status_code == 200
        assert got.json()["state"]["texts"]["title"] == "Spring fair"


async def test_no_session_and_no_token_is_refused_with_the_reason(host: EmbeddedHost) -> None:
    async with httpx.AsyncClient(base_url=host.http_url, timeout=10) as anonymous:
        refused = await anonymous.get(f"{PREFIX}/api/drafts")
        assert refused.status_code == 401
        assert "no user signed in" in refused.json()["detail"]
        schema = await anonymous.get(f"{PREFIX}/api/schema")
        assert schema.status_code == 401
    client = await connect_raw(host.ws_url, "embedded-anonymous", None)
    code, reason = await client.wait_closed()
    assert code == 4401
    assert reason is not None and "no user signed in" in reason
    # A bad token is refused even with a good session: a client that sends one means it.
    async with signed_in(host, "carol") as carol:
        forged = await carol.get(f"{PREFIX}/api/drafts", headers={"Authorization": "Bearer x.y.z"})
        assert forged.status_code == 401


async def test_hocuspocus_under_the_prefix_authenticates_by_the_session(
    host: EmbeddedHost,
) -> None:
    async with signed_in(host, "dora") as dora:
        cookie = f"{COOKIE}={dora.cookies[COOKIE]}"
    frame = bytearray(prefix("embedded-hp") + bytes([MESSAGE_AUTH, 0]))
    write_var_string(frame, "")  # a provider without a token sends ""
    url = f"ws://127.0.0.1:{host.port}{PREFIX}/hocuspocus"
    async with websockets.connect(url, proxy=None, additional_headers={"Cookie": cookie}) as ws:
        await ws.send(bytes(frame))
        async with asyncio.timeout(10):
            while True:
                data = await ws.recv()
                assert isinstance(data, bytes)
                reader = Reader(data)
                if reader.read_var_string() == "embedded-hp":
                    break
    assert reader.read_var_uint() == MESSAGE_AUTH
    assert (reader.read_var_uint(), reader.read_var_string()) == (AUTH_AUTHENTICATED, "read-write")


async def test_the_editor_pages_link_under_the_prefix(host: EmbeddedHost) -> None:
    if not (WEB_DIST / "editor.js").is_file():
        pytest.fail(f"{WEB_DIST} is not built: run `make web`")
    async with httpx.AsyncClient(base_url=host.http_url, timeout=10) as client:
        for page, script in (("/", "drafts.js"), ("/d/some-draft", "editor.js")):
            answer = await client.get(f"{PREFIX}{page}")
            assert answer.status_code == 200
            html = answer.text
            assert '<meta name="draftsync-root" content="/collab">' in html
            assert f'src="/collab/static/{script}"' in html
            assert 'href="/collab/static/style.css"' in html
            assert '="/static/' not in html
            bundle = await client.get(f"{PREFIX}/static/{script}")
            assert bundle.status_code == 200
            assert "draftsync-root" in bundle.text  # the script reads the root it is under
