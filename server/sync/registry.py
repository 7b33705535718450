"""Loaded rooms by draft id (a dict: O(1) per lookup), loading once and unloading when idle.

A room with no connections is unloaded after a grace period, and only once every update it
accepted is committed; a connection arriving during the grace period keeps it. Loading is one
task per draft that every concurrent joiner awaits, so a draft is never loaded twice. A room
whose doc was discarded (`Room.discard`) is replaced only once what it accepted is committed,
so the new room loads every version and numbers the next ones after them.

A WebSocket joiner of a draft that is not loaded reads its role and the draft in one store call
(`preload`, `Store.read_opening`), checks the role, then hands what was read to `join`, which
opens the room with it instead of reading the draft again: a cold join's store work is one
call. What was read is used only while it is certainly the newest: no room of that draft here
when it was read nor when it is used, and no room forgotten in between (every write of a draft
goes through its room, which leaves only by `_forget`); otherwise the room loads as ever.

A joiner is registered (`joining`) before its role is read and until it is in the room: a
deletion of the draft meanwhile (`deleted`) refuses it. Its role check may have read the draft
before the tombstone, and its room may be loading while the deletion closes the draft's live
connections, which it is not yet one of (on PostgreSQL nothing orders a joiner's reads and a
deletion's writes: tests/server/test_join_delete_race.py holds a cold join's load open).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from pycrdt import Doc

from crdt.history import rebuild
from server import faults, metrics
from server.config import Settings
from server.errors import StoreError, UnknownDraft
from server.store.api import Store
from server.store.commits import CommitPipeline
from server.store.records import DraftState
from server.store.snapshots import Snapshotter
from server.sync.connection import Connection
from server.sync.gate import GateClosed
from server.sync.journal import JournalCloser, recover_journal
from server.sync.memory import MemoryTrimmer
from server.sync.presence import AwarenessLimits
from server.sync.room import Room, RoomState

__all__ = [
    "EMPTY_STATE_VECTOR",
    "KEEP_SNAPSHOT_BYTES",
    "REVIEW_POLL_SECONDS",
    "DocBuilder",
    "Joining",
    "Preload",
    "RoomRegistry",
]

logger = logging.getLogger("draftsync.registry")

REVIEW_POLL_SECONDS = 0.05

# The state vector of a doc that holds nothing (Yjs encodes it as a count of zero clients).
EMPTY_STATE_VECTOR = b"\x00"
# A room loaded from a snapshot alone keeps it as the reply to an empty joiner up to this size
# (`SyncReplies.keep`); a larger one is encoded for the first such joiner as before, so that a
# room loaded for a joiner that has the draft already does not hold megabytes for nobody.
KEEP_SNAPSHOT_BYTES = 1 << 20


DocBuilder = Callable[..., Doc]
"""Builds a loaded draft's doc: `(snapshot, tail, *, client_id) -> Doc` (crdt/history.py
`rebuild`). A seam for tests that need the server's client id fixed."""


@dataclass(frozen=True, slots=True)
class Preload:
    """What `RoomRegistry.preload` read for a joiner: their stored role (None: none) and, with
    it, the draft at its latest version (None without a role: nothing else is read)."""

    role: str | None
    state: DraftState | None
    forgotten: int  # the registry's `_forgotten` when it was read


class Joining:
    """A joiner of a draft from before its role is read until `RoomRegistry.join` has put it in
    the room or refused it (`RoomRegistry.joining`). `deleted` is set if the draft is deleted
    meanwhile, whatever the role check read. `done` is idempotent."""

    __slots__ = ("_joiners", "deleted", "draft_id")

    def __init__(self, draft_id: str, joiners: dict[str, set[Joining]]) -> None:
        self.draft_id = draft_id
        self.deleted = False
        self._joiners = joiners
        joiners.setdefault(draft_id, set()).add(self)

    def done(self) -> None:
        joiners = self._joiners.get(self.draft_id)
        if joiners is not None:
            joiners.discard(self)
            if not joiners:
                del self._joiners[self.draft_id]


