"""The audit journal: events derived from updates, text as bursts, no typed text, crash-proof."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from pathlib import Path

import pytest

from tests.support.node_client import NodeClient
from tests.support.postgres import BACKENDS, store_flags
from tests.support.rest import as_user
from tests.support.server_process import ServerProcess
from tests.support.stored_any import stored_rows, update_count
from tests.support.waiting import eventually


def events_of(server: ServerProcess, draft: str) -> list[dict[str, object]]:
    rows = stored_rows(
        server,
        "SELECT version, type, user, data FROM events WHERE draft_id = ? ORDER BY id",
        draft,
    )
    return [{"version": v, "type": t, "user": u, **json.loads(str(d))} for v, t, u, d in rows]


async def type_text(client: NodeClient, text: str, field: str = "title") -> None:
    for i, char in enumerate(text):
        await client.call("insert", field=field, index=i, text=char)


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> ServerProcess:
    """One server a backend for the module: its tests each use drafts of their own and read
    only those drafts' rows (one kills it and starts it again, which the others do not mind)."""
    flags = store_flags(request, request.param)
    data = tmp_path_factory.mktemp("journal") / "data"
    process = ServerProcess(data, "--room-grace", "30", *flags).start()
    yield process
    process.stop()


async def test_text_is_journaled_as_one_burst_without_the_text(server: ServerProcess) -> None:
    draft = f"j-{uuid.uuid4().hex[:8]}"
    marker = "ZQXJV-unique-marker"
    async with await NodeClient.start(server.ws_url, draft, server.token("alice")) as alice:
        await alice.call("wait_synced")
        await type_text(alice, marker)
        await alice.call("set", key="status", value="DRAFT")

        async def burst_closed() -> bool:
            return any(
                e["type"] == "FIELD_UPDATED" and e["field"] == "title"
                for e in events_of(server, draft)
            )

        await eventually(burst_closed, timeout=10)
    events = events_of(server, draft)
    title = [e for e in events if e.get("field") == "title"]
    assert len(title) == 1, title
    assert title[0]["inserted"] == len(marker) and title[0]["deleted"] == 0
    assert title[0]["user"] == "alice"
    # keystrokes that reach the server together are one version: count versions, not keys
    last_key = title[0]["to_version"]
    assert title[0]["from_version"] == 1 and 1 <= last_key <= len(marker)
    status = [e for e in events if e.get("field") == "status"]
    # the status write is the next version, or the same one if it came in the last run
    assert len(status) == 1 and status[0].pop("version") in (last_key, last_key + 1)
    assert status == [
        {
            "type": "FIELD_UPDATED",
            "user": "alice",
            "field": "status",
            "kind": "value",
            "old": None,
            "new": "DRAFT",
        }
    ]
    everything = stored_rows(server, "SELECT * FROM events")
    assert marker not in repr(everything)
    assert "ZQXJV" not in repr(everything)


async def test_a_restore_in_the_middle_of_a_burst_is_not_counted_as_typing(
    server: ServerProcess,
) -> None:
    """The restore removes the 5 characters typed before it: that is the server's change
    (RESTORED), not alice's, whose burst goes on across it."""
    draft = f"j-{uuid.uuid4().hex[:8]}"
    async with await NodeClient.start(server.ws_url, draft, server.token("alice")) as alice:
        await alice.call("wait_synced")
        await type_text(alice, "hello")
        async with as_user(server, "alice") as api:
            answer = await api.post(f"/api/drafts/{draft}/restore", json={"version": 0})
            assert answer.status_code == 200, answer.text
        await eventually(lambda: _text_is(alice, ""))
        await type_text(alice, "hi")

        async def burst_closed() -> bool:
            return any(e.get("field") == "title" for e in events_of(server, draft))

        await eventually(burst_closed, timeout=10)
    title = [e for e in events_of(server, draft) if e.get("field") == "title"]
    assert [(e["user"], e["inserted"], e["deleted"]) for e in title] == [("alice", 7, 0)]
    assert [e["type"] for e in events_of(server, draft)].count("RESTORED") == 1


