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

from crdt.hocuspocus import AUTH_AUTHENTICATED, AUTH_PERMISSION_DENIED, MESSAGE_AUTH, prefix
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


# -- Cross-site requests (server/identity/origin.py) --------------------------------------------
# A page on another site can make the browser send the host's session cookie with a WebSocket
# (no CORS there) or a bodiless POST (no preflight). When the host's `authenticate` names the
# caller, a request whose Origin or Sec-Fetch-Site says it comes from another site is refused.

EVIL = "https://evil.example"
CROSS_SITE = ({"Origin": EVIL}, {"Sec-Fetch-Site": "cross-site"})


async def _secret_draft(host: EmbeddedHost, user: str) -> tuple[str, str]:
    """A draft of `user` titled "Secret", and the Cookie header of `user`'s session."""
    async with signed_in(host, user) as client:
        created = await client.post(f"{PREFIX}/api/drafts", json={"title": "Secret"})
        assert created.status_code == 201, created.text
        return created.json()["id"], f"{COOKIE}={client.cookies[COOKIE]}"


async def _first_frame_or_close(ws: websockets.ClientConnection) -> bytes | None:
    """The first frame the server sends other than a Ping, or None once the server closed."""
    try:
        while True:
            data = await ws.recv()
            assert isinstance(data, bytes)
            if data not in (b"\x09", b"\x0a"):
                return data
    except websockets.ConnectionClosed:
        return None


@pytest.mark.parametrize("cross_site", CROSS_SITE, ids=["origin", "sec-fetch-site"])
async def test_a_cross_site_websocket_with_the_session_cookie_is_closed_4403(
    host: EmbeddedHost, cross_site: dict[str, str]
) -> None:
    draft, cookie = await _secret_draft(host, "erin")
    headers = {"Cookie": cookie, **cross_site}
    url = f"{host.ws_url}/{draft}"
    async with websockets.connect(url, proxy=None, additional_headers=headers) as ws:
        assert await _first_frame_or_close(ws) is None  # nothing of the draft
        assert ws.close_code == 4403
        assert ws.close_reason is not None and "cross-site" in ws.close_reason


async def test_a_cross_site_hocuspocus_socket_with_the_session_cookie_is_closed_4403(
    host: EmbeddedHost,
) -> None:
    draft, cookie = await _secret_draft(host, "fay")
    frame = bytearray(prefix(draft) + bytes([MESSAGE_AUTH, 0]))
    write_var_string(frame, "")
    url = f"ws://127.0.0.1:{host.port}{PREFIX}/hocuspocus"
    headers = {"Cookie": cookie, "Origin": EVIL}
    async with websockets.connect(url, proxy=None, additional_headers=headers) as ws:
        await ws.send(bytes(frame))
        assert await _first_frame_or_close(ws) is None  # no Authenticated, no sync
        assert ws.close_code == 4403
        assert ws.close_reason is not None and "cross-site" in ws.close_reason


def _auth_frame(address: str, token: str) -> bytes:
    frame = bytearray(prefix(address) + bytes([MESSAGE_AUTH, 0]))
    write_var_string(frame, token)
    return bytes(frame)


async def test_a_cross_site_hocuspocus_socket_keeps_its_token_documents(
    host: EmbeddedHost,
) -> None:
    """A document authorised by a token stays open; one asked for on the session is denied."""
    draft, cookie = await _secret_draft(host, "kim")
    other, _ = await _secret_draft(host, "kim")
    url = f"ws://127.0.0.1:{host.port}{PREFIX}/hocuspocus"
    headers = {"Cookie": cookie, "Origin": EVIL}
    async with websockets.connect(url, proxy=None, additional_headers=headers) as ws:
        await ws.send(_auth_frame(other, token("kim")))
        data = await _first_frame_or_close(ws)
        assert data is not None
        reader = Reader(data)
        assert (reader.read_var_string(), reader.read_var_uint()) == (other, MESSAGE_AUTH)
        assert reader.read_var_uint() == AUTH_AUTHENTICATED
        await ws.send(_auth_frame(draft, ""))
        while True:  # frames of `other` (its sync) may come first
            data = await _first_frame_or_close(ws)
            assert data is not None, (ws.close_code, ws.close_reason)
            reader = Reader(data)
            if reader.read_var_string() == draft:
                break
        assert reader.read_var_uint() == MESSAGE_AUTH  # the first frame of `draft`: a denial
        assert reader.read_var_uint() == AUTH_PERMISSION_DENIED
        assert "cross-site" in reader.read_var_string()


