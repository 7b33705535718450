"""The outcome of a webhook delivery is recorded only by the holder of its current claim, on
both real stores (a SQLite file; a database of the session's PostgreSQL cluster).

Why: an attempt may outlive its lease (the receiver answered late; the instance stalled). The
row is then due again and claimed by another deliverer (another instance, or the same one's
next round), which may deliver it. The first attempt's late outcome must not overwrite the
newer one: a late "retry" over "delivered" would send the receiver the event again, a late
"delivered" would hide the attempt still in flight. The last test runs the `Deliverer` itself
against a real receiver on loopback that answers only after the delivery was claimed again.
(The whole server, with a receiver: test_webhooks.py.)

The attempt's row goes with its outcome: recorded together under the claim's lease, or dropped
together. A late attempt's row beside a newer claim's outcome made the history disagree with
it (its last attempt failed while the delivery says delivered; an attempt the outcome ignored),
and both claimers numbered their attempt 1. Attempts are numbered by the store, after the
delivery's recorded ones: unique and consecutive, whatever a claimer counted when it claimed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import pytest

from server.store.outbox import Attempt, Delivery
from server.store.postgres import PostgresStore
from server.store.sqlite import SqliteStore
from server.webhooks.deliverer import Deliverer
from server.webhooks.settings import WebhookSettings
from tests.support.waiting import eventually
from tests.support.webhook_receiver import SECRET

URL = "http://127.0.0.1:9/hook"
CREATED, FIRST_CLAIM, FIRST_LEASE = 10.0, 20.0, 30.0  # Unix seconds (1970)
SECOND_CLAIM, SECOND_LEASE = 31.0, 41.0  # after the first lease ran out


async def _claimed_twice(store: SqliteStore | PostgresStore) -> int:
    """One delivery, claimed by a first deliverer whose lease then runs out, and claimed
    again by a second; its id."""
    store.webhook_urls = (URL,)
    assert await store.create_draft("leased", "alice", now=CREATED)
    first = await store.webhook_claim(now=FIRST_CLAIM, lease_until=FIRST_LEASE, limit=10)
    assert [(d.url, d.next_attempt_at) for d in first] == [(URL, FIRST_LEASE)]
    # While the lease holds, nobody else takes it.
    assert await store.webhook_claim(now=FIRST_LEASE - 1, lease_until=99.0, limit=10) == []
    second = await store.webhook_claim(now=SECOND_CLAIM, lease_until=SECOND_LEASE, limit=10)
    assert [(d.id, d.next_attempt_at) for d in second] == [(first[0].id, SECOND_LEASE)]
    return first[0].id


async def test_a_late_retry_does_not_overwrite_the_newer_claims_delivered(
    store: SqliteStore | PostgresStore,
) -> None:
    delivery_id = await _claimed_twice(store)
    # The second claimer delivers; then the first's attempt ends, failed, asking for a retry.
    delivered = Attempt(1, SECOND_CLAIM, 204, None, 0.01)
    assert await store.webhook_attempted(
        delivery_id,
        delivered,
        status="delivered",
        next_attempt_at=SECOND_CLAIM,
        lease_until=SECOND_LEASE,
    )
    late = Attempt(1, FIRST_CLAIM, 500, "HTTP 500", 11.0)
    assert not await store.webhook_attempted(
        delivery_id, late, status="pending", next_attempt_at=45.0, lease_until=FIRST_LEASE
    )

    [row] = await store.webhook_deliveries("leased", after=0, limit=10)
    assert (row.status, row.attempts, row.next_attempt_at, row.last_error) == (
        "delivered",
        1,
        SECOND_CLAIM,
        None,
    )
    # Never due again: the receiver does not get the event a second time.
    assert await store.webhook_claim(now=1e9, lease_until=2e9, limit=10) == []


async def test_a_late_delivered_does_not_hide_the_newer_claim_in_flight(
    store: SqliteStore | PostgresStore,
) -> None:
    delivery_id = await _claimed_twice(store)
    # The first's attempt ends, delivered, while the second's is in flight: the row stays the
    # second's (its lease), and the second's outcome, a retry, is the one that stands.
    late = Attempt(1, FIRST_CLAIM, 204, None, 11.0)
    assert not await store.webhook_attempted(
        delivery_id, late, status="delivered", next_attempt_at=20.0, lease_until=FIRST_LEASE
    )
    [row] = await store.webhook_deliveries("leased", after=0, limit=10)
    assert (row.status, row.next_attempt_at) == ("pending", SECOND_LEASE)

    retry = Attempt(1, SECOND_CLAIM, 503, "HTTP 503", 0.01)
    assert await store.webhook_attempted(
        delivery_id, retry, status="pending", next_attempt_at=50.0, lease_until=SECOND_LEASE
    )
    [row] = await store.webhook_deliveries("leased", after=0, limit=10)
    assert (row.status, row.attempts, row.next_attempt_at, row.last_error) == (
        "pending",
        1,
        50.0,
        "HTTP 503",
    )


def _agrees(row: Delivery) -> None:
    """The history agrees with the outcome: attempts 1..n, n the delivery's count, the last
    one's error the delivery's, and a delivered delivery's last attempt the one answered 2xx."""
    assert [a.attempt for a in row.log] == list(range(1, row.attempts + 1))
    assert row.log[-1].error == row.last_error
    if row.status == "delivered":
        assert row.log[-1].status_code is not None and 200 <= row.log[-1].status_code < 300
    else:
        assert all(a.error is not None for a in row.log)


