"""PostgreSQL-only promises: its errors become `StoreError` (1013, then recovery), the
schema is created once and migrated by whichever instance starts first, and review turns of a
draft exclude each other across instances."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from pycrdt import Text

from bench.services import PostgresCluster
from server.store.postgres import PostgresStore
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
