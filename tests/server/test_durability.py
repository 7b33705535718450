"""Durable before visible: what any client received survives `kill -9`, and nothing doubles.

Writers push unique markers into a `Y.Array`. When the server is killed, every marker a client
holds from *another* writer was relayed to it, so it must already be on disk; markers a writer
holds of its own may not be (never acknowledged) and come back when it reconnects. After every
restart all replicas converge with each marker exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import uuid
from collections import Counter
from pathlib import Path

import pytest
from pycrdt import Array, Text

from tests.support.node_client import NodeClient
from tests.support.postgres import BACKENDS, store_flags
from tests.support.pycrdt_client import PycrdtClient, connect_synced
from tests.support.server_process import ServerProcess
from tests.support.stored import stored_doc as stored_sqlite_doc
from tests.support.stored_any import max_version, stored_doc
from tests.support.waiting import eventually

KILL_CYCLES = 5


def writer_of(marker: str) -> str:
    return marker.split(":", 1)[0]


async def node_writer(client: NodeClient, name: str, cycle: int, stop: asyncio.Event) -> None:
    i = 0
    while not stop.is_set():
        with contextlib.suppress(Exception):
            await client.call("push", field="log", values=[f"{name}:{cycle}:{i}"])
            i += 1
        await asyncio.sleep(0.002)


async def python_writer(client: PycrdtClient, cycle: int, stop: asyncio.Event) -> None:
    i = 0
    while not stop.is_set():
        if not client.closed.is_set():
            marker = f"py:{cycle}:{i}"
            await client.edit(lambda doc, m=marker: doc.get("log", type=Array).append(m))
            i += 1
        await asyncio.sleep(0.002)


async def has_text(client: NodeClient, text: str) -> bool:
    return await client.text("title") == text


async def node_log(client: NodeClient) -> list[str]:
    state = await client.state(lists=["log"])
    return list(state["lists"]["log"])


@pytest.fixture(params=BACKENDS)
def server(tmp_path: Path, request: pytest.FixtureRequest) -> ServerProcess:
    flags = store_flags(request, request.param)
    process = ServerProcess(tmp_path / "data", "--snapshot-every", "200", *flags)
    process.start()
    yield process
    process.stop()


async def test_kill_9_mid_stream_loses_nothing_relayed_and_duplicates_nothing(
    server: ServerProcess,
) -> None:
    draft = f"kill-{uuid.uuid4().hex[:8]}"
    token = server.token("alice")
    nodes = [await NodeClient.start(server.ws_url, draft, token, name=n) for n in ("n1", "n2")]
    python = await PycrdtClient(server.ws_url, draft, token).connect()
    try:
        async with asyncio.timeout(150):
            for cycle in range(KILL_CYCLES):
                for node in nodes:
                    await node.call("wait_synced")
                await asyncio.wait_for(python.synced.wait(), 10)
                stop = asyncio.Event()
                writers = [
                    asyncio.create_task(node_writer(node, name, cycle, stop))
                    for node, name in zip(nodes, ("n1", "n2"), strict=True)
                ]
                writers.append(asyncio.create_task(python_writer(python, cycle, stop)))
                await asyncio.sleep(0.8)  # let them write; the kill lands mid-stream
                server.kill()
                stop.set()
                await asyncio.gather(*writers)

                durable = Counter(stored_doc(server, draft).get("log", type=Array))
                seen = {"n1": await node_log(nodes[0]), "n2": await node_log(nodes[1])}
                seen["py"] = list(python.doc.get("log", type=Array))
                relayed = {m for name, log in seen.items() for m in log if writer_of(m) != name}
                assert relayed, f"cycle {cycle}: nothing was relayed before the kill"
                missing = relayed - set(durable)
                assert not missing, f"cycle {cycle}: relayed but lost: {sorted(missing)[:10]}"
                assert max(durable.values()) == 1, f"cycle {cycle}: doubled in the store"

                server.start()
                await python.disconnect()
                await python.connect()
                everything = set().union(*map(set, seen.values()))
                await converge(nodes, python, everything)
    finally:
        await python.disconnect()
        await asyncio.gather(*(node.close() for node in nodes))


async def converge(nodes: list[NodeClient], python: PycrdtClient, expected: set[str]) -> None:
    """Every replica ends with exactly the markers anyone wrote, each once."""
    async with asyncio.timeout(30):
        while True:
            logs = [await node_log(node) for node in nodes]
            logs.append(list(python.doc.get("log", type=Array)))
            if all(set(log) >= expected for log in logs) and len({len(x) for x in logs}) == 1:
                break
            await asyncio.sleep(0.1)
    for log in logs:
        counts = Counter(log)
        assert max(counts.values()) == 1, "a marker was doubled after the restart"


async def test_clients_keep_their_docs_across_a_restart_and_nothing_doubles(
    server: ServerProcess,
) -> None:
    draft = f"restart-{uuid.uuid4().hex[:8]}"
    token = server.token("alice")
    node = await NodeClient.start(server.ws_url, draft, token)
    python = await PycrdtClient(server.ws_url, draft, token).connect()
    try:
        await node.call("wait_synced")
        await node.call("insert", field="title", index=0, text="Hello world")
        await python.wait_for(lambda: python.text("title") == "Hello world")
        await python.edit(lambda doc: doc.get("title", type=Text).insert(11, "!"))
        await python.flush()
        for restart in range(3):
            server.terminate()
            server.start()
            await python.disconnect()
            await python.connect()
            await asyncio.wait_for(python.synced.wait(), 10)
            await python.flush()

            async def node_caught_up() -> bool:
                state = await node.state(texts=["title"])
                return bool(state["synced"]) and state["texts"]["title"] == "Hello world!"

            await eventually(node_caught_up, timeout=15)
            assert python.text("title") == "Hello world!", f"restart {restart}"
        stored = stored_doc(server, draft).get("title", type=Text)
        assert str(stored) == "Hello world!"
    finally:
        await python.disconnect()
        await node.close()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_draft_of_20000_edits_loads_from_a_snapshot_after_restart(
    tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    # Edits that reach the server together are stored as one version (at most 128 a version),
    # so 20,000 edits make at least 157 versions: a snapshot every 100 is always exercised.
    flags = store_flags(request, backend)
    server = ServerProcess(tmp_path / "data", "--snapshot-every", "100", *flags).start()
    draft = f"long-{uuid.uuid4().hex[:8]}"
    try:
        writer = await connect_synced(server, draft)
        for i in range(20_000):
            await writer.edit(lambda doc, i=i: doc.get("title", type=Text).insert(i, "abcd"[i % 4]))
        await writer.flush(timeout=60)
        await writer.disconnect()
        expected = "abcd" * 5000
        stored = max_version(server)
        assert stored is not None and stored >= 20_000 // 128
        server.terminate()
        server.start()

        reader = await PycrdtClient(server.ws_url, draft, server.token("alice")).connect()
        await reader.wait_for(lambda: reader.text("title") == expected, timeout=20)
        await reader.disconnect()
        loaded = re.findall(
            rf"room loaded draft={draft} version=(\d+) snapshot=(\d+) tail=(\d+)", server.log()
        )
        version, snapshot, tail = map(int, loaded[-1])
        assert version == stored
        assert snapshot >= stored - 100 and tail < 100, loaded[-1]
    finally:
        server.stop()


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)  # holds SQLite's write lock
async def test_a_store_failure_closes_the_sender_with_1013_and_relays_nothing(
    server: ServerProcess,
) -> None:
    draft = f"locked-{uuid.uuid4().hex[:8]}"
    token = server.token("alice")
    sender = await NodeClient.start(server.ws_url, draft, token)
    watcher = await NodeClient.start(server.ws_url, draft, token)
    try:
        await sender.call("wait_synced")
        await watcher.call("wait_synced")
        await sender.call("insert", field="title", index=0, text="before ")
        await eventually(lambda: has_text(watcher, "before "))

        lock = sqlite3.connect(server.database, timeout=1)
        lock.execute("BEGIN IMMEDIATE")  # hold the write lock: the server's commits now fail
        try:
            await sender.call("insert", field="title", index=7, text="during")
            closed = await sender.wait_event(
                "close", timeout=20, predicate=lambda e: e["code"] is not None
            )
            assert closed["code"] == 1013 and closed["reason"]
            assert await watcher.text("title") == "before "  # never relayed
        finally:
            lock.rollback()
            lock.close()

        # The store is back: the sender reconnects on its own and resends what it has.
        await eventually(lambda: has_text(watcher, "before during"), timeout=30)
        assert str(stored_sqlite_doc(server.database, draft).get("title", type=Text)) == (
            "before during"
        )
        assert "Traceback" not in server.log()
    finally:
        await asyncio.gather(sender.close(), watcher.close())
