"""`GET /api/stats` and draft metadata, live, after a room unloads, and after `kill -9`.

Figures come from three places (server/sync/metadata.py): a loaded room's doc, the figures saved
when a room unloads, and a rebuild from the store when the saved ones are older than the log
(here: the process was killed while the room was loaded). All three must agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from crdt.journal import EventType, JournalEvent
from server.store.postgres import PostgresStore
from server.store.sqlite import SqliteStore
from tests.support.node_client import NodeClient
from tests.support.rest import as_user, create_draft, rooms_loaded
from tests.support.server_process import ServerProcess
from tests.support.stored import stored_rows
from tests.support.waiting import eventually

CAMPAIGN = {
    "description": "A bike lane for the whole river front",  # 8 words
    "status": "DRAFT",
    "current_step": 2,
    "goal_amount": 12500,
    "category": "city",
    "deadline": "2026-05-01",
    "tags": ["bikes"],
}

# The version a draft's saved figures were counted at, and the version of its last update.
_VERSIONS = (
    "SELECT m.version, (SELECT MAX(version) FROM updates u WHERE u.draft_id = m.draft_id)"
    " FROM draft_meta m WHERE draft_id = ?"
)


async def stats_of(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/api/stats")
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def test_stats_agree_live_after_unload_and_after_a_crash(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, "--room-grace", "0.3").start()
    try:
        async with as_user(server, "sam") as sam:
            await create_draft(sam, title="Full campaign", fields=CAMPAIGN)  # 8 of 8
            await create_draft(
                sam,
                title="Half done",
                fields={"description": "two words", "status": "DRAFT", "category": "x"},
            )  # 4 of 8
            empty = (await create_draft(sam))["id"]
            expected = {
                "totalDrafts": 3,
                "completedDrafts": 1,
                "averageCompletion": 50.0,
                "totalWordCount": 10 + 4,
                "syncedDrafts": 3,
                "conflictedDrafts": 0,
                "conflictsByField": {},
            }
            assert await stats_of(sam) == expected
            before = (await sam.get(f"/api/drafts/{empty}")).json()["metadata"]

            # Live: a stock Yjs client fills two fields of the empty draft.
            node = await NodeClient.start(server.ws_url, empty, server.token("sam"))
            await node.call("wait_synced")
            await node.call("insert", field="title", index=0, text="one two three")
            await node.call("push", field="tags", values=["new"])
            expected |= {"averageCompletion": round((100 + 50 + 25) / 3, 1)}
            expected |= {"totalWordCount": 14 + 3}

            async def live_figures() -> bool:
                return await stats_of(sam) == expected

            await eventually(live_figures)
            # A REST read answers once what it shows is committed: safe to kill after it.
            after = (await sam.get(f"/api/drafts/{empty}")).json()["metadata"]
            assert (after["wordCount"], after["completion"]) == (3, 25.0)
            assert after["lastModified"] > before["lastModified"]
            assert after["contributors"] == ["sam"]

        async def unloaded() -> bool:
            return await rooms_loaded(server) == 0

        # Killed while the room is loaded: its figures were never saved; rebuilt on read.
        server.kill()
        await node.close()
        server.start()
        [(saved_version, log_version)] = stored_rows(server.database, _VERSIONS, empty)
        assert saved_version < log_version  # stale: the stats below must rebuild
        async with as_user(server, "sam") as sam:
            assert await stats_of(sam) == expected

            # Edit again, leave, and let the room unload: the figures are saved at its version.
            async with await NodeClient.start(server.ws_url, empty, server.token("sam")) as node:
                await node.call("wait_synced")
                await node.call("insert", field="description", index=0, text="four more words here")
                expected |= {"totalWordCount": 17 + 4}
                expected |= {"averageCompletion": round((100 + 50 + 37.5) / 3, 1)}
                await eventually(live_figures)
            await eventually(unloaded)
            [(saved_version, log_version)] = stored_rows(server.database, _VERSIONS, empty)
            assert saved_version == log_version
            assert await stats_of(sam) == expected
    finally:
        server.stop()


async def test_stats_cover_only_what_the_caller_reaches(server: ServerProcess) -> None:
    async with as_user(server, "olga") as olga, as_user(server, "vera") as vera:
        shared = (await create_draft(olga, title="one two", fields=CAMPAIGN))["id"]
        await create_draft(olga, title="private words")
        await olga.put(f"/api/drafts/{shared}/access", json={"user": "vera", "role": "viewer"})
        assert await stats_of(vera) == {
            "totalDrafts": 1,
            "completedDrafts": 1,
            "averageCompletion": 100.0,
            "totalWordCount": 2 + 8,
            "syncedDrafts": 1,
            "conflictedDrafts": 0,
            "conflictsByField": {},
        }
        assert (await stats_of(olga))["totalDrafts"] == 2
    async with as_user(server, "nobody-at-all") as nobody:
        assert await stats_of(nobody) == {
            "totalDrafts": 0,
            "completedDrafts": 0,
            "averageCompletion": 0.0,
            "totalWordCount": 0,
            "syncedDrafts": 0,
            "conflictedDrafts": 0,
            "conflictsByField": {},
        }


def _opened(draft: str, field: str | None, version: int = 1) -> JournalEvent:
    data: dict[str, object] = {"conflict_id": f"c{version}", "candidates": []}
    if field is not None:
        data["field"] = field
    return JournalEvent(EventType.CONFLICT_OPENED, draft, version, "u", "s", 1, 1.0, data)


async def test_conflicts_by_field_are_summed_over_the_reached_drafts_in_one_read(
    store: SqliteStore | PostgresStore,
) -> None:
    """`reachable_conflict_fields` (one query for `GET /api/stats`): the sum over the live
    drafts the user has a role on, whatever the role; not over a draft deleted, one whose
    access was taken away, or anyone else's."""
    for draft, owner in (("own", "ann"), ("shared", "bo"), ("lost", "bo"), ("gone", "ann")):
        assert await store.create_draft(draft, owner, now=1.0)
    await store.create_draft("theirs", "bo", now=1.0)
    assert await store.set_role("shared", "ann", "viewer")
    assert await store.set_role("lost", "ann", "editor")
    assert await store.set_role("lost", "ann", None)
    events = [
        *(_opened("own", "status", v) for v in (1, 2)),
        _opened("own", "goal_amount", 3),
        _opened("own", None, 4),  # no field: not counted
        JournalEvent(EventType.FIELD_UPDATED, "own", 5, "u", "s", 1, 1.0, {"field": "status"}),
        _opened("shared", "status"),
        _opened("shared", "tags", 2),
        *(_opened("lost", "status", v) for v in range(1, 6)),
        *(_opened("gone", "status", v) for v in range(1, 8)),
        *(_opened("theirs", "status", v) for v in range(1, 12)),
    ]
    await store.append_events(events)
    assert await store.tombstone("gone", now=2.0)

    assert await store.reachable_conflict_fields("ann") == {
        "status": 2 + 1,
        "goal_amount": 1,
        "tags": 1,
    }
    assert await store.reachable_conflict_fields("bo") == {"status": 1 + 5 + 11, "tags": 1}
    assert await store.reachable_conflict_fields("nobody") == {}