class RoomRegistry:
    def __init__(
        self,
        store: Store,
        pipeline: CommitPipeline,
        snapshotter: Snapshotter,
        journal_closer: JournalCloser,
        settings: Settings,
        *,
        build_doc: DocBuilder = rebuild,
    ) -> None:
        self._build_doc = build_doc
        self._journal_closer = journal_closer
        self._store = store
        self._pipeline = pipeline
        self._snapshotter = snapshotter
        self._settings = settings
        self._rooms: dict[str, Room] = {}
        self._loading: dict[str, asyncio.Task[None]] = {}
        self._unloading: dict[str, asyncio.Task[None]] = {}
        # Discarded rooms whose accepted updates are still being committed, and the tasks that
        # close failed and discarded rooms once they are (`_failed`).
        self._draining: dict[str, Room] = {}
        self._closing: set[asyncio.Task[None]] = set()
        # Called with each room once it is open, and just before it is unloaded (its doc still
        # there): the seam for per-draft bookkeeping (metadata). Keep them cheap and sync.
        self.on_open: list[Callable[[Room], None]] = []
        self.on_unload: list[Callable[[Room], None]] = []
        # Called with each room forgotten without unloading (failed or discarded: its doc is
        # not the store's, so `on_unload`'s bookkeeping must not read it).
        self.on_dropped: list[Callable[[Room], None]] = []
        # Told of an unexpected error in an unload or a let-go (the supervisor: logged with
        # its traceback, /healthz 503, exit 70 if it keeps failing); the unload is tried again.
        self.on_crash: Callable[[BaseException], None] | None = None
        self.memory = MemoryTrimmer()  # gives an unloaded room's freed pages back
        # SQLite's stores only (PostgreSQL's has no cursor references to drop)
        self.memory.sqlite_connections = getattr(store, "sqlite_connections", tuple)
        # Rooms forgotten so far (unloaded, failed, discarded): a `Preload` read before the
        # last one may be older than what a room of its draft wrote meanwhile.
        self._forgotten = 0
        # Joiners between their role check and their room, by draft (`joining`).
        self._joiners: dict[str, set[Joining]] = {}

    def __len__(self) -> int:
        return len(self._rooms)

    def get(self, draft_id: str) -> Room | None:
        return self._rooms.get(draft_id)

    def rooms(self) -> list[Room]:
        return list(self._rooms.values())

    async def preload(self, draft_id: str, user: str) -> Preload | None:
        """For a joiner: their stored role and the draft in one store call when its room is not
        here (None when it is, or is being loaded or drained: nothing read; ask for the role
        as ever). Pass it to `join` once the role is checked; nothing of it is sent before."""
        if draft_id in self._rooms or draft_id in self._loading or draft_id in self._draining:
            return None
        forgotten = self._forgotten
        role, state = await self._store.read_opening(draft_id, user)
        return Preload(role, state, forgotten)

    def joining(self, draft_id: str) -> Joining:
        """Register a joiner of `draft_id` before its role is read; hand it to `join`, and call
        its `done` on every way out (a refusal before `join`)."""
        return Joining(draft_id, self._joiners)

    def deleted(self, draft_id: str) -> None:
        """The draft was deleted (its tombstone is stored): joiners whose role was checked
        before it are refused by `join` (UnknownDraft), not added to a room of nothing."""
        for joining in self._joiners.get(draft_id, ()):
            joining.deleted = True

    async def join(
        self,
        draft_id: str,
        conn: Connection,
        preload: Preload | None = None,
        joining: Joining | None = None,
    ) -> Room:
        """The open room of `draft_id`, loaded if needed (from `preload` when it is still the
        newest: module docstring), with `conn` added to it. UnknownDraft if the draft was
        deleted since `joining` was registered (before the role check)."""
        try:
            room = await self.open(draft_id, preload)
        finally:
            if joining is not None:
                joining.done()
        if joining is not None and joining.deleted:
            self.release(room)  # loaded for nobody: it unloads when idle
            raise UnknownDraft("draft deleted")
        room.add(conn)  # no await since open() returned: the room cannot unload in between
        return room

    async def open(self, draft_id: str, preload: Preload | None = None) -> Room:
        """The open room of `draft_id`, loaded if needed. A caller that adds no connection
        (a REST write) hands it back with `release` so that it unloads when idle."""
        while True:
            room = self._rooms.get(draft_id)
            if room is None:
                draining = self._draining.get(draft_id)
                if draining is not None:
                    await self._drained(draining)
                    continue
                state = None
                if preload is not None and preload.forgotten == self._forgotten:
                    state = preload.state  # still the newest: no room of it came and went
                preload = None  # read once: a second pass of this loop loads from the store
                room = self._new_room(draft_id, state)
            loading = self._loading.get(draft_id)
            if loading is not None:
                await asyncio.shield(loading)  # raises the store's error to every joiner
            if room.state is RoomState.OPEN and self._rooms.get(draft_id) is room:
                unloading = self._unloading.pop(draft_id, None)
                if unloading is not None:
                    unloading.cancel()
                return room

    def release(self, room: Room) -> None:
        if not room.connections and room.state is RoomState.OPEN:
            self._schedule_unload(room)

    def leave(self, room: Room, conn: Connection) -> None:
        room.remove(conn)
        self.release(room)

    def warm_up(self, snapshot: bytes) -> None:
        """Open a room of no draft on a doc built from `snapshot`, answer a joiner's empty
        state vector as a join does, and close it: nothing registered, stored or sent.

        A fresh process's first room paid the first call of each function on the way (the
        room's parts, the journal's and the semantic fields' readers of the doc, the shared
        sync replies): `room.open` took 0.26-0.44 ms of a `bench relay` C1 join after a
        restart, 0.21-0.34 with this warm-up (server/sync/warmup.py)."""
        room = self._room("")
        room.open(self._build_doc(snapshot, [], client_id=1), 0, since_snapshot=0)
        room.core.join(sync_on_join=True)
        room.core.sync_step1(EMPTY_STATE_VECTOR)
        room.close()

    def _room(self, draft_id: str) -> Room:
        return Room(
            draft_id,
            pipeline=self._pipeline,
            snapshotter=self._snapshotter,
            durability=self._settings.durability,
            schema=self._settings.schema,
            journal_closer=self._journal_closer,
            layers=self._settings.layers,
            update_limits=self._settings.update_limits,
            max_list_elements=self._settings.max_body_elements,
            awareness=AwarenessLimits(
                max_states=self._settings.awareness_max_states,
                max_bytes=self._settings.awareness_max_bytes,
                rate=self._settings.awareness_rate,
            ),
            on_failed=self._failed,
        )

    def _new_room(self, draft_id: str, state: DraftState | None = None) -> Room:
        room = self._room(draft_id)
        self._rooms[draft_id] = room
        metrics.ROOMS_LOADED.set(len(self._rooms))
        task = asyncio.create_task(self._load(room, state))
        self._loading[draft_id] = task
        task.add_done_callback(lambda _: self._loading.pop(draft_id, None))
        return room

    async def _load(self, room: Room, preloaded: DraftState | None = None) -> None:
        """Load the draft (unless `preloaded`: read with the joiner's role) and open the room:
        the snapshot and the tail, applied once, on the event loop. pycrdt holds the GIL while
        it applies, so a worker thread would stall the loop the same and add a hand-off (and,
        in a fresh process, the thread's start) to the first joiner's wait. Journal recovery
        runs only when a burst was left open (the watermark is not past the last version),
        which a clean stop never leaves."""
        started = time.perf_counter()
        try:
            if preloaded is None:
                state = await self._store.load(room.draft_id)
            else:
                state = preloaded
            unrecovered = await self._recover_journal(room.draft_id, state)
            # A fresh 32-bit client id per load: the server's own changes stay small on the wire.
            client_id = secrets.randbits(32)
            doc = self._build_doc(state.snapshot, state.tail, client_id=client_id)
        except BaseException:
            self._forget(room)
            raise
        room.open(doc, state.version, since_snapshot=len(state.tail))
        snapshot = state.snapshot
        if snapshot is not None and not state.tail and len(snapshot) <= KEEP_SNAPSHOT_BYTES:
            # The doc is the snapshot, nothing more (opening reads it, never writes): a joiner
            # that starts empty is answered with the stored bytes, not a fresh encode. Dropped
            # with the other kept replies at the doc's first change.
            room.replies.keep(EMPTY_STATE_VECTOR, snapshot)
        if unrecovered is not None and room.journal is not None:
            room.journal.defer_recovery(unrecovered, upto=state.version)
        for hook in self.on_open:
            hook(room)
        logger.info(
            "room loaded draft=%s version=%d snapshot=%d tail=%d ms=%.1f",
            room.draft_id,
            state.version,
            state.snapshot_version,
            len(state.tail),
            (time.perf_counter() - started) * 1000,
        )

    async def _recover_journal(self, draft_id: str, state: DraftState) -> int | None:
        """Journal the text bursts still open when the process last stopped (up to
        `state.version`, the last one loaded). Joining needs no write: if storing them fails (a
        full disk), the draft loads anyway and the room's journal owes them
        (`RoomJournal.defer_recovery`); returns the watermark they start at, None when nothing
        is owed. The watermark comes with the load when the store reads both in one trip
        (SQLite): nothing to recover is then no store call at all."""
        version = state.version
        watermark = state.journal_watermark
        if watermark is None:
            watermark = await self._store.journal_watermark(draft_id)
        if watermark > version:
            return None  # every change is journaled: nothing to replay
        try:
            await recover_journal(self._store, draft_id, self._settings.schema, upto=version)
        except StoreError as error:
            logger.warning("journal recovery deferred draft=%s error=%s", draft_id, error)
            return watermark
        return None

    def _schedule_unload(self, room: Room) -> None:
        if room.draft_id not in self._unloading:
            task = asyncio.create_task(self._unload_when_idle(room))
            self._unloading[room.draft_id] = task
            task.add_done_callback(functools.partial(self._unload_ended, room))

    def _unload_ended(self, room: Room, task: asyncio.Task[None]) -> None:
        """An unload that raised (a hook's bug, a store error past its own handling) is
        loud, and tried again after the grace period while the room is idle: otherwise the
        draft's doc stayed loaded, unseen, until someone joined and left again."""
        failed = self._told_failure(task)
        if failed and not room.connections and self._rooms.get(room.draft_id) is room:
            self._schedule_unload(room)

    def _told_failure(self, task: asyncio.Task[None]) -> bool:
        """Whether `task` raised; if so it is told to `on_crash` (or logged)."""
        error = None if task.cancelled() else task.exception()
        if error is None:
            return False
        if self.on_crash is None:
            logger.error("room task failed: %r", error, exc_info=error)
        else:
            self.on_crash(error)
        return True

    async def _unload_when_idle(self, room: Room) -> None:
        """Unload `room` once its grace period has passed and its writes are committed.

        An `open` (a joiner, a REST write) cancels this until the doc is gone, the journal's
        flush included: a room opened while its bursts were stored may take a write then,
        and a closed room's queued writes are dropped by the group commit (the write lost,
        its REST call left waiting for a commit that never comes). The flush is shielded:
        the store write it started finishes, only the unload stops."""
        try:
            await asyncio.sleep(self._settings.room_grace_seconds)
            while not room.is_drained:
                try:
                    await room.gate.until_committed()
                except GateClosed:
                    return  # the room failed: forgotten already
                if not room.is_drained:  # a semantic write waits for its review turn
                    await asyncio.sleep(REVIEW_POLL_SECONDS)
            # bursts are journaled before the doc goes
            await asyncio.shield(self._journal_closer.flush(room))
        finally:
            if self._unloading.get(room.draft_id) is asyncio.current_task():
                del self._unloading[room.draft_id]
        if room.connections or self._rooms.get(room.draft_id) is not room:
            return
        if faults.ARMED:
            faults.trip("unload")
        room.snapshot_before_unload()
        self._forget(room)
        for hook in self.on_unload:
            hook(room)
        room.close()
        self.memory.room_unloaded()
        logger.info("room unloaded draft=%s version=%d", room.draft_id, room.version)

    def _failed(self, room: Room) -> None:
        """The room failed or was discarded: joiners get a new one (after it drained).

        Its doc is closed once what it accepted is committed (`_let_go`, on a task of its
        own, whether or not anyone opens the draft again): the doc's observers hold the room
        from inside yrs, out of the garbage collector's sight, so a failed or discarded room
        that was never closed stayed, doc and all, for the life of the process."""
        self._forget(room)
        if room.state is RoomState.DISCARDED and not room.is_drained:
            self._draining[room.draft_id] = room
        for hook in self.on_dropped:
            hook(room)
        task = asyncio.create_task(self._let_go(room))
        self._closing.add(task)
        task.add_done_callback(self._let_go_ended)

    def _let_go_ended(self, task: asyncio.Task[None]) -> None:
        self._closing.discard(task)
        self._told_failure(task)

    async def _let_go(self, room: Room) -> None:
        await self._drained(room)
        if room.state is not RoomState.CLOSED:
            room.close()
            self.memory.room_unloaded()  # its doc's pages go back, as an unload's do

    async def _drained(self, room: Room) -> None:
        """Until `room` (failed or discarded) has committed what it accepted, or has failed:
        then a draining one is no longer in the way of its draft's next room."""
        with contextlib.suppress(GateClosed):
            await room.gate.until_committed()
        if self._draining.get(room.draft_id) is room:
            del self._draining[room.draft_id]

    def _forget(self, room: Room) -> None:
        if self._rooms.get(room.draft_id) is room:
            self._forgotten += 1
            del self._rooms[room.draft_id]
            metrics.ROOMS_LOADED.set(len(self._rooms))
