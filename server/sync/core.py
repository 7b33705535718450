"""The sync core of a room: what one draft's room does with a message, and nothing it does.

Why a core apart from the room (issue 20, in the manner of y-sweet's core crate): every rule
that decides what a client's update becomes (applied, numbered, judged by the semantic rules,
journaled, refused, or the doc dropped) is here, in plain synchronous calls that await nothing,
call no connection, no store, no commit pipeline and no gate. Tests drive it with function
calls and pycrdt docs (tests/server/test_sync_core.py); `server/sync/room.py` is the shell that
does the I/O around it.

Each entry point takes a message (a run of updates, a joiner's state vector, a write ack, a
committed remote update, a server write) and *returns* what to do, an `Outcome`:

- `writes`: changes to commit, in order, each with its version, gate ticket and journal events;
- `messages`: frames to send, each to `SENDER`, `OTHERS` (everyone but the sender) or
  `EVERYONE`, tagged `after` = the ticket it depends on: the gate (server/sync/gate.py) sends it
  once that ticket is committed. `after=0` reveals nothing uncommitted (durable already: it
  waits only behind what the gate holds); `after=None` reveals no content (awareness, our sync
  step 1) and is not gated at all;
- `verdict`: `OK`, or refused (the sender is closed with 4400 and the reason), and/or the doc
  is discarded (every connection closed with `code`, the draft reloaded from the store);
- `rules`: the server's own write the rules asked for, made (`rules()`) once `writes` are
  handed to the commit and only if the room still stands;
- `in_review`: a semantic write set aside for the draft's review turn (several instances): the
  shell awaits the turn, then calls `admit`.

The shell submits the writes before it hands the messages to the gate, so a write that the
group commit commits at once (inside `submit`) lets the gate send its relay at once.

The core numbers what it accepts: `version` (the store's numbering, which PostgreSQL may
renumber: the shell raises it after a commit) and `accepted` (gate tickets, one per write, in
order; the shell tells the gate of each, so the two counts agree).
"""

from __future__ import annotations

import functools
import secrets
import time
from collections.abc import Callable, Hashable, Sequence
from enum import Enum
from typing import NamedTuple, Protocol, overload

from pycrdt import Doc, Subscription, Transaction, TransactionEvent, merge_updates

from crdt.awareness import AwarenessEntry, encode_awareness_update
from crdt.errors import MalformedMessage, ProtocolError, UndecodableUpdate
from crdt.gaps import RunCheck, check_run
from crdt.heldback import (
    HELD_BYTES,
    PROBE_EVERY_RUNS,
    RETRY_BUDGET,
    SHED_PAUSE_FACTOR,
    retry_cost,
    without_held_back,
)
from crdt.journal import JournalEvent
from crdt.origins import SERVER_USER, ClientOrigin, ServerOrigin
from crdt.protocol import Awareness, Update, WriteAck, encode_message, update_frame
from crdt.redundant import is_redundant
from crdt.schema import Schema
from crdt.semantics import Review, SemanticFields
from crdt.statevector import entry_count
from crdt.updates import Id, first_client_id
from server import faults, metrics
from server.errors import CloseCode
from server.sync.presence import Applied, AwarenessLimits, Presence
from server.sync.replies import LARGE_REPLY_BYTES, SyncReplies
from server.sync.statevector import FREE_ENTRIES, MAX_UNKNOWN_CLIENTS, normalize

__all__ = [
    "EVERYONE",
    "NOTHING",
    "OK",
    "OTHERS",
    "SENDER",
    "InReview",
    "Journal",
    "Outcome",
    "Outgoing",
    "Recipients",
    "RoomCore",
    "Shed",
    "Verdict",
    "Write",
]


class Recipients(Enum):
    SENDER = "sender"  # the connection whose message this answers
    OTHERS = "others"  # every connection of the room but the sender
    EVERYONE = "everyone"  # every connection of the room