async def test_a_rejected_value_and_a_rule_resolution_are_journaled(server: ServerProcess) -> None:
    draft = f"j-{uuid.uuid4().hex[:8]}"
    async with await NodeClient.start(server.ws_url, draft, server.token("bob")) as bob:
        await bob.call("wait_synced")
        await bob.call("set", key="goal_amount", value=10)
        await bob.call("set", key="goal_amount", value="ten")

        async def reverted() -> bool:
            return (await bob.fields()).get("goal_amount") == 10

        await eventually(reverted)
    await eventually(lambda: _has(server, draft, "VALUE_REJECTED"))
    rejected = [e for e in events_of(server, draft) if e["type"] == "VALUE_REJECTED"]
    assert rejected[0]["field"] == "goal_amount" and rejected[0]["value"] == "ten"
    assert rejected[0]["user"] == "bob"
    by_rule = [e for e in events_of(server, draft) if e.get("by_rule")]
    assert by_rule and by_rule[0]["user"] == "draftsync" and by_rule[0]["new"] == 10


async def _has(server: ServerProcess, draft: str, kind: str) -> bool:
    return any(e["type"] == kind for e in events_of(server, draft))


async def test_a_burst_open_at_kill_9_is_rebuilt_from_the_log(server: ServerProcess) -> None:
    draft = f"j-{uuid.uuid4().hex[:8]}"
    alice = await NodeClient.start(server.ws_url, draft, server.token("alice"))
    bob = await NodeClient.start(server.ws_url, draft, server.token("alice"))
    try:
        await alice.call("wait_synced")
        await bob.call("wait_synced")
        await type_text(alice, "hello")
        await eventually(lambda: _text_is(bob, "hello"))
        server.kill()  # the burst of 5 keystrokes was never closed
        assert events_of(server, draft) == []
        await alice.close()
        await bob.close()
        server.start()
        async with await NodeClient.start(server.ws_url, draft, server.token("alice")) as again:
            await again.call("wait_synced")
        title = [e for e in events_of(server, draft) if e.get("field") == "title"]
        assert len(title) == 1
        assert title[0]["inserted"] == 5
        assert title[0]["to_version"] == update_count(server, draft)  # the burst's last version
    finally:
        await asyncio.gather(alice.close(), bob.close())


async def _text_is(client: NodeClient, text: str) -> bool:
    return await client.text("title") == text


async def test_a_burst_of_a_failed_commit_is_journaled_once_for_its_resent_version(
    tmp_path: Path,
) -> None:
    """alice's keystrokes are applied and their burst opens, then their commit fails: the room
    resets and she resends them when she reconnects, stored as version 1 of the new room.
    The journal holds one burst for them, of a stored version, not also the failed room's
    burst of a version that was never stored."""
    from pycrdt import Text

    from tests.support.pycrdt_client import connect_synced
    from tests.support.stored import stored_rows as sqlite_rows

    server = ServerProcess(
        tmp_path / "data", "--room-grace", "30", env={"DRAFTSYNC_FAULTS": "commit"}
    ).start()
    try:
        draft = f"j-{uuid.uuid4().hex[:8]}"
        alice = await connect_synced(server, draft)
        await alice.edit(lambda doc: doc.get("title", type=Text).insert(0, "hello"))
        async with asyncio.timeout(10):
            await alice.closed.wait()  # the commit failed: the room reset
        await asyncio.sleep(3)  # the failed room's burst is idle past its pause
        await alice.connect()  # resends "hello"
        await asyncio.wait_for(alice.synced.wait(), 10)
        await alice.flush()

        def title_events() -> list[tuple[object, ...]]:
            return sqlite_rows(
                server.database,
                "SELECT version, data FROM events WHERE draft_id = ? AND type = 'FIELD_UPDATED'"
                " ORDER BY id",
                draft,
            )

        async def journaled() -> bool:
            return bool(title_events())

        await eventually(journaled, timeout=15)
        await asyncio.sleep(3.5)  # past the pause of the new room's burst: closed too
        await alice.disconnect()
        assert sqlite_rows(server.database, "SELECT count(*) FROM updates") == [(1,)]
        assert [(v, json.loads(str(d))["inserted"]) for v, d in title_events()] == [(1, 5)]
    finally:
        server.stop()


