"""The drafts change feed: summaries of changed drafts, pushed to the users who can reach them.

    event      data                          sent when
    ready      {}                            the subscription is in place (nothing missed after)
    summary    a summary (summaries.py)      a draft the user has a role on was committed to,
               + the user's "role"           created, or its access changed (an invitation)
    removed    {"id"}                        the user's role was removed, or the draft deleted
    resync     {}                            the reader fell `queue_events` behind: what was
                                             queued is dropped, read the list again (REST)

Light by design: a commit only marks its draft dirty (no I/O, no document read); a flush task
runs at most every `COALESCE_SECONDS`, and for each dirty draft reads its access list and, only
if one of those users is subscribed, summarises it once (metadata cached by version) for all of
them. A burst of keystrokes is one summary, and a draft nobody watches costs nothing.

Bounded: at most `max_per_user` subscriptions a user (a new one over it is `CapReached`), at
most `queue_events` events queued a subscription. One instance: with several (Redis fan-out),
a subscriber hears of commits made through its own instance and of every access change and
deletion made there; edits through another instance reach it at its next resync or reload.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from server import metrics
from server.errors import CapReached, StoreError
from server.sync.summaries import Summary

__all__ = ["COALESCE_SECONDS", "DraftFeed", "FeedEvent", "Subscription"]

logger = logging.getLogger("draftsync.feed")

COALESCE_SECONDS = 0.25

_Summarize = Callable[[str], Awaitable[Summary | None]]
_AccessOf = Callable[[str], Awaitable[dict[str, str]]]


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """What a subscriber is told; the HTTP layer writes it (server/http/feed.py)."""

    kind: str  # ready, summary, removed, resync
    draft_id: str | None = None
    summary: Summary | None = None
    role: str | None = None  # the subscriber's role on the draft, with a summary


_RESYNC = FeedEvent("resync")
_CLOSED = FeedEvent("closed")  # ends the stream (server shutting down); never sent


class Subscription:
    """One reader of the feed: a bounded queue that turns into one `resync` when it overflows."""

    def __init__(self, user: str, queue_events: int) -> None:
        self.user = user
        self._queue: asyncio.Queue[FeedEvent] = asyncio.Queue(maxsize=queue_events)
        self._behind = False
        self.dropped = 0

    def offer(self, event: FeedEvent) -> None:
        if self._behind:
            self.dropped += 1
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            # a slow reader: what it has not read is stale anyway, it reads the list again
            self.dropped += self._queue.qsize() + 1
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(_RESYNC)
            self._behind = True
            logger.info("feed reader behind user=%s: resync", self.user)

    def close(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(_CLOSED)

    async def next(self) -> FeedEvent | None:
        """The next event; None once the feed is closed."""
        event = await self._queue.get()
        if event is _RESYNC:
            self._behind = False
        return None if event is _CLOSED else event


class DraftFeed:
    def __init__(
        self,
        *,
        summarize: _Summarize,
        access_of: _AccessOf,
        max_per_user: int,
        queue_events: int,
    ) -> None:
        self._summarize = summarize
        self._access_of = access_of
        self.max_per_user = max_per_user
        self.queue_events = queue_events
        self._subscribers: dict[str, set[Subscription]] = {}
        self._dirty: set[str] = set()
        self._flusher: asyncio.Task[None] | None = None
        self.closed = False

    # -- subscribers ----------------------------------------------------------------------------

    def subscribe(self, user: str) -> Subscription:
        if self.closed:
            raise CapReached("server shutting down, try again later")
        mine = self._subscribers.setdefault(user, set())
        if len(mine) >= self.max_per_user:
            if not mine:
                del self._subscribers[user]
            metrics.ADMISSION_REFUSED.labels(cap="feed").inc()
            raise CapReached(f"user at the limit of {self.max_per_user} feeds, try again later")
        sub = Subscription(user, self.queue_events)
        mine.add(sub)
        sub.offer(FeedEvent("ready"))
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        mine = self._subscribers.get(sub.user)
        if mine is None:
            return
        mine.discard(sub)
        if not mine:
            del self._subscribers[sub.user]  # no entry left per user ever seen

    def subscribers(self, user: str) -> int:
        return len(self._subscribers.get(user, ()))

    def close(self) -> None:
        """Shutdown: end every stream (uvicorn waits for open responses before it stops)."""
        self.closed = True
        for mine in self._subscribers.values():
            for sub in mine:
                sub.close()
        if self._flusher is not None:
            self._flusher.cancel()

    # -- what changed ---------------------------------------------------------------------------

    def changed(self, draft_id: str) -> None:
        """`draft_id` was committed to, created or shared: a summary follows shortly. Cheap."""
        if self.closed or not self._subscribers:
            return
        self._dirty.add(draft_id)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    def removed(self, draft_id: str, users: list[str]) -> None:
        """`users` lost the draft (role removed, draft deleted): tell them at once."""
        event = FeedEvent("removed", draft_id)
        for user in users:
            for sub in self._subscribers.get(user, ()):
                sub.offer(event)

    async def _flush(self) -> None:
        while self._dirty and not self.closed:
            await asyncio.sleep(COALESCE_SECONDS)
            drafts, self._dirty = self._dirty, set()
            for draft_id in sorted(drafts):
                try:
                    await self._publish(draft_id)
                except StoreError as error:  # the next change, or a resync, tells it again
                    logger.warning("feed summary failed draft=%s error=%s", draft_id, error)
                except Exception:  # a bug summarising one draft must not stop the others
                    logger.exception("feed summary failed draft=%s", draft_id)

    async def _publish(self, draft_id: str) -> None:
        access = await self._access_of(draft_id)
        readers = {user: role for user, role in access.items() if user in self._subscribers}
        if not readers:
            return
        summary = await self._summarize(draft_id)
        if summary is None:
            return
        for user, role in readers.items():
            event = FeedEvent("summary", draft_id, summary, role)
            for sub in list(self._subscribers.get(user, ())):
                sub.offer(event)

    async def wait_idle(self) -> None:
        """For tests and shutdown: until what is dirty now has been published."""
        flusher = self._flusher
        if flusher is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