SENDER = Recipients.SENDER
OTHERS = Recipients.OTHERS
EVERYONE = Recipients.EVERYONE


class Outgoing(NamedTuple):
    """A frame to send. `after`: the gate ticket it waits for (0: durable already; None: it
    reveals no content and is not gated). `update`: the Yjs update a relay carries."""

    to: Recipients
    frame: bytes
    after: int | None
    update: bytes | None = None


class Write(NamedTuple):
    """An accepted change to commit (the shell makes it the store's `UpdateRecord`)."""

    version: int
    ticket: int
    data: bytes
    user: str
    session: str
    client_id: int | None
    created_at: float
    events: Sequence[JournalEvent]


class Verdict(NamedTuple):
    """`refused`: close the sender with 4400 and this reason, and raise it to the caller (the
    endpoint). `discard`: why the doc must be dropped (every connection closed with `code` and
    `reason`; what was accepted still commits). `error`: raised to the caller once acted on."""

    refused: ProtocolError | None = None
    discard: str | None = None
    code: int = CloseCode.TRY_AGAIN_LATER
    reason: str = "draft reloading, reconnect"
    error: BaseException | None = None


OK = Verdict()


class InReview(NamedTuple):
    """A client's semantic write, applied and set aside until the draft's review turn."""

    origin: ClientOrigin
    received: bytes  # what the client sent
    changes: bytes  # what the doc integrated
    text: dict[str, int]  # its journal text counts, put back when it is admitted


class Outcome(NamedTuple):
    writes: tuple[Write, ...] = ()
    messages: tuple[Outgoing, ...] = ()
    verdict: Verdict = OK
    rules: Callable[[], Outcome] | None = None
    in_review: InReview | None = None


NOTHING = Outcome()


class Shed(NamedTuple):
    """Why the core copied its doc (`RoomCore.shed_held_back`)."""

    retry_seconds: float  # CPU time yrs took to retry what the doc held back
    held_bytes: int  # bytes of runs that left structs held since the last copy
    copy_seconds: float  # what the copy took (the next waits SHED_PAUSE_FACTOR times this)


class Journal(Protocol):
    """What the core needs of the room's journal (server/sync/journal.py `RoomJournal`)."""

    def count_text(self, transaction: Transaction) -> None: ...

    def moved_to(self, doc: Doc) -> None: ...

    def discard_text(self) -> None: ...

    def take_text(self) -> dict[str, int]: ...

    def put_back_text(self, taken: dict[str, int]) -> None: ...

    def client_events(
        self,
        version: int,
        origin: ClientOrigin,
        client_id: int | None,
        now: float,
        review: Review | None,
        /,
    ) -> Sequence[JournalEvent]: ...

    def server_events(
        self, *, version: int, reason: str, now: float, review: Review
    ) -> list[JournalEvent]: ...


_EMPTY_UPDATE = b"\x00\x00"  # no struct groups, no delete set
_CLEAR, _HELD, _GAP = RunCheck.CLEAR, RunCheck.HELD, RunCheck.GAP  # one lookup each, per run


def _new_conflict_id() -> str:
    return secrets.token_hex(4)


