"""Retention of the webhook outbox on both real stores: `webhook_forget` takes only finished
deliveries older than the cut, in batches of its limit, each with its attempts; pending ones
stay however old; an attempt that ends after its delivery was removed leaves nothing behind;
a retention pass (`OutboxRetention.sweep`) removes what its window has passed, a backlog
larger than one batch included. (The whole server, with a receiver: test_webhooks.py.)"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.store.api import Store
from server.store.outbox import Attempt
from server.store.postgres import PostgresStore
from server.store.sqlite import SqliteStore
from server.webhooks.retention import BATCH_ROWS, OutboxRetention
from server.webhooks.settings import KEEP_SECONDS
from tests.support.outbox_reader import OutboxRow, stored_outbox
from tests.support.postgres import BACKENDS

URLS = ("http://127.0.0.1:9/a", "http://127.0.0.1:9/b")
LONG_AGO, CUT = 100.0, 500.0  # Unix seconds (1970)


@pytest.fixture(params=BACKENDS)
async def store_at(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Store, Path | str]]:
    """A real store with webhooks configured, and where it is (for `stored_outbox`)."""
    store: Store
    where: Path | str
    if request.param == "postgresql":
        where = request.getfixturevalue("postgres").new_database()
        store = await PostgresStore.open(where)
    else:
        where = tmp_path / "draftsync.db"
        store = await SqliteStore.open(where)
    store.webhook_urls = URLS
    try:
        yield store, where
    finally:
        await store.close()


def read(request: pytest.FixtureRequest, where: Path | str) -> tuple[list[OutboxRow], int]:
    postgres = request.getfixturevalue("postgres") if isinstance(where, str) else None
    return stored_outbox(where, postgres)


async def test_forget_takes_finished_rows_past_the_cut_in_batches_and_never_pending_ones(
    store_at: tuple[Store, Path | str], request: pytest.FixtureRequest
) -> None:
    store, where = store_at
    recently = time.time() - 60  # past a one-second window, well within the default
    for i in range(6):  # 12 deliveries: one event, two URLs each
        assert await store.create_draft(f"keep-{i}", "alice", now=10.0)
    claimed = await store.webhook_claim(now=20.0, lease_until=30.0, limit=100)
    assert len(claimed) == 12
    # 4 delivered and 3 failed long ago, 2 delivered recently, 3 still pending (due long ago).
    plan = ["delivered"] * 4 + ["failed"] * 3 + ["recent"] * 2 + ["pending"] * 3
    for delivery, kind in zip(claimed, plan, strict=True):
        at = recently if kind == "recent" else LONG_AGO
        status = "delivered" if kind == "recent" else kind
        code = 204 if status == "delivered" else 500
        attempt = Attempt(1, at, code, None if code == 204 else "HTTP 500", 0.01)
        await store.webhook_attempted(
            delivery.id, attempt, status=status, next_attempt_at=at, lease_until=30.0
        )
    rows, orphans = read(request, where)
    assert len(rows) == 12 and all(n == 1 for *_, n in rows) and orphans == 0

    # Batches of at most 3: the 7 past the cut go, in 3 + 3 + 1; then nothing.
    counts = [await store.webhook_forget(before=CUT, limit=3) for _ in range(4)]
    assert counts == [3, 3, 1, 0]
    rows, orphans = read(request, where)
    gone = {d.id for d, kind in zip(claimed, plan, strict=True) if kind in ("delivered", "failed")}
    assert {row[0] for row in rows} == {d.id for d in claimed} - gone
    assert sorted(row[2] for row in rows) == ["delivered"] * 2 + ["pending"] * 3
    assert all(n == 1 for *_, n in rows) and orphans == 0  # the removed ones' attempts went too

    # An attempt that outlived its lease ends after its delivery was removed: no row comes
    # back, and its attempt is not kept for a delivery that no longer exists.
    late = Attempt(2, recently, 204, None, 0.01)
    assert not await store.webhook_attempted(
        min(gone), late, status="delivered", next_attempt_at=recently, lease_until=30.0
    )
    assert read(request, where) == (rows, 0)

    # A pass with the default window (7 days) keeps the recent ones; with one second, they go.
    assert await OutboxRetention(store, KEEP_SECONDS).sweep() == 0
    assert read(request, where) == (rows, 0)
    assert await OutboxRetention(store, keep_seconds=1).sweep() == 2
    rows, orphans = read(request, where)
    assert [row[2] for row in rows] == ["pending"] * 3 and orphans == 0


async def test_a_pass_removes_a_backlog_larger_than_one_batch(
    store_at: tuple[Store, Path | str], request: pytest.FixtureRequest
) -> None:
    store, where = store_at
    drafts = BATCH_ROWS // len(URLS) + 2  # two rows a draft: a batch and a few more
    for i in range(drafts):
        assert await store.create_draft(f"backlog-{i}", "alice", now=10.0)
    claimed = await store.webhook_claim(now=20.0, lease_until=30.0, limit=2 * drafts)
    assert len(claimed) == 2 * drafts > BATCH_ROWS
    pending = claimed[:2]
    for delivery in claimed:
        status = "pending" if delivery in pending else "delivered"
        code, error = (500, "HTTP 500") if status == "pending" else (204, None)
        attempt = Attempt(1, LONG_AGO, code, error, 0.01)
        await store.webhook_attempted(
            delivery.id, attempt, status=status, next_attempt_at=20.0, lease_until=30.0
        )
    assert await OutboxRetention(store, keep_seconds=1).sweep() == 2 * drafts - 2
    rows, orphans = read(request, where)
    assert [row[0] for row in rows] == [d.id for d in pending] and orphans == 0
