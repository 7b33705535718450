"""Durable before visible, with a commit held open: nothing of a pending update reaches anyone
but its sender (a joiner's sync step 2, a REST read) until it is committed, and a `kill -9`
while it is pending leaves it only in its sender's own doc.

The commit is held by a second SQLite connection holding the write lock (BEGIN IMMEDIATE):
the server's commit then waits on a worker thread (up to SQLite's busy timeout, 5 s).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from pycrdt import Text

from bench.services import PostgresCluster, RedisServer
from tests.support.pycrdt_client import PycrdtClient, connect_synced, type_into
from tests.support.server_process import ServerProcess
from tests.support.sqlite_lock import write_lock
from tests.support.stored import stored_doc

HELD = 0.8  # seconds the lock is held while the test looks (well under the 5 s busy timeout)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the module: each test holds the write lock only while it looks, and uses
    drafts of its own (one kills the server and starts it again)."""
    process = ServerProcess(tmp_path_factory.mktemp("held-commit") / "data", "--room-grace", "0.3")
    process.start()
    yield process
    process.stop()


async def test_a_joiner_gets_nothing_of_a_pending_update_until_it_is_committed(
    server: ServerProcess,
) -> None:
    draft = f"held-{uuid.uuid4().hex[:8]}"
    alice = await connect_synced(server, draft, "alice")
    await alice.edit(type_into("committed "))
    await alice.flush()
    http = httpx.AsyncClient(base_url=server.http_url, timeout=20)
    http.headers["Authorization"] = f"Bearer {server.token('alice')}"
    bob = PycrdtClient(server.ws_url, draft, server.token("alice"))
    try:
        with write_lock(server.database):
            await alice.edit(type_into("PENDING"))
            await asyncio.sleep(0.2)  # the server applied it; its commit waits for the lock
            await bob.connect()
            reading = asyncio.create_task(http.get(f"/api/drafts/{draft}"))
            await asyncio.sleep(HELD)
            assert not bob.synced.is_set(), "the joiner's sync step 2 left before the commit"
            assert "PENDING" not in bob.text("title")
            assert not reading.done(), "a REST read answered with an uncommitted update"
        await asyncio.wait_for(bob.synced.wait(), 10)
        assert bob.text("title") == "committed PENDING"
        answer = await asyncio.wait_for(reading, 10)
        assert answer.status_code == 200
        assert answer.json()["state"]["texts"]["title"] == "committed PENDING"
    finally:
        await http.aclose()
        await asyncio.gather(alice.disconnect(), bob.disconnect())


async def test_kill_9_during_a_held_commit_leaves_the_edit_only_with_its_sender(
    server: ServerProcess,
) -> None:
    draft = f"killed-{uuid.uuid4().hex[:8]}"
    alice = await connect_synced(server, draft, "alice")
    await alice.edit(type_into("committed "))
    await alice.flush()
    bob = PycrdtClient(server.ws_url, draft, server.token("alice"))
    try:
        with write_lock(server.database):
            await alice.edit(type_into("PENDING"))
            await asyncio.sleep(0.2)
            await bob.connect()
            await asyncio.sleep(HELD)
            server.kill()
        await asyncio.wait_for(bob.closed.wait(), 10)
        assert "PENDING" not in bob.text("title")  # a bystander never held it
        assert "PENDING" in alice.text("title")  # its sender still does, and resends it
        assert str(stored_doc(server.database, draft).get("title", type=Text)) == "committed "

        server.start()
        carol = await connect_synced(server, draft, "alice")
        assert carol.text("title") == "committed "
        await carol.disconnect()
    finally:
        await asyncio.gather(alice.disconnect(), bob.disconnect())


async def test_a_rest_read_of_one_draft_does_not_wait_for_another_drafts_backlog(
    server: ServerProcess,
) -> None:
    """The REST write waits for its own draft's commit, not for the whole pipeline: with the
    commit of every draft held, a read of an untouched draft answers at once."""
    busy, quiet = f"busy-{uuid.uuid4().hex[:8]}", f"quiet-{uuid.uuid4().hex[:8]}"
    alice = await connect_synced(server, busy, "alice")
    idle = await connect_synced(server, quiet, "alice")
    await idle.edit(type_into("quiet"))
    await idle.flush()
    http = httpx.AsyncClient(base_url=server.http_url, timeout=20)
    http.headers["Authorization"] = f"Bearer {server.token('alice')}"
    try:
        with write_lock(server.database):
            for n in range(20):
                await alice.edit(type_into(f"{n} "))
            await asyncio.sleep(0.2)
            answer = await asyncio.wait_for(http.get(f"/api/drafts/{quiet}"), HELD)
            assert answer.status_code == 200 and answer.json()["state"]["texts"]["title"] == "quiet"
        await alice.flush()
    finally:
        await http.aclose()
        await asyncio.gather(alice.disconnect(), idle.disconnect())


async def test_postgresql_a_joiner_and_another_instance_see_a_pending_edit_only_once_committed(
    tmp_path: Path, postgres: PostgresCluster, redis_server: RedisServer
) -> None:
    """The same with two instances: the commit is held by a PostgreSQL transaction holding the
    draft's lock (the advisory lock that numbers its versions)."""
    store = postgres.new_database()
    flags = ("--store", store, "--redis", redis_server.url, "--room-grace", "0.3")
    first = ServerProcess(tmp_path / "a", *flags).start()
    second = ServerProcess(tmp_path / "b", *flags).start()
    draft = f"pg-held-{uuid.uuid4().hex[:8]}"
    alice = await connect_synced(first, draft, "alice")
    carol = await connect_synced(second, draft, "alice")
    bob = PycrdtClient(first.ws_url, draft, first.token("alice"))
    lock = await asyncpg.connect(store)
    try:
        await alice.edit(type_into("committed "))
        await alice.flush()
        await carol.wait_for(lambda: carol.text("title") == "committed ")
        held = lock.transaction()
        await held.start()
        await lock.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", draft)
        await alice.edit(type_into("PENDING"))
        await asyncio.sleep(0.2)
        await bob.connect()
        await asyncio.sleep(HELD)
        assert not bob.synced.is_set() and "PENDING" not in bob.text("title")
        assert "PENDING" not in carol.text("title")
        await held.rollback()
        await asyncio.wait_for(bob.synced.wait(), 10)
        assert bob.text("title") == "committed PENDING"
        await carol.wait_for(lambda: carol.text("title") == "committed PENDING")
    finally:
        await lock.close()
        await asyncio.gather(alice.disconnect(), bob.disconnect(), carol.disconnect())
        first.stop()
        second.stop()
