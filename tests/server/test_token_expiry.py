"""Expiry on open sockets (issue 27, point 3): a connection whose token expires is closed with
4401 "token expired" and nothing it sends from then on is stored; a Hocuspocus document whose
provider hands over a fresh token (asked for by the server, or unasked) keeps working past the
first token's expiry."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

from pycrdt import Doc, Text
from websockets.exceptions import ConnectionClosed

from server.sync.expiry import EXPIRED_REASON
from tests.support.hocuspocus_client import HocuspocusClient
from tests.support.pycrdt_client import PycrdtClient, connect_synced
from tests.support.server_process import ServerProcess
from tests.support.stored import stored_doc
from tests.support.waiting import eventually

SHORT_TTL = 4  # seconds; `exp` is whole seconds, so such a token expires within 3 to 4 s


def new_draft() -> str:
    return f"exp-{uuid.uuid4().hex[:12]}"


def short_token(server: ServerProcess, user: str = "alice") -> tuple[str, float]:
    """A token of `SHORT_TTL` seconds and the moment it expires."""
    now = time.time()
    return server.token(user, ttl=SHORT_TTL, now=now), float(int(now) + SHORT_TTL)


async def until(moment: float) -> None:
    """Sleep until the wall clock passes `moment` (bounded: tokens here live seconds)."""
    await asyncio.sleep(max(0.0, moment - time.time()) + 0.05)


def title(doc: Doc) -> str:
    return str(doc.get("title", type=Text))


async def append(client: PycrdtClient, text: str) -> None:
    def change(doc: Doc) -> None:
        field = doc.get("title", type=Text)
        field.insert(len(field), text)

    await client.edit(change)


async def test_a_y_websocket_socket_is_closed_at_expiry_and_its_late_write_is_not_stored(
    server: ServerProcess,
) -> None:
    draft = new_draft()
    token, expires_at = short_token(server)
    client = await PycrdtClient(server.ws_url, draft, token).connect()
    try:
        await asyncio.wait_for(client.synced.wait(), 10)
        await append(client, "before")
        await client.flush()
        await until(expires_at)
        with contextlib.suppress(ConnectionClosed):  # the timer may have closed it first
            await append(client, " AFTER")  # sent after expiry: dropped either way
        await asyncio.wait_for(client.closed.wait(), 10)
        assert (client.close_code, client.close_reason) == (4401, EXPIRED_REASON)
    finally:
        await client.disconnect()
    # A fresh connection's write is committed after anything the old one got applied.
    reader = await connect_synced(server, draft)
    try:
        assert title(reader.doc) == "before"
        await append(reader, "!")
        await reader.flush()
    finally:
        await reader.disconnect()
    assert title(stored_doc(server.database, draft)) == "before!"


async def test_a_quiet_y_websocket_socket_is_closed_at_expiry(server: ServerProcess) -> None:
    token, expires_at = short_token(server)
    client = await PycrdtClient(server.ws_url, new_draft(), token).connect()
    try:
        await asyncio.wait_for(client.closed.wait(), SHORT_TTL + 10)
        assert (client.close_code, client.close_reason) == (4401, EXPIRED_REASON)
        assert time.time() >= expires_at
    finally:
        await client.disconnect()


async def test_a_refreshed_hocuspocus_document_outlives_its_first_token_the_others_close(
    server: ServerProcess,
) -> None:
    """Three documents on one socket, each with a short token: `asked` gets a fresh token
    into its provider after it authenticated, which the server's token sync request then
    collects; `unasked` sends its fresh token on its own; `stale` keeps its token and is closed
    at its expiry, alone, and what it sends after is not stored."""
    drafts = {name: new_draft() for name in ("asked", "unasked", "stale")}
    client = await HocuspocusClient.launch(f"ws://127.0.0.1:{server.port}/hocuspocus", shared=True)
    try:
        expiries = []
        for handle, draft in drafts.items():
            token, expires_at = short_token(server)
            expiries.append(expires_at)
            await client.open(handle, draft, token)
        # The server asks half the token's life after auth (>= 1.5 s): the provider has the
        # fresh token by then, and it is not the one it authenticated with.
        await client.wait_doc_event("asked", "authenticated")
        await client.call("set_token", doc="asked", token=server.token("alice"))
        for handle in drafts:
            await client.call("wait_synced", doc=handle)
        await client.call("set_token", doc="unasked", token=server.token("alice"))
        await client.call("send_token", doc="unasked")

        closed = await client.wait_doc_event("stale", "close", timeout=SHORT_TTL + 10)
        assert closed["reason"] == EXPIRED_REASON
        await until(max(expiries) + 1)
        for handle in ("asked", "unasked"):
            await client.call("insert", doc=handle, field="title", index=0, text="after")
            await client.call("wait_saved", doc=handle)
            state = await client.doc_state(handle, "title")
            assert state["isAuthenticated"] and state["texts"]["title"] == "after"
        assert not [e for e in client.events if e.get("event") == "close" and e["doc"] != "stale"]
        await client.call("insert", doc="stale", field="title", index=0, text="LATE")
    finally:
        await client.close()

    def closed_line() -> str | None:
        marker = f"hocuspocus document closed draft={drafts['stale']} "
        return next((line for line in server.log().splitlines() if marker in line), None)

    async def logged() -> bool:
        return closed_line() is not None

    await eventually(logged)
    assert f"code=4401 reason={EXPIRED_REASON}" in str(closed_line())
    log = server.log()
    assert log.count("hocuspocus token renewed user=alice") >= 2
    assert title(stored_doc(server.database, drafts["asked"])) == "after"
    assert title(stored_doc(server.database, drafts["unasked"])) == "after"
    assert title(stored_doc(server.database, drafts["stale"])) == ""


async def test_a_refresh_with_another_users_token_closes_the_document(
    server: ServerProcess,
) -> None:
    draft = new_draft()
    client = await HocuspocusClient.launch(f"ws://127.0.0.1:{server.port}/hocuspocus")
    try:
        await client.open("a", draft, server.token("alice"))
        await client.call("wait_synced", doc="a")
        await client.call("set_token", doc="a", token=server.token("mallory"))
        await client.call("send_token", doc="a")
        closed = await client.wait_doc_event("a", "close")
        assert closed["reason"] == "token refresh refused: another user's token"
    finally:
        await client.close()
