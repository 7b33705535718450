"""PostgreSQL-only promises: its errors become `StoreError` (1013, then recovery), the
schema is created once and migrated by whichever instance starts first, and review turns of a
draft exclude each other across instances."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
from pycrdt import Text

from bench.services import PostgresCluster
from crdt.journal import EventType, JournalEvent
from server.store.postgres import PostgresStore
from server.store.records import UpdateRecord
from tests.support.node_client import NodeClient
from tests.support.server_process import ServerProcess
from tests.support.stored_any import stored_doc, stored_rows
from tests.support.waiting import eventually


async def has_text(client: NodeClient, text: str) -> bool:
    return await client.text("title") == text


async def test_lost_database_connections_close_with_1013_and_the_server_recovers(
    tmp_path: Path, postgres: PostgresCluster
) -> None:
    url = postgres.new_database()
    server = ServerProcess(tmp_path / "data", "--store", url).start()
    draft = f"pg-{uuid.uuid4().hex[:8]}"
    token = server.token("alice")
    sender = await NodeClient.start(server.ws_url, draft, token)
    watcher = await NodeClient.start(server.ws_url, draft, token)
    try:
        await asyncio.gather(sender.call("wait_synced"), watcher.call("wait_synced"))
        await sender.call("insert", field="title", index=0, text="before ")
        await eventually(lambda: has_text(watcher, "before "))
        # Every connection of the server's pool dies, as in a database failover.
        postgres.psql(
            url.rsplit("/", 1)[1],
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        await sender.call("insert", field="title", index=7, text="during")
        # Either the commit fails (1013: clients reconnect and resend) or a fresh connection
        # takes it; both end with the text stored once and seen by everyone.
        await eventually(lambda: has_text(watcher, "before during"), timeout=30)
        await eventually(lambda: has_text(sender, "before during"), timeout=30)
        assert str(stored_doc(server, draft).get("title", type=Text)) == "before during"
        assert "Traceback" not in server.log()
    finally:
        await asyncio.gather(sender.close(), watcher.close())
        server.stop()


async def test_two_instances_starting_together_create_the_schema_once(
    tmp_path: Path, postgres: PostgresCluster
) -> None:
    url = postgres.new_database()
    servers = [ServerProcess(tmp_path / name, "--store", url) for name in ("a", "b")]
    try:
        await asyncio.gather(*(asyncio.to_thread(s.start) for s in servers))
        versions = stored_rows(servers[0], "SELECT version FROM schema_version ORDER BY version")
        # Each migration once (1: the tables, 2: the webhook outbox), none run twice.
        assert [v for (v,) in versions] == list(range(1, len(versions) + 1))
        assert len(versions) >= 2
    finally:
        for server in servers:
            server.stop()


async def test_review_turns_of_one_draft_take_turns_across_instances(
    postgres: PostgresCluster,
) -> None:
    """Two stores, as two instances hold them: a draft's review lock waits for its holder,
    another draft's does not, and the lock passes on when its holder leaves."""
    url = postgres.new_database()
    one, two = await PostgresStore.open(url), await PostgresStore.open(url)
    try:

        async def take(store: PostgresStore, draft: str) -> None:
            async with store.review_lock(draft):
                pass

        async with one.review_lock("shared"):
            waiting = asyncio.create_task(take(two, "shared"))
            await asyncio.wait_for(take(two, "other"), timeout=5)
            await asyncio.sleep(0.3)
            assert not waiting.done(), "the second instance took a lock that was held"
        await asyncio.wait_for(waiting, timeout=5)
        await asyncio.wait_for(take(one, "shared"), timeout=5)
    finally:
        await one.close()
        await two.close()


async def test_paging_a_drafts_events_and_deliveries_misses_none_that_commit_late(
    postgres: PostgresCluster,
) -> None:
    """Ids are taken at INSERT, transactions commit in any order: a reader paging with `after`
    must not move its cursor past an id of the same draft that is yet to commit. Here the
    journal's write (lower ids) is held before its commit while a group commit of the same
    draft (higher ids) runs, and a reader pages in between."""
    url = postgres.new_database()
    urls = ("http://hooks.invalid/a",)
    journal, rooms = await PostgresStore.open(url), await PostgresStore.open(url)
    journal.webhook_urls = rooms.webhook_urls = urls
    holder = await asyncpg.connect(url)
    draft = "paged"

    def conflict(version: int) -> JournalEvent:
        data = {"field": "title", "n": version}
        return JournalEvent(EventType.CONFLICT_OPENED, draft, version, "alice", "s", 1, 1.0, data)

    async def waiting_on_locks() -> int:
        return int(
            await holder.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )

    try:
        assert await journal.create_draft(draft, "alice", now=1.0)
        await journal.append_events([], watermark=(draft, 1))
        seen_events: list[int] = []
        seen_deliveries: list[int] = []

        async def page() -> None:
            after = seen_events[-1] if seen_events else 0
            seen_events.extend(
                e.id for e in await journal.events_page(draft, after=after, limit=100)
            )
            after = seen_deliveries[-1] if seen_deliveries else 0
            found = await journal.webhook_deliveries(draft, after=after, limit=100)
            seen_deliveries.extend(d.id for d in found)

        # The journal's transaction inserts its event and outbox row, then waits on the
        # watermark's row, which `holder` keeps locked.
        async with holder.transaction():
            await holder.execute(
                "SELECT 1 FROM journal_state WHERE draft_id = $1 FOR UPDATE", draft
            )
            closing = asyncio.create_task(
                journal.append_events([conflict(1)], watermark=(draft, 2))
            )
            await eventually(lambda: _at_least(waiting_on_locks, 1))
            record = UpdateRecord(draft, 1, b"\x00\x00", "alice", "s", 1, 1.0)
            committing = asyncio.create_task(rooms.append_updates([record], [conflict(1)]))

            async def settled() -> bool:
                return committing.done() or await waiting_on_locks() >= 2

            await eventually(settled)
            await page()
        await asyncio.gather(closing, committing)
        await page()

        all_events = [e.id for e in await journal.events_page(draft, after=0, limit=100)]
        all_deliveries = [d.id for d in await journal.webhook_deliveries(draft, after=0, limit=100)]
        # Deliveries: draft.created, then the two conflicts'.
        assert len(all_events) == 2 and len(all_deliveries) == 3
        assert seen_events == all_events
        assert seen_deliveries == all_deliveries
    finally:
        await holder.close()
        await journal.close()
        await rooms.close()


async def _at_least(count: Callable[[], Awaitable[int]], least: int) -> bool:
    return await count() >= least
