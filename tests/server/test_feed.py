"""The drafts change feed `GET /api/drafts/feed` (server-sent events) and `GET /api/dashboard`
(issue 25, point 3), on a real server with real clients.

"Nothing arrived" is never waited for with a sleep: the feed publishes dirty drafts in id order
within a round, and a round never starts before the previous one ends, so once a reader sees a
summary of a draft changed after another one, the other one was handled (and not sent to it).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from server.sync.feed import FeedEvent, Subscription
from tests.support.feed_reader import Feed, feed
from tests.support.node_client import NodeClient
from tests.support.rest import as_user, create_draft, new_id
from tests.support.server_process import ServerProcess


async def test_a_reader_receives_a_summary_after_another_client_edits(
    server: ServerProcess,
) -> None:
    owner, editor = new_id("owner"), new_id("editor")
    async with as_user(server, owner) as client:
        draft = (await create_draft(client, title="Garden", fields={"status": "DRAFT"}))["id"]
        shared = await client.put(
            f"/api/drafts/{draft}/access", json={"user": editor, "role": "editor"}
        )
        assert shared.status_code == 200
    async with feed(server, owner) as reader:
        node = await NodeClient.start(server.ws_url, draft, server.token(editor), name=editor)
        try:
            await node.call("wait_synced")
            await node.call("insert", field="title", index=0, text="Spring ")
            for _ in range(20):  # coalesced: the title may take a second summary to show
                summary = await reader.until("summary", draft)
                if summary["title"] == "Spring Garden":
                    break
        finally:
            await node.close()
    assert summary["title"] == "Spring Garden"
    assert summary["role"] == "owner"
    assert summary["lastUser"] == editor
    assert summary["status"] == "DRAFT"
    assert summary["wordCount"] == 2
    assert editor in summary["contributors"]
    assert not {"state", "texts", "fields", "lists"} & set(summary)  # no content but the title
    assert set(summary) >= {"completion", "openConflicts", "lastModified", "sync", "owner"}


async def test_a_user_who_cannot_reach_the_draft_receives_nothing_of_it(
    server: ServerProcess,
) -> None:
    owner, stranger = new_id("owner"), new_id("stranger")
    async with as_user(server, owner) as client:
        secret = (await create_draft(client, id=new_id("a"), title="Secret"))["id"]
    async with feed(server, stranger) as reader, as_user(server, stranger) as mine:
        node = await NodeClient.start(server.ws_url, secret, server.token(owner), name=owner)
        try:
            await node.call("wait_synced")
            await node.call("insert", field="title", index=0, text="Top ")
            # changed after the secret one, and later in id order: published after it
            own = (await create_draft(mine, id=new_id("b"), title="Mine"))["id"]
            await reader.until("summary", own)
        finally:
            await node.close()
    assert all(data.get("id") != secret for _, data in reader.seen), reader.seen


async def test_an_invitation_and_a_revocation_reach_the_invitee_s_feed(
    server: ServerProcess,
) -> None:
    owner, guest = new_id("owner"), new_id("guest")
    async with as_user(server, owner) as client:
        draft = (await create_draft(client, title="Shared"))["id"]
        async with feed(server, guest) as reader:
            await client.put(f"/api/drafts/{draft}/access", json={"user": guest, "role": "viewer"})
            invited = await reader.until("summary", draft)
            assert invited["role"] == "viewer" and invited["title"] == "Shared"
            await client.put(f"/api/drafts/{draft}/access", json={"user": guest, "role": "none"})
            await reader.until("removed", draft)


@pytest.mark.parametrize("token", [None, "not-a-token"])
async def test_a_bad_or_missing_token_is_401(server: ServerProcess, token: str | None) -> None:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as client:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        response = await client.get("/api/drafts/feed", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"] == "unauthorized"
        by_query = await client.get("/api/drafts/feed", params={"token": "not-a-token"})
        assert by_query.status_code == 401


async def test_the_token_may_be_a_query_parameter_and_is_not_logged(server: ServerProcess) -> None:
    user = new_id("query")
    token = server.token(user)
    async with (
        httpx.AsyncClient(base_url=server.http_url, timeout=10) as client,
        client.stream("GET", "/api/drafts/feed", params={"token": token}) as response,
    ):
        assert response.status_code == 200
        reader = Feed(response)
        assert (await reader.next())[0] == "ready"
    assert token not in server.log()


async def test_feeds_per_user_are_bounded(tmp_path: Path) -> None:
    capped = ServerProcess(tmp_path, "--max-feeds-per-user", "2")
    capped.start()
    try:
        user = new_id("many")
        async with feed(capped, user), feed(capped, user), as_user(capped, user) as client:
            third = await client.get("/api/drafts/feed")
            assert third.status_code == 503
            assert "Retry-After" in third.headers
            other = await client.get("/api/stats")  # REST is not refused
            assert other.status_code == 200
        async with feed(capped, new_id("other")):  # per user: another user gets theirs
            pass
    finally:
        capped.stop()


async def test_sigterm_ends_open_feeds_and_the_server_exits(tmp_path: Path) -> None:
    """uvicorn waits for open responses before it stops: the service ends every stream."""
    stopping = ServerProcess(tmp_path)
    stopping.start()
    try:
        async with feed(stopping, new_id("reader")) as reader:
            exit_code = await asyncio.to_thread(stopping.terminate, 20)
            with pytest.raises(AssertionError, match="the feed ended"):
                await reader.next()
        assert exit_code == 0
    finally:
        stopping.stop()


async def test_a_slow_reader_is_told_to_resync_instead_of_queueing_without_bound() -> None:
    sub = Subscription("slow", queue_events=3)
    for index in range(10):
        sub.offer(FeedEvent("removed", f"d{index}"))
    first = await sub.next()
    assert first is not None and first.kind == "resync"  # the three queued were dropped
    assert sub.dropped == 10
    sub.offer(FeedEvent("removed", "after"))  # caught up: events flow again
    again = await sub.next()
    assert again is not None and again.draft_id == "after"
    sub.close()
    assert await sub.next() is None


# -- GET /api/dashboard ----------------------------------------------------------------------


async def test_the_dashboard_pages_by_cursor_and_agrees_with_stats(server: ServerProcess) -> None:
    user = new_id("dash")
    async with as_user(server, user) as client:
        for index in range(3):
            await create_draft(client, title=f"Draft number {index}", fields={"status": "DRAFT"})
        first = await client.get("/api/dashboard", params={"limit": 2})
        assert first.status_code == 200
        body = first.json()
        assert len(body["items"]) == 2 and body["next"]
        rest = (
            await client.get("/api/dashboard", params={"limit": 2, "cursor": body["next"]})
        ).json()
        items = body["items"] + rest["items"]
        assert rest["next"] is None and len(items) == 3
        stats = (await client.get("/api/stats")).json()
        assert stats["totalDrafts"] == len(items)
        assert stats["totalWordCount"] == sum(item["wordCount"] for item in items)
        average = round(sum(item["completion"] for item in items) / len(items), 1)
        assert stats["averageCompletion"] == average
        assert all(item["title"].startswith("Draft number") for item in items)
        assert all(item["lastUser"] == user and item["role"] == "owner" for item in items)
        bad = await client.get("/api/dashboard", params={"cursor": "%%%"})
        assert bad.status_code == 400
        too_many = await client.get("/api/dashboard", params={"limit": 1000})
        assert too_many.status_code == 422
    async with as_user(server, None) as anonymous:
        assert (await anonymous.get("/api/dashboard")).status_code == 401
