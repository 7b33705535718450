"""A room: one loaded draft, its pycrdt doc, its connections and its awareness table.

Every update goes the same way (design.md, "Data flow of one update"); update frames that
arrived together go as one run (`receive_run`):

    receive -> check right to write (after every await) -> apply to the doc (pycrdt)
            -> number it (version, gate ticket) -> CommitPipeline.submit
            -> relay to the others through the gate, which sends once the ticket is committed

Nothing this room sends that reveals content bypasses its gate (server/sync/gate.py): relays, a
joiner's sync step 2 and write acknowledgements are tagged with the ticket they depend on and
released at commit (in relaxed mode, at acceptance). What is stored and relayed is the update as
pycrdt integrated it (the doc observer's `update`), so a duplicate or already-known update
stores nothing.

A doc that took something the store must never hold (an update refused after pycrdt applied
it, a panic inside yrs, an unexpected error) is discarded (`discard`): its connections are
closed, what it had accepted still commits, and the registry loads the draft afresh from the
store once it has. Clients resend what they hold when they reconnect.

Several instances on one draft (`review_gate` set): a write to semantic fields is judged in the
draft's review turn instead, against every version stored before it (`_review_in_turn`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from enum import Enum
from typing import Any, Protocol

from pycrdt import Doc, Subscription, Transaction, TransactionEvent, merge_updates

from crdt.awareness import AwarenessEntry, encode_awareness_update
from crdt.errors import MalformedMessage, ProtocolError, UndecodableUpdate
from crdt.gaps import holds_a_gap
from crdt.journal import JournalEvent
from crdt.limits import DEFAULT_LIMITS, UpdateLimits
from crdt.origins import SERVER_USER, ServerOrigin
from crdt.protocol import (
    Auth,
    Awareness,
    Message,
    QueryAwareness,
    SyncStep1,
    SyncStep2,
    Update,
    WriteAck,
    encode_message,
)
from crdt.redundant import is_redundant
from crdt.schema import Schema
from crdt.semantics import Review, SemanticFields
from crdt.updates import check_nesting, first_client_id, may_nest_too_deep
from server import faults, metrics
from server.config import ALL_LAYERS, Durability, Layers
from server.errors import CloseCode, StoreError
from server.store.commits import CommitPipeline, PendingWrite
from server.store.records import UpdateRecord
from server.store.snapshots import Snapshotter
from server.sync.connection import Connection
from server.sync.gate import Gate, GateClosed
from server.sync.journal import JournalCloser, RoomJournal
from server.sync.limits import check_run
from server.sync.pacing import AwarenessPacer
from server.sync.presence import AwarenessLimits, Presence
from server.sync.replies import SyncReplies

__all__ = ["ReviewGate", "Room", "RoomState"]

logger = logging.getLogger("draftsync.rooms")


class RoomState(Enum):
    LOADING = "loading"
    OPEN = "open"
    FAILED = "failed"  # the store refused a commit: connections closed, room dropped
    # The doc took what the store must never hold: connections closed, nothing new accepted,
    # what was accepted before still commits, then the draft is loaded afresh.
    DISCARDED = "discarded"
    CLOSED = "closed"  # unloaded


class ReviewGate(Protocol):
    """Reviews of one draft's semantic writes take turns across instances
    (server/cluster/fanout.py)."""

    def turn(self, room: Room) -> AbstractAsyncContextManager[None]:
        """Wait for the draft's turn; on entry the room holds every version stored so far."""
        ...


