"""No silent stall: every failure point, made to fail once by the fault-injection switch
(`DRAFTSYNC_FAULTS`, server/faults.py), is loud (traceback in the log, `/healthz` 503 naming
it), closes what it affected with 1011 and a reason, and the server carries on: the failed
component is restarted, clients reconnect and resend, nothing is lost.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pycrdt import Text

from bench.services import PostgresCluster, RedisServer
from tests.support.pycrdt_client import connect_synced, type_into
from tests.support.server_process import ServerProcess
from tests.support.stored_any import stored_doc, stored_rows
from tests.support.waiting import eventually


def new_draft() -> str:
    return f"sup-{uuid.uuid4().hex[:8]}"


def health(server: ServerProcess) -> httpx.Response:
    return httpx.get(f"{server.http_url}/healthz", timeout=5)


def crashed_components(server: ServerProcess) -> set[str]:
    answer = health(server)
    if answer.status_code == 200:
        return set()
    assert answer.status_code == 503 and answer.headers["Retry-After"]
    return {crash["component"] for crash in answer.json()["crashes"]}


def faulty(tmp_path: Path, point: str, *flags: str) -> ServerProcess:
    return ServerProcess(
        tmp_path / "data", "--room-grace", "0.3", *flags, env={"DRAFTSYNC_FAULTS": point}
    )


async def stored_title(server: ServerProcess, draft: str) -> str:
    return str(stored_doc(server, draft).get("title", type=Text))


@pytest.fixture
def commit_fault(tmp_path: Path) -> Iterator[ServerProcess]:
    server = faulty(tmp_path, "commit").start()
    yield server
    server.stop()


async def test_a_crash_in_the_group_commit_closes_its_room_with_1011_and_recovers(
    commit_fault: ServerProcess,
) -> None:
    server, draft = commit_fault, new_draft()
    alice = await connect_synced(server, draft, "alice")
    bob = await connect_synced(server, draft, "alice")
    try:
        await alice.edit(type_into("kept"))
        await asyncio.wait_for(alice.closed.wait(), 10)
        assert alice.close_code == 1011 and alice.close_reason
        await asyncio.wait_for(bob.closed.wait(), 10)
        assert bob.close_code == 1011
        assert "kept" not in bob.text("title")  # never relayed: it was not committed
        assert "group-commit" in crashed_components(server)
        assert "InjectedFault" in server.log() and "Traceback" in server.log()

        # The pipeline was restarted: the sender reconnects and resends what it holds.
        await alice.connect()
        await asyncio.wait_for(alice.synced.wait(), 10)
        await alice.flush()
        assert await stored_title(server, draft) == "kept"
        carol = await connect_synced(server, draft, "alice")
        assert carol.text("title") == "kept"
        await carol.disconnect()
    finally:
        await asyncio.gather(alice.disconnect(), bob.disconnect())


async def test_a_crash_inside_a_room_closes_its_clients_with_1011_and_stores_nothing(
    tmp_path: Path,
) -> None:
    server, draft = faulty(tmp_path, "update").start(), new_draft()
    alice = await connect_synced(server, draft, "alice")
    bob = await connect_synced(server, draft, "alice")
    try:
        await alice.edit(type_into("first"))
        await asyncio.wait_for(alice.closed.wait(), 10)
        assert alice.close_code == 1011 and "server error" in (alice.close_reason or "")
        await asyncio.wait_for(bob.closed.wait(), 10)
        assert bob.close_code == 1011 and "first" not in bob.text("title")
        assert "room" in crashed_components(server)
        assert await stored_title(server, draft) == ""

        # The draft is loaded afresh from the store; the sender resends and it sticks.
        await alice.connect()
        await asyncio.wait_for(alice.synced.wait(), 10)
        await alice.flush()
        assert await stored_title(server, draft) == "first"
    finally:
        await asyncio.gather(alice.disconnect(), bob.disconnect())
        server.stop()


async def test_a_crash_in_the_journal_closer_is_loud_and_it_is_restarted(tmp_path: Path) -> None:
    server, draft = faulty(tmp_path, "journal").start(), new_draft()
    alice = await connect_synced(server, draft, "alice")
    try:

        async def journal_crashed() -> bool:
            return "journal" in crashed_components(server)

        await eventually(journal_crashed, timeout=10)
        await alice.edit(type_into("journaled"))
        await alice.flush()
        token = server.token("alice")
        headers = {"Authorization": f"Bearer {token}"}

        async def has_text_event() -> bool:
            async with httpx.AsyncClient(timeout=5) as http:
                answer = await http.get(
                    f"{server.http_url}/api/drafts/{draft}/events", headers=headers
                )
            return any(item.get("kind") == "text" for item in answer.json()["items"])

        # Bursts close after their pause: the restarted closer journals them.
        await eventually(has_text_event, timeout=20)
    finally:
        await alice.disconnect()
        server.stop()


async def test_a_fanout_message_that_fails_reloads_its_room_and_nothing_is_lost(
    tmp_path: Path, postgres: PostgresCluster, redis_server: RedisServer
) -> None:
    store = postgres.new_database()
    flags = ("--store", store, "--redis", redis_server.url)
    hurt = ServerProcess(
        tmp_path / "a", "--room-grace", "0.3", *flags, env={"DRAFTSYNC_FAULTS": "fanout-message"}
    ).start()
    other = ServerProcess(tmp_path / "b", "--room-grace", "0.3", *flags).start()
    draft = new_draft()
    writer = await connect_synced(other, draft, "alice")
    reader = await connect_synced(hurt, draft, "alice")
    try:
        await writer.edit(type_into("across"))
        await asyncio.wait_for(reader.closed.wait(), 10)
        assert reader.close_code == 1011
        assert "fanout-message" in crashed_components(hurt)
        # The listener lives on: a fresh reader on the hurt instance gets every later edit.
        again = await connect_synced(hurt, draft, "alice")
        assert again.text("title") == "across"
        await writer.edit(type_into(" and on"))
        await again.wait_for(lambda: again.text("title") == "across and on")
        await again.disconnect()
    finally:
        await asyncio.gather(writer.disconnect(), reader.disconnect())
        hurt.stop()
        other.stop()


async def test_a_crash_in_a_snapshot_job_is_loud_and_the_next_snapshot_is_taken(
    tmp_path: Path,
) -> None:
    server = faulty(tmp_path, "snapshot", "--snapshot-every", "2").start()
    draft = new_draft()
    alice = await connect_synced(server, draft, "alice")
    try:
        for n in range(6):
            await alice.edit(type_into(f"{n}"))
            await alice.flush()

        async def snapshotter_crashed() -> bool:
            return "snapshotter" in crashed_components(server)

        async def snapshot_stored() -> bool:
            rows = stored_rows(server, "SELECT count(*) FROM snapshots WHERE draft_id = ?", draft)
            return bool(rows[0][0])

        await eventually(snapshotter_crashed, timeout=10)
        await eventually(snapshot_stored, timeout=10)
        assert "InjectedFault" in server.log()
    finally:
        await alice.disconnect()
        server.stop()


async def test_a_component_that_keeps_crashing_stops_the_server_with_status_70(
    tmp_path: Path,
) -> None:
    server, draft = faulty(tmp_path, "commit:5").start(), new_draft()
    try:
        for attempt in range(5):
            client = await connect_synced(server, draft, "alice")
            await client.edit(type_into(f"{attempt}"))
            await asyncio.wait_for(client.closed.wait(), 10)
            assert client.close_code in (1011, 1001)  # the last one meets the shutdown
        assert server.process is not None
        assert await asyncio.to_thread(server.process.wait, 20) == 70
        assert "keeps crashing" in server.log()
    finally:
        server.stop()


async def test_a_healthy_server_answers_healthz_200(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    try:
        assert health(server).json() == {"status": "ok"}
    finally:
        server.stop()
