"""A cold join racing a deletion of its draft, on PostgreSQL.

A joiner's role is checked before its room loads; the owner may delete the draft in between,
on the same instance. The joiner must end as the draft's live clients do: closed 4404 (see
test_rest_drafts.py `test_delete_closes_live_clients_4404_and_the_id_stays_dead`), never
connected to a deleted draft.

The load is held open with a real lock: the draft's journal watermark is set below its last
version (what a crash with a text burst open leaves), so loading it recovers the journal, whose
write waits for the watermark's row, which this test's own connection holds locked.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from bench.services import PostgresCluster
from tests.server.test_hocuspocus import hocuspocus_url, notice_and_close
from tests.support.hocuspocus_client import HocuspocusClient
from tests.support.raw_client import RawClient, connect_raw
from tests.support.rest import as_user, create_draft, new_id, scrape
from tests.support.server_process import ServerProcess
from tests.support.waiting import eventually


@pytest.fixture
def server(tmp_path: Path, postgres: PostgresCluster) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path, "--room-grace", "0.3", "--store", postgres.new_database())
    process.start()
    yield process
    process.stop()


async def _no_room_loaded(server: ServerProcess) -> bool:
    return "draftsync_rooms_loaded 0.0" in await scrape(server)


async def _server_waits(db: asyncpg.Connection) -> bool:
    """A session of this database waits for a lock (the server's, held up by this test)."""
    count = await db.fetchval(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return int(count) > 0


@contextlib.asynccontextmanager
async def _deleted_while_loading(
    server: ServerProcess, alice: httpx.AsyncClient
) -> AsyncIterator[Callable[[Callable[[str], Awaitable[Any]]], Awaitable[str]]]:
    """`race(join)`: a new draft of alice's, not loaded; `join(draft_id)` starts a join of it,
    which passes its role check and then waits in its room's load while alice deletes the
    draft (204); the load then goes on. Returns the draft's id."""
    assert server.store_url is not None
    db = await asyncpg.connect(server.store_url)

    async def race(join: Callable[[str], Awaitable[Any]]) -> str:
        draft_id = new_id()
        await create_draft(alice, id=draft_id, title="to be removed")
        await eventually(lambda: _no_room_loaded(server))  # the join is a cold one
        # A burst left open at a crash: the load recovers the journal, a write.
        await db.execute(
            "INSERT INTO journal_state (draft_id, text_watermark) VALUES ($1, 1)"
            " ON CONFLICT (draft_id) DO UPDATE SET text_watermark = 1",
            draft_id,
        )
        holding = db.transaction()
        await holding.start()
        try:
            await db.execute("SELECT 1 FROM journal_state WHERE draft_id = $1 FOR UPDATE", draft_id)
            await join(draft_id)
            # The joiner's role passed; its room's load waits for the watermark's row.
            await eventually(lambda: _server_waits(db))
            response = await alice.delete(f"/api/drafts/{draft_id}")
            assert response.status_code == 204
        finally:
            await holding.rollback()  # the load goes on, the draft deleted meanwhile
        return draft_id

    try:
        yield race
    finally:
        await db.close()


async def test_a_join_loading_while_its_draft_is_deleted_is_closed_4404(
    server: ServerProcess,
) -> None:
    joining: list[asyncio.Task[RawClient]] = []

    async def join(draft_id: str) -> None:
        joining.append(
            asyncio.create_task(connect_raw(server.ws_url, draft_id, server.token("alice")))
        )

    async with as_user(server, "alice") as alice, _deleted_while_loading(server, alice) as race:
        draft_id = await race(join)
        joiner = await joining[0]
        try:
            assert await joiner.wait_closed() == (4404, "draft deleted")
            assert joiner.messages == []  # nothing of the deleted draft was sent
        finally:
            await joiner.close()
        assert (await alice.get(f"/api/drafts/{draft_id}")).status_code == 404


async def test_a_hocuspocus_join_loading_while_its_draft_is_deleted_is_closed_4404(
    server: ServerProcess,
) -> None:
    hp = await HocuspocusClient.launch(hocuspocus_url(server), shared=True)
    try:

        async def join(draft_id: str) -> None:
            await hp.open("d", draft_id, server.token("alice"))

        async with as_user(server, "alice") as alice, _deleted_while_loading(server, alice) as race:
            await race(join)
            notice, reason = await notice_and_close(hp, "d")
            assert reason == "draft deleted"
            assert notice == {"type": "draftsync.closed", "code": 4404, "reason": "draft deleted"}
            assert not [e for e in hp.events if e.get("doc") == "d" and e["event"] == "synced"]
    finally:
        await hp.close()
