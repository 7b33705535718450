"""`draftsync.client.DraftClient` (README "Python clients") against a real server: what it
reports when the server refuses it or goes away, and that `durable()` covers every earlier edit
(other clients have it: the acknowledgement comes after the commit and the relay)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pycrdt import Map, Text

from draftsync.client import DraftClient, DraftClosed
from tests.support.pycrdt_client import connect_synced
from tests.support.rest import new_id
from tests.support.server_process import ServerProcess
from tests.support.waiting import eventually


async def test_a_bad_token_is_a_draft_closed_with_4401(server: ServerProcess) -> None:
    client = DraftClient(server.ws_url, new_id(), server.token("alice")[:-4] + "AAAA", timeout=10)
    with pytest.raises(DraftClosed) as refused:
        await client.connect()
    assert refused.value.code == 4401


async def test_another_users_draft_is_a_draft_closed_with_4403(server: ServerProcess) -> None:
    draft = new_id()
    async with DraftClient(server.ws_url, draft, server.token("alice"), timeout=10):
        pass
    with pytest.raises(DraftClosed) as refused:
        async with DraftClient(server.ws_url, draft, server.token("mallory"), timeout=10):
            pass
    assert refused.value.code == 4403


async def test_durable_covers_every_earlier_edit_and_others_have_them(
    server: ServerProcess,
) -> None:
    draft = new_id()
    async with DraftClient(server.ws_url, draft, server.token("alice"), timeout=10) as writer:
        title = writer.doc.get("title", type=Text)
        for word in ("one ", "two ", "three"):
            title += word  # three transactions, three updates, then one acknowledgement
        writer.doc.get("fields", type=Map)["category"] = "bots"
        await writer.durable()
        reader = await connect_synced(server, draft, "alice")
        try:
            assert reader.text("title") == "one two three"
            assert reader.fields()["category"] == "bots"
        finally:
            await reader.disconnect()
        # and what others write arrives in the client's doc
        other = await connect_synced(server, draft, "alice")
        try:
            await other.edit(lambda doc: doc.get("description", type=Text).insert(0, "from others"))
            await other.flush()
        finally:
            await other.disconnect()

        async def arrived() -> bool:
            return str(writer.doc.get("description", type=Text)) == "from others"

        await eventually(arrived)


async def test_durable_after_the_server_died_is_a_draft_closed_and_a_new_client_resends(
    tmp_path: Path,
) -> None:
    server = ServerProcess(tmp_path / "data").start()
    draft, token = new_id(), server.token("alice")
    try:
        client = DraftClient(server.ws_url, draft, token, timeout=10)
        await client.connect()
        server.kill()

        async def noticed() -> bool:
            return client.closed is not None

        await eventually(noticed)
        client.doc.get("title", type=Text).insert(0, "written while the server was down")
        with pytest.raises(DraftClosed):
            await client.durable()
        await client.close()
        server.start()
        async with DraftClient(server.ws_url, draft, token, doc=client.doc, timeout=10) as again:
            await again.durable()
        server.restart()  # SIGKILL again: the acknowledged edit is on disk
        reader = await connect_synced(server, draft, "alice")
        try:
            assert reader.text("title") == "written while the server was down"
        finally:
            await reader.disconnect()
    finally:
        server.stop()
