"""Redis fan-out: several instances host one draft (design.md, "Beyond one machine").

Why Redis pub/sub and not instance-to-instance links: instances come and go behind a load
balancer; each only needs to know Redis. Pub/sub is fire-and-forget, so it is never trusted
alone: the store (PostgreSQL) is the truth and every instance catches up from it by version.

    channel                 message                                   on another instance
    draftsync:u:<draft>     committed update: origin, version, user   applied, relayed locally
                            and bytes, and the journal events of its  and its events told to
                            write if any (rule outcomes: JSON `e`)    local connections
                                                                      (Hocuspocus: Stateless)
    draftsync:a:<draft>     awareness update of local clients         kept, relayed locally
    draftsync:access        role change / deletion of a draft         sharing.apply_role, ...
    draftsync:hb            "I am alive" every HEARTBEAT_SECONDS      an instance silent for
                                                                      INSTANCE_TIMEOUT_SECONDS
                                                                      has its awareness dropped

Only committed updates are published (after the group commit), so "durable before visible"
holds across instances. Versions are given by the store (`PostgresStore.append_updates`), so
each draft has one sequence however many instances write to it. Each loaded room keeps a
watermark: every stored version up to it is in its doc. A version seen above it (a message
lost, or out of order) opens a gap that is filled from the store (`updates_with_origin`)
after GAP_WAIT_SECONDS; every CATCH_UP_SECONDS each room also compares its watermark with the
store's last version, which covers a message lost with nothing after it (Redis restart).

Every message is signed (server/cluster/signing.py: an HMAC keyed from the service's secret)
and one without a valid tag is dropped before it is read (`_refused`): only an instance of the
service can publish what the others apply. Still, a message's version is a claim, not a fact:
a bug, or anything holding the secret, can name any version (issue 20: one malformed message
must not hurt the server). The next version the room lacks is applied at once (the ordinary
case); one past a gap is held, bounded, until the versions before it come (Redis reorders
two instances' messages by milliseconds) or the gap fill reads the store, which drops what the
store does not have (`_catch_up`). So the room's version never passes what the store confirmed
or this instance committed, and a version the store never gave costs one read, not a read
every GAP_WAIT_SECONDS.
Applying an update twice is harmless (a CRDT): pycrdt integrates nothing the second time.
A write's journal events (rule outcomes) travel in its update's message, so they are lost, held
and applied with their version: a version applied from a message tells the events it carries,
one caught up from the store tells the events stored with it (`PostgresStore.events_between`:
they are stored in the update's transaction). Each version is applied once, by one of the two
ways (the watermark), so each outcome is told once, in version order, whatever was lost.
Telling a rule outcome twice is not harmless: a publish whose reply is lost (the connection
dropped after Redis took the command) is published again, by redis-py's retry or the publish
loop's, so each instance numbers what it publishes (`n`, in order: one task publishes) and a
copy, no higher than the last number heard from its instance, is dropped on arrival. The same
numbers, and the signed send time, drop a message kept and published again by anything
listening on Redis (server/cluster/replay.py).

While Redis is away nothing leaves, and every commit still queues its update: the outbox is
bounded (`Outbox`, OUTBOX_MESSAGES and OUTBOX_BYTES) and drops its oldest messages when full.
Nothing waits on a dropped message: its number is only a hole (receivers keep the highest number
heard, never wait for the next one), and its version is a gap the receiving rooms fill from the
store (or their catch-up loop, when nothing follows it), as for a message Redis lost.

Rules run exactly once per write, against everything stored before it: an instance reviews only
its own clients' writes (the others absorb them), and reviews of one draft take turns across
instances (`turn`: the store's per-draft review lock, then a catch-up from the store), so of two
conflicting writes that reach two instances at once, the second in turn is judged against the
first and the conflict is settled once, by the instance that stores the second.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from crdt.errors import MalformedMessage
from crdt.journal import OUTCOMES, EventType, JournalEvent
from crdt.safe_json import dumps
from server import faults, metrics
from server.access import Role
from server.cluster.replay import REPLAY_WINDOW_SECONDS, Senders, fresh
from server.cluster.signing import MessageSigner
from server.errors import CloseCode, StoreError
from server.store.postgres import PostgresStore
from server.store.records import StoredEvent, UpdateRecord
from server.supervisor import Supervisor
from server.sync.registry import RoomRegistry
from server.sync.room import Room, RoomState
from server.sync.sharing import apply_role, close_deleted

__all__ = [
    "CATCH_UP_SECONDS",
    "DEPARTURE_ECHOES",
    "DROP_LOG_SECONDS",
    "GAP_WAIT_SECONDS",
    "HEARTBEAT_SECONDS",
    "HELD_BYTES",
    "HELD_MESSAGES",
    "INSTANCE_TIMEOUT_SECONDS",
    "OUTBOX_BYTES",
    "OUTBOX_MESSAGES",
    "PREFIX",
    "PUBLISH_RETRY_SECONDS",
    "Fanout",
    "Outbox",
]

logger = logging.getLogger("draftsync.fanout")

PREFIX = "draftsync"
HEARTBEAT_SECONDS = 1.0
INSTANCE_TIMEOUT_SECONDS = 5.0
GAP_WAIT_SECONDS = 0.3
CATCH_UP_SECONDS = 1.0
PUBLISH_RETRY_SECONDS = 0.5  # between two attempts while Redis is away: no spinning

OUTBOX_MESSAGES = 10_000
"""Messages the outbox holds at most (`--fanout-outbox-messages`). Redis answers a publish in
well under a millisecond, so a healthy instance holds a handful; 10,000 is seconds of a busy
instance's commits, enough to ride out a blip (a Redis failover, a dropped connection) without
dropping anything, and small enough that the other instances catch the rest up from the store
with a few queries once it is dropped."""

OUTBOX_BYTES = 64 * 1024 * 1024
"""Bytes of messages the outbox holds at most (`--fanout-outbox-bytes`): what memory the fan-out
may take during a Redis outage, whatever the updates weigh. 10,000 typical messages (an edit's
update and header, ~100-300 bytes) take a few MB, so the count binds first; 64 MiB binds when
the updates are big (pastes, images inlined), and stays small beside the rooms' docs."""

