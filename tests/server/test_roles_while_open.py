"""A role change takes effect for the next connect at once while the draft's room stays open
(issue 24 point 2): roles are answered from memory on SQLite (server/store/role_memo.py), so
these tests keep the room open with the owner's editor throughout and reconnect the other
user right after each change. Revoked: refused 4403. Downgraded: read-only (told so at its
sync step 2, its edits stored nowhere). Upgraded: its edits reach the room and the store.
Deleted: 4404. Connects racing a revocation never keep the revoked role.

"Nothing was stored" is never waited for with a sleep: the editor's write acknowledgement
(message 102) comes back once the server has handled, and committed, all it sent before."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from pycrdt import Doc, Text

from crdt.protocol import Auth, SyncStep1, SyncStep2, encode_message
from tests.support.pycrdt_client import PycrdtClient, connect_synced, type_into
from tests.support.raw_client import connect_raw
from tests.support.rest import as_user, create_draft, new_id
from tests.support.server_process import ServerProcess
from tests.support.store_reader import stored_doc

EMPTY_UPDATE = Doc().get_update()


async def test_the_next_connect_has_each_new_role_while_the_room_stays_open(
    server: ServerProcess,
) -> None:
    alice, bob = new_id("alice"), new_id("bob")
    async with as_user(server, alice) as rest, _open_room(server, alice, "Open") as keeper:
        draft_id = keeper.draft_id
        await _share(rest, draft_id, bob, "editor")
        assert await _writes(server, draft_id, bob, " +editor", keeper.client)  # remembered

        await _share(rest, draft_id, bob, "viewer")
        assert await _told_read_only(server, draft_id, bob)
        assert not await _writes(server, draft_id, bob, " +viewer", keeper.client)

        await _share(rest, draft_id, bob, "editor")
        assert not await _told_read_only(server, draft_id, bob)
        assert await _writes(server, draft_id, bob, " +editor-again", keeper.client)

        await _share(rest, draft_id, bob, "none")
        assert await _close_code(server, draft_id, bob) == 4403
        async with as_user(server, bob) as bob_rest:
            assert (await bob_rest.get(f"/api/drafts/{draft_id}")).status_code == 404

        await _share(rest, draft_id, bob, "viewer")  # back again, as a viewer
        assert await _told_read_only(server, draft_id, bob)

        assert not keeper.client.closed.is_set()  # the room was open throughout
        assert keeper.client.text("title") == "Open +editor +editor-again"
    stored = stored_doc(server.database, draft_id)
    assert str(stored.get("title", type=Text)) == "Open +editor +editor-again"


async def test_after_a_deletion_the_next_connect_is_4404(server: ServerProcess) -> None:
    alice, bob = new_id("alice"), new_id("bob")
    async with as_user(server, alice) as rest, _open_room(server, alice, "Gone") as keeper:
        draft_id = keeper.draft_id
        await _share(rest, draft_id, bob, "editor")
        assert await _writes(server, draft_id, bob, "!", keeper.client)  # remembered
        assert (await rest.delete(f"/api/drafts/{draft_id}")).status_code == 204
        assert await _close_code(server, draft_id, bob) == 4404
        assert await _close_code(server, draft_id, alice) == 4404
        await asyncio.wait_for(keeper.client.closed.wait(), 10)
        assert keeper.client.close_code == 4404


async def test_connects_racing_a_revocation_never_keep_the_revoked_role(
    server: ServerProcess,
) -> None:
    """Twenty connects of bob are under way while his access is removed: each one is either
    refused or closed 4403, and every connect after the change returned is refused."""
    alice, bob = new_id("alice"), new_id("bob")
    async with as_user(server, alice) as rest, _open_room(server, alice, "Race") as keeper:
        draft_id = keeper.draft_id
        await _share(rest, draft_id, bob, "editor")
        assert await _writes(server, draft_id, bob, "?", keeper.client)  # remembered
        racing = [
            asyncio.create_task(_close_code(server, draft_id, bob, keep_open=True))
            for _ in range(20)
        ]
        await asyncio.sleep(0)
        await _share(rest, draft_id, bob, "none")
        after = [await _close_code(server, draft_id, bob) for _ in range(5)]
        async with asyncio.timeout(30):
            during = await asyncio.gather(*racing)
        assert after == [4403] * 5
        assert during == [4403] * 20
        assert not keeper.client.closed.is_set()


# -- helpers ------------------------------------------------------------------------------------


class _Keeper:
    def __init__(self, draft_id: str, client: PycrdtClient) -> None:
        self.draft_id = draft_id
        self.client = client


@asynccontextmanager
async def _open_room(server: ServerProcess, owner: str, title: str) -> AsyncIterator[_Keeper]:
    """A new draft of `owner` with `title`, and the owner's editor on it, connected throughout:
    the draft's room stays open."""
    async with as_user(server, owner) as rest:
        draft_id = (await create_draft(rest, title=title))["id"]
    client = await connect_synced(server, draft_id, owner)
    try:
        yield _Keeper(draft_id, client)
    finally:
        await client.disconnect()


async def _share(rest: httpx.AsyncClient, draft_id: str, user: str, role: str) -> None:
    response = await rest.put(f"/api/drafts/{draft_id}/access", json={"user": user, "role": role})
    assert response.status_code == 200, response.text


async def _writes(
    server: ServerProcess, draft_id: str, user: str, text: str, keeper: PycrdtClient
) -> bool:
    """Whether `user`'s edit, made on a new connection, reached the room (and the store)."""
    client = await connect_synced(server, draft_id, user)
    try:
        before = client.text("title")
        await client.edit(type_into(text))
        await client.flush()  # handled and committed (or dropped) by now
    finally:
        await client.disconnect()
    stored = str(stored_doc(server.database, draft_id).get("title", type=Text))
    if stored == before:
        return False
    assert stored == before + text
    await keeper.wait_for(lambda: keeper.text("title") == stored)
    return True


async def _told_read_only(server: ServerProcess, draft_id: str, user: str) -> bool:
    """Whether a new connection of `user` is told it is read-only at its sync step 2 (the
    server handles a connection's messages in order: the answer to the step 1 sent after it
    comes after any such notice)."""
    raw = await connect_raw(server.ws_url, draft_id, server.token(user))
    try:
        await raw.send(encode_message(SyncStep2(EMPTY_UPDATE)))
        await raw.send(encode_message(SyncStep1(b"\x00")))
        index, _ = await raw.next_message(SyncStep2)
        return any(isinstance(m, Auth) and m.reason == "read-only" for m in raw.messages[:index])
    finally:
        await raw.close()


async def _close_code(
    server: ServerProcess, draft_id: str, user: str, *, keep_open: bool = False
) -> int | None:
    """The code a new connection of `user` is closed with (`keep_open`: it waits for it, as
    long as the server keeps it open, within the raw client's bound)."""
    raw = await connect_raw(server.ws_url, draft_id, server.token(user))
    code, _ = await raw.wait_closed(timeout=20 if keep_open else 10)
    return code
