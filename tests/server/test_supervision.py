"""No silent stall: every failure point, made to fail once by the fault-injection switch
(`DRAFTSYNC_FAULTS`, server/faults.py), is loud (traceback in the log, `/healthz` 503 naming
it), closes what it affected with 1011 and a reason, and the server carries on: the failed
component is restarted, clients reconnect and resend, nothing is lost.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pycrdt import Text

from bench.services import PostgresCluster, RedisServer
from tests.support.node_client import NodeClient
from tests.support.pycrdt_client import connect_synced, type_into
from tests.support.server_process import ServerProcess, start_together
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
    hurt, other = start_together(
        ServerProcess(
            tmp_path / "a",
            "--room-grace",
            "0.3",
            *flags,
            env={"DRAFTSYNC_FAULTS": "fanout-message"},
        ),
        ServerProcess(tmp_path / "b", "--room-grace", "0.3", *flags),
    )
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


async def sees(client: NodeClient, name: str) -> bool:
    states = await client.call("awareness_states")
    return any(state.get("user") == {"name": name} for _, state in states)


async def test_a_crash_as_the_heartbeat_forgets_a_dead_instance_closes_that_room_with_1011(
    tmp_path: Path, postgres: PostgresCluster, redis_server: RedisServer
) -> None:
    """B is killed; A's heartbeat loop drops B's clients' awareness from A's rooms and fails in
    the first. That room is closed with 1011 (reloaded: no cursor of the dead instance in it),
    and the same pass still clears the second room: no ghost stays for good."""
    store = postgres.new_database()
    flags = ("--store", store, "--redis", redis_server.url)
    hurt, doomed = start_together(
        ServerProcess(
            tmp_path / "a", "--room-grace", "0.3", *flags, env={"DRAFTSYNC_FAULTS": "heartbeat"}
        ),
        ServerProcess(tmp_path / "b", "--room-grace", "0.3", *flags),
    )
    clients: list[NodeClient] = []
    try:
        watchers: list[NodeClient] = []
        for draft in (new_draft(), new_draft()):  # in turn: A learns of the first room first
            watcher = await NodeClient.start(hurt.ws_url, draft, hurt.token("alice"))
            bob = await NodeClient.start(doomed.ws_url, draft, doomed.token("alice"))
            clients += [watcher, bob]
            await asyncio.gather(watcher.call("wait_synced"), bob.call("wait_synced"))
            await bob.call("awareness_set", field="user", value={"name": "bob"})
            await eventually(functools.partial(sees, watcher, "bob"), timeout=10)
            watchers.append(watcher)
        first, second = watchers
        doomed.kill()

        closed = await first.wait_event("close", timeout=30, predicate=lambda e: not e["local"])
        assert closed["code"] == 1011 and closed["reason"]
        assert "fanout-heartbeat" in crashed_components(hurt)
        assert "InjectedFault" in hurt.log() and "Traceback" in hurt.log()

        async def second_forgot_bob() -> bool:
            return not await sees(second, "bob")

        await eventually(second_forgot_bob, timeout=10)
        assert not [e for e in second.events if e["event"] == "close"]  # never closed
        # The first room's clients reconnect to a room loaded afresh: bob is not in it.
        await first.wait_event("status", timeout=10, predicate=lambda e: e["status"] == "connected")
        await first.call("wait_synced")
        assert not await sees(first, "bob")
    finally:
        await asyncio.gather(*(client.close() for client in clients))
        hurt.stop()
        doomed.stop()


async def test_a_crash_in_a_catch_up_closes_its_room_with_1011_and_catching_up_goes_on(
    tmp_path: Path, postgres: PostgresCluster, redis_server: RedisServer
) -> None:
    """A listens to a Redis of its own, so every message of B's is lost to it and only A's
    catch-up loop brings B's edits from the store. The first catch-up fails: the room, which
    may hold part of what it read, is closed with 1011 and reloaded; later ones still work."""
    binary = RedisServer.find()
    assert binary is not None  # the redis_server fixture found it
    lonely = RedisServer(binary).start()
    store = postgres.new_database()
    hurt, other = start_together(
        ServerProcess(
            tmp_path / "a",
            *("--room-grace", "0.3", "--store", store, "--redis", lonely.url),
            env={"DRAFTSYNC_FAULTS": "catch-up"},
        ),
        ServerProcess(
            tmp_path / "b", "--room-grace", "0.3", "--store", store, "--redis", redis_server.url
        ),
    )
    draft = new_draft()
    writer = await connect_synced(other, draft, "alice")
    reader = await connect_synced(hurt, draft, "alice")
    try:
        await writer.edit(type_into("behind"))
        await writer.flush()
        await asyncio.wait_for(reader.closed.wait(), 10)
        assert reader.close_code == 1011 and reader.close_reason
        assert "fanout-catch-up" in crashed_components(hurt)
        assert "InjectedFault" in hurt.log() and "Traceback" in hurt.log()

        again = await connect_synced(hurt, draft, "alice")
        assert again.text("title") == "behind"  # loaded afresh from the store
        await writer.edit(type_into(" and on"))
        await again.wait_for(lambda: again.text("title") == "behind and on")  # caught up
        await again.disconnect()
    finally:
        await asyncio.gather(writer.disconnect(), reader.disconnect())
        hurt.stop()
        other.stop()
        lonely.close()


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


async def test_a_crash_in_an_unload_is_loud_and_the_room_unloads_on_the_next_try(
    tmp_path: Path,
) -> None:
    """An unload that raised was a task nobody awaited: "Task exception was never retrieved"
    at best, and the idle draft's doc stayed loaded until someone joined and left again."""
    server = faulty(tmp_path, "unload").start()
    draft = new_draft()
    try:
        alice = await connect_synced(server, draft, "alice")
        try:
            await alice.edit(type_into("kept"))
            await alice.flush()
        finally:
            await alice.disconnect()

        async def rooms_crashed() -> bool:
            return "rooms" in crashed_components(server)

        async def unloaded() -> bool:
            return f"room unloaded draft={draft}" in server.log()

        await eventually(rooms_crashed, timeout=10)
        await eventually(unloaded, timeout=10)
        assert "rooms failed: InjectedFault" in server.log() and "Traceback" in server.log()
        assert await stored_title(server, draft) == "kept"
    finally:
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