async def test_the_hosts_own_origin_and_a_token_from_anywhere_still_connect(
    host: EmbeddedHost,
) -> None:
    draft, cookie = await _secret_draft(host, "gus")
    same_site = {"Cookie": cookie, "Origin": host.origin, "Sec-Fetch-Site": "same-origin"}
    editor = await PycrdtClient(host.ws_url, draft, None, headers=same_site).connect()
    tokened = PycrdtClient(host.ws_url, draft, token("gus"), headers={"Origin": EVIL})
    await tokened.connect()
    try:
        await asyncio.wait_for(editor.synced.wait(), 10)
        await asyncio.wait_for(tokened.synced.wait(), 10)
        assert editor.text("title") == tokened.text("title") == "Secret"
    finally:
        await editor.disconnect()
        await tokened.disconnect()
    # Hocuspocus from the host's own page, with the cookie.
    frame = bytearray(prefix(draft) + bytes([MESSAGE_AUTH, 0]))
    write_var_string(frame, "")
    url = f"ws://127.0.0.1:{host.port}{PREFIX}/hocuspocus"
    headers = {"Cookie": cookie, "Origin": host.origin}
    async with websockets.connect(url, proxy=None, additional_headers=headers) as ws:
        await ws.send(bytes(frame))
        data = await _first_frame_or_close(ws)
        assert data is not None
        reader = Reader(data)
        assert reader.read_var_string() == draft
        assert reader.read_var_uint() == MESSAGE_AUTH
        assert reader.read_var_uint() == AUTH_AUTHENTICATED


async def _draft_ids(client: httpx.AsyncClient) -> set[str]:
    listed = await client.get(f"{PREFIX}/api/drafts")
    assert listed.status_code == 200
    return {draft["id"] for draft in listed.json()["items"]}


@pytest.mark.parametrize("cross_site", CROSS_SITE, ids=["origin", "sec-fetch-site"])
async def test_a_cross_site_bodiless_write_with_the_session_cookie_is_403(
    host: EmbeddedHost, cross_site: dict[str, str]
) -> None:
    async with signed_in(host, "hana") as hana:
        before = await _draft_ids(hana)
        refused = await hana.post(f"{PREFIX}/api/drafts", headers=cross_site)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"] == "forbidden"
        assert "cross-site" in refused.json()["detail"]
        assert await _draft_ids(hana) == before  # no draft created
        mine = (await hana.post(f"{PREFIX}/api/drafts", json={})).json()["id"]
        deleted = await hana.delete(f"{PREFIX}/api/drafts/{mine}", headers=cross_site)
        assert deleted.status_code == 403
        assert mine in await _draft_ids(hana)
        # Reads are left alone: without CORS headers the foreign page cannot read them.
        read = await hana.get(f"{PREFIX}/api/drafts", headers=cross_site)
        assert read.status_code == 200
        assert not any(name.lower().startswith("access-control-") for name in read.headers)


async def test_a_same_origin_or_token_write_is_created(host: EmbeddedHost) -> None:
    async with signed_in(host, "ivan") as ivan:
        headers = {"Origin": host.origin, "Sec-Fetch-Site": "same-origin"}
        created = await ivan.post(f"{PREFIX}/api/drafts", headers=headers)
        assert created.status_code == 201, created.text
        assert created.json()["id"] in await _draft_ids(ivan)
    async with httpx.AsyncClient(base_url=host.http_url, timeout=10) as app:
        headers = {"Origin": EVIL, "Authorization": f"Bearer {token('ivan')}"}
        created = await app.post(f"{PREFIX}/api/drafts", headers=headers)
        assert created.status_code == 201, created.text


async def test_an_allowed_origin_passes_and_others_do_not(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    allowed = "https://app.example"
    other = EmbeddedHost(tmp_path_factory.mktemp("allowed"), allowed_origins=(allowed,)).start()
    try:
        draft, cookie = await _secret_draft(other, "jo")
        async with signed_in(other, "jo") as jo:
            cross = {"Origin": allowed, "Sec-Fetch-Site": "cross-site"}
            created = await jo.post(f"{PREFIX}/api/drafts", headers=cross)
            assert created.status_code == 201, created.text
            refused = await jo.post(f"{PREFIX}/api/drafts", headers={"Origin": EVIL})
            assert refused.status_code == 403
        headers = {"Cookie": cookie, "Origin": allowed, "Sec-Fetch-Site": "cross-site"}
        client = await PycrdtClient(other.ws_url, draft, None, headers=headers).connect()
        try:
            await asyncio.wait_for(client.synced.wait(), 10)
            assert client.text("title") == "Secret"
        finally:
            await client.disconnect()
    finally:
        other.stop()
