"""Stock Hocuspocus providers (Tiptap's) at `/hocuspocus`, next to y-websocket clients in the
same rooms (issue 23): auth per document, sync, awareness, SyncStatus only once an update is
on disk, many documents over one socket, bad input on one address."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from tests.support.hocuspocus_client import HocuspocusClient
from tests.support.server_process import ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("server"), "--room-grace", "0.3")
    process.start()
    yield process
    process.stop()


def hocuspocus_url(server: ServerProcess) -> str:
    return f"ws://127.0.0.1:{server.port}/hocuspocus"


def new_draft() -> str:
    return f"h-{uuid.uuid4().hex[:12]}"


async def eventually(check, timeout: float = 10, interval: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll the coroutine function `check` until it returns something truthy; return that."""
    async with asyncio.timeout(timeout):
        while True:
            result = await check()
            if result:
                return result
            await asyncio.sleep(interval)


async def test_a_provider_authenticates_syncs_and_its_edit_is_acknowledged(
    server: ServerProcess,
) -> None:
    draft = new_draft()
    client = await HocuspocusClient.launch(hocuspocus_url(server))
    try:
        await client.open("a", draft, server.token("alice"))
        authenticated = await client.wait_doc_event("a", "authenticated")
        assert authenticated["scope"] == "read-write"
        await client.call("wait_synced", doc="a")
        await client.call("wait_saved", doc="a")
        await client.call("insert", doc="a", field="title", index=0, text="hello")
        await client.call("wait_saved", doc="a")
        state = await client.doc_state("a", "title")
        assert state["texts"]["title"] == "hello"
        assert state["isAuthenticated"] and state["authorizedScope"] == "read-write"
    finally:
        await client.close()
