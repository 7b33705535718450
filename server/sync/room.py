"""A room: one loaded draft, its connections and the I/O around its sync core.

The room is a shell around `RoomCore` (server/sync/core.py), which holds the doc and every rule
and returns what to do without doing it. Every update goes the same way (design.md, "Data flow
of one update"); update frames that arrived together go as one run (`receive_run`):

    shell: receive -> check right to write, limits, room in the commit queue (awaits)
    core:  apply to the doc (pycrdt) -> rules -> number it (version, gate ticket)
           -> returns the write to commit and the relay tagged with its ticket
    shell: CommitPipeline.submit(write) -> gate.send(relay), sent once the ticket is committed

Nothing this room sends that reveals content bypasses its gate (server/sync/gate.py): relays, a
joiner's sync step 2 and write acknowledgements come from the core tagged with the ticket they
depend on and are released at commit (in relaxed mode, at acceptance). What is stored and
relayed is the update as pycrdt integrated it (the doc observer's `update`), so a duplicate or
already-known update stores nothing.

A doc that took something the store must never hold (an update refused after pycrdt applied
it, a panic inside yrs, an unexpected error) is discarded (`discard`, on the core's verdict or
on an exception): its connections are closed, what it had accepted still commits, and the
registry loads the draft afresh from the store once it has. Clients resend what they hold when
they reconnect.

Several instances on one draft (`review_gate` set): the core sets a write to semantic fields
aside, the shell awaits the draft's review turn, and the core judges it there against every
version stored before it (`_review_in_turn`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from enum import Enum
from typing import Any, Protocol

from pycrdt import Doc

from crdt.awareness import AwarenessEntry
from crdt.errors import MalformedMessage, ProtocolError
from crdt.heldback import PROBE_EVERY_RUNS
from crdt.journal import JournalEvent
from crdt.limits import DEFAULT_LIMITS, UpdateLimits
from crdt.protocol import (
    Auth,
    Awareness,
    Message,
    QueryAwareness,
    SyncStep1,
    SyncStep2,
    Update,
    WriteAck,
)
from crdt.schema import Schema
from crdt.semantics import SemanticFields
from crdt.updates import Id, check_nesting, may_nest_too_deep
from server import faults, metrics
from server.config import ALL_LAYERS, Durability, Layers
from server.errors import CloseCode, StoreError
from server.store.commits import CommitPipeline, PendingWrite
from server.store.records import UpdateRecord
from server.store.snapshots import Snapshotter
from server.sync.connection import Connection
from server.sync.core import EVERYONE, OK, OTHERS, SENDER, Outcome, Outgoing, RoomCore, Verdict
from server.sync.gate import Gate, GateClosed
from server.sync.journal import JournalCloser, RoomJournal
from server.sync.limits import check_run
from server.sync.pacing import AwarenessPacer
from server.sync.presence import AwarenessLimits, Presence
from server.sync.querypacing import QueryPacer
from server.sync.replies import SyncReplies
from server.sync.step2budget import Step2Budget

__all__ = ["ReviewGate", "Room", "RoomState", "ServerWrite"]

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


class ServerWrite:
    """A server write handed to the group commit (`Room.write_as_server`).

    Its `version` is the one the room gave it until it is committed, then the one the store
    gave it: with several instances PostgreSQL may move it on (another instance stored the
    room's number first, `PostgresStore.append_updates`), and the pipeline hands the record
    as stored back to the write (server/store/commits.py). Whoever tells the version (a REST
    answer) reads it once the write is committed (`Gate.until_committed`)."""

    __slots__ = ("_pending",)

    def __init__(self, pending: PendingWrite) -> None:
        self._pending = pending

    @property
    def version(self) -> int:
        return self._pending.record.version


class Room:
    """The I/O shell of one room: it awaits (limits, room in the commit queue, review turns),
    asks its `RoomCore` what a message means, then hands the returned writes to the group
    commit and the returned messages to the gate, in that order."""

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
        self.core = RoomCore(schema, max_list_elements=max_list_elements, awareness=awareness)
        self._journal: RoomJournal | None = None
        self._journal_closer = journal_closer
        self._layers = layers
        self._update_limits = update_limits
        self.state = RoomState.LOADING
        self.connections: set[Connection] = set()
        self._pacers: dict[Connection, AwarenessPacer] = {}  # who sent awareness, while here
        # Who caused a sync step 2 encode, while here: paced (server/sync/step2budget.py).
        self._budgets: dict[Connection, Step2Budget] = {}
        # Who asked for the awareness table, while here: paced (server/sync/querypacing.py).
        self._queries: dict[Connection, QueryPacer] = {}
        # Connections closed while still here (their sockets not done yet): their awareness is
        # released on the loop's next turn, together (`_release_closed`).
        self._closed: list[Connection] = []
        self._releasing: asyncio.Handle | None = None
        self._answering: set[asyncio.Task[None]] = set()  # replies answered later, under way
        self.gate = Gate(release_on_accept=durability is Durability.RELAXED)
        self._pipeline = pipeline
        self._snapshotter = snapshotter
        self._on_failed = on_failed
        self._review_gate: ReviewGate | None = None
        self._in_review: asyncio.Event | None = None  # set when the write in review is done
        self._since_snapshot = 0
        self._bytes_since_snapshot = 0
        # The doc's state at a version not committed yet, stored once it is (`_snapshot`).
        self._held_snapshot: tuple[int, bytes] | None = None
        # Called after each commit with the records of this room it stored, in version order
        # (summaries, the change feed, the fan-out): once a commit, not once a record.
        self.commit_listeners: list[Callable[[Room, Sequence[UpdateRecord]], None]] = []
        # Called with each awareness update this instance's clients cause (Redis fan-out),
        # and whether it tells of a connection that left (its ids removed: nothing renews it).
        self.awareness_listeners: list[Callable[[Room, bytes, bool], None]] = []
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

    # -- what the core holds --------------------------------------------------------------------

    @property
    def doc(self) -> Doc:
        return self.core.doc

    @property
    def version(self) -> int:
        """The last accepted update; committed ones are <= this."""
        return self.core.version

    @version.setter
    def version(self, version: int) -> None:  # the store renumbered it (server/cluster)
        self.core.version = version

    @property
    def committed_version(self) -> int:
        """The versions up to this one are committed: each accepted change took one version
        and one gate ticket, in the same order, and they commit in that order."""
        return self.core.version - self.gate.pending

    @property
    def semantics(self) -> SemanticFields | None:
        return self.core.semantics

    @property
    def journal(self) -> RoomJournal | None:
        return self._journal

    @property
    def presence(self) -> Presence:
        return self.core.presence

    @property
    def replies(self) -> SyncReplies:
        return self.core.replies

    @property
    def review_gate(self) -> ReviewGate | None:
        return self._review_gate

    @review_gate.setter
    def review_gate(self, review_gate: ReviewGate | None) -> None:
        self._review_gate = review_gate
        self.core.reviews_in_turn = review_gate is not None

    # -- lifecycle ----------------------------------------------------------------------------

    def open(self, doc: Doc, version: int, *, since_snapshot: int) -> None:
        self._since_snapshot = since_snapshot
        if self._layers.journal:
            self._journal = RoomJournal(
                self.draft_id,
                doc,
                self.schema,
                on_burst_open=functools.partial(self._journal_closer.watch, self),
            )
        self.core.open(
            doc, version, semantic_fields=self._layers.semantic_fields, journal=self._journal
        )
        self.state = RoomState.OPEN

    def close(self) -> None:
        """Unload: drop the doc so its memory is freed (the registry forgets the room)."""
        self.core.close()
        for budget in self._budgets.values():
            budget.cancel()
        self._budgets.clear()
        for queries in self._queries.values():
            queries.cancel()
        self._queries.clear()
        if self._releasing is not None:
            self._releasing.cancel()
            self._releasing = None
        self._closed.clear()
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        self.state = RoomState.CLOSED

    @property
    def is_drained(self) -> bool:
        """No accepted update is waiting for its commit."""
        return self.gate.pending == 0 and self._in_review is None

    @property
    def is_reviewed(self) -> bool:
        """No write is held for its review turn (several instances): what the doc holds is
        accepted, if not all committed yet (`until_reviewed`)."""
        return self._in_review is None

    @property
    def accepts_commits(self) -> bool:
        # A discarded room's accepted updates passed every check: they are still stored.
        return self.state is RoomState.OPEN or self.state is RoomState.DISCARDED

    def add(self, conn: Connection) -> None:
        self.connections.add(conn)
        conn.on_close = self._on_closed
        if faults.ARMED:
            faults.trip("room-add")
        # A Hocuspocus client gets our step 1 in reply to its own.
        for message in self.core.join(sync_on_join=conn.sync_on_join):
            self._send(conn, message)

    def remove(self, conn: Connection) -> None:
        self.connections.discard(conn)
        conn.on_close = None  # a gone connection holds no way back to its room
        budget = self._budgets.pop(conn, None)
        if budget is not None:
            budget.cancel()
        self._release_awareness(conn)

    def _on_closed(self, conn: Connection) -> None:
        """`conn` was closed (by us: bad input, too slow, revoked, expired; or its reader
        ended) while still here: its cursors leave now, not when its socket is done, which
        for a client that stopped reading (4408: the close frame cannot go out either) takes
        the keepalive's 20 s ping and 20 s timeout, all the while showing them to everyone
        and to every joiner (peers time a state out after 30 s). Released on the
        loop's next turn, for all the connections closed meanwhile: when a room closes them
        all (shutdown, a draft deleted, a reload) nobody open is left to tell by then, where
        telling each removal at once would send n² frames."""
        if conn not in self.connections:
            return
        self._closed.append(conn)
        if self._releasing is None:
            self._releasing = asyncio.get_running_loop().call_soon(self._release_closed)

    def _release_closed(self) -> None:
        self._releasing = None
        closed, self._closed = self._closed, []
        for conn in closed:
            if conn in self.connections:
                self._release_awareness(conn)

    def _release_awareness(self, conn: Connection) -> None:
        """`conn` closed or left: nothing of its awareness waits any more (what its pacer
        held is superseded by the removal, which names every id it owns at a clock past the
        last it sent), and the others are told its ids are gone. Idempotent."""
        pacer = self._pacers.pop(conn, None)
        if pacer is not None:
            pacer.cancel()
        queries = self._queries.pop(conn, None)
        if queries is not None:
            queries.cancel()
        gone = self.core.leave(conn)
        if gone is not None:
            self._relay_awareness(conn, gone, departed=True)

    # -- messages -----------------------------------------------------------------------------

    async def receive(self, conn: Connection, message: Message) -> None:
        await self._handlers[type(message)](conn, message)

    async def _on_sync_step1(self, conn: Connection, message: SyncStep1) -> None:
        # The doc may hold accepted updates not committed yet: the reply waits until they are.
        # A write held for its review turn has no ticket to wait for, and may yet be dropped
        # (its sender lost the right): a reply made meanwhile would hand it to the joiner,
        # which would send it back as its own after the reload. So the reply waits for the turn.
        await self.until_reviewed()
        if self.state is not RoomState.OPEN or not conn.is_open:
            return
        state_vector = message.state_vector
        outcome = self.core.sync_step1(
            state_vector, may_encode=functools.partial(self._may_encode, conn)
        )
        budget = self._budgets.get(conn)
        if outcome is None:  # over its budget of encodes: answered when a token is back
            assert budget is not None
            budget.defer(state_vector)
            return
        if budget is not None:
            budget.pending = None  # this reply supersedes the one that waited
        self._carry_out(conn, outcome)

    def _may_encode(self, conn: Connection) -> bool:
        """Whether `conn` may cause a sync step 2 encode now (server/sync/step2budget.py)."""
        budget = self._budgets.get(conn)
        if budget is None:
            answer = functools.partial(self._answer_later, conn)
            budget = self._budgets[conn] = Step2Budget(answer)
        return budget.take()

    def _answer_later(self, conn: Connection, state_vector: bytes) -> None:
        """A token is back for `conn`'s latest state vector: answer it as it came now."""
        if conn not in self.connections:
            return
        task = asyncio.create_task(self._answer_in_turn(conn, SyncStep1(state_vector)))
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

    async def _answer_in_turn(self, conn: Connection, message: SyncStep1) -> None:
        # Outside the connection's reader, whose catch-all would close it with 1011 on a bug:
        # the same here, loud, so that a failed reply is never a silent stall.
        try:
            await self._on_sync_step1(conn, message)
        except ProtocolError:
            pass  # acted on: `conn` was closed with 4400
        except Exception:
            logger.exception("sync reply failed draft=%s user=%s", self.draft_id, conn.user)
            conn.close(CloseCode.INTERNAL_ERROR, "server error")

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
        core = self.core
        starts = await self.check_bounded(updates)
        await self._pipeline.wait_for_space()
        await self.until_reviewed()
        if self.state is not RoomState.OPEN or not conn.is_open:
            return
        if not conn.can_write:  # downgraded or revoked while this run waited
            conn.deny_write()
            return
        refusal = self._pipeline.writes_refused()
        if refusal is not None and not core.all_redundant(updates):
            # The disk is full: this writer goes, before its update is applied (it could not
            # be stored); the room and its readers stay. A joiner's sync step 2 passes.
            conn.close(CloseCode.TRY_AGAIN_LATER, str(refusal))
            return
        # From here to submit() nothing awaits: versions enter the pipeline in order.
        try:
            outcome = core.apply_run(conn.origin, updates, starts)
            if outcome.in_review is not None:
                outcome = await self._review_in_turn(conn, outcome)
            else:
                self._carry_out_client(conn, outcome)
        except Exception:
            logger.exception("update failed draft=%s user=%s", self.draft_id, conn.user)
            self.discard(
                f"server error on an update from user={conn.user}",
                code=CloseCode.INTERNAL_ERROR,
                reason="server error, reconnect",
            )
            raise
        if outcome.verdict is not OK:
            self._act_on(conn, outcome.verdict)
        core.runs_unprobed += 1
        if starts is not None or core.runs_unprobed >= PROBE_EVERY_RUNS:  # walked: large
            self._probe_held_back()

    def _probe_held_back(self) -> None:
        """Shed what the doc holds back for clocks it lacks once it costs too much
        (crdt/heldback.py, "When"): ~4 us a probe when nothing is held."""
        if self.state is not RoomState.OPEN or self._in_review is not None:
            return
        shed = self.core.shed_held_back()
        if shed is not None:
            metrics.HELD_BACK_SHEDS.inc()
            logger.warning(
                "room shed updates held back for missing clocks draft=%s retry_ms=%.1f "
                "held_bytes=%d copy_ms=%.1f",
                self.draft_id,
                shed.retry_seconds * 1000,
                shed.held_bytes,
                shed.copy_seconds * 1000,
            )

    async def check_bounded(self, updates: Sequence[bytes]) -> list[list[Id]] | None:
        """Raise `UpdateTooLarge` or `UndecodableUpdate` (4400) if yrs applying `updates`, to
        this room's doc or to any doc, would cost more than the limits or crash the process.
        Any code that hands a client's update to yrs asks this first, not only `receive_run`
        (a Hocuspocus viewer's step 2 is tried on a copy: server/sync/hocuspocus.py).
        Returns, for a run large enough to be walked, where each update's runs of clocks start
        (read by the walk, off the event loop: the gap check needs them for an update yrs held
        back, `RoomCore.apply_run`); None for a smaller one."""
        core = self.core
        # Bounded work per run (crdt/limits.py); overwrites of `fields` keys count too.
        known = core.semantics.field_ids() if core.semantics is not None else frozenset()
        starts = None
        if self._update_limits.needs_scan(updates, has_fields=bool(known)):
            starts = await check_run(updates, self._update_limits, known)
        for update in updates:
            if may_nest_too_deep(update):
                # yrs would recurse without a limit (a crafted value crashes the process):
                # read it in Python first, off the event loop; only large, tag-dense updates
                # get here.
                await asyncio.to_thread(check_nesting, update)
        return starts

    def _carry_out_client(self, conn: Connection, outcome: Outcome) -> None:
        """Commit and relay a client's accepted run, then the write its rules asked for."""
        if outcome.writes:
            conn.submitted += 1
        self._submit(conn, outcome)
        # A commit that failed inside `submit` (the disk filled) has reset the room already:
        # its doc is dropped, nothing more is written to it.
        if outcome.rules is not None and self.state is RoomState.OPEN:
            self._check_server_write()
            self._carry_out(None, outcome.rules())

    async def until_reviewed(self) -> None:
        """Until no write is held for its review turn: the doc holds it, the store not yet, and
        a reader of the doc must not see it (it may be dropped: `_review_in_turn`)."""
        while self._in_review is not None:
            await self._in_review.wait()

    async def _review_in_turn(self, conn: Connection, outcome: Outcome) -> Outcome:
        """Judge a semantic write against every version stored before it (several instances).

        Another instance's write reaches this one only after its commit, so two conflicting
        writes that reach two instances at once would each be judged without the other and
        no conflict found. Reviews of a draft therefore take turns across instances (the
        store's per-draft lock): in its turn the room applies what the store holds beyond its
        doc, the core judges the held-back write against it (`RoomCore.admit`), and both the
        write and any resolution commit before the turn passes on. This room's next updates
        wait meanwhile: a pause of a few milliseconds, for writes to semantic fields only.
        Returns what is left to act on: the run's verdict, or the admission's refusal."""
        assert self.review_gate is not None and outcome.in_review is not None
        verdict = outcome.verdict
        in_review = self._in_review = asyncio.Event()
        try:
            async with self.review_gate.turn(self):
                if self.state is RoomState.OPEN:
                    if not conn.can_write or not conn.is_open:
                        # Downgraded, revoked or gone while the write waited for its turn:
                        # the doc took it, the store must never hold it (issue 21, point 3).
                        if conn.is_open:
                            conn.deny_write()
                        why = f"a write from user={conn.user} lost its right in review"
                        return Outcome(verdict=Verdict(discard=why))
                    admitted = self.core.admit(outcome.in_review)
                    if admitted.verdict is not OK:
                        return admitted
                    self._carry_out_client(conn, admitted)
                    with contextlib.suppress(GateClosed):  # failed: the room is gone
                        await self.gate.until_committed()
        except StoreError as error:
            self.on_commit_failed(error)
        finally:
            self._in_review = None
            in_review.set()
        return Outcome(verdict=verdict)

    def _check_server_write(self) -> None:
        if self.state is not RoomState.OPEN:
            raise StoreError("the draft is being reloaded, retry")
        refusal = self._pipeline.writes_refused()
        if refusal is not None:
            raise refusal

    def write_as_server(
        self,
        reason: str,
        change: Callable[[Doc], None],
        *,
        events: Callable[[int], list[JournalEvent]] | None = None,
    ) -> ServerWrite | None:
        """Make a change as the server (rules, REST): stored and relayed like any update,
        to every connection, with the journal events `events(version)` gives for it.
        Returns the write (its `version` is the store's once committed), None if it changed
        nothing. Raises whatever `change` raises; if it raised after changing the doc, the
        room is discarded (the doc is not what the store will hold)."""
        self._check_server_write()
        outcome = self.core.write_as_server(reason, change, events=events)
        submitted = self._carry_out(None, outcome)
        return None if submitted is None else ServerWrite(submitted)

    def apply_committed(self, update: bytes, version: int, *, user: str | None = None) -> bool:
        """Apply an update another instance stored as `version` (Redis fan-out, or caught up
        from the store) for `user` and relay it to every local connection. It is durable
        already, so it is not committed again; a duplicate changes and relays nothing. True
        if it changed."""
        if self.state is not RoomState.OPEN:
            return False
        outcome = self.core.apply_committed(update, version, user=user)
        self._carry_out(None, outcome)
        return bool(outcome.messages)

    def relay_remote_awareness(self, payload: bytes, *, instance: str) -> list[AwarenessEntry]:
        """Awareness from another instance's clients: what it may change (its own clients'
        ids, server/sync/presence.py) is kept and told to every local connection."""
        accepted = self.core.remote_awareness(instance, payload)
        if accepted:
            self._send(None, self.core.encode_awareness(accepted))
        return accepted

    def forget_remote_awareness(self, client_ids: set[int], *, instance: str) -> None:
        """Drop the states of clients of an instance that went away, telling local clients."""
        gone = self.core.leave(instance, client_ids)
        if gone is not None:
            self._send(None, self.core.awareness(gone, EVERYONE))

    # -- carrying out what the core returned ----------------------------------------------------

    def _carry_out(self, sender: Connection | None, outcome: Outcome) -> PendingWrite | None:
        """Submit, send and act on an outcome whose writes are `sender`'s (None: the server's);
        the last write submitted, as `_submit` returns it."""
        submitted = self._submit(sender, outcome)
        if outcome.verdict is not OK:
            self._act_on(sender, outcome.verdict)
        return submitted

    def _submit(self, sender: Connection | None, outcome: Outcome) -> PendingWrite | None:
        """Hand the writes to the group commit, then the messages to the gate: a write that
        `submit` committed at once lets the gate send its relay at once. Returns the last
        write handed over (its record becomes the stored one at commit), None if none."""
        pending = None
        for write in outcome.writes:
            # Positional: a named tuple, built in one call (server/store/records.py).
            record = UpdateRecord(
                self.draft_id,
                write.version,
                write.data,
                write.user,
                write.session,
                write.client_id,
                write.created_at,
            )
            ticket = self.gate.accept()  # the core's ticket: one each, in the same order
            # Positional, as the record (PendingWrite's fields: target, sender, record,
            # events, ticket).
            pending = PendingWrite(self, sender, record, write.events, ticket)
            self._pipeline.submit(pending)
        for message in outcome.messages:
            self._send(sender, message)
        return pending

    def _send(self, sender: Connection | None, message: Outgoing) -> None:
        """Send one message: through the gate unless it reveals no content (`after` None)."""
        to, frame, after, update = message
        if to is SENDER:
            assert sender is not None
            if after is None:
                sender.send(frame)
            else:
                self.gate.send((sender,), frame, after=after, update=update)
            return
        exclude = sender if to is OTHERS else None
        if after is None:
            for conn in self.connections:
                if conn is not exclude:
                    conn.send(frame)
            return
        self.gate.send(self.connections, frame, after=after, update=update, exclude=exclude)
        if update is not None:
            metrics.TALLY.updates_relayed += len(self.connections) - (exclude in self.connections)

    def _act_on(self, sender: Connection | None, verdict: Verdict) -> None:
        """Refuse the sender (4400, it learns why first), drop the doc, raise to the caller."""
        if verdict.refused is not None and sender is not None:
            sender.close(CloseCode.MALFORMED, str(verdict.refused))
        if verdict.discard is not None:
            self.discard(verdict.discard, code=verdict.code, reason=verdict.reason)
        error = verdict.refused or verdict.error
        if error is not None:
            raise error

    async def _on_awareness(self, conn: Connection, message: Awareness) -> None:
        """Keep what `conn` may change of awareness (its own ids, server/sync/presence.py) and relay
        it, paced (server/sync/pacing.py). Entries for others' ids are dropped: stock clients echo
        every state they hear, so they are no sign of malice."""
        if not conn.is_open:
            return  # closed: its awareness was released, and may not come back meanwhile
        applied = self.core.apply_awareness(conn, message.update)
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

    def _relay_awareness(self, conn: Connection, update: bytes, *, departed: bool = False) -> None:
        self._send(conn, self.core.awareness(update))
        for listener in self.awareness_listeners:
            listener(self, update, departed)

    async def _on_query_awareness(self, conn: Connection, message: QueryAwareness) -> None:
        """Answer with the whole table, paced: at most one answer an interval, the queries
        between coalesced into one (server/sync/querypacing.py)."""
        if not conn.is_open:
            return
        queries = self._queries.get(conn)
        if queries is None:
            answer = functools.partial(self._answer_query, conn)
            queries = self._queries[conn] = QueryPacer(answer)
        queries.ask()

    def _answer_query(self, conn: Connection) -> None:
        if conn in self.connections and conn.is_open:
            self._carry_out(conn, self.core.query_awareness())

    async def _on_write_ack(self, conn: Connection, message: WriteAck) -> None:
        # "Everything you sent before this is on disk": wait for all this room accepted.
        self._carry_out(conn, self.core.write_ack(message))

    async def _on_auth(self, conn: Connection, message: Auth) -> None:
        raise MalformedMessage("auth messages are sent by the server, not by clients")

    # -- after the commit ---------------------------------------------------------------------

    def on_committed(self, writes: Sequence[PendingWrite]) -> None:
        """A stretch of this room's writes is committed (consecutive in their batch, in
        version order): release what waited for them, tell the commit listeners, then the
        journal events, then count them towards the next snapshot.

        Once a stretch, not once a write (the pipeline hands a batch's writes over together):
        the gate releases every held message up to the stretch's last ticket in one call, in
        the order they were given, and each listener hears of the stretch's records in one
        call. A write with journal events ends its own stretch first, so its relay and every
        one before it go out, and the listeners hear of it, before its events are told, as
        when each write was handed back alone."""
        gate = self.gate
        listeners = self.commit_listeners
        told = 0  # writes the listeners have heard of
        for i, write in enumerate(writes):
            sender = write.sender
            if isinstance(sender, Connection):
                sender.committed += 1
            events = write.events
            if events:  # committed now: connections that tell events may (Hocuspocus)
                gate.commit(write.ticket)
                if listeners:
                    records = [w.record for w in writes[told : i + 1]]
                    for listener in listeners:
                        listener(self, records)
                told = i + 1
                self.tell_events(events)
                for event_listener in self.event_listeners:
                    event_listener(self, events)
        if told < len(writes):
            gate.commit(writes[-1].ticket)
            if listeners:
                records = [w.record for w in (writes[told:] if told else writes)]
                for listener in listeners:
                    listener(self, records)
        if self.state is not RoomState.OPEN:
            return  # a discarded doc is never snapshotted
        due = self._snapshotter.due
        for write in writes:
            record = write.record
            if self._held_snapshot is not None:
                self._save_held_snapshot(record.version)
            self._since_snapshot += 1
            self._bytes_since_snapshot += len(record.data)
            if due(self._since_snapshot, self._bytes_since_snapshot):
                self._snapshot(record.version)

    def snapshot_before_unload(self) -> None:
        """The doc is about to go (unload, shutdown): leave a snapshot of it when its tail
        since the last one would slow the next cold load (`Snapshotter.due_at_unload`). Only a
        drained room's doc is exactly its committed versions; one that is not drained is left
        as it is (its tail is replayed, as before)."""
        if (
            self.state is RoomState.OPEN
            and self.is_drained
            and self._snapshotter.due_at_unload(self._since_snapshot)
        ):
            self._snapshot(self.version)

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
        error: BaseException,
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
        if self._journal is not None:
            self._journal.forget()  # the next room journals them (`RoomJournal.forget`)
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
        if self._journal is not None:
            self._journal.forget()  # the next room journals them (`RoomJournal.forget`)
        for conn in list(self.connections):
            conn.close(code, reason)
        self._on_failed(self)