async def test_a_late_failed_attempt_leaves_no_row_beside_the_newer_claims_delivered(
    store: SqliteStore | PostgresStore,
) -> None:
    delivery_id = await _claimed_twice(store)
    # Both claimers number their attempt 1 (each counted the attempts when it claimed). The
    # first's ends first, failed, while the second's is in flight; then the second delivers.
    late = Attempt(1, FIRST_CLAIM, 500, "HTTP 500", 11.0)
    assert not await store.webhook_attempted(
        delivery_id, late, status="pending", next_attempt_at=45.0, lease_until=FIRST_LEASE
    )
    delivered = Attempt(1, SECOND_CLAIM, 204, None, 0.01)
    assert await store.webhook_attempted(
        delivery_id,
        delivered,
        status="delivered",
        next_attempt_at=SECOND_CLAIM,
        lease_until=SECOND_LEASE,
    )
    [row] = await store.webhook_deliveries("leased", after=0, limit=10)
    assert (row.status, row.attempts, row.last_error) == ("delivered", 1, None)
    # Not "attempt 1: HTTP 500" under a delivered delivery.
    assert [(a.attempt, a.at, a.status_code) for a in row.log] == [(1, SECOND_CLAIM, 204)]
    _agrees(row)


async def test_a_late_attempt_is_dropped_with_its_outcome_and_the_numbers_run_on(
    store: SqliteStore | PostgresStore,
) -> None:
    delivery_id = await _claimed_twice(store)
    # The first's attempt ends, delivered, while the second's is in flight: neither its
    # outcome nor its row is recorded.
    late = Attempt(1, FIRST_CLAIM, 204, None, 11.0)
    assert not await store.webhook_attempted(
        delivery_id, late, status="delivered", next_attempt_at=20.0, lease_until=FIRST_LEASE
    )
    [row] = await store.webhook_deliveries("leased", after=0, limit=10)
    assert (row.status, row.attempts, row.log) == ("pending", 0, ())

    retry = Attempt(1, SECOND_CLAIM, 503, "HTTP 503", 0.01)
    assert await store.webhook_attempted(
        delivery_id, retry, status="pending", next_attempt_at=50.0, lease_until=SECOND_LEASE
    )
    # A third claim, whose attempt is numbered by the store after the recorded one, whatever
    # its claimer counted (here a stale 1).
    [third] = await store.webhook_claim(now=50.0, lease_until=60.0, limit=10)
    failed = Attempt(1, 50.0, None, "ConnectError: refused", 0.01)
    assert await store.webhook_attempted(
        third.id, failed, status="failed", next_attempt_at=50.0, lease_until=60.0
    )
    [row] = await store.webhook_deliveries("leased", after=0, limit=10)
    assert (row.status, row.attempts) == ("failed", 2)
    assert [(a.attempt, a.at, a.error) for a in row.log] == [
        (1, SECOND_CLAIM, "HTTP 503"),
        (2, 50.0, "ConnectError: refused"),
    ]
    _agrees(row)


