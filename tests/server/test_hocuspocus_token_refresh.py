"""A Hocuspocus document's token refreshed mid-session with the app's JWTs (the provider's
`token` option changed, then `sendToken`, as an app refreshing its token does): the fresh
token's roles claim is what the document holds from then on, as a y-websocket client that
renews by reconnecting gets; and a fresh token signed with a key the app rotated in since the
document opened is verified with the app's current keys, not refused as unknown."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from pycrdt import Text

from tests.support.app_identity import (
    AppKey,
    JwksServer,
    app_claims,
    app_server_process,
    new_key,
)
from tests.support.hocuspocus_client import HocuspocusClient
from tests.support.rest import create_draft, new_id
from tests.support.server_process import ServerProcess
from tests.support.stored import stored_doc


@pytest.fixture(scope="module")
def key() -> AppKey:
    return new_key("ES256", "refresh-1")


@pytest.fixture(scope="module")
def jwks(key: AppKey) -> Iterator[JwksServer]:
    with JwksServer([key]) as server:
        yield server


@pytest.fixture(scope="module")
def app_server(
    tmp_path_factory: pytest.TempPathFactory, jwks: JwksServer
) -> Iterator[ServerProcess]:
    process = app_server_process(
        tmp_path_factory.mktemp("hp-refresh"), jwks, "--jwks-cooldown", "0.2"
    )
    process.start()
    yield process
    process.stop()


def hocuspocus_url(server: ServerProcess) -> str:
    return f"ws://127.0.0.1:{server.port}/hocuspocus"


async def alices_draft(server: ServerProcess) -> str:
    """A draft alice owns and nobody else has a stored role on."""
    headers = {"Authorization": f"Bearer {server.token('alice')}"}
    async with httpx.AsyncClient(base_url=server.http_url, headers=headers, timeout=10) as client:
        return str((await create_draft(client))["id"])


def title(server: ServerProcess, draft: str) -> str:
    return str(stored_doc(server.database, draft).get("title", type=Text))


async def test_a_refreshed_token_that_drops_the_grant_drops_the_write_then_the_document(
    app_server: ServerProcess, key: AppKey
) -> None:
    """Bob reaches alice's draft only through his token's roles claim. His refreshed token
    grants viewer: told "readonly" at once, his next write refused (SyncStatus 0) and never
    stored; refreshed again with no grant: the document is closed "access revoked"."""
    draft = await alices_draft(app_server)
    bob = new_id("bob")
    hp = await HocuspocusClient.launch(hocuspocus_url(app_server))
    try:
        await hp.open("a", draft, key.sign(app_claims(bob, drafts={draft: "editor"})))
        assert (await hp.wait_doc_event("a", "authenticated"))["scope"] == "read-write"
        await hp.call("wait_synced", doc="a")
        await hp.call("insert", doc="a", field="title", index=0, text="edited")
        await hp.call("wait_saved", doc="a")

        viewer = key.sign(app_claims(bob, drafts={draft: "viewer"}))
        await hp.call("set_token", doc="a", token=viewer)
        await hp.call("send_token", doc="a")
        downgraded = await hp.wait_doc_event("a", "authenticated", scope="readonly")
        assert downgraded["scope"] == "readonly"
        await hp.call("insert", doc="a", field="title", index=0, text="AFTER ")
        refused = await hp.wait_doc_event("a", "sync-status", applied=False)
        assert refused["applied"] is False

        await hp.call("set_token", doc="a", token=key.sign(app_claims(bob)))
        await hp.call("send_token", doc="a")
        closed = await hp.wait_doc_event("a", "close")
        assert closed["reason"] == "access revoked"
        notices = [
            json.loads(e["payload"])
            for e in hp.events
            if e.get("event") == "stateless" and e.get("doc") == "a"
        ]
        assert {"type": "draftsync.closed", "code": 4403, "reason": "access revoked"} in notices
    finally:
        await hp.close()
    assert title(app_server, draft) == "edited"


async def test_a_refreshed_token_signed_with_a_key_rotated_in_keeps_the_document(
    app_server: ServerProcess, key: AppKey, jwks: JwksServer
) -> None:
    """The app adds a key to its JWKS while a document is open and signs the refreshed token
    with it: the server fetches the JWKS for the new key id (as on connect) and the document
    goes on editing."""
    draft = await alices_draft(app_server)
    hp = await HocuspocusClient.launch(hocuspocus_url(app_server))
    rotated = new_key("EdDSA", new_id("refresh-2"))
    try:
        await hp.open("a", draft, key.sign(app_claims("carol", drafts={draft: "editor"})))
        await hp.call("wait_synced", doc="a")
        jwks.keys = [key, rotated]
        fresh = rotated.sign(app_claims("carol", drafts={draft: "editor"}, exp=2_000_000_000))
        await hp.call("set_token", doc="a", token=fresh)
        await hp.call("send_token", doc="a")
        await hp.call("insert", doc="a", field="title", index=0, text="still here")
        await hp.call("wait_saved", doc="a")
        assert not [e for e in hp.events if e.get("event") == "close"]
    finally:
        jwks.keys = [key]
        await hp.close()
    assert title(app_server, draft) == "still here"
    assert "hocuspocus token renewed user=carol" in app_server.log()