class Room:
    def __init__(
        self,
        draft_id: str,
        *,
        pipeline: CommitPipeline,
        snapshotter: Snapshotter,
        durability: Durability,
        schema: Schema,
        journal_closer: JournalCloser,
        layers: Layers = ALL_LAYERS,
        update_limits: UpdateLimits = DEFAULT_LIMITS,
        max_list_elements: int | None = None,
        awareness: AwarenessLimits | None = None,
        on_failed: Callable[[Room], None],
    ) -> None:
        self.draft_id = draft_id
        self.schema = schema
        self.semantics: SemanticFields | None = None
        self.journal: RoomJournal | None = None
        self._journal_closer = journal_closer
        self._layers = layers
        self._update_limits = update_limits
        self._max_list_elements = max_list_elements
        self.state = RoomState.LOADING
        self.doc: Doc = Doc()
        self.connections: set[Connection] = set()
        self.presence = Presence(awareness)
        self._pacers: dict[Connection, AwarenessPacer] = {}  # who sent awareness, while here
        self.version = 0  # the last accepted update; committed ones are <= this
        self.gate = Gate(release_on_accept=durability is Durability.RELAXED)
        self._pipeline = pipeline
        self._snapshotter = snapshotter
        self._on_failed = on_failed
        self.review_gate: ReviewGate | None = None
        self._in_review: asyncio.Event | None = None  # set when the write in review is done
        self._changes: bytes | None = None
        # Joiners' sync step 2 frames, shared while the doc is unchanged (server/sync/replies.py).
        self.replies = SyncReplies()
        self._subscription: Subscription | None = None
        self._since_snapshot = 0
        self._bytes_since_snapshot = 0
        # The doc's state at a version not committed yet, stored once it is (`_snapshot`).
        self._held_snapshot: tuple[int, bytes] | None = None
        # Called after each commit, in version order (metadata, journal): keep them cheap.
        self.commit_listeners: list[Callable[[Room, UpdateRecord], None]] = []
        # Called with each awareness update this instance's clients cause (Redis fan-out).
        self.awareness_listeners: list[Callable[[Room, bytes], None]] = []
        # Called with the journal events of each commit that has some, after this instance's
        # connections were told (Redis fan-out: other instances' connections are told too).
        self.event_listeners: list[Callable[[Room, Sequence[JournalEvent]], None]] = []
        self._handlers: dict[type[Any], Callable[[Connection, Any], Awaitable[None]]] = {
            SyncStep1: self._on_sync_step1,
            SyncStep2: self._on_update,
            Update: self._on_update,
            Awareness: self._on_awareness,
            QueryAwareness: self._on_query_awareness,
            WriteAck: self._on_write_ack,
            Auth: self._on_auth,
        }

    # -- lifecycle ----------------------------------------------------------------------------

    def open(self, doc: Doc, version: int, *, since_snapshot: int) -> None:
        self.doc = doc
        self.replies.clear()
        self.version = version
        self._since_snapshot = since_snapshot
        if self._layers.semantic_fields:
            self.semantics = SemanticFields(
                doc,
                self.schema,
                new_id=_new_conflict_id,
                max_list_elements=self._max_list_elements,
            )
        if self._layers.journal:
            self.journal = RoomJournal(
                self.draft_id,
                doc,
                self.schema,
                on_burst_open=functools.partial(self._journal_closer.watch, self),
            )
        self._subscription = doc.observe(self._capture_changes)
        self.state = RoomState.OPEN

    def close(self) -> None:
        """Unload: drop the doc so its memory is freed (the registry forgets the room)."""
        if self._subscription is not None:
            self.doc.unobserve(self._subscription)
            self._subscription = None
        if self.semantics is not None:
            self.semantics.close()
            self.semantics = None
        if self.journal is not None:
            self.journal.close()
            self.journal = None
        self.state = RoomState.CLOSED
        self.doc = Doc()
        self.replies.clear()

    @property
    def is_drained(self) -> bool:
        """No accepted update is waiting for its commit."""
        return self.gate.pending == 0 and self._in_review is None

    @property
    def accepts_commits(self) -> bool:
        # A discarded room's accepted updates passed every check: they are still stored.
        return self.state is RoomState.OPEN or self.state is RoomState.DISCARDED

    def add(self, conn: Connection) -> None:
        self.connections.add(conn)
        if conn.sync_on_join:  # a Hocuspocus client gets step 1 in reply to its own
            conn.send(encode_message(SyncStep1(self.doc.get_state())))
        everyone = self.presence.full_update()
        if everyone is not None:
            conn.send(encode_message(Awareness(everyone)))

    def remove(self, conn: Connection) -> None:
        self.connections.discard(conn)
        pacer = self._pacers.pop(conn, None)
        if pacer is not None:
            pacer.cancel()
        gone = self.presence.release(conn)
        if gone is not None:
            self._broadcast(encode_message(Awareness(gone)), sender=conn)
            for listener in self.awareness_listeners:
                listener(self, gone)

    # -- messages -----------------------------------------------------------------------------

    async def receive(self, conn: Connection, message: Message) -> None:
        await self._handlers[type(message)](conn, message)

    async def _on_sync_step1(self, conn: Connection, message: SyncStep1) -> None:
        try:
            # One encode per state of the doc, shared by every joiner at this state vector.
            reply = self.replies.frame(message.state_vector, self.doc.get_update)
        except ValueError as exc:
            raise MalformedMessage(f"undecodable state vector: {exc}") from exc
        # The doc may hold accepted updates not committed yet: the reply waits until they are.
        self.gate.send((conn,), reply, after=self.gate.accepted)

    async def _on_update(self, conn: Connection, message: SyncStep2 | Update) -> None:
        await self.receive_run(conn, [message.update])

    async def receive_run(self, conn: Connection, updates: Sequence[bytes]) -> None:
        """Apply updates one connection sent back to back as one change: one transaction,
        one version, one stored row, one relayed frame (the reader gathers runs of frames
        that arrived together, `server/sync/endpoint.py`). Their semantic writes are judged
        together, as if the client had made them in one transaction.

        An update pycrdt cannot decode ends the run: the ones before it are kept, then the
        connection is closed (yrs integrates nothing of an update it cannot decode)."""
        if not conn.can_write:
            conn.deny_write()
            return
        # Bounded work per run (crdt/limits.py); overwrites of `fields` keys count too.
        known = self.semantics.field_ids() if self.semantics is not None else frozenset()
        if self._update_limits.needs_scan(updates, has_fields=bool(known)):
            await check_run(updates, self._update_limits, known)
        for update in updates:
            if may_nest_too_deep(update):
                # yrs would recurse without a limit (a crafted value crashes the process):
                # read it in Python first, off the event loop; only large, tag-dense updates
                # get here.
                await asyncio.to_thread(check_nesting, update)
        await self._pipeline.wait_for_space()
        while self._in_review is not None:
            await self._in_review.wait()
        if self.state is not RoomState.OPEN or not conn.is_open:
            return
        if not conn.can_write:  # downgraded or revoked while this run waited
            conn.deny_write()
            return
        refusal = self._pipeline.writes_refused()
        if refusal is not None and not all(is_redundant(u, self.doc) for u in updates):
            # The disk is full: this writer goes, before its update is applied (it could not
            # be stored); the room and its readers stay. A joiner's sync step 2 passes.
            conn.close(CloseCode.TRY_AGAIN_LATER, str(refusal))
            return
        # From here to submit() nothing awaits: versions enter the pipeline in order.
        try:
            undecodable = await self._apply_run(conn, updates)
        except ProtocolError as error:
            # Refused after the doc took it (the rules cannot read it, yrs panicked): the doc
            # now holds what the store must never hold.
            conn.close(CloseCode.MALFORMED, str(error))  # the sender learns why, first
            self.discard(f"refused update from user={conn.user}: {error}")
            raise
        except Exception:
            logger.exception("update failed draft=%s user=%s", self.draft_id, conn.user)
            self.discard(
                f"server error on an update from user={conn.user}",
                code=CloseCode.INTERNAL_ERROR,
                reason="server error, reconnect",
            )
            raise
        if undecodable is not None:  # the updates before it are kept
            raise UndecodableUpdate(f"undecodable Yjs update: {undecodable}") from undecodable

    async def _apply_run(self, conn: Connection, updates: Sequence[bytes]) -> ValueError | None:
        """Apply, number and submit a run; the error of an update yrs could not decode (it
        ends the run and integrated nothing), None if all applied."""
        applied = 0
        undecodable: ValueError | None = None
        try:
            with self.doc.transaction(origin=conn.origin) as txn:
                apply = _applier(self.doc, txn)
                for update in updates:
                    try:
                        apply(update)
                    except ValueError as error:  # yrs integrates nothing of such an update
                        undecodable = error
                        break
                    applied += 1
                if self.journal is not None:
                    self.journal.count_text(txn)
        except BaseException as error:
            self._changes = None
            # yrs gave up half-way (a panic, or a RuntimeError such as "block parent must be
            # deleted or shared ref type"): what it integrated is unknown, the doc is dropped.
            if _is_panic(error) or isinstance(error, RuntimeError):
                raise UndecodableUpdate(f"update rejected by the CRDT: {error}") from None
            raise
        metrics.TALLY.updates_received += applied
        changes, self._changes = self._changes, None
        if changes == _EMPTY_UPDATE or holds_a_gap(self.doc, updates[:applied], changes):
            # yrs took a struct past its client's next clock: integrated after a Skip, its
            # state vector not advanced, reported by no update (fuzz finding 2), or held until
            # its origin comes and then integrated so, unreported (fuzz seed 3; crdt/gaps.py).
            # No update says what the doc holds or will hold: reload it from the store.
            # A client that did this honestly (a live write racing its own sync step 2)
            # reconnects and sends the clocks it skipped first.
            self.discard(f"an update from user={conn.user} left a gap in a client's clocks")
            return undecodable
        if changes is not None:  # None: nothing new, or held by pycrdt until its dependencies
            if faults.ARMED:
                faults.trip("update")
            await self._admit_applied(conn, updates[:applied], changes)
        return undecodable

    async def _admit_applied(
        self, conn: Connection, received: Sequence[bytes], changes: bytes
    ) -> None:
        if self.semantics is None or not self.semantics.touched:
            self._admit(conn, changes)
            return
        sent = received[0] if len(received) == 1 else merge_updates(*received)
        if self.review_gate is not None:
            await self._review_in_turn(conn, sent, changes)
        else:
            self._admit(conn, changes, received=sent)

    async def _review_in_turn(self, conn: Connection, received: bytes, changes: bytes) -> None:
        """Judge a semantic write against every version stored before it (several instances).

        Another instance's write reaches this one only after its commit, so two conflicting
        writes that reach two instances at once would each be judged without the other and
        no conflict found. Reviews of a draft therefore take turns across instances (the
        store's per-draft lock): in its turn the room applies what the store holds beyond its
        doc, judges the held-back write against it, and commits both the write and any
        resolution before the turn passes on. This room's next updates wait meanwhile: a
        pause of a few milliseconds, for writes to semantic fields only."""
        assert self.semantics is not None and self.review_gate is not None
        self.semantics.set_aside(changes)
        text = self.journal.take_text() if self.journal is not None else {}
        in_review = self._in_review = asyncio.Event()
        try:
            async with self.review_gate.turn(self):
                if self.state is RoomState.OPEN:
                    if self.journal is not None:
                        self.journal.put_back_text(text)
                    self._admit(conn, changes, received=received)
                    with contextlib.suppress(GateClosed):  # failed: the room is gone
                        await self.gate.until_committed()
        except StoreError as error:
            self.on_commit_failed(error)
        finally:
            self._in_review = None
            in_review.set()

    def _admit(self, conn: Connection, changes: bytes, *, received: bytes | None = None) -> None:
        """Number, journal and submit an applied client update; write what the rules ask.
        `received` (what the client sent) is given when its semantic writes need a review."""
        now = time.time()
        review = None
        if received is not None:
            assert self.semantics is not None
            # Fails closed: a write to semantic fields the rules cannot read raises a
            # ProtocolError, and the update is refused (`receive_run` discards the doc).
            review = self.semantics.review(changes, received, conn.origin, now=now)
        conn.submitted += 1
        client_id = first_client_id(changes)
        journal = self.journal
        events = (
            journal.client_events(self.version + 1, conn.origin, client_id, now, review)
            if journal is not None
            else ()
        )
        self._accept(
            changes,
            sender=conn,
            user=conn.user,
            session=conn.session,
            client_id=client_id,
            now=now,
            events=events,
        )
        # A commit that failed inside `submit` (the disk filled) has reset the room already:
        # its doc is dropped, nothing more is written to it.
        if review is not None and review.writes_doc and self.state is RoomState.OPEN:
            self.write_as_server(
                "rules",
                lambda doc: _apply_review(self, review),
                events=None
                if journal is None
                else lambda version: journal.server_events(
                    version=version, reason="rules", now=now, review=review
                ),
            )

    def write_as_server(
        self,
        reason: str,
        change: Callable[[Doc], None],
        *,
        events: Callable[[int], list[JournalEvent]] | None = None,
    ) -> int | None:
        """Make a change as the server (rules, REST): stored and relayed like any update,
        to every connection, with the journal events `events(version)` gives for it.
        Returns its version, None if it changed nothing. Raises whatever `change` raises;
        if it raised after changing the doc, the room is discarded (the doc is not what the
        store will hold)."""
        if self.state is not RoomState.OPEN:
            raise StoreError("the draft is being reloaded, retry")
        refusal = self._pipeline.writes_refused()
        if refusal is not None:
            raise refusal
        try:
            with self.doc.transaction(origin=ServerOrigin(reason)) as txn:
                change(self.doc)
                if self.journal is not None:
                    self.journal.count_text(txn)
        except BaseException:
            changed, self._changes = self._changes, None
            if changed is not None:
                self.discard(f"server write {reason!r} failed half-way")
            raise
        changes, self._changes = self._changes, None
        if self.journal is not None:
            self.journal.discard_text()
        if changes is None:
            return None
        if self.semantics is not None:
            self.semantics.absorb(changes)
        stored_events = events(self.version + 1) if events is not None else []
        return self._accept(
            changes,
            sender=None,
            user=SERVER_USER,
            session=reason,
            client_id=self.doc.client_id,
            now=time.time(),
            events=stored_events,
        )

    def apply_committed(self, update: bytes, version: int, *, user: str | None = None) -> bool:
        """Apply an update another instance stored as `version` (Redis fan-out, or caught up
        from the store) for `user` and relay it to every local connection. It is durable
        already, so it is not committed again; a duplicate changes and relays nothing. True
        if it changed."""
        if self.state is not RoomState.OPEN:
            return False
        try:
            with self.doc.transaction(origin=ServerOrigin("remote")) as txn:
                self.doc.apply_update(update)
                if self.journal is not None:
                    self.journal.count_text(txn)
        except BaseException as error:
            self._changes = None
            if isinstance(error, Exception) or _is_panic(error):
                # Stored already, yet unreadable here: this doc is not the store's any more.
                self.discard(f"a stored update (version {version}) failed to apply: {error!r}")
                return False
            raise
        changes, self._changes = self._changes, None
        if self.journal is not None:
            self.journal.discard_text()  # the instance that accepted it journals it
        self.version = max(self.version, version)
        if changes is None:
            return False
        if self.semantics is not None:
            self.semantics.absorb(changes, received=update, user=user, now=time.time())
        # Durable already: it depends on no ticket of ours.
        self._relay(changes, sender=None, after=0)
        return True

    def relay_remote_awareness(self, payload: bytes, *, instance: str) -> list[AwarenessEntry]:
        """Awareness from another instance's clients: what it may change (its own clients'
        ids, server/sync/presence.py) is kept and told to every local connection."""
        accepted = self.presence.apply_remote(instance, payload).entries
        if accepted:
            frame = encode_message(Awareness(encode_awareness_update(accepted)))
            for conn in self.connections:
                conn.send(frame)
        return accepted

    def forget_remote_awareness(self, client_ids: set[int], *, instance: str) -> None:
        """Drop the states of clients of an instance that went away, telling local clients."""
        gone = self.presence.release(instance, client_ids)
        if gone is not None:
            frame = encode_message(Awareness(gone))
            for conn in self.connections:
                conn.send(frame)

    def _accept(
        self,
        changes: bytes,
        *,
        sender: Connection | None,
        user: str,
        session: str,
        client_id: int | None,
        now: float,
        events: Sequence[JournalEvent],
    ) -> int:
        """Number an applied change, hand it with its events to the group commit, and relay
        it through the gate (sent once committed: at once if `submit` committed it)."""
        self.version += 1
        ticket = self.gate.accept()
        record = UpdateRecord(
            draft_id=self.draft_id,
            version=self.version,
            data=changes,
            user=user,
            session=session,
            client_id=client_id,
            created_at=now,
        )
        write = PendingWrite(
            target=self, sender=sender, record=record, events=events, ticket=ticket
        )
        self._pipeline.submit(write)
        self._relay(changes, sender=sender, after=ticket)
        return record.version

    async def _on_awareness(self, conn: Connection, message: Awareness) -> None:
        """Keep what `conn` may change of awareness (its own ids, server/sync/presence.py) and relay
        it, paced (server/sync/pacing.py). Entries for others' ids are dropped: stock clients echo
        every state they hear, so they are no sign of malice."""
        applied = self.presence.apply(conn, message.update)
        if applied.dropped:
            logger.debug(
                "awareness entries dropped draft=%s session=%s count=%d",
                self.draft_id,
                conn.session,
                applied.dropped,
            )
        if not applied.entries:
            return
        pacer = self._pacers.get(conn)
        if pacer is None:
            rate = self.presence.limits.rate
            relay = functools.partial(self._relay_awareness, conn)
            pacer = self._pacers[conn] = AwarenessPacer(rate, relay)
        pacer.push(applied.entries)

    def _relay_awareness(self, conn: Connection, update: bytes) -> None:
        self._broadcast(encode_message(Awareness(update)), sender=conn)
        for listener in self.awareness_listeners:
            listener(self, update)

    async def _on_query_awareness(self, conn: Connection, message: QueryAwareness) -> None:
        everyone = self.presence.full_update()
        if everyone is not None:
            conn.send(encode_message(Awareness(everyone)))

    async def _on_write_ack(self, conn: Connection, message: WriteAck) -> None:
        # "Everything you sent before this is on disk": wait for all this room accepted.
        self.gate.send((conn,), encode_message(message), after=self.gate.accepted)

    async def _on_auth(self, conn: Connection, message: Auth) -> None:
        raise MalformedMessage("auth messages are sent by the server, not by clients")

    # -- after the commit ---------------------------------------------------------------------

    def on_committed(self, write: PendingWrite) -> None:
        record = write.record
        if isinstance(write.sender, Connection):
            write.sender.committed += 1
        self.gate.commit(write.ticket)
        for listener in self.commit_listeners:
            listener(self, record)
        if write.events:  # committed now: connections that tell events may (Hocuspocus)
            self.tell_events(write.events)
            for event_listener in self.event_listeners:
                event_listener(self, write.events)
        if self.state is not RoomState.OPEN:
            return  # a discarded doc is never snapshotted
        if self._held_snapshot is not None:
            self._save_held_snapshot(record.version)
        self._since_snapshot += 1
        self._bytes_since_snapshot += len(record.data)
        if self._snapshotter.due(self._since_snapshot, self._bytes_since_snapshot):
            self._snapshot(record.version)

    def tell_events(self, events: Sequence[JournalEvent]) -> None:
        """Tell committed journal events (this instance's, or another's through the fan-out)
        to every connection here; each tells those its protocol has a message for."""
        for conn in self.connections:
            conn.tell_events(events)

    def _snapshot(self, version: int) -> None:
        """Snapshot a due draft. With one instance, from this doc: nothing awaits between
        applying an update and numbering it, so the doc holds exactly the versions up to
        `self.version`; its state is held until that version is committed, then stored (a
        room under constant load is never drained, so waiting for that would starve
        snapshots). With several instances the doc may lack versions another one stored, so
        the snapshot is folded from the store."""
        if self.review_gate is not None:
            self._snapshotter.request(self.draft_id, version)
        else:
            self._held_snapshot = (self.version, self.doc.get_update())
            self._save_held_snapshot(version)
        self._since_snapshot = 0
        self._bytes_since_snapshot = 0

    def _save_held_snapshot(self, committed: int) -> None:
        assert self._held_snapshot is not None
        version, state = self._held_snapshot
        if version <= committed:
            self._held_snapshot = None
            self._snapshotter.save(self.draft_id, version, state)

    def on_commit_failed(
        self,
        error: Exception,
        *,
        code: int = CloseCode.TRY_AGAIN_LATER,
        reason: str = "store unavailable, retry",
    ) -> None:
        """The store lost our updates (or the commit crashed: `code` 1011): nothing unstored
        may stay visible, so the room resets.

        Every connection is closed with `code`; clients keep their edits and resend them when
        they reconnect, and the draft is loaded afresh from what the store holds.
        """
        if self.state is not RoomState.OPEN and self.state is not RoomState.DISCARDED:
            return
        logger.error("room failed draft=%s error=%s", self.draft_id, error)
        self.state = RoomState.FAILED
        self.gate.close(str(error))
        for conn in list(self.connections):
            conn.close(code, reason)
        self._on_failed(self)

    def discard(
        self,
        why: str,
        *,
        code: int = CloseCode.TRY_AGAIN_LATER,
        reason: str = "draft reloading, reconnect",
    ) -> None:
        """Drop this doc: it holds something the store must never hold (or may lack what it
        holds). Every connection is closed with `code` (1013, or 1011 after a server error:
        reconnect and resend); nothing more is accepted; what was accepted before still
        commits, and the registry loads the draft afresh from the store once it has."""
        if self.state is not RoomState.OPEN:
            return
        logger.warning("room discarded draft=%s why=%s", self.draft_id, why)
        metrics.ROOMS_DISCARDED.inc()
        self.state = RoomState.DISCARDED
        for conn in list(self.connections):
            conn.close(code, reason)
        self._on_failed(self)

    def _relay(self, update: bytes, *, sender: object, after: int) -> None:
        # No list of the others per update: the gate copies the set only if it holds the frame.
        frame = encode_message(Update(update))
        self.gate.send(self.connections, frame, after=after, update=update, exclude=sender)
        metrics.TALLY.updates_relayed += len(self.connections) - (sender in self.connections)

    def _broadcast(self, frame: bytes, *, sender: Connection) -> None:
        for conn in self.connections:
            if conn is not sender:
                conn.send(frame)

    def _capture_changes(self, event: TransactionEvent) -> None:
        self._changes = event.update
        self.replies.clear()  # a kept sync reply no longer holds the doc