DROP_LOG_SECONDS = 10.0  # at most one warning about dropped messages this often

# Kinds of messages the outbox drops last (`Outbox`): nothing would ever repair their loss.
_KEPT = frozenset({"access", "departure", "departure-echo"})

DEPARTURE_ECHOES = (2.0, 4.5)
"""Seconds after a departure is published that it is published again. Redis delivers a message
only to the subscriptions open when it arrives: an instance whose subscription was down then (a
dropped connection, Redis restarting, its reconnect racing our publish loop's) never heard it,
and kept the leaver's cursor (in its clients' tables and every joiner's) until its own 30 s
time-out. Past INSTANCE_TIMEOUT_SECONDS without our heartbeat it forgets all our cursors
anyway, so echoes up to then cover every outage shorter. An echo is applied as the departure
was (the ids' clocks: a client that came back since keeps its newer state), and costs a few
bytes an id."""

HELD_MESSAGES = 1_000
"""Updates of other instances a room holds at most past a gap (`_Tracker.held`). Redis
reorders messages of two publishing instances by milliseconds: a handful is held, then applied
in order. Past this (or HELD_BYTES) the held ones are dropped and the gap fill reads them."""

HELD_BYTES = 8 * 1024 * 1024
"""Bytes of updates, and of the journal events they carry (encoded), a room holds at most past
a gap (see HELD_MESSAGES)."""

_MAX_VERSION = 2**63 - 1  # the store's versions are bigints: a message naming more is unreadable

_Entry = tuple[int, str, bytes, str]  # number, channel, message, kind (a metrics label)
_ENTRY_OVERHEAD = 64  # bytes counted per message besides its channel and body


@dataclass(slots=True)
class _Held:
    """Another instance's update for a version past the room's gap, not applied yet."""

    update: bytes
    user: str | None
    instance: str
    events: Sequence[JournalEvent] = ()  # its write's, told once it is applied
    size: int = 0  # what `_Tracker.hold` counted of it in `held_bytes`


@dataclass(slots=True)
class _Tracker:
    """Which stored versions a room's doc holds, and which it was told of but does not trust.

    The doc holds every version up to `watermark`, and those in `above`: versions this
    instance committed itself, which the store numbered, so they are in it. A version another
    instance announced is only a promise until the store confirms it: a message past a gap is
    `held` (not applied, not counted) until the versions before it arrive or a read of the
    store settles it (`Fanout._catch_up`). `promised` is the highest version any such message
    named, held or dropped past HELD_MESSAGES / HELD_BYTES: the gap fill reads up to it."""

    room: Room
    watermark: int
    above: set[int] = field(default_factory=set)
    held: dict[int, _Held] = field(default_factory=dict)
    held_bytes: int = 0
    promised: int = 0
    catching_up: bool = False

    def mark(self, version: int) -> None:
        if version > self.watermark:
            self.above.add(version)
        while self.watermark + 1 in self.above:
            self.watermark += 1
            self.above.discard(self.watermark)

    @property
    def has_gap(self) -> bool:
        return bool(self.above or self.held) or self.promised > self.watermark

    @property
    def wanted(self) -> int:
        """The highest version this room knows of and lacks (what a gap fill reads up to)."""
        return max(self.promised, max(self.held, default=0), max(self.above, default=0))

    def hold(self, version: int, entry: _Held) -> bool:
        """Keep `entry` until the versions before it come; False if that passed the bounds
        (every held entry is dropped then: the gap fill reads them from the store)."""
        self.promised = max(self.promised, version)
        self.held[version] = entry
        # Its events too: a rule outcome's data (a rejected value) may outweigh its update.
        entry.size = len(entry.update) + (_encoded_size(entry.events) if entry.events else 0)
        self.held_bytes += entry.size
        if len(self.held) <= HELD_MESSAGES and self.held_bytes <= HELD_BYTES:
            return True
        self.held.clear()
        self.held_bytes = 0
        return False

    def take(self, version: int) -> _Held | None:
        entry = self.held.pop(version, None)
        if entry is not None:
            self.held_bytes -= entry.size
        return entry


def _listed(events: Sequence[JournalEvent]) -> list[dict[str, Any]]:
    """Journal events as a message lists them (`e`; `_event` reads one back)."""
    return [
        {
            "t": str(event.type),
            "v": event.version,
            "u": event.user,
            "s": event.session,
            "c": event.client_id,
            "at": event.at,
            "d": json.loads(dumps(event.data)),  # JSON whatever the data holds
        }
        for event in events
    ]


def _encoded_size(events: Sequence[JournalEvent]) -> int:
    """The bytes `events` take in a message (what a held message's events weigh)."""
    return len(json.dumps(_listed(events), separators=(",", ":")).encode())


def _frame(header: dict[str, Any], payload: bytes = b"") -> bytes:
    return json.dumps(header, separators=(",", ":")).encode() + b"\n" + payload


class _Unreadable(ValueError):
    """A message on our channels that no instance of ours could have sent as it is (not JSON,
    no sender, a field of the wrong type): skipped before it changes anything."""