class RoomCore:
    def __init__(
        self,
        schema: Schema,
        *,
        max_list_elements: int | None = None,
        awareness: AwarenessLimits | None = None,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = _new_conflict_id,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.schema = schema
        self.doc: Doc = Doc()
        self.version = 0  # the last accepted update; committed ones are <= this
        self.accepted = 0  # gate tickets handed out, one per write
        self.semantics: SemanticFields | None = None
        self.journal: Journal | None = None
        self.presence = Presence(awareness)
        # Joiners' sync step 2 frames, shared while the doc is unchanged (server/sync/replies.py).
        self.replies = SyncReplies()
        # Semantic writes wait for the draft's review turn (several instances: `in_review`).
        self.reviews_in_turn = False
        self._max_list_elements = max_list_elements
        self._clock = clock  # the time of a change (journal, conflicts)
        self._monotonic = monotonic  # for pauses
        self._new_id = new_id
        self._changes: bytes | None = None  # what the open transaction integrated
        self._subscription: Subscription | None = None
        self._run_txn = Transaction(self.doc)  # see `_run_transaction`
        # The doc's held-back store (crdt/heldback.py): runs since the shell last probed it
        # (it counts them: `shed_held_back` when due), and bytes of runs that left structs held.
        self.runs_unprobed = 0
        self.held_bytes = 0
        self._next_shed = 0.0  # by `monotonic`: no copy before (SHED_PAUSE_FACTOR)

    # -- lifecycle ----------------------------------------------------------------------------

    def open(
        self, doc: Doc, version: int, *, semantic_fields: bool, journal: Journal | None
    ) -> None:
        """Take the doc loaded from the store at `version`."""
        self.held_bytes = 0  # a doc built from the store holds nothing back
        self.replies.clear()
        self.version = version
        if semantic_fields:
            self.semantics = SemanticFields(
                doc, self.schema, new_id=self._new_id, max_list_elements=self._max_list_elements
            )
        self.journal = journal
        self._watch(doc)

    def _watch(self, doc: Doc) -> None:
        """Make `doc` the one runs apply to, and hear what its transactions integrate."""
        self.doc = doc
        self._run_txn = Transaction(doc)
        self._subscription = doc.observe(self._capture_changes)

    def _unwatch(self) -> None:
        if self._subscription is not None:
            self.doc.unobserve(self._subscription)
            self._subscription = None

    def close(self) -> None:
        """Drop the doc so its memory is freed."""
        self._unwatch()
        if self.semantics is not None:
            self.semantics.close()
            self.semantics = None
        self.journal = None
        self.doc = Doc()
        self._run_txn = Transaction(self.doc)
        self.replies.clear()

    def shed_held_back(self) -> Shed | None:
        """Replace the doc by a copy without what yrs holds back for clocks it lacks, if
        retrying that costs each update more than `RETRY_BUDGET`, or runs of more than
        `HELD_BYTES` left structs held (crdt/heldback.py); what was found then, else None.
        The copy holds the same content and state vector: no version, message or stored row
        changes. The shell calls it between runs, with no write set aside for review. Not
        again until a pause SHED_PAUSE_FACTOR times the copy's time has passed."""
        self.runs_unprobed = 0
        if self._monotonic() < self._next_shed:
            return None
        cost = retry_cost(self.doc)
        held_bytes = self.held_bytes
        if cost <= RETRY_BUDGET and held_bytes <= HELD_BYTES:
            return None
        self.held_bytes = 0
        started = time.perf_counter()
        doc = without_held_back(self.doc)
        self._unwatch()
        if self.semantics is not None:
            moved = self.semantics.moved_to(doc)
            self.semantics.close()
            self.semantics = moved
        if self.journal is not None:
            self.journal.moved_to(doc)
        self._watch(doc)
        copied = time.perf_counter() - started
        self._next_shed = self._monotonic() + SHED_PAUSE_FACTOR * copied
        return Shed(cost, held_bytes, copied)  # kept sync replies stay: the same content

    def _run_transaction(self, origin: ClientOrigin) -> Transaction:
        """The transaction a client's run is applied in: one wrapper kept for the doc, with
        no origin. `doc.transaction(origin=...)` builds a pycrdt `Transaction` per run, hashes
        the origin and files it in the doc's origins: ~1.6 us a run against ~0.7 (`timeit`),
        for an origin nothing reads (the core knows whose run it is; no observer of ours asks
        the transaction). A transaction already open on the doc (none is, between messages)
        is joined the usual way."""
        if self.doc._txn is None:
            return self._run_txn
        return self.doc.transaction(origin=origin)

    def _capture_changes(self, event: TransactionEvent) -> None:
        self._changes = event.update
        self.replies.clear()  # a kept sync reply no longer holds the doc

    # -- a connection's messages ----------------------------------------------------------------

    def join(self, *, sync_on_join: bool) -> tuple[Outgoing, ...]:
        """What a connection gets when it joins: our sync step 1 if its protocol waits for it
        (Hocuspocus), and everyone's awareness. Neither reveals content: not gated."""
        messages = []
        if sync_on_join:
            # One encode per state of the doc, shared by every joiner (replies.py).
            messages.append(Outgoing(SENDER, self.replies.step1(self.doc.get_state), None))
        everyone = self.presence.full_update()
        if everyone is not None:
            messages.append(Outgoing(SENDER, encode_message(Awareness(everyone)), None))
        return tuple(messages)

    @overload
    def sync_step1(self, state_vector: bytes) -> Outcome: ...

    @overload
    def sync_step1(
        self, state_vector: bytes, *, may_encode: Callable[[], bool]
    ) -> Outcome | None: ...

    def sync_step1(
        self, state_vector: bytes, *, may_encode: Callable[[], bool] | None = None
    ) -> Outcome | None:
        """A joiner's state vector: our sync step 2, made now from the doc (which may hold
        accepted updates not committed yet), so it waits for everything accepted.

        Kept replies are keyed by the vector normalized (server/sync/statevector.py), so a
        vector naming clients the doc lacks is answered like the empty one. A reply that is
        not kept costs an encode of the doc, a long vector a decode, and a large kept reply
        its bytes on the socket: `may_encode` (the shell's pacing of this connection) is
        asked first, once, and if it says no, None is returned (answer later)."""
        replies = self.replies
        charged = False  # a token was taken (`may_encode`)
        try:
            entries = entry_count(state_vector)
            doc_state = replies.doc_state(self.doc.get_state)
            if entries > len(doc_state) + MAX_UNKNOWN_CLIENTS:
                # yrs decodes every entry, on the event loop (1,500,000: ~0.1 s a frame)
                raise MalformedMessage(
                    f"state vector too long: {entries} entries > the draft's {len(doc_state)} "
                    f"clients + {MAX_UNKNOWN_CLIENTS}"
                )
            if may_encode is not None and entries > FREE_ENTRIES:
                # Decoding it is linear in its size: it costs a token, as an encode does.
                if not may_encode():
                    return None
                charged = True
            key = normalize(state_vector, doc_state)
        except MalformedMessage as refusal:
            return Outcome(verdict=Verdict(refused=refusal))
        if key is None:  # not normalized here (server/sync/statevector.py): yrs decodes it
            key = state_vector
        reply = replies.kept(key)
        # An encode, or a kept reply of megabytes to send for a four-byte ask: paced alike.
        costly = reply is None or len(reply) >= LARGE_REPLY_BYTES
        if costly and may_encode is not None and not charged and not may_encode():
            return None
        if reply is None:
            try:
                # One encode per state of the doc, shared by every joiner at this state vector.
                reply = replies.frame(key, self.doc.get_update)
            except ValueError as exc:
                refusal = MalformedMessage(f"undecodable state vector: {exc}")
                refusal.__cause__ = exc
                return Outcome(verdict=Verdict(refused=refusal))
        return Outcome(messages=(Outgoing(SENDER, reply, self.accepted),))

    def write_ack(self, message: WriteAck) -> Outcome:
        """ "Everything you sent before this is on disk": it waits for all accepted so far."""
        return Outcome(messages=(Outgoing(SENDER, encode_message(message), self.accepted),))

    def all_redundant(self, updates: Sequence[bytes]) -> bool:
        """The doc holds all of these already (a writer refused for a full disk may still
        send them: a joiner's sync step 2 of what the room has)."""
        return all(is_redundant(update, self.doc) for update in updates)

    def apply_run(
        self,
        origin: ClientOrigin,
        updates: Sequence[bytes],
        starts: Sequence[Sequence[Id]] | None = None,
    ) -> Outcome:
        """Apply updates a client sent back to back as one change: one transaction, one
        version, one write, one relay to the others. Their semantic writes are judged together.

        An update yrs cannot decode ends the run: the ones before it are kept, the sender is
        refused. An update refused after the doc took it (yrs panicked, the rules cannot read
        it) is refused and the doc discarded: it holds what the store must never hold. Any
        other exception propagates (a server bug: the shell closes with 1011)."""
        applied = 0
        undecodable: ValueError | None = None
        doc = self.doc
        journal = self.journal
        state: bytes | None = None  # the doc's state vector after the run (gap check)
        try:
            with self._run_transaction(origin) as txn:
                apply = _applier(doc, txn)
                for update in updates:
                    try:
                        apply(update)
                    except ValueError as error:  # yrs integrates nothing of such an update
                        undecodable = error
                        break
                    applied += 1
                if journal is not None:
                    journal.count_text(txn)
                if applied > 1:  # read here, not by `doc.get_state()`: no transaction more
                    state = _state_in(doc, txn)
        except BaseException as error:
            self._changes = None
            # yrs gave up half-way (a panic, or a RuntimeError such as "block parent must be
            # deleted or shared ref type"): what it integrated is unknown, the doc is dropped.
            if _is_panic(error) or isinstance(error, RuntimeError):
                return self._refuse(
                    origin, UndecodableUpdate(f"update rejected by the CRDT: {error}")
                )
            raise
        metrics.TALLY.updates_received += applied
        changes, self._changes = self._changes, None
        refusal: UndecodableUpdate | None = None
        if undecodable is not None:
            refusal = UndecodableUpdate(f"undecodable Yjs update: {undecodable}")
            refusal.__cause__ = undecodable
        taken = updates if applied == len(updates) else updates[:applied]
        check = (
            _GAP
            if changes == _EMPTY_UPDATE
            else check_run(doc, taken, changes, state=state, starts=starts)
        )
        if check is _HELD:  # structs held for an origin: memory that nothing else bounds
            self.held_bytes += sum(map(len, taken))
            if self.held_bytes > HELD_BYTES:
                self.runs_unprobed = PROBE_EVERY_RUNS  # the shell sheds them after this run
        elif check is not _CLEAR:
            # yrs took a struct past its client's next clock: integrated after a Skip, its
            # state vector not advanced, reported by no update (fuzz finding 2), or held until
            # its origin comes and then integrated so, unreported (fuzz seed 3; crdt/gaps.py).
            # No update says what the doc holds or will hold: reload it from the store.
            # A client that did this honestly (a live write racing its own sync step 2)
            # reconnects and sends the clocks it skipped first.
            why = f"an update from user={origin.user} left a gap in a client's clocks"
            return Outcome(verdict=Verdict(discard=why, error=refusal))
        verdict = OK if refusal is None else Verdict(refused=refusal)
        if changes is None:  # nothing new, or held by pycrdt until its dependencies
            return NOTHING if refusal is None else Outcome(verdict=verdict)
        if faults.ARMED:
            faults.trip("update")
        semantics = self.semantics
        if semantics is None or not semantics.touched:
            outcome = self._admit(origin, changes, None)
        else:
            sent = updates[0] if applied == 1 else merge_updates(*updates[:applied])
            if self.reviews_in_turn:
                semantics.set_aside(changes)
                text = journal.take_text() if journal is not None else {}
                held = InReview(origin, sent, changes, text)
                return Outcome(verdict=verdict, in_review=held)
            outcome = self._admit(origin, changes, sent)
        if refusal is not None and outcome.verdict is OK:
            return outcome._replace(verdict=verdict)
        return outcome

    def admit(self, held: InReview) -> Outcome:
        """Admit a write set aside for review, in the draft's review turn: the doc now holds
        every version stored before it, and it is judged against them."""
        if self.journal is not None:
            self.journal.put_back_text(held.text)
        return self._admit(held.origin, held.changes, held.received)

    def _admit(self, origin: ClientOrigin, changes: bytes, received: bytes | None) -> Outcome:
        """Number and journal an applied client update; `received` (what the client sent) is
        given when its semantic writes need a review, whose own write comes in `rules`."""
        now = self._clock()
        review = None
        if received is not None:
            assert self.semantics is not None
            try:
                # Fails closed: a write to semantic fields the rules cannot read is refused.
                review = self.semantics.review(changes, received, origin, now=now)
            except ProtocolError as error:
                return self._refuse(origin, error)
        client_id = first_client_id(changes)
        journal = self.journal
        events = (
            journal.client_events(self.version + 1, origin, client_id, now, review)
            if journal is not None
            else ()
        )
        rules = None
        if review is not None and review.writes_doc:
            rules = functools.partial(self._write_rules, review, now)
        return self._accept(
            changes, origin.user, origin.session, client_id, now, events, OTHERS, rules
        )

    def _refuse(self, origin: ClientOrigin, error: ProtocolError) -> Outcome:
        """Refused after the doc took it: the doc holds what the store must never hold."""
        why = f"refused update from user={origin.user}: {error}"
        return Outcome(verdict=Verdict(refused=error, discard=why))

    def _accept(
        self,
        changes: bytes,
        user: str,
        session: str,
        client_id: int | None,
        now: float,
        events: Sequence[JournalEvent],
        to: Recipients,
        rules: Callable[[], Outcome] | None = None,
    ) -> Outcome:
        """Number an applied change: its write, and its relay tagged with its ticket."""
        self.version += 1
        self.accepted += 1
        ticket = self.accepted
        write = Write(self.version, ticket, changes, user, session, client_id, now, events)
        relay = Outgoing(to, update_frame(changes), ticket, changes)
        return Outcome((write,), (relay,), OK, rules)

    # -- the server's own writes ------------------------------------------------------------------

    def write_as_server(
        self,
        reason: str,
        change: Callable[[Doc], None],
        *,
        events: Callable[[int], list[JournalEvent]] | None = None,
    ) -> Outcome:
        """Make a change as the server (rules, REST), with the journal events `events(version)`
        gives for it, relayed to everyone. Raises whatever `change` raises, unless it changed
        the doc first: then the outcome discards the doc and carries the error to raise."""
        journal = self.journal
        try:
            with self.doc.transaction(origin=ServerOrigin(reason)) as txn:
                change(self.doc)
                if journal is not None:
                    journal.count_text(txn)
        except BaseException as error:
            changed, self._changes = self._changes, None
            if changed is not None:
                why = f"server write {reason!r} failed half-way"
                return Outcome(verdict=Verdict(discard=why, error=error))
            raise
        changes, self._changes = self._changes, None
        if journal is not None:
            journal.discard_text()
        if changes is None:
            return NOTHING
        if self.semantics is not None:
            self.semantics.absorb(changes)
        stored_events = events(self.version + 1) if events is not None else []
        return self._accept(
            changes, SERVER_USER, reason, self.doc.client_id, self._clock(), stored_events, EVERYONE
        )

    def _write_rules(self, review: Review, now: float) -> Outcome:
        journal = self.journal
        return self.write_as_server(
            "rules",
            functools.partial(_apply_review, self, review),
            events=None
            if journal is None
            else lambda version: journal.server_events(
                version=version, reason="rules", now=now, review=review
            ),
        )

    def apply_committed(self, update: bytes, version: int, *, user: str | None = None) -> Outcome:
        """An update another instance stored as `version`: durable already, so it is relayed
        to everyone tagged 0 and not committed again; a duplicate changes and relays nothing.
        One this doc cannot apply discards it (it is not the store's any more)."""
        journal = self.journal
        try:
            with self.doc.transaction(origin=ServerOrigin("remote")) as txn:
                self.doc.apply_update(update)
                if journal is not None:
                    journal.count_text(txn)
        except BaseException as error:
            self._changes = None
            if isinstance(error, Exception) or _is_panic(error):
                why = f"a stored update (version {version}) failed to apply: {error!r}"
                return Outcome(verdict=Verdict(discard=why))
            raise
        changes, self._changes = self._changes, None
        if journal is not None:
            journal.discard_text()  # the instance that accepted it journals it
        self.version = max(self.version, version)
        if changes is None:
            return NOTHING
        if self.semantics is not None:
            self.semantics.absorb(changes, received=update, user=user, now=self._clock())
        return Outcome(messages=(Outgoing(EVERYONE, encode_message(Update(changes)), 0, changes),))

    # -- awareness (reveals no content: never gated) ---------------------------------------------

    def apply_awareness(self, sender: Hashable, payload: bytes) -> Applied:
        """Keep what `sender` may change of awareness (its own ids, server/sync/presence.py);
        the shell paces the relay of `entries` (server/sync/pacing.py). Raises a
        ProtocolError for an unreadable update or one beyond the limits."""
        return self.presence.apply(sender, payload)

    def awareness(self, update: bytes, to: Recipients = OTHERS) -> Outgoing:
        """The relay of an awareness update."""
        return Outgoing(to, encode_message(Awareness(update)), None)

    def query_awareness(self) -> Outcome:
        everyone = self.presence.full_update()
        if everyone is None:
            return NOTHING
        return Outcome(messages=(self.awareness(everyone, SENDER),))

    def leave(self, owner: Hashable, client_ids: set[int] | None = None) -> bytes | None:
        """`owner` (a connection, or another instance) left, or its `client_ids` did: the
        awareness update telling the others those ids went, if any."""
        return self.presence.release(owner, client_ids)

    def remote_awareness(self, instance: Hashable, payload: bytes) -> list[AwarenessEntry]:
        """Awareness from another instance's clients: what it may change (its own clients'
        ids) is kept; the shell tells it to everyone here."""
        return self.presence.apply_remote(instance, payload).entries

    def encode_awareness(self, entries: list[AwarenessEntry]) -> Outgoing:
        return self.awareness(encode_awareness_update(entries), EVERYONE)


def _applier(doc: Doc, txn: Transaction) -> Callable[[bytes], None]:
    """`doc.apply_update` inside the open `txn`, without pycrdt's wrapper: per update it
    re-enters the transaction and checks for a model and a read-only transaction (~0.4 us, a
    third of what yrs takes to apply a keystroke); here the room holds a read-write
    transaction and no model. The same call into yrs, through the same transaction (pycrdt is
    pinned: `_doc` and `_txn` are its, as `TextCounter.count` reads lengths through `_txn`)."""
    return functools.partial(doc._doc.apply_update, txn._txn)  # type: ignore[arg-type]


def _state_in(doc: Doc, txn: Transaction) -> bytes:
    """The doc's state vector, read through the open `txn` (pycrdt is pinned: see `_applier`)."""
    return doc._doc.get_state(txn._txn)  # type: ignore[arg-type,no-any-return]


def _is_panic(error: BaseException) -> bool:
    """pyo3 turns a Rust panic inside yrs into `PanicException`, a BaseException that no
    module exports; anything else that is not an Exception (a cancellation) is not ours."""
    return type(error).__name__ == "PanicException"


def _apply_review(core: RoomCore, review: Review, doc: Doc) -> None:
    semantics = core.semantics
    assert semantics is not None
    for key, value in review.values.items():
        semantics.fields[key] = value
    for key, value in review.reasserted.items():
        semantics.fields[key] = value
    for key in review.removals:
        del semantics.fields[key]
    for conflict_id, entry in review.conflicts.items():
        semantics.conflicts[conflict_id] = entry
    for name, positions in review.list_deletions.items():
        semantics.delete_list_positions(name, positions)  # linear (was one `del` each: 16.6 s)