_EMPTY_UPDATE = b"\x00\x00"  # no struct groups, no delete set


def _new_conflict_id() -> str:
    return secrets.token_hex(4)


def _applier(doc: Doc, txn: Transaction) -> Callable[[bytes], None]:
    """`doc.apply_update` inside the open `txn`, without pycrdt's wrapper: per update it
    re-enters the transaction and checks for a model and a read-only transaction (~0.4 us, a
    third of what yrs takes to apply a keystroke); here the room holds a read-write
    transaction and no model. The same call into yrs, through the same transaction (pycrdt is
    pinned: `_doc` and `_txn` are its, as `TextCounter.count` reads lengths through `_txn`)."""
    return functools.partial(doc._doc.apply_update, txn._txn)


def _is_panic(error: BaseException) -> bool:
    """pyo3 turns a Rust panic inside yrs into `PanicException`, a BaseException that no
    module exports; anything else that is not an Exception (a cancellation) is not ours."""
    return type(error).__name__ == "PanicException"


def _apply_review(room: Room, review: Review) -> None:
    semantics = room.semantics
    assert semantics is not None
    for key, value in review.values.items():
        semantics.fields[key] = value
    for key in review.removals:
        del semantics.fields[key]
    for conflict_id, entry in review.conflicts.items():
        semantics.conflicts[conflict_id] = entry
    for name, positions in review.list_deletions.items():
        semantics.delete_list_positions(name, positions)  # linear (was one `del` each: 16.6 s)