def _unframe(message: bytes) -> tuple[dict[str, Any], bytes]:
    """The header (a JSON object naming its sender instance, `i`) and the payload; raises
    `_Unreadable` if the message has no such header."""
    text, _, payload = message.partition(b"\n")
    try:
        header = json.loads(text)  # invalid UTF-8 raises UnicodeDecodeError, a ValueError
    except (ValueError, RecursionError) as error:
        raise _Unreadable(f"header is not JSON: {error!r}") from error
    if not isinstance(header, dict) or not isinstance(header.get("i"), str):
        raise _Unreadable("header is not an object naming its sender")
    return header, payload


def _field(header: dict[str, Any], key: str, kind: type, *, optional: bool = False) -> Any:
    """`header[key]`, which must be a `kind` (or None, if `optional`); else `_Unreadable`."""
    value = header.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _Unreadable(f"{key!r} is not {kind.__name__}: {value!r}")
    return value


def _event(draft_id: str, item: Any) -> JournalEvent:
    """A journal event as `Fanout._events` lists it; raises if it is not one."""
    data = item.get("d")
    if not isinstance(data, dict):
        raise TypeError("event data is not an object")
    return JournalEvent(
        type=EventType(item["t"]),
        draft_id=draft_id,
        version=int(item["v"]),
        user=_optional(item.get("u"), str),
        session=_optional(item.get("s"), str),
        client_id=_optional(item.get("c"), int),
        at=float(item["at"]),
        data=data,
    )


def _stored_event(draft_id: str, stored: StoredEvent) -> JournalEvent:
    return JournalEvent(
        type=EventType(stored.type),
        draft_id=draft_id,
        version=stored.version,
        user=stored.user,
        session=stored.session,
        client_id=stored.client_id,
        at=stored.at,
        data=stored.data,
    )


@dataclass(slots=True)
class _Queued:
    """The last update message this instance queued, kept until its write's journal events
    (if any) join it (`Fanout._events`)."""

    number: int
    channel: str
    version: int
    header: dict[str, Any]
    payload: bytes


def _reload(room: Room, why: str) -> None:
    """After an unexpected error in the fan-out's work on `room`: its doc or its awareness may
    be half-changed, so it is dropped (its clients closed with 1011, to reconnect and resend)
    and loaded afresh from the store, which holds every instance's versions."""
    room.discard(why, code=CloseCode.INTERNAL_ERROR, reason="server error, reconnect")


def _optional(value: Any, kind: type) -> Any:
    if value is not None and not isinstance(value, kind):
        raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
    return value


class Outbox:
    """What this instance has yet to publish, oldest first, bounded by `max_messages` and
    `max_bytes`: a new message that would pass either bound drops the oldest ones (O(1) each).

    Updates and journal events are the bulk, and dropping them is safe: the other instances
    read every version from the store (gap fill, catch-up loop), and the journal keeps what
    rules did. Awareness is renewed by its clients, except a departure (a connection's ids
    removed). Departures, access changes and deletions (`kept`) are not caught up anywhere,
    and they are small (a departure, a few bytes an id): they are dropped only when no other
    message is left to drop. The two kinds wait in two deques; the one with the lower number
    leaves first, so what is published keeps the order it was queued in.

    The publisher reads `first()` and calls `done()` once it is published: a message being
    retried stays counted, and may be dropped meanwhile (the next `first()` gives the one after
    it)."""

    def __init__(self, max_messages: int = OUTBOX_MESSAGES, max_bytes: int = OUTBOX_BYTES) -> None:
        if max_messages < 1 or max_bytes < 1:
            raise ValueError("the outbox bounds must be positive")
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.bytes = 0
        self.peak_messages = 0  # the most it ever held (never above the bounds)
        self.peak_bytes = 0
        self.dropped: dict[str, int] = {}  # per kind, since start
        self._droppable: deque[_Entry] = deque()
        self._kept: deque[_Entry] = deque()
        self._ready = asyncio.Event()
        self._unlogged = 0  # dropped since the last warning
        self._next_log = 0.0

    def __len__(self) -> int:
        return len(self._droppable) + len(self._kept)

    def put(
        self, number: int, channel: str, message: bytes, kind: str, *, kept: bool = False
    ) -> None:
        """Queue a message (numbers must grow), then drop the oldest until within bounds."""
        entry = (number, channel, message, kind)
        (self._kept if kept else self._droppable).append(entry)
        self.bytes += _size(entry)
        while len(self) > self.max_messages or self.bytes > self.max_bytes:
            self._drop((self._droppable or self._kept).popleft())
        self.peak_messages = max(self.peak_messages, len(self))
        self.peak_bytes = max(self.peak_bytes, self.bytes)
        self._ready.set()

    def messages(self) -> list[_Entry]:
        """Everything queued, in the order it leaves (for tests and debugging)."""
        return sorted((*self._droppable, *self._kept))

    async def first(self) -> _Entry:
        """The oldest message, once there is one (it stays queued until `done`)."""
        while not (self._droppable or self._kept):
            self._ready.clear()
            await self._ready.wait()
        if not self._kept:
            return self._droppable[0]
        if not self._droppable:
            return self._kept[0]
        return min(self._droppable[0], self._kept[0])

    def done(self, entry: _Entry) -> None:
        """`entry` (from `first`) is published: unqueue it, unless it was dropped meanwhile."""
        for lane in (self._droppable, self._kept):
            if lane and lane[0] is entry:
                lane.popleft()
                self.bytes -= _size(entry)
                return

    def replace(self, number: int, message: bytes) -> bool:
        """Put `message` in place of the newest droppable message if it is number `number`
        (a message that gained its write's events, `Fanout._events`), then drop the oldest
        until within bounds. False if it is gone (dropped at once: over the bounds)."""
        lane = self._droppable
        if not lane or lane[-1][0] != number:
            return False
        old = lane[-1]
        new = (number, old[1], message, old[3])
        lane[-1] = new
        self.bytes += _size(new) - _size(old)
        while len(self) > self.max_messages or self.bytes > self.max_bytes:
            self._drop((self._droppable or self._kept).popleft())
        self.peak_bytes = max(self.peak_bytes, self.bytes)
        return True

    def _drop(self, entry: _Entry) -> None:
        self.bytes -= _size(entry)
        kind = entry[3]
        self.dropped[kind] = self.dropped.get(kind, 0) + 1
        metrics.FANOUT_DROPPED.labels(kind=kind).inc()
        self._unlogged += 1
        now = time.monotonic()
        if now >= self._next_log:
            logger.warning(
                "fan-out outbox full (bounds: %d messages, %d bytes): dropped the %d oldest "
                "since the last warning; the other instances catch updates up from the store",
                self.max_messages,
                self.max_bytes,
                self._unlogged,
            )
            self._unlogged = 0
            self._next_log = now + DROP_LOG_SECONDS


