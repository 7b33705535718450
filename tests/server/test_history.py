"""Version history over REST: the journal paged, any version rebuilt as it was live, restore."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from pycrdt import Array, Doc, Map, Text

from tests.support.node_client import NodeClient
from tests.support.pycrdt_client import PycrdtClient
from tests.support.rest import as_user, new_id
from tests.support.server_process import ServerProcess
from tests.support.store_reader import stored_log
from tests.support.waiting import eventually


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # Small snapshots, so that rebuilding a version crosses snapshot boundaries.
    process = ServerProcess(
        tmp_path_factory.mktemp("history"), "--snapshot-every", "4", "--room-grace", "0.3"
    ).start()
    yield process
    process.stop()


async def live_state(server: ServerProcess, draft: str) -> tuple[int, dict[str, Any]]:
    async with as_user(server, "alice") as api:
        body = (await api.get(f"/api/drafts/{draft}")).json()
    return body["version"], body["state"]


async def test_any_version_is_rebuilt_as_it_was_live(server: ServerProcess) -> None:
    draft = new_id("hist")
    writer = await PycrdtClient(server.ws_url, draft, server.token("alice")).connect()
    recorded: dict[int, dict[str, Any]] = {}
    try:
        await asyncio.wait_for(writer.synced.wait(), 10)
        steps = [
            lambda d: d.get("title", type=Text).insert(0, "Save the bees"),
            lambda d: d.get("fields", type=Map).__setitem__("status", "DRAFT"),
            lambda d: d.get("title", type=Text).insert(0, "Please: "),
            lambda d: d.get("tags", type=Array).append("nature"),
            lambda d: d.get("fields", type=Map).__setitem__("current_step", 2),
            lambda d: d.get("title", type=Text).__delitem__(slice(0, 8)),
            lambda d: d.get("description", type=Text).insert(0, "Bees matter."),
            lambda d: d.get("fields", type=Map).__setitem__("goal_amount", 1200.5),
            lambda d: d.get("tags", type=Array).append("garden"),
            lambda d: d.get("title", type=Text).insert(13, "!"),
        ]
        for step in steps:
            await writer.edit(step)
            await writer.flush()
            version, state = await live_state(server, draft)
            recorded[version] = state
    finally:
        await writer.disconnect()
    assert len(recorded) == len(steps)
    async with as_user(server, "alice") as api:
        for version, state in recorded.items():
            answer = await api.get(f"/api/drafts/{draft}/versions/{version}")
            assert answer.status_code == 200, answer.text
            assert answer.json()["state"] == state, f"version {version}"
        empty = (await api.get(f"/api/drafts/{draft}/versions/0")).json()
        assert empty["state"]["texts"]["title"] == ""
        beyond = await api.get(f"/api/drafts/{draft}/versions/{max(recorded) + 1}")
        assert beyond.status_code == 404 and "out of range" in beyond.json()["detail"]
        assert (await api.get(f"/api/drafts/{draft}/versions/abc")).status_code == 400
        assert (await api.get(f"/api/drafts/{draft}/versions/-1")).status_code == 400
        unknown = await api.get(f"/api/drafts/{new_id('nope')}/versions/1")
        assert unknown.status_code == 404
    async with as_user(server, "stranger") as api:
        assert (await api.get(f"/api/drafts/{draft}/versions/1")).status_code == 404


async def test_versions_are_exact_when_snapshots_are_taken_while_commits_lag(
    server: ServerProcess,
) -> None:
    """A snapshot is taken from the room's doc, which may hold accepted versions not yet
    committed: it must be labeled with the doc's version, not the commit that made it due,
    or versions in between would be rebuilt with later text. Another writer holds SQLite's
    lock while the edits arrive, so they are all accepted before the first commit. Edits that
    reach the server together become one version, so each version is checked against the
    update log itself rather than against a count of keystrokes."""
    draft = new_id("lag")
    writer = await PycrdtClient(server.ws_url, draft, server.token("alice")).connect()
    typed = "".join("abcd"[i % 4] for i in range(40))
    try:
        await asyncio.wait_for(writer.synced.wait(), 10)
        lock = sqlite3.connect(server.database, timeout=5)
        lock.execute("BEGIN IMMEDIATE")
        try:
            for i, char in enumerate(typed):
                await writer.edit(lambda d, i=i, c=char: d.get("title", type=Text).insert(i, c))
                await asyncio.sleep(0.01)  # mostly one version each: several snapshots lag
            await asyncio.sleep(0.5)
        finally:
            lock.rollback()
            lock.close()
        await writer.flush()
    finally:
        await writer.disconnect()
    logged = stored_log(server.database, draft)
    assert len(logged) >= 12, "too few versions to take snapshots while commits lag"
    folded: Doc = Doc()
    async with as_user(server, "alice") as api:
        for version, update in enumerate(logged, 1):
            folded.apply_update(update)
            answer = await api.get(f"/api/drafts/{draft}/versions/{version}")
            title = answer.json()["state"]["texts"]["title"]
            assert title == str(folded.get("title", type=Text)), version
            assert typed.startswith(title), version
    assert title == typed


async def test_events_page_through_the_journal(server: ServerProcess) -> None:
    draft = new_id("events")
    writer = await PycrdtClient(server.ws_url, draft, server.token("alice")).connect()
    try:
        await asyncio.wait_for(writer.synced.wait(), 10)
        for step in range(1, 6):
            await writer.edit(
                lambda d, s=step: d.get("fields", type=Map).__setitem__("current_step", s)
            )
            await writer.flush()  # one version each (writes that arrive together are one)
    finally:
        await writer.disconnect()
    async with as_user(server, "alice") as api:
        seen: list[dict[str, Any]] = []
        after = 0
        for _ in range(10):
            page = (
                await api.get(f"/api/drafts/{draft}/events", params={"after": after, "limit": 2})
            ).json()
            seen += page["items"]
            if page["next"] is None:
                break
            after = page["next"]
        steps = [e for e in seen if e.get("field") == "current_step"]
        assert [e["new"] for e in steps] == [1, 2, 3, 4, 5]
        assert [e["version"] for e in steps] == sorted(e["version"] for e in steps)
        assert all(e["user"] == "alice" and e["type"] == "FIELD_UPDATED" for e in steps)
        assert len({e["id"] for e in seen}) == len(seen)
        bad = await api.get(f"/api/drafts/{draft}/events", params={"limit": "many"})
        assert bad.status_code == 400
        assert (
            await api.get(f"/api/drafts/{draft}/events", params={"after": -3})
        ).status_code == 400
        assert (await api.get(f"/api/drafts/{new_id('nope')}/events")).status_code == 404
    async with as_user(server, "stranger") as api:
        assert (await api.get(f"/api/drafts/{draft}/events")).status_code == 404


async def test_restore_is_a_forward_change_every_replica_follows(server: ServerProcess) -> None:
    draft = new_id("restore")
    token = server.token("alice")
    a = await NodeClient.start(server.ws_url, draft, token)
    b = await NodeClient.start(server.ws_url, draft, token)
    offline = await PycrdtClient(server.ws_url, draft, token).connect()
    try:
        await a.call("wait_synced")
        await b.call("wait_synced")
        await a.call("insert", field="title", index=0, text="Version one")
        await a.call("set", key="status", value="DRAFT")
        await offline.wait_for(lambda: offline.fields().get("status") == "DRAFT")
        await offline.flush()
        old_version, old_state = await live_state(server, draft)

        await b.call("insert", field="title", index=0, text="Rewritten: ")
        await b.call("set", key="status", value="IN_REVIEW")
        await offline.disconnect()
        await offline.edit(lambda d: d.get("description", type=Text).insert(0, "offline note"))

        async def b_rewrote() -> bool:
            return await a.text("title") == "Rewritten: Version one"

        await eventually(b_rewrote)
        async with as_user(server, "alice") as api:
            answer = await api.post(f"/api/drafts/{draft}/restore", json={"version": old_version})
            assert answer.status_code == 200, answer.text
            assert answer.json()["restoredFrom"] == old_version
            assert (
                await api.post(f"/api/drafts/{draft}/restore", json={"version": "x"})
            ).status_code == 422
            assert (
                await api.post(f"/api/drafts/{draft}/restore", json={"version": 10**6})
            ).status_code == 404

        async def restored(client: NodeClient) -> bool:
            state = await client.state(texts=["title"])
            return state["texts"]["title"] == "Version one" and state["fields"]["status"] == "DRAFT"

        await eventually(lambda: restored(a))
        await eventually(lambda: restored(b))
        await offline.connect()
        await offline.flush()

        async def converged() -> bool:
            texts = [await c.state(texts=["title", "description"]) for c in (a, b)]
            return (
                all(
                    t["texts"]["title"] == "Version one"
                    and t["texts"]["description"] == "offline note"
                    for t in texts
                )
                and offline.text("title") == "Version one"
                and offline.text("description") == "offline note"
            )

        await eventually(converged)
        _, now_state = await live_state(server, draft)
        assert now_state["texts"]["title"] == old_state["texts"]["title"]
        assert now_state["fields"] == old_state["fields"]
        async with as_user(server, "alice") as api:
            events = (await api.get(f"/api/drafts/{draft}/events", params={"limit": 1000})).json()
        restores = [e for e in events["items"] if e["type"] == "RESTORED"]
        assert [(e["from_version"], e["user"]) for e in restores] == [(old_version, "alice")]
        assert Counter(offline.text("title").split())["Version"] == 1
    finally:
        await offline.disconnect()
        await asyncio.gather(a.close(), b.close())
