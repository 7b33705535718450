"""The journal of loaded drafts: events derived from each applied update, bursts closed in time.

Text counts come from the text roots' lengths, read inside the transaction that applied the
update (yrs keeps each root's length), once per update, never from re-encoding documents.
Semantic events come from the rules' `Review`. Both are attached to the update's pending write,
so they are stored in the update's transaction; closed text bursts that belong to no update are
stored by `JournalCloser`, which also records how far each draft's text is journaled (the
watermark), so that `recover_journal` can rebuild, from the update log, bursts that were still
open when the process died.

Loading a draft recovers its journal first, a write; joining must need none (a full disk must
not keep anyone from reading), so a recovery that fails at load is deferred
(`RoomJournal.defer_recovery`): the watermark stored meanwhile stays below what is still to be
journaled, and the closer tries again before it stores the room's own events, or the next load
does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from pycrdt import Doc, Subscription, Text, Transaction, XmlFragment

from crdt.history import rebuild
from crdt.journal import EventType, JournalEvent, TextBursts
from crdt.origins import SERVER_USER, ClientOrigin
from crdt.schema import Kind, Schema
from crdt.semantics import Review
from server import faults, metrics
from server.errors import StoreError
from server.store.api import Store

__all__ = ["JournalCloser", "JournaledRoom", "RoomJournal", "TextCounter", "recover_journal"]

logger = logging.getLogger("draftsync.journal")

_FIELD_UPDATED = EventType.FIELD_UPDATED
_NONE: frozenset[str] = frozenset()


class TextCounter:
    """How much each transaction grew or shrank each text root.

    The room calls `count` inside every transaction that changes its doc, after the change:
    it reads each text root's length there (yrs keeps it: O(1), no walk of the text, and
    pycrdt never builds the transaction's delta). That is 0.1-0.2 us a root, where an
    observer per root cost ~0.9 us an update in the `bench layers` text workload (pycrdt
    wraps each event and calls into Python). Per update, growth counts as inserted and
    shrinkage as deleted: exact for typing and deleting, net for an update that does both
    (a paste over a selection), in UTF-8 bytes, the unit pycrdt measures text in
    (characters for ASCII). Rich text is counted as touched, without counts, by an observer
    that fires only for the transactions that touch it.
    """

    def __init__(self, doc: Doc, schema: Schema, changes: dict[str, int] | None = None) -> None:
        # Length change per text root since the room last took them (rich text: 0, touched).
        # Read and cleared in place once per update: no allocation on the hot path. `changes`:
        # the counts of the counter this one replaces (`RoomJournal.moved_to`).
        self.changes: dict[str, int] = {} if changes is None else changes
        self._roots: list[tuple[str, Any]] = []
        self._lengths: list[int] = []
        for spec in schema.kind_of(Kind.TEXT):
            text = doc.get(spec.name, type=Text)
            self._roots.append((spec.name, text.integrated))
            self._lengths.append(len(text))
        self._subscriptions: list[Subscription] = []
        for spec in schema.kind_of(Kind.RICHTEXT):
            root = doc.get(spec.name, type=XmlFragment).integrated
            self._subscriptions.append(root.observe_deep(self._toucher(spec.name)))

    def count(self, transaction: Transaction) -> None:
        """Add the text changes of `transaction` (still open, its changes made)."""
        txn = transaction._txn
        lengths = self._lengths
        for i, (name, root) in enumerate(self._roots):
            now = root.len(txn)
            if now != lengths[i]:
                self.changes[name] = self.changes.get(name, 0) + now - lengths[i]
                lengths[i] = now

    def discard(self) -> None:
        """Forget the changes counted so far (a transaction journaled otherwise)."""
        self.changes.clear()

    def close(self) -> None:
        for subscription in self._subscriptions:
            subscription.drop()
        self._subscriptions.clear()

    def _toucher(self, name: str) -> Callable[[Any], None]:
        def touch(_events: Any) -> None:
            self.changes.setdefault(name, 0)

        return touch


class RoomJournal:
    def __init__(
        self, draft_id: str, doc: Doc, schema: Schema, *, on_burst_open: Callable[[], None]
    ) -> None:
        self.draft_id = draft_id
        self.bursts = TextBursts(draft_id, on_open=on_burst_open)
        self.schema = schema
        # What a FIELD_UPDATED row calls each field's kind, read once: S5's one row per
        # `fields` write looked it up through the schema's `Field` and `Kind` each time.
        self._kinds = {name: spec.kind.value for name, spec in schema.fields.items()}
        self._text = TextCounter(doc, schema)
        self._text_changes = self._text.changes
        # (watermark, upto): text changes of versions watermark..upto are not journaled yet,
        # the recovery at load could not store them (`defer_recovery`).
        self.unrecovered: tuple[int, int] | None = None
        self.recovering = False  # the closer is storing them
        # Closed bursts' events whose write failed (a full disk), stored with the next ones:
        # the watermark those carry is past them, so dropping them lost them for good.
        self.unstored: list[JournalEvent] = []

    def close(self) -> None:
        self._text.close()

    def forget(self) -> None:
        """Drop every open burst and unstored event, storing nothing: the room failed or
        was discarded, and another room of the draft is loaded. Stored by this one's closer,
        they would be journaled twice: what of them was stored is journaled by that load's
        `recover_journal` (the stored watermark is below it), and a failed room's versions
        that were never stored are resent by its clients and journaled under new versions."""
        self.bursts.close_all()
        self.unstored = []

    def defer_recovery(self, watermark: int, *, upto: int) -> None:
        """The recovery at load failed (a full disk): the text changes of versions
        `watermark`..`upto` (the loaded ones) are still to be journaled."""
        self.unrecovered = (watermark, upto)

    def watermark(self, next_version: int) -> int:
        """Every text change below this version is journaled: below the open bursts, and
        below what a deferred recovery still owes."""
        mark = self.bursts.watermark(next_version)
        return mark if self.unrecovered is None else min(mark, self.unrecovered[0])

    def moved_to(self, doc: Doc) -> None:
        """Count the text of `doc` from now on, a copy of the doc it counted until now
        (crdt/heldback.py): the same lengths, the counts not yet taken kept."""
        self._text.close()
        self._text = TextCounter(doc, self.schema, self._text_changes)

    def count_text(self, transaction: Transaction) -> None:
        """Count the text changes of the doc's open `transaction`: the room calls this in
        each transaction it makes, after its change (see `TextCounter`)."""
        self._text.count(transaction)

    def client_events(
        self,
        version: int,
        origin: ClientOrigin,
        client_id: int | None,
        now: float,
        review: Review | None,
        /,
    ) -> Sequence[JournalEvent]:
        """Events of a client's update: text counts join bursts; semantic changes that stood
        and rejected values are events of this version. Once per update, positional, no
        closure (its cells would be allocated on every call): a keystroke that closes no
        burst returns the shared empty tuple."""
        changes = self._text_changes
        closed = (
            self.bursts.feed(changes, origin.user, origin.session, client_id, version, now)
            if changes
            else ()
        )
        if review is None:
            return closed
        events = self._semantic_events(version, origin, client_id, now, review)
        return [*closed, *events] if closed else events

    def _semantic_events(
        self, version: int, origin: ClientOrigin, client_id: int | None, now: float, review: Review
    ) -> list[JournalEvent]:
        """The review's events, built directly (no closure, no sets when the rules resolved
        nothing): one FIELD_UPDATED per `fields` write is S5's journal row."""
        # Every event of this write shares all but its kind and data (JournalEvent's order).
        shared = (self.draft_id, version, origin.user, origin.session, client_id, now)
        values, removals, deletions = review.values, review.removals, review.list_deletions
        resolved: set[str] | frozenset[str] = (
            set(values) | set(removals) | set(deletions)
            if values or removals or deletions
            else _NONE
        )
        events = [
            JournalEvent(_FIELD_UPDATED, *shared, self._change(name, old, new))
            for name, (old, new) in review.changed.items()
            if name not in resolved
        ]
        for rejection in review.rejected:
            data = {"field": rejection.field, "value": rejection.value, "reason": rejection.reason}
            events.append(JournalEvent(EventType.VALUE_REJECTED, *shared, data))
        return events

    def server_events(
        self, *, version: int, reason: str, now: float, review: Review
    ) -> list[JournalEvent]:
        """Events of the server's own resolution of a client update."""
        self._text.discard()

        def event(kind: EventType, data: dict[str, Any]) -> JournalEvent:
            return JournalEvent(kind, self.draft_id, version, SERVER_USER, reason, None, now, data)

        events: list[JournalEvent] = []
        resolved = set(review.values) | set(review.removals) | set(review.list_deletions)
        for name in sorted(resolved):
            old, new = review.changed.get(name, (None, review.values.get(name)))
            data = {**self._change(name, old, new), "by_rule": True}
            events.append(event(EventType.FIELD_UPDATED, data))
        for conflict_id in review.opened_conflicts:
            entry = review.conflicts[conflict_id]
            data = {
                "conflict_id": conflict_id,
                "field": entry["field"],
                "candidates": entry["candidates"],
            }
            events.append(event(EventType.CONFLICT_OPENED, data))
        return events

    def discard_text(self) -> None:
        """Forget text counts of a change that is journaled otherwise (rules, restore, another
        instance's update)."""
        self._text.discard()

    def take_text(self) -> dict[str, int]:
        """Take the text counts of a client update whose events must wait (its review turn),
        so that changes applied meanwhile, journaled elsewhere, do not mix with them."""
        taken = dict(self._text.changes)
        self._text.discard()
        return taken

    def put_back_text(self, taken: dict[str, int]) -> None:
        self._text.changes.update(taken)

    def _change(self, name: str, old: Any, new: Any) -> dict[str, Any]:
        return {"field": name, "kind": self._kinds.get(name, "value"), "old": old, "new": new}


