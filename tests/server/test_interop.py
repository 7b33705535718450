"""Stock Yjs clients (Node WebsocketProvider) and a pycrdt client co-edit through draftsync."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from pycrdt import Map, Text

from tests.support.node_client import NodeClient, edit_all_at_once
from tests.support.postgres import BACKENDS, store_flags
from tests.support.pycrdt_client import PycrdtClient
from tests.support.server_process import ServerProcess


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[ServerProcess]:
    """One real server per backend for this module (SQLite file, PostgreSQL database)."""
    flags = store_flags(request, request.param)
    process = ServerProcess(tmp_path_factory.mktemp("server"), "--room-grace", "0.3", *flags)
    process.start()
    yield process
    process.stop()


def new_draft() -> str:
    return f"d-{uuid.uuid4().hex[:12]}"


async def eventually_equal(
    clients: list[NodeClient], field: str, *, words: int = 0, timeout: float = 10
) -> str:
    """Wait until every client shows the same text (of at least `words` words); return it."""
    async with asyncio.timeout(timeout):
        while True:
            states = [await c.state(texts=[field]) for c in clients]
            texts = {s["texts"].get(field, "") for s in states}
            fields = {repr(sorted(s["fields"].items())) for s in states}
            if len(texts) == 1 and len(fields) == 1:
                text = texts.pop()
                if len(text.split()) >= words:
                    return text
            await asyncio.sleep(0.05)


async def start_clients(server: ServerProcess, draft: str, count: int) -> list[NodeClient]:
    token = server.token("alice")
    clients = [await NodeClient.start(server.ws_url, draft, token) for _ in range(count)]
    for client in clients:
        await client.call("wait_synced")
    return clients


async def test_three_node_clients_edit_at_once_and_converge(server: ServerProcess) -> None:
    draft = new_draft()
    clients = await start_clients(server, draft, 3)
    try:
        await edit_all_at_once(clients)
        text = await eventually_equal(clients, "title")
        for i in range(3):
            for round_ in range(5):
                assert text.count(f"[{i}.{round_}]") == 1
        assert await clients[0].fields() == {"k0": 4, "k1": 4, "k2": 4}
    finally:
        await asyncio.gather(*(c.close() for c in clients))


async def test_offline_edits_merge_on_reconnect_and_a_fresh_client_gets_everything(
    server: ServerProcess,
) -> None:
    draft = new_draft()
    clients = await start_clients(server, draft, 3)
    try:
        await clients[0].call("insert", field="title", index=0, text="shared ")
        await eventually_equal(clients, "title")
        offline = clients[2]
        await offline.call("disconnect")
        await offline.call("insert", field="title", index=0, text="OFFLINE ")
        await offline.call("set", key="status", value="DRAFT")
        await clients[0].call("insert", field="title", index=0, text="ONLINE ")
        await offline.call("connect")
        await offline.call("wait_synced")
        text = await eventually_equal(clients, "title", words=3)
        assert sorted(text.split()) == ["OFFLINE", "ONLINE", "shared"]

        async with await NodeClient.start(server.ws_url, draft, server.token("alice")) as fourth:
            await fourth.call("wait_synced")
            assert await eventually_equal([*clients, fourth], "title") == text
            assert (await fourth.fields())["status"] == "DRAFT"
    finally:
        await asyncio.gather(*(c.close() for c in clients))


async def test_a_pycrdt_client_co_edits_with_node_clients(server: ServerProcess) -> None:
    draft = new_draft()
    clients = await start_clients(server, draft, 2)
    python = await PycrdtClient(server.ws_url, draft, server.token("alice")).connect()
    try:
        await asyncio.wait_for(python.synced.wait(), 10)
        await asyncio.gather(
            clients[0].call("insert", field="title", index=0, text="node "),
            python.edit(lambda doc: doc.get("title", type=Text).insert(0, "python ")),
            python.edit(lambda doc: doc.get("fields", type=Map).__setitem__("step", 3)),
        )
        text = await eventually_equal(clients, "title", words=2)
        assert sorted(text.split()) == ["node", "python"]
        await python.wait_for(lambda: python.text("title") == text)

        # offline on the Python side, then reconnect: sync step 1/2 again
        await python.disconnect()
        await python.edit(lambda doc: doc.get("title", type=Text).insert(0, "later "))
        await clients[1].call("insert", field="title", index=0, text="meanwhile ")
        await python.connect()
        await asyncio.wait_for(python.synced.wait(), 10)
        text = await eventually_equal(clients, "title", words=4)
        assert sorted(text.split()) == ["later", "meanwhile", "node", "python"]
        await python.wait_for(lambda: python.text("title") == text)
        assert (await clients[0].fields())["step"] == 3
    finally:
        await python.disconnect()
        await asyncio.gather(*(c.close() for c in clients))