def _size(entry: _Entry) -> int:
    return len(entry[1]) + len(entry[2]) + _ENTRY_OVERHEAD


class Fanout:
    def __init__(
        self,
        url: str,
        rooms: RoomRegistry,
        store: PostgresStore,
        *,
        secret: str,
        outbox_messages: int = OUTBOX_MESSAGES,
        outbox_bytes: int = OUTBOX_BYTES,
    ) -> None:
        self.instance = secrets.token_hex(8)
        self._signer = MessageSigner(secret)  # server/cluster/signing.py
        self._unsigned_unlogged = 0  # messages refused since the last warning
        self._unsigned_next_log = 0.0
        self._redis = aioredis.from_url(url)
        self._rooms = rooms
        self._store = store
        self._trackers: dict[str, _Tracker] = {}
        self.outbox = Outbox(outbox_messages, outbox_bytes)
        metrics.FANOUT_OUTBOX.set_function(lambda: len(self.outbox))
        metrics.FANOUT_OUTBOX_BYTES.set_function(lambda: self.outbox.bytes)
        metrics.FANOUT_OUTBOX_PEAK.set_function(lambda: self.outbox.peak_messages)
        metrics.FANOUT_OUTBOX_PEAK_BYTES.set_function(lambda: self.outbox.peak_bytes)
        metrics.FANOUT_GAPS.set_function(
            lambda: sum(tracker.has_gap for tracker in self._trackers.values())
        )
        metrics.FANOUT_HELD.set_function(
            lambda: sum(len(tracker.held) for tracker in self._trackers.values())
        )
        self._numbers = itertools.count(1)  # what this instance publishes, in order
        self._last_update: _Queued | None = None  # what `_events` adds a write's events to
        self._beats = itertools.count(1)  # this instance's heartbeats (they skip the outbox)
        self._senders = Senders()  # the last numbers heard from each other instance
        self._stale_unlogged = 0  # messages dropped outside the window since the last warning
        self._stale_next_log = 0.0
        self._supervisor: Supervisor | None = None  # set by `start`
        # awareness client ids other instances announced, per instance and draft
        self._remote_clients: dict[str, dict[str, set[int]]] = {}
        self._last_seen: dict[str, float] = {}
        rooms.on_open.append(self._room_opened)
        rooms.on_unload.append(self._room_unloading)
        rooms.on_dropped.append(self._room_unloading)  # failed or discarded: not followed

    async def start(self, supervisor: Supervisor) -> None:
        """Subscribe, then run the fan-out's four loops under `supervisor` (restarted if they
        crash; the service stops them)."""
        self._supervisor = supervisor
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.psubscribe(f"{PREFIX}:u:*", f"{PREFIX}:a:*")
        await pubsub.subscribe(f"{PREFIX}:access", f"{PREFIX}:hb")
        supervisor.start("fanout-listen", functools.partial(self._listen, pubsub))
        supervisor.start("fanout-publish", self._publish_loop)
        supervisor.start("fanout-heartbeat", self._heartbeat)
        supervisor.start("fanout-catch-up", self._catch_up_loop)
        logger.info("fan-out on instance=%s", self.instance)

    async def stop(self) -> None:
        await self._redis.aclose()

    # -- this instance -> the others ---------------------------------------------------------

    def _room_opened(self, room: Room) -> None:
        self._trackers[room.draft_id] = _Tracker(room, watermark=room.version)
        room.commit_listeners.append(self._committed)
        room.awareness_listeners.append(self._awareness)
        room.event_listeners.append(self._events)
        room.review_gate = self

    @contextlib.asynccontextmanager
    async def turn(self, room: Room) -> AsyncIterator[None]:
        """The draft's review turn (server/sync/room.py): the store's per-draft review lock, held
        until the room has committed what it judged; on entry the room has every version
        stored so far (other instances commit their reviewed writes inside their turn)."""
        async with self._store.review_lock(room.draft_id):
            tracker = self._tracker(room)
            if tracker is not None:
                last = await self._store.last_version(room.draft_id)
                if last > tracker.watermark:
                    await self._catch_up(tracker, last)
            yield

    def _room_unloading(self, room: Room) -> None:
        """`room` goes (unloaded, failed or discarded): its doc is no longer followed, nor kept
        by its tracker until the draft is opened again."""
        tracker = self._trackers.get(room.draft_id)
        if tracker is not None and tracker.room is room:
            del self._trackers[room.draft_id]

    def _committed(self, room: Room, records: Sequence[UpdateRecord]) -> None:
        for record in records:
            room.version = max(room.version, record.version)  # the store may have renumbered it
            tracker = self._tracker(room)
            if tracker is not None:
                tracker.mark(record.version)
                if tracker.held:
                    self._apply_held(tracker)
                self._watch_gap(tracker)
            header = {"i": self.instance, "v": record.version, "u": record.user}
            channel = f"{PREFIX}:u:{room.draft_id}"
            number = self._publish(channel, "update", header, record.data)
            self._last_update = _Queued(number, channel, record.version, header, record.data)

    def _events(self, room: Room, events: Sequence[JournalEvent]) -> None:
        """A write's journal events: rules run on the instance that accepted the write only,
        so the others learn its outcomes from here. They join the message of the write's
        update, queued just before (`Room.on_committed` tells the commit listeners, then the
        event listeners, with nothing awaited between): lost with it, they are caught up from
        the store with its version, never told twice. An update the outbox dropped at once
        takes its events with it. Only if the update is not the one just queued (never, as
        the room tells them) do they leave alone, as events of no version."""
        listed = _listed(events)
        channel = f"{PREFIX}:u:{room.draft_id}"
        last, self._last_update = self._last_update, None
        # A write's own events carry its version; bursts of text it closed, older ones.
        version = max(event.version for event in events)
        if last is not None and last.channel == channel and last.version == version:
            last.header["e"] = listed
            self.outbox.replace(last.number, _frame(last.header, last.payload))
            return
        header = {"i": self.instance, "e": listed}
        self._publish(channel, "events", header)

    def _awareness(self, room: Room, payload: bytes, departed: bool) -> None:
        """A departure (a connection's ids removed) is kept in the outbox as an access change
        is: nothing renews it, and the other instances would hold the ids (and hand them to
        every joiner) for as long as this instance lives."""
        header = {"i": self.instance}
        channel = f"{PREFIX}:a:{room.draft_id}"
        self._publish(channel, "departure" if departed else "awareness", header, payload)

    def access_changed(self, draft_id: str, user: str, role: Role | None) -> None:
        """Tell the other instances (this one applied it already)."""
        header = {"i": self.instance, "d": draft_id, "u": user, "r": role.value if role else None}
        self._publish(f"{PREFIX}:access", "access", header)

    def draft_deleted(self, draft_id: str) -> None:
        header = {"i": self.instance, "d": draft_id, "deleted": True}
        self._publish(f"{PREFIX}:access", "access", header)

    def _publish(
        self, channel: str, kind: str, header: dict[str, Any], payload: bytes = b""
    ) -> int:
        """Queue a message, numbered: a copy of it (published again) is known by its number.
        Returns the number. It is signed when it leaves (`_publish_loop`), with that time."""
        number = next(self._numbers)
        header["n"] = number
        self.outbox.put(number, channel, _frame(header, payload), kind, kept=kind in _KEPT)
        return number

    async def _publish_loop(self) -> None:
        """One task publishes everything, in order: a draft's versions leave in commit order.
        A message that fails is tried again every PUBLISH_RETRY_SECONDS, unless the outbox
        dropped it meanwhile (full): then the next oldest is tried."""
        while True:
            entry = await self.outbox.first()
            _, channel, message, _ = entry
            try:
                await self._redis.publish(channel, self._signer.sign(channel, message, time.time()))
            except (aioredis.RedisError, OSError) as error:
                logger.warning("publish failed channel=%s error=%s", channel, error)
                await asyncio.sleep(PUBLISH_RETRY_SECONDS)
                continue
            self.outbox.done(entry)
            if entry[3] == "departure":
                loop = asyncio.get_running_loop()
                for delay in DEPARTURE_ECHOES:
                    loop.call_later(delay, self._echo_departure, channel, message)

    def _echo_departure(self, channel: str, message: bytes) -> None:
        """Queue a published departure again, under a number of its own (`DEPARTURE_ECHOES`):
        the receivers take only numbers past the ones they heard (server/cluster/replay.py)."""
        try:
            header, payload = _unframe(message)
            del header["n"]
            self._publish(channel, "departure-echo", header, payload)
        except Exception:  # a bug of ours: loud, and the departure's first copy went out
            logger.exception("departure echo failed channel=%s", channel)

    def _heartbeat_message(self) -> bytes:
        """Numbered on its own (`b`) and signed with its time: a replayed heartbeat keeps no
        dead instance alive (server/cluster/replay.py)."""
        channel = f"{PREFIX}:hb"
        beat = _frame({"i": self.instance, "b": next(self._beats)})
        return self._signer.sign(channel, beat, time.time())

    async def _heartbeat(self) -> None:
        while True:
            with contextlib.suppress(aioredis.RedisError, OSError):
                await self._redis.publish(f"{PREFIX}:hb", self._heartbeat_message())
            self._expire_instances()
            await asyncio.sleep(HEARTBEAT_SECONDS)

    # -- the others -> this instance ---------------------------------------------------------

    async def _listen(self, pubsub: Any) -> None:
        """Handle what the subscription brings, and keep it alive.

        A subscription can die without an error: its connection half-open (a peer gone
        without a reset, a middlebox that dropped the flow), a read waits for good. Updates
        would still come from the store (`_catch_up_loop`), but awareness and rule outcomes
        only come this way. This instance's own heartbeat comes back on it every
        HEARTBEAT_SECONDS, so INSTANCE_TIMEOUT_SECONDS without any message means it is dead:
        its connection is dropped, and the next read connects and subscribes again (redis-py
        re-subscribes on connect)."""
        heard = time.monotonic()
        while True:
            try:
                message = await pubsub.get_message(timeout=HEARTBEAT_SECONDS)
                if message is not None:
                    heard = time.monotonic()
                    self._dispatch_safely(message)
                elif time.monotonic() - heard >= INSTANCE_TIMEOUT_SECONDS:
                    logger.warning("subscription silent: connecting and subscribing again")
                    heard = time.monotonic()
                    await pubsub.connection.disconnect()
            except (aioredis.RedisError, OSError) as error:
                logger.warning("subscription lost error=%s; resubscribing", error)
                await asyncio.sleep(0.5)
                with contextlib.suppress(aioredis.RedisError, OSError):
                    await pubsub.psubscribe(f"{PREFIX}:u:*", f"{PREFIX}:a:*")
                    await pubsub.subscribe(f"{PREFIX}:access", f"{PREFIX}:hb")

    def _dispatch_safely(self, message: dict[str, Any]) -> None:
        """One message that cannot be handled (malformed, or a bug) must not end the listener:
        it is logged with its traceback and health turns 503; a room it may have half-changed
        is reloaded from the store (which holds every other instance's versions), its clients
        closed with 1011 to reconnect.

        A message no instance of ours sent as it is (`_Unreadable`: bad JSON, no sender, a
        wrong type; anything with access to Redis may publish on our channels) is only
        logged: it changed nothing, and it is no failure of this instance. Reported, it would
        turn every instance's health 503, close a draft's clients, and five of them would stop
        every instance of the service (`Supervisor.report`: MAX_CRASHES)."""
        try:
            self._dispatch(message)
        except _Unreadable as error:
            logger.warning(
                "unreadable fan-out message channel=%r error=%s", message.get("channel"), error
            )
        except Exception as error:
            assert self._supervisor is not None
            self._supervisor.report("fanout-message", error)
            channel = message.get("channel", b"")
            if isinstance(channel, bytes) and channel.startswith(f"{PREFIX}:u:".encode()):
                draft_id = channel.decode(errors="replace").removeprefix(f"{PREFIX}:u:")
                room = self._rooms.get(draft_id)
                if room is not None:
                    _reload(room, "a fan-out message failed")

    def _dispatch(self, message: dict[str, Any]) -> None:
        raw_channel: bytes = message["channel"]
        verified = self._signer.verify(raw_channel, message["data"])
        if verified is None:  # checked before anything of it is read
            self._refused(raw_channel)
            return
        sent, data = verified
        if not fresh(sent, time.time()):  # replayed, or a clock far off
            self._stale(raw_channel, sent)
            return
        channel = raw_channel.decode()
        header, payload = _unframe(data)
        instance = header["i"]
        if instance == self.instance:
            return
        now = time.monotonic()
        if channel == f"{PREFIX}:hb":
            if self._senders.first(instance, _field(header, "b", int), now, beat=True):
                self._last_seen[instance] = now
            else:
                metrics.FANOUT_REPLAYED.inc()
            return
        # A copy: published again after its reply was lost, or replayed.
        if not self._senders.first(instance, _field(header, "n", int), now):
            metrics.FANOUT_REPLAYED.inc()
            return
        self._last_seen[instance] = now
        if channel.startswith(f"{PREFIX}:u:"):
            draft_id = channel.removeprefix(f"{PREFIX}:u:")
            if "v" not in header:  # events of no version
                self._remote_events(draft_id, header.get("e"))
            else:
                version = _field(header, "v", int)
                if not 0 < version <= _MAX_VERSION:
                    raise _Unreadable(f"'v' is no version: {version!r}")
                events = self._read_events(draft_id, header["e"]) if "e" in header else ()
                self._remote_update(
                    draft_id,
                    version,
                    _field(header, "u", str, optional=True),
                    payload,
                    instance,
                    events,
                )
        elif channel.startswith(f"{PREFIX}:a:"):
            self._remote_awareness(channel.removeprefix(f"{PREFIX}:a:"), header["i"], payload)
        elif channel == f"{PREFIX}:access":
            self._remote_access(header)

    def _stale(self, channel: bytes, sent: float) -> None:
        """A signed message sent outside the window (server/cluster/replay.py): dropped,
        counted, and told at most once every DROP_LOG_SECONDS with how far off it was, which
        tells a replay (minutes, hours) from clocks out of sync (every message of an instance,
        by about the same offset)."""
        metrics.FANOUT_REPLAYED.inc()
        self._stale_unlogged += 1
        now = time.monotonic()
        if now >= self._stale_next_log:
            logger.warning(
                "dropped %d signed fan-out messages sent more than %.0f s from this instance's "
                "clock since the last warning (last on channel=%s, off by %.1f s): replayed, or "
                "the instances' clocks disagree (NTP)",
                self._stale_unlogged,
                REPLAY_WINDOW_SECONDS,
                channel.decode(errors="replace")[:200],
                time.time() - sent,
            )
            self._stale_unlogged = 0
            self._stale_next_log = now + DROP_LOG_SECONDS

    def _refused(self, channel: bytes) -> None:
        """A message without a valid signature: dropped unread, counted, and told at most
        once every DROP_LOG_SECONDS (every instance with another secret sends a heartbeat a
        second). Nothing of the message is logged: it is not ours, and may carry anything."""
        metrics.FANOUT_UNSIGNED.inc()
        self._unsigned_unlogged += 1
        now = time.monotonic()
        if now >= self._unsigned_next_log:
            logger.warning(
                "dropped %d fan-out messages without a valid signature since the last warning "
                "(last on channel=%s): another instance runs with a different secret "
                "(DRAFTSYNC_SECRET), or something else publishes on Redis",
                self._unsigned_unlogged,
                channel.decode(errors="replace")[:200],
            )
            self._unsigned_unlogged = 0
            self._unsigned_next_log = now + DROP_LOG_SECONDS

    def _tracker(self, room: Room) -> _Tracker | None:
        tracker = self._trackers.get(room.draft_id)
        return tracker if tracker is not None and tracker.room is room else None

    def _remote_update(
        self,
        draft_id: str,
        version: int,
        user: str | None,
        update: bytes,
        instance: str = "",
        events: Sequence[JournalEvent] = (),
    ) -> None:
        """Another instance's committed update. The next version the room lacks is applied at
        once (the ordinary case: nothing waits). One past a gap is only a promise: held until
        the versions before it come (then applied in order), or until the gap fill reads the
        store, which applies what it holds and drops what it does not (`_catch_up`). So a
        message naming a version the store never gave (corrupted, forged) changes no doc, and
        the room's version never rises past what the store confirmed or this instance
        committed. The write's `events` are told when its version is applied, and only then:
        a version the room has already was caught up from the store, with its events."""
        if faults.ARMED:
            faults.trip("fanout-message")
        room = self._rooms.get(draft_id)
        if room is None or room.state is not RoomState.OPEN:
            return  # not hosted here: a later load reads it from the store
        tracker = self._tracker(room)
        if tracker is None or version <= tracker.watermark or version in tracker.above:
            return
        if version == tracker.watermark + 1:
            room.apply_committed(update, version, user=user)
            tracker.mark(version)
            if events:
                room.tell_events(events)
            if tracker.held:
                self._apply_held(tracker)
        elif version not in tracker.held and not tracker.hold(
            version, _Held(update, user, instance, events)
        ):
            logger.warning(
                "too many fan-out updates held past a gap draft=%s (bounds: %d messages, "
                "%d bytes): dropped them; the gap is filled from the store",
                draft_id,
                HELD_MESSAGES,
                HELD_BYTES,
            )
        self._watch_gap(tracker)

    def _apply_held(self, tracker: _Tracker) -> None:
        """Apply the held updates that now come next, in version order."""
        room = tracker.room
        while (entry := tracker.take(tracker.watermark + 1)) is not None:
            if room.state is not RoomState.OPEN:
                return
            room.apply_committed(entry.update, tracker.watermark + 1, user=entry.user)
            tracker.mark(tracker.watermark + 1)
            if entry.events:
                room.tell_events(entry.events)

    def _remote_events(self, draft_id: str, listed: object) -> None:
        """Another instance's events of no version (`_events`' fallback), told to the
        connections here at once."""
        room = self._rooms.get(draft_id)
        if room is None or room.state is not RoomState.OPEN or not room.connections:
            return
        events = self._read_events(draft_id, listed)
        if events:
            room.tell_events(events)

    @staticmethod
    def _read_events(draft_id: str, listed: object) -> list[JournalEvent]:
        """The journal events a message lists. They change no doc, so one that cannot be
        read is skipped (logged), never a reason to drop its update or reload."""
        events = []
        for item in listed if isinstance(listed, list) else [listed]:
            try:
                events.append(_event(draft_id, item))
            except (KeyError, TypeError, ValueError, AttributeError) as error:
                logger.warning("unreadable fan-out event draft=%s error=%r", draft_id, error)
        return events

    def _remote_awareness(self, draft_id: str, instance: str, payload: bytes) -> None:
        room = self._rooms.get(draft_id)
        if room is None or room.state is not RoomState.OPEN:
            return
        clients = self._remote_clients.setdefault(instance, {}).setdefault(draft_id, set())
        try:
            accepted = room.relay_remote_awareness(payload, instance=instance)
        except MalformedMessage as error:  # nothing of it is kept (server/sync/presence.py)
            raise _Unreadable(f"awareness update: {error}") from error
        for entry in accepted:
            if entry.removed:
                clients.discard(entry.client_id)
            else:
                clients.add(entry.client_id)

    def _remote_access(self, header: dict[str, Any]) -> None:
        draft_id = _field(header, "d", str)
        if header.get("deleted"):
            close_deleted(self._rooms, draft_id)
            return
        user = _field(header, "u", str)
        named = _field(header, "r", str, optional=True)
        try:
            role = Role(named) if named is not None else None
        except ValueError as error:
            raise _Unreadable(f"no such role: {named!r}") from error
        apply_role(self._rooms, draft_id, user, role)

    def _expire_instances(self) -> None:
        """Awareness of an instance that stopped beating (killed) is dropped everywhere.

        Its bookkeeping is gone before its rooms are told, so a room that fails here is never
        told again: rather than let the loop crash (leaving that room, and every room after it,
        showing the dead instance's cursors for good), the failure is reported and that room is
        reloaded, its clients closed with 1011; the other rooms are still told."""
        now = time.monotonic()
        self._senders.forget_silent(now)  # not with `_last_seen`: replays (replay.py)
        for instance, seen in list(self._last_seen.items()):
            if now - seen < INSTANCE_TIMEOUT_SECONDS:
                continue
            del self._last_seen[instance]
            for draft_id, clients in self._remote_clients.pop(instance, {}).items():
                room = self._rooms.get(draft_id)
                if room is None or not clients:
                    continue
                try:
                    if faults.ARMED:
                        faults.trip("heartbeat")
                    room.forget_remote_awareness(clients, instance=instance)
                except Exception as error:
                    assert self._supervisor is not None
                    self._supervisor.report("fanout-heartbeat", error)
                    _reload(room, "forgetting a gone instance's awareness failed")

    # -- catching up from the store ----------------------------------------------------------

    def _watch_gap(self, tracker: _Tracker) -> None:
        if tracker.has_gap and not tracker.catching_up:
            tracker.catching_up = True
            asyncio.get_running_loop().create_task(self._fill(tracker, GAP_WAIT_SECONDS))

    async def _fill(self, tracker: _Tracker, wait: float, upto: int | None = None) -> None:
        """Read the versions a room misses from the store (after `wait`: they may still come).

        It ends every gap it reads up to: a version the store does not have is dropped
        (`_catch_up`), so a bogus message costs one read, never a read every GAP_WAIT_SECONDS
        for as long as the room is loaded."""
        try:
            await asyncio.sleep(wait)
            room = tracker.room
            if upto is None:
                if not tracker.has_gap:
                    return
                upto = tracker.wanted
            if room.state is not RoomState.OPEN or tracker.watermark >= upto:
                return
            try:
                if faults.ARMED:
                    faults.trip("catch-up")
                await self._catch_up(tracker, upto)
            except StoreError as error:
                logger.warning("catch-up failed draft=%s error=%s", room.draft_id, error)
            except Exception as error:  # a short-lived task: no one would hear of it
                # The room may hold part of what it read, applied but never relayed (a
                # retry would change nothing, so relay nothing): reload it, as for a message.
                assert self._supervisor is not None
                self._supervisor.report("fanout-catch-up", error)
                _reload(room, "a catch-up from the store failed")
        finally:
            tracker.catching_up = False
            if tracker.has_gap and self._trackers.get(tracker.room.draft_id) is tracker:
                self._watch_gap(tracker)

    async def _catch_up(self, tracker: _Tracker, upto: int) -> None:
        """Apply the stored versions up to `upto` that the room's doc lacks, in order, then
        the held updates that come next; drop the promises the store did not keep.

        The store numbers a draft's versions one after another, so a read that ends before
        `upto` found its last version. A message is published only once its version is
        committed, so any version promised before the read began, past that last one, was
        never stored: the message was bogus (a warning, without its payload). Promises heard
        while the read was under way may be newer than it, and wait for the next."""
        room = tracker.room
        held_before = set(tracker.held)
        promised_before = tracker.promised
        after = tracker.watermark
        missing = await self._store.updates_with_origin(room.draft_id, after, upto)
        lacking = [logged.version for logged in missing if logged.version not in tracker.above]
        outcomes = await self._outcomes(room.draft_id, lacking) if lacking else {}
        caught = 0
        for logged in missing:
            if logged.version > tracker.watermark and logged.version not in tracker.above:
                room.apply_committed(logged.data, logged.version, user=logged.user)
                caught += 1
                told = outcomes.get(logged.version)
                if told:  # never heard of: its message was lost (or is held, dropped below)
                    room.tell_events(told)
            tracker.mark(logged.version)
        for version in [version for version in tracker.held if version <= tracker.watermark]:
            tracker.take(version)  # read from the store meanwhile
        if tracker.held:
            self._apply_held(tracker)
        if caught:
            logger.info(
                "caught up draft=%s updates=%d version=%d", room.draft_id, caught, tracker.watermark
            )
        stored = max(after, missing[-1].version) if missing else after
        if stored < upto:  # the store's last version: nothing promised before may pass it
            for version in sorted(held_before):
                if version > stored and (entry := tracker.take(version)) is not None:
                    self._unconfirmed(room, version, entry.instance, stored)
            if tracker.promised == promised_before and promised_before > stored:
                if promised_before not in held_before:  # held ones were told of above
                    self._unconfirmed(room, promised_before, None, stored)
                tracker.promised = stored

    async def _outcomes(self, draft_id: str, versions: list[int]) -> dict[int, list[JournalEvent]]:
        """The journal events some connection tells (`OUTCOMES`) stored with `versions`
        (ascending), per version: what the messages of those versions carried. Read before
        any of them is applied, so nothing awaits between a version and its telling."""
        per_version: dict[int, list[JournalEvent]] = {}
        first, last = versions[0] - 1, versions[-1]
        for stored in await self._store.events_between(draft_id, first, last, OUTCOMES):
            per_version.setdefault(stored.version, []).append(_stored_event(draft_id, stored))
        return per_version

    @staticmethod
    def _unconfirmed(room: Room, version: int, instance: str | None, stored: int) -> None:
        metrics.FANOUT_UNCONFIRMED.inc()
        logger.warning(
            "dropped a fan-out version the store does not have draft=%s version=%d instance=%s "
            "stored=%d: the message was corrupted or forged",
            room.draft_id,
            version,
            instance or "?",
            stored,
        )

    async def _catch_up_loop(self) -> None:
        """A message lost with nothing after it leaves no gap to see: every CATCH_UP_SECONDS
        one query gives the last stored version of every hosted draft, and a room behind it
        reads the rest from the store."""
        while True:
            await asyncio.sleep(CATCH_UP_SECONDS)
            if not self._trackers:
                continue
            try:
                stored = await self._store.last_versions(list(self._trackers))
            except StoreError:
                continue
            for draft_id, last in stored.items():
                tracker = self._trackers.get(draft_id)
                if (
                    tracker is None
                    or tracker.catching_up
                    or tracker.room.state is not RoomState.OPEN
                    or last <= tracker.watermark
                ):
                    continue
                tracker.catching_up = True
                await self._fill(tracker, 0.0, upto=last)