class JournaledRoom(Protocol):
    """What the closer needs of a room (server/sync/room.py `Room`); named here so that the
    journal does not import the room that imports it."""

    @property
    def draft_id(self) -> str: ...

    @property
    def version(self) -> int: ...

    @property
    def committed_version(self) -> int: ...

    @property
    def journal(self) -> RoomJournal | None: ...


class JournalCloser:
    """Closes text bursts after their pause, for every room that has open ones."""

    def __init__(self, store: Store, *, interval: float = 0.5) -> None:
        self._store = store
        self._interval = interval
        self._rooms: dict[str, JournaledRoom] = {}

    def watch(self, room: JournaledRoom) -> None:
        self._rooms[room.draft_id] = room

    def _unwatch(self, room: JournaledRoom) -> None:
        """Stop watching `room`, not its draft: a room that left (unloaded, discarded) may
        have been replaced by one that watches its own bursts under the same draft id."""
        if self._rooms.get(room.draft_id) is room:
            del self._rooms[room.draft_id]

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            if faults.ARMED:
                faults.trip("journal")
            metrics.JOURNAL_LAG.set(await self._close_idle(time.time()))

    async def _close_idle(self, now: float) -> int:
        """Close the bursts idle at `now`; returns the journal lag (versions). A method of its
        own so that its loop variables go with its frame: left in `run`'s, which lives as long
        as the server, they kept the last room (closed, unloaded) reachable."""
        lag = 0
        for room in list(self._rooms.values()):
            journal = room.journal
            if journal is None or not (journal.bursts or journal.unstored):
                # listed before an await: it may have left and been replaced meanwhile
                self._unwatch(room)
                continue
            events = journal.bursts.close_idle(now)
            if events or (journal.unstored and self._store.writes_refused() is None):
                await self._store_events(room, events)
            lag += room.version + 1 - journal.watermark(room.version + 1)
        return lag

    async def flush(self, room: JournaledRoom) -> None:
        """Close every burst of the room (unload, shutdown)."""
        self._unwatch(room)
        if room.journal is not None:
            await self._store_events(room, room.journal.bursts.close_all())

    async def _store_events(self, room: JournaledRoom, events: list[JournalEvent]) -> None:
        journal = room.journal
        assert journal is not None
        if journal.unrecovered is not None and not journal.recovering:
            await self._recover(room.draft_id, journal)
        # Not past a version still waiting for its commit: if that fails, the next room
        # numbers another change with it, and a recovery would skip that change's text.
        watermark = journal.watermark(room.committed_version + 1)
        # Those that failed before go first, with this watermark: it is past their versions.
        events, journal.unstored = [*journal.unstored, *events], []
        try:
            await self._store.append_events(events, watermark=(room.draft_id, watermark))
        except StoreError as error:
            # Kept for the next write; if the room goes first, the stored watermark is still
            # below them and `recover_journal` rebuilds them from the log at the next load.
            journal.unstored = [*events, *journal.unstored]
            logger.error("journal write failed draft=%s error=%s", room.draft_id, error)

    async def _recover(self, draft_id: str, journal: RoomJournal) -> None:
        """Store what the recovery at load could not; left for the next try if it fails."""
        assert journal.unrecovered is not None
        journal.recovering = True
        try:
            await recover_journal(
                self._store, draft_id, journal.schema, upto=journal.unrecovered[1]
            )
        except StoreError as error:
            logger.warning("journal recovery deferred draft=%s error=%s", draft_id, error)
            return
        finally:
            journal.recovering = False
        journal.unrecovered = None