@pytest.mark.parametrize("status", ["delivered", "pending"])
async def test_the_holder_of_the_claim_records_its_outcome(
    store: SqliteStore | PostgresStore, status: str
) -> None:
    """The guard takes nothing from the ordinary case: one claim, its outcome recorded."""
    store.webhook_urls = (URL,)
    assert await store.create_draft("once", "alice", now=CREATED)
    [claimed] = await store.webhook_claim(now=FIRST_CLAIM, lease_until=FIRST_LEASE, limit=10)
    error = None if status == "delivered" else "HTTP 500"
    attempt = Attempt(1, FIRST_CLAIM, 204 if error is None else 500, error, 0.01)
    assert await store.webhook_attempted(
        claimed.id, attempt, status=status, next_attempt_at=25.0, lease_until=FIRST_LEASE
    )
    [row] = await store.webhook_deliveries("once", after=0, limit=10)
    assert (row.status, row.attempts, row.next_attempt_at, row.last_error) == (
        status,
        1,
        25.0,
        error,
    )
    assert [a.attempt for a in row.log] == [1]


class HeldReceiver:
    """A real HTTP receiver on loopback that holds each request until `release` is set, then
    answers 500: an attempt that outlives its lease, for as long as the test needs."""

    def __init__(self) -> None:
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()
        self.answered = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        self.arrived.set()
        await self.release.wait()
        writer.write(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        self.answered += 1
        writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def test_the_deliverer_drops_its_late_outcome_and_logs_it_without_the_url(
    store: SqliteStore | PostgresStore, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = HeldReceiver()
    port = await receiver.start()
    # Credentials in the URL (user info and query): the dropped outcome's log shows neither.
    url = f"http://hook-user:hook-pass@127.0.0.1:{port}/hooks?token=hook-token"
    store.webhook_urls = (url,)
    settings = WebhookSettings(urls=(url,), secret=SECRET, timeout_seconds=60.0)
    caplog.set_level(logging.INFO, logger="draftsync.webhooks")
    assert await store.create_draft("late", "alice", now=time.time())
    deliverer = asyncio.create_task(Deliverer(store, settings).run())
    try:
        await asyncio.wait_for(receiver.arrived.wait(), timeout=30)
        # The deliverer's lease (a minute) is taken as run out: a second claimer, an hour
        # on, claims the delivery again and delivers it.
        later = time.time() + 3600
        [again] = await store.webhook_claim(now=later, lease_until=later + 65, limit=10)
        delivered = Attempt(1, later, 204, None, 0.01)
        assert await store.webhook_attempted(
            again.id, delivered, status="delivered", next_attempt_at=later, lease_until=later + 65
        )
        receiver.release.set()  # the first attempt ends now: 500, a retry it asks for

        async def dropped() -> bool:
            return any("outcome dropped" in r.getMessage() for r in caplog.records)

        await eventually(dropped, timeout=30)
    finally:
        deliverer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await deliverer
        await receiver.stop()

    assert receiver.answered == 1
    [row] = await store.webhook_deliveries("late", after=0, limit=10)
    assert (row.status, row.next_attempt_at, row.last_error) == ("delivered", later, None)
    # The history has the second's attempt only: the late one's row was dropped with it.
    assert [(a.attempt, a.at, a.status_code) for a in row.log] == [(1, later, 204)]
    [record] = [r for r in caplog.records if "outcome dropped" in r.getMessage()]
    assert record.levelno == logging.INFO
    message = record.getMessage()
    assert row.event_id in message and "127.0.0.1" in message
    for secret in ("hook-user", "hook-pass", "hook-token", "/hooks", row.payload):
        assert secret not in message