async def test_a_burst_open_in_a_discarded_room_is_journaled_once(tmp_path: Path) -> None:
    """alice's typing is stored, her burst still open, when mallory's update makes the room
    discard its doc (a shared type in `fields`). The room loaded afresh journals the burst from
    the log; the discarded room must not journal it a second time when its pause is over."""
    from pycrdt import Map, Text

    from tests.support.pycrdt_client import connect_synced
    from tests.support.stored import stored_rows as sqlite_rows

    server = ServerProcess(tmp_path / "data", "--room-grace", "30").start()
    try:
        draft = f"j-{uuid.uuid4().hex[:8]}"
        alice = await connect_synced(server, draft)
        await alice.edit(lambda doc: doc.get("title", type=Text).insert(0, "hello"))
        await alice.flush()
        mallory = await connect_synced(server, draft, "alice")
        await mallory.edit(lambda doc: doc.get("fields", type=Map).__setitem__("k", Map()))
        async with asyncio.timeout(10):
            await alice.closed.wait()  # the room was discarded
        again = await connect_synced(server, draft)  # loads it afresh
        assert again.text("title") == "hello"
        await asyncio.sleep(3.5)  # past the pause of the discarded room's burst
        await again.disconnect()
        rows = sqlite_rows(
            server.database,
            "SELECT version, data FROM events WHERE draft_id = ? AND type = 'FIELD_UPDATED'"
            " ORDER BY id",
            draft,
        )
        assert [(v, json.loads(str(d))["inserted"]) for v, d in rows] == [(1, 5)]
    finally:
        server.stop()


async def test_the_journal_watermark_never_passes_a_version_whose_commit_failed(
    tmp_path: Path,
) -> None:
    """alice's burst closes while bob's next change waits for its commit (another process
    holds SQLite's write lock), and that commit fails: bob's version is never stored. The
    watermark stored with alice's event must not pass it, or the next room, which numbers its
    changes from the stored versions, has its text bursts skipped by the recovery after a
    `kill -9`."""
    from pycrdt import Map, Text

    from tests.support.pycrdt_client import connect_synced
    from tests.support.stored import stored_rows as sqlite_rows

    server = ServerProcess(tmp_path / "data", "--room-grace", "30").start()
    try:
        draft = f"j-{uuid.uuid4().hex[:8]}"
        alice = await connect_synced(server, draft)
        bob = await connect_synced(server, draft, "alice")
        await alice.edit(lambda doc: doc.get("title", type=Text).insert(0, "hello"))
        await alice.flush()
        outsider = sqlite3.connect(server.database, isolation_level=None)
        try:
            outsider.execute("BEGIN IMMEDIATE")  # holds the write lock past the busy timeout
            await bob.edit(lambda doc: doc.get("fields", type=Map).__setitem__("note", "x"))
            async with asyncio.timeout(15):
                await bob.closed.wait()  # his commit failed: the room reset
            outsider.execute("ROLLBACK")
        finally:
            outsider.close()

        async def hello_journaled() -> bool:
            return bool(
                sqlite_rows(server.database, "SELECT 1 FROM events WHERE draft_id = ?", draft)
            )

        await eventually(hello_journaled, timeout=15)
        last = sqlite_rows(server.database, "SELECT max(version) FROM updates")[0][0]
        [(watermark,)] = sqlite_rows(
            server.database, "SELECT text_watermark FROM journal_state WHERE draft_id = ?", draft
        )
        assert last == 1
        assert watermark <= last + 1  # the next stored version is still to be journaled

        # The consequence: the next room's version 2 is typed, its burst open at kill -9.
        carol = await connect_synced(server, draft)
        await carol.edit(lambda doc: doc.get("title", type=Text).insert(5, "!"))
        await carol.flush()
        server.kill()
        server.start()
        again = await connect_synced(server, draft)
        assert again.text("title") == "hello!"
        await again.disconnect()
        rows = sqlite_rows(
            server.database,
            "SELECT data FROM events WHERE draft_id = ? AND type = 'FIELD_UPDATED' ORDER BY id",
            draft,
        )
        spans = [
            (json.loads(str(d))["from_version"], json.loads(str(d))["inserted"]) for (d,) in rows
        ]
        assert (2, 1) in spans, spans
    finally:
        server.stop()