async def recover_journal(
    store: Store, draft_id: str, schema: Schema, *, upto: int | None = None
) -> int:
    """Journal text changes that were in bursts still open when the process stopped.

    Replays the log from the watermark (to `upto`, default its end) on a doc rebuilt just
    before it, counting text changes per update as the room does, and skips what closed bursts
    already cover. Returns the number of events written; StoreError if they cannot be.
    """
    watermark = await store.journal_watermark(draft_id)
    last = await store.last_version(draft_id) if upto is None else upto
    if watermark > last:
        return 0
    covered: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for user, data in await store.text_events_since(draft_id, watermark):
        span = (int(data["from_version"]), int(data["to_version"]))
        covered.setdefault((user, str(data["field"])), []).append(span)
    state = await store.load(draft_id, at_version=watermark - 1)
    logged = await store.updates_with_origin(draft_id, watermark - 1, last)

    def replay() -> list[JournalEvent]:
        doc = rebuild(state.snapshot, state.tail)
        counter = TextCounter(doc, schema)
        bursts = TextBursts(draft_id)
        events: list[JournalEvent] = []
        for update in logged:
            with doc.transaction() as txn:
                doc.apply_update(update.data)
                counter.count(txn)
            for name in list(counter.changes):
                spans = covered.get((update.user, name), [])
                if any(first <= update.version <= end for first, end in spans):
                    del counter.changes[name]  # a closed burst has it already
            events += bursts.feed(
                counter.changes,
                update.user,
                update.session,
                update.client_id,
                update.version,
                update.created_at,
            )
        counter.close()
        return events + bursts.close_all()

    events = await asyncio.to_thread(replay)
    await store.append_events(events, watermark=(draft_id, last + 1))
    if events:
        logger.info(
            "journal recovered draft=%s events=%d from=%d", draft_id, len(events), watermark
        )
    return len(events)
