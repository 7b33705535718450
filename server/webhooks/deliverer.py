"""Delivery: take due rows of the outbox, sign them, POST them, record what happened.

Why a task of its own (under the `Supervisor`): a slow or dead receiver must never slow a room.
Nothing here runs on the commit path; rooms only write outbox rows in their transactions.
At most `MAX_IN_FLIGHT` deliveries run at once, each bounded by the timeout, and at most an
equal share of them go to one URL (claimed per URL), so a receiver that hangs holds its own
share of the slots, never the others' events: claimed all together, in order, its deliveries
had taken every slot, and another receiver's events waited for its timeouts.

At least once: a delivery is claimed with a lease (`next_attempt_at` moved past the timeout;
PostgreSQL: `FOR UPDATE SKIP LOCKED`, so each row goes to one instance); a crash before its
outcome is recorded leaves it due again when the lease ends. A receiver may therefore see an
event twice: the `webhook-id` header is the same on every attempt, so it can drop repeats.
The attempt and its outcome are recorded together, only under the claim's own lease: an
attempt that outlived it (the delivery since claimed again, maybe delivered) has both dropped,
not its outcome written over the newer one nor its row left in the history beside it. The
store numbers the attempts it records (after the delivery's recorded ones); while the lease
holds that is the number counted here at the claim.

Signed as Standard Webhooks does (`standardwebhooks.Webhook.sign`): `webhook-id`,
`webhook-timestamp` (of this attempt), `webhook-signature: v1,<base64 HMAC-SHA256>`. A 2xx
answer is delivered; anything else (3xx included: redirects are not followed), a timeout or a
refused connection is a failed attempt, retried after `retry_delay`, and after
`max_attempts` the delivery is `failed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from standardwebhooks import Webhook

from server import metrics
from server.errors import StoreError
from server.store.api import Store
from server.store.outbox import Attempt, Delivery
from server.webhooks.backoff import retry_delay
from server.webhooks.settings import WebhookSettings

if TYPE_CHECKING:
    import httpx

__all__ = ["LEASE_MARGIN_SECONDS", "MAX_IN_FLIGHT", "POLL_SECONDS", "Deliverer"]

logger = logging.getLogger("draftsync.webhooks")

MAX_IN_FLIGHT = 16
POLL_SECONDS = 0.5  # how often due deliveries are looked for when nothing wakes the task
LEASE_MARGIN_SECONDS = 5.0  # a claim lasts the timeout plus this
_MAX_ERROR_CHARS = 300


class Deliverer:
    def __init__(self, store: Store, settings: WebhookSettings) -> None:
        # httpx (~90 ms of imports) is imported by a server with webhooks only, here at start
        # rather than on the loop: every other server starts without it.
        import httpx  # noqa: F401

        self._store = store
        self._settings = settings
        self._signer = Webhook(settings.secret)
        self._in_flight: dict[asyncio.Task[None], str] = {}  # each delivery's URL
        self._per_url = max(1, MAX_IN_FLIGHT // max(1, len(settings.urls)))
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """New rows may be due (an event was just recorded)."""
        self._wake.set()

    async def run(self) -> None:
        import httpx  # imported by __init__: a lookup

        timeout = httpx.Timeout(self._settings.timeout_seconds)
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
            try:
                while True:
                    await self._claim_and_send(client)
                    await self._wait()
            finally:
                for task in self._in_flight:
                    task.cancel()
                for task in list(self._in_flight):
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    async def _claim_and_send(self, client: httpx.AsyncClient) -> None:
        """Claim what each URL has due, up to its share of the free slots; then deliveries to
        URLs no longer configured (each marked failed at once, without a request)."""
        busy = Counter(self._in_flight.values())
        for url in self._settings.urls:
            free = min(MAX_IN_FLIGHT - len(self._in_flight), self._per_url - busy[url])
            if free > 0 and not await self._claim(client, free, url=url):
                return
        free = MAX_IN_FLIGHT - len(self._in_flight)
        if free > 0:
            await self._claim(client, free, other_than=self._settings.urls)

    async def _claim(
        self,
        client: httpx.AsyncClient,
        limit: int,
        *,
        url: str | None = None,
        other_than: tuple[str, ...] = (),
    ) -> bool:
        """Claim and start up to `limit` deliveries; False if the store failed."""
        now = time.time()
        lease_until = now + self._settings.timeout_seconds + LEASE_MARGIN_SECONDS
        try:
            batch = await self._store.webhook_claim(
                now=now, lease_until=lease_until, limit=limit, url=url, other_than=other_than
            )
        except StoreError as error:
            logger.warning("webhook claim failed error=%s", error)
            return False
        for delivery in batch:
            task = asyncio.create_task(self._deliver(client, delivery))
            self._in_flight[task] = delivery.url
            task.add_done_callback(self._done)
        return True

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task, None)
        self._wake.set()  # a slot is free
        if not task.cancelled() and task.exception() is not None:
            logger.error("webhook delivery failed unexpectedly", exc_info=task.exception())

    async def _wait(self) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(POLL_SECONDS):
                await self._wake.wait()

    async def _deliver(self, client: httpx.AsyncClient, delivery: Delivery) -> None:
        import httpx  # imported by __init__: a lookup

        if delivery.url not in self._settings.urls:  # removed from the command line since
            await self._record(delivery, None, status="failed", next_at=time.time())
            return
        number = delivery.attempts + 1
        started = time.time()
        clock = time.perf_counter()
        status_code: int | None = None
        error: str | None = None
        try:
            # httpx's timeout bounds each read and write, not the attempt: a receiver that
            # trickles its answer a byte at a time would hold the slot for ever, and outlive
            # the claim's lease (the same event then claimed and sent again beside it).
            async with asyncio.timeout(self._settings.timeout_seconds):
                response = await self._send(client, delivery, int(started))
            status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_CHARS]
        except TimeoutError:
            error = f"Timeout: no whole answer within {self._settings.timeout_seconds:g} s"
        attempt = Attempt(number, started, status_code, error, time.perf_counter() - clock)
        if error is None:
            status, next_at = "delivered", started
        elif number >= self._settings.max_attempts:
            status, next_at = "failed", started
        else:
            status = "pending"
            next_at = time.time() + retry_delay(
                number,
                base=self._settings.retry_base_seconds,
                cap=self._settings.retry_max_seconds,
            )
        metrics.WEBHOOK_ATTEMPTS.labels(outcome=status if error is None else "error").inc()
        level = logging.INFO if error is None else logging.WARNING
        logger.log(
            level,
            "webhook %s event=%s type=%s draft=%s host=%s attempt=%d error=%s",
            status,
            delivery.event_id,
            delivery.type,
            delivery.draft_id,
            urlsplit(delivery.url).hostname,
            number,
            error,
        )
        await self._record(delivery, attempt, status=status, next_at=next_at)

    async def _send(self, client: httpx.AsyncClient, delivery: Delivery, at: int) -> httpx.Response:
        body = delivery.payload.encode()
        headers = {
            "content-type": "application/json",
            "user-agent": "draftsync-webhooks",
            "webhook-id": delivery.event_id,
            "webhook-timestamp": str(at),
            "webhook-signature": self._signer.sign(
                delivery.event_id, datetime.fromtimestamp(at, UTC), body
            ),
        }
        # Streamed and never read: a receiver's answer body is not ours to hold in memory.
        async with client.stream("POST", delivery.url, content=body, headers=headers) as response:
            return response

    async def _record(
        self, delivery: Delivery, attempt: Attempt | None, *, status: str, next_at: float
    ) -> None:
        """Record the attempt and the outcome under this claim's lease (the claim's
        `next_attempt_at`): an attempt that outlived it finds the delivery claimed again, and
        both are dropped rather than written beside or over the newer claim's (which may have
        delivered it)."""
        try:
            recorded = await self._store.webhook_attempted(
                delivery.id,
                attempt,
                status=status,
                next_attempt_at=next_at,
                lease_until=delivery.next_attempt_at,
            )
        except StoreError as error:  # the lease ends and it is delivered again: at least once
            logger.warning(
                "webhook outcome not recorded event=%s error=%s", delivery.event_id, error
            )
            return
        if not recorded:  # event id and host only: no URL (credentials), no payload
            logger.info(
                "webhook attempt and outcome dropped: lease ran out, delivery claimed again"
                " or removed"
                " event=%s host=%s status=%s",
                delivery.event_id,
                urlsplit(delivery.url).hostname,
                status,
            )
