"""Semantic fields of one loaded draft: detect concurrent writes, apply the rules, write back.

Cheap on the text path: raw observers on the `fields` map and on each list root only set a
flag (pycrdt calls them for map/list items, never for text); the update is decoded in Python
only when a flag is up (docs/conflict-detection.md measured this at 0.98x of a bare
apply on text traffic). Cheap on the commonest `fields` write too, an editor setting one key
whose value it had seen (`_review_sequential`): the update's one item is read alone
(`read_overwrite`), its key found from its origin; everything else (concurrent writes, several
keys or items, values that are not scalars, anything unreadable) is reviewed in full. A
full review of one write that raced another (one item, one scalar or Deleted, any delete set:
a third of S5's writes) reads it with `read_single_write` rather than `decode_update` (the
client's bytes when it lost with `read_overwrite`: they are an overwrite as sent), indexes it
alone (`FieldIndex.ingest_single`) and an `lww` key's rule answers at once when Yjs's value
stands. The id -> key index is built on the first `fields` write after a load, from the
document minus that write, so cold loads stay as fast as without semantic fields.

The room asks `review()` after applying a client update; the answer (`Review`) says what the
server must write as its own change. `absorb()` indexes the server's own change afterwards, and
changes other instances committed.

With several instances on one draft, a client update is judged against every version stored
before it, which may include writes another instance committed a moment ago: the room then
`set_aside()`s the update's review, absorbs what it lacked, and reviews it after
(server/sync/room.py, "several instances").
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pycrdt import Array, Doc, Map, Subscription, Transaction

from crdt.bare_reads import map_value
from crdt.bulk_array import array_values, delete_positions
from crdt.errors import ListTooLong
from crdt.fields import FieldIndex, MapWrite, check_json_values
from crdt.origins import SERVER_USER, ClientOrigin
from crdt.rules import Decision, decide, duplicate_positions
from crdt.schema import Kind, Rule, Schema
from crdt.updates import (
    NO_VALUE,
    DecodedUpdate,
    decode_update,
    read_overwrite,
    read_single_write,
)

__all__ = ["Rejection", "Review", "SemanticFields"]


@dataclass(frozen=True, slots=True)
class Rejection:
    field: str
    value: Any
    reason: str


@dataclass(slots=True)
class Review:
    """What one client update asks of the server; empty when nothing needs writing."""

    values: dict[str, Any] = field(default_factory=dict)  # keys of `fields` to (re)write
    removals: list[str] = field(default_factory=list)  # keys of `fields` to delete
    conflicts: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> entry
    opened_conflicts: list[str] = field(default_factory=list)  # ids new in `conflicts`
    list_deletions: dict[str, list[int]] = field(default_factory=dict)  # root -> positions
    rejected: list[Rejection] = field(default_factory=list)
    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # key -> (old, new)
    # keys of `fields` the server writes again, unchanged, as its own (`Decision.reassert`)
    reasserted: dict[str, Any] = field(default_factory=dict)

    @property
    def writes_doc(self) -> bool:
        return bool(
            self.values or self.removals or self.conflicts or self.list_deletions or self.reasserted
        )


@dataclass(frozen=True, slots=True)
class _SetAside:
    """What an applied client update touched, while its review waits (several instances)."""

    fields: bool
    lists: frozenset[str]


@dataclass(frozen=True, slots=True)
class _Author:
    user: str | None
    client_id: int | None
    at: float | None  # the time of the write; formatted only if a conflict names it


class SemanticFields:
    """The rules of one draft's semantic fields over its doc. Pure: the time of a change and
    new conflict ids come from the caller (`now` arguments, `new_id`), so tests and the model
    drive it deterministically."""

    def __init__(
        self,
        doc: Doc,
        schema: Schema,
        *,
        new_id: Callable[[], str],
        max_list_elements: int | None = None,
    ) -> None:
        self._schema = schema
        self._value_specs = schema.values  # a property that builds a dict: once, not per write
        self._new_id = new_id
        self._max_list_elements = max_list_elements
        self.fields: Map = doc.get("fields", type=Map)
        self.conflicts: Map = doc.get("conflicts", type=Map)
        self.lists: dict[str, Array] = {
            f.name: doc.get(f.name, type=Array) for f in schema.kind_of(Kind.LIST)
        }
        self._doc = doc
        self._index: FieldIndex | None = None
        self._values: dict[str, Any] = dict(self.fields.to_py() or {})
        self._list_values = {name: self._read_list(name) for name in self.lists}
        self._authors: dict[str, _Author] = {}
        self._fields_touched = False
        self._lists_touched: set[str] = set()
        self._set_aside: _SetAside | None = None
        # Subscriptions must stay referenced, or pycrdt stops calling them.
        self._subscriptions: list[tuple[Any, Subscription]] = [
            (self.fields.integrated, self.fields.integrated.observe(self._on_fields))
        ]
        for name, array in self.lists.items():
            observer = array.integrated
            self._subscriptions.append((observer, observer.observe(self._list_flag(name))))

    def close(self) -> None:
        for _observed, subscription in self._subscriptions:
            subscription.drop()
        self._subscriptions.clear()

    def moved_to(self, doc: Doc) -> SemanticFields:
        """These rules over `doc`, a copy of this one's doc (crdt/heldback.py): what they read
        from the doc is read again, who last wrote each field (which no doc holds) is kept.
        Call it between runs, with no write set aside; close this one after."""
        assert self._set_aside is None, "a write is set aside for review"
        moved = SemanticFields(
            doc, self._schema, new_id=self._new_id, max_list_elements=self._max_list_elements
        )
        moved._authors = self._authors
        return moved

    @property
    def touched(self) -> bool:
        return self._fields_touched or bool(self._lists_touched)

    def review(
        self, changes: bytes, received: bytes, origin: ClientOrigin, *, now: float
    ) -> Review:
        """Judge the `fields`/list writes of an applied client update.

        `changes` is what the doc integrated (pycrdt's report of the transaction); `received`
        is what the client sent, read only for the values of writes that lost Yjs's ordering:
        the server's doc deletes those while integrating them. A `fields` value that is not
        JSON (a shared type...) raises NonJsonValue, a ProtocolError: the update is refused.
        """
        if self._set_aside is not None:
            self._fields_touched = self._set_aside.fields
            self._lists_touched = set(self._set_aside.lists)
            self._set_aside = None
            set_aside = True  # absorbed updates came between: review in full
        else:
            set_aside = False
        review = Review()
        if self._fields_touched:
            self._fields_touched = False
            if set_aside or not self._review_sequential(review, changes, origin, now):
                self._review_fields(review, changes, received, origin, now)
        for name in sorted(self._lists_touched):
            self._review_list(review, name)
        self._lists_touched.clear()
        return review

    def _review_sequential(
        self, review: Review, changes: bytes, origin: ClientOrigin, now: float
    ) -> bool:
        """Review the commonest `fields` write without decoding the update in full; False
        (nothing done) if it is not that write, for `_review_fields` to review.

        That write: `changes` is one item with one scalar value that deletes its origin alone
        (`read_overwrite`: JSON by construction, not Deleted, so the client's bytes hold
        nothing more), the origin is the winner of a key (`FieldIndex.key_of`,
        `ingest_sequential`: a sequential write) and the doc now holds its value there. It is
        judged by the same `_review_key` as a full review, with what a full review finds: the
        same write, the key's value read from the doc. No other item was deleted, so no key
        was removed: the full review's check for removed keys has nothing to find.

        yrs's map event would say which key changed without the index, but reading it
        (`event.keys`) inside a transaction that yrs gave up half-way (a panic) crashes the
        process (tests/fuzz/test_room.py, finding 4)."""
        index = self._index
        if index is None:  # the first write since the load builds the index: in full
            return False
        item = read_overwrite(changes)
        if item is None or item.origin is None:
            return False
        key = index.key_of(item.origin)
        if key is None:
            return False
        current = map_value(self._doc, self.fields, key)  # no pycrdt `Transaction`: ~2 us less
        if not _same_json(item.value, current):
            return False
        write = index.ingest_sequential(key, item)
        if write is None:  # concurrent: its origin is not the key's winner
            return False
        self._review_key(review, key, [write], origin, now, current)
        return True

    def _review_fields(
        self, review: Review, changes: bytes, received: bytes, origin: ClientOrigin, now: float
    ) -> None:
        """The full review of what an update wrote to `fields` (see `review`)."""
        decoded = _decoded(changes)
        values, contents = _sent(received, decoded, changes)
        writes = self._ingest(decoded, values)
        check_json_values(writes, contents)  # before any value is judged or journaled
        by_key: dict[str, list[MapWrite]] = {}
        for write in writes:
            by_key.setdefault(write.key, []).append(write)
        # One transaction for the reads below, made on it directly: `Map.get` and `in`
        # enter pycrdt's transaction context three times per call.
        with self._doc.transaction() as txn:
            read = _Reader(self.fields, txn)
            for key, key_writes in by_key.items():
                self._review_key(review, key, key_writes, origin, now, read.get(key))
            for key in [k for k in self._values if not read.has(k)]:
                review.changed[key] = (self._values.pop(key), None)  # a key delete

    def set_aside(self, changes: bytes) -> None:
        """Hold back the review of the client update just applied (`changes`) until `review`.

        Updates absorbed meanwhile (what other instances stored before it) are indexed first,
        as their versions order them, so the held update is judged against them."""
        self._set_aside = _SetAside(self._fields_touched, frozenset(self._lists_touched))
        if self._fields_touched:
            self._ensure_index(changes)  # from the document without any absorbed update
        self._fields_touched = False
        self._lists_touched.clear()

    def absorb(
        self,
        changes: bytes,
        received: bytes | None = None,
        *,
        user: str | None = None,
        now: float = 0.0,
    ) -> None:
        """Index a change that needs no review: the server's own (its writes are sequential
        by construction) or one another instance reviewed and stored (`received`: its bytes,
        which hold the values of writes this doc integrated as deleted; `user`: its writer,
        named if one of its values becomes a conflict's candidate here)."""
        if self._fields_touched:
            self._fields_touched = False
            decoded = decode_update(changes)
            values = _sent(received, decoded, changes)[0] if received else None
            writes = self._ingest(decoded, values)
            if user is not None:
                for write in writes:
                    self._authors[write.key] = (
                        _Author(None, None, now)
                        if user == SERVER_USER
                        else _Author(user, write.id[0], now)
                    )
            if self._set_aside is None:
                self._values = dict(self.fields.to_py() or {})
            else:
                # The doc also holds the set-aside write: the values it must be judged
                # against are the keys' winners without it, which the index knows.
                index = self._index
                assert index is not None
                for key in {write.key for write in writes}:
                    winner = index.winner(key)
                    value = index.value_of(winner) if winner is not None else NO_VALUE
                    if value is not NO_VALUE:
                        self._values[key] = value
        held = self._set_aside.lists if self._set_aside is not None else frozenset()
        for name in self._lists_touched - held:
            self._list_values[name] = self._read_list(name)
        self._lists_touched.clear()

    def delete_list_positions(self, name: str, positions: list[int]) -> None:
        """Delete what a review found at `positions` of list `name` (inside the server's
        transaction), in time linear in the list (`crdt.bulk_array.delete_positions`): one
        `del` a position walked the list each time (60,000 duplicates froze the loop 16.6 s)."""
        delete_positions(self.lists[name], name, positions)

    def new_conflict_id(self, key: str) -> str:
        return f"{key}-{self._new_id()}"

    def open_conflict_of(self, key: str) -> str | None:
        for conflict_id, entry in (self.conflicts.to_py() or {}).items():
            if isinstance(entry, dict) and entry.get("field") == key:
                return str(conflict_id)
        return None

    # -- internals -------------------------------------------------------------------------

    def _ingest(
        self, changes: DecodedUpdate, values: Mapping[tuple[int, int], Any] | None = None
    ) -> list[MapWrite]:
        index = self._ensure_index(changes)
        if len(changes.items) == 1:
            # One item (a write that raced another, S5): indexed without the general steps.
            writes = index.ingest_single(changes.items[0], values or _NOTHING)
            if writes is not None:
                return writes
        return index.ingest_decoded(changes, values)

    def field_ids(self) -> Container[tuple[int, int]]:
        """The ids of the doc's `fields` items, for the pre-scan to count overwrites
        (crdt/limits.py); builds the index now if `fields` has keys, as the first review
        would. Call it only when no unreviewed update is in the doc."""
        if self._index is None:
            if not self._values:  # the fields as loaded (a Python dict: no call into yrs)
                return frozenset()
            index = FieldIndex()
            index.load(self._doc.get_update())
            self._index = index
        return self._index.ids

    def _ensure_index(self, changes: bytes | DecodedUpdate) -> FieldIndex:
        if self._index is None:
            # First `fields` write since the load: index the document as it was before it,
            # i.e. below the first clock the update brings for each client.
            index = FieldIndex()
            below: dict[int, int] = {}
            if isinstance(changes, bytes):
                changes = decode_update(changes)
            for item in changes.items:
                client, clock = item.id
                below[client] = min(clock, below.get(client, clock))
            index.load(self._doc.get_update(), below=below)
            self._index = index
        return self._index

    def _review_key(
        self,
        review: Review,
        key: str,
        writes: list[MapWrite],
        origin: ClientOrigin,
        now: float,
        current: Any,
    ) -> None:
        """`current`: the key's value in the doc now (NO_VALUE: none)."""
        before = self._values.get(key, NO_VALUE)
        spec = self._value_specs.get(key)
        if spec is None:
            decision = Decision()  # a key outside the schema: plain Yjs last-writer-wins
        else:
            decision = decide(spec, before=before, writes=writes, current=current)
        for write in decision.rejected:
            reason = "wrong type" if spec and not spec.accepts(write.value) else "transition"
            review.rejected.append(Rejection(key, write.value, reason))
        final = current
        if decision.remove:
            review.removals.append(key)
            final = NO_VALUE
        elif decision.value is not NO_VALUE:
            review.values[key] = decision.value
            final = decision.value
        elif decision.reassert:
            review.reasserted[key] = current  # no change to journal: the value stands
        if decision.conflict and spec is not None and spec.rule is Rule.MANUAL:
            self._record_conflict(review, key, decision, before, origin, now)
        if final is not NO_VALUE and not _same_value(final, before):
            review.changed[key] = (None if before is NO_VALUE else before, final)
            accepted_from_client = decision.value is NO_VALUE
            self._authors[key] = (
                _Author(origin.user, writes[-1].id[0], now)
                if accepted_from_client
                else _Author(None, None, now)
            )
        if final is NO_VALUE:
            self._values.pop(key, None)
        else:
            self._values[key] = final

    def _record_conflict(
        self,
        review: Review,
        key: str,
        decision: Decision,
        before: Any,
        origin: ClientOrigin,
        now: float,
    ) -> None:
        at = _iso(now)
        conflict_id = self.open_conflict_of(key)
        entry: dict[str, Any]
        if conflict_id is not None:
            entry = dict(self.conflicts[conflict_id])
            candidates = list(entry.get("candidates", []))
        else:
            conflict_id = self.new_conflict_id(key)
            review.opened_conflicts.append(conflict_id)
            entry = {"field": key, "opened_at": at}
            candidates = []
            if decision.conflict_with_before:
                author = self._authors.get(key, _Author(None, None, None))
                candidates.append(
                    {
                        "value": before,
                        "user": author.user,
                        "client_id": author.client_id,
                        "at": None if author.at is None else _iso(author.at),
                    }
                )
        for write in decision.conflict:
            candidates.append(
                {"value": write.value, "user": origin.user, "client_id": write.id[0], "at": at}
            )
        entry["candidates"] = candidates
        review.conflicts[conflict_id] = entry

    def _review_list(self, review: Review, name: str) -> None:
        spec = self._schema.fields[name]
        limit = self._max_list_elements
        if limit is not None and (length := len(self.lists[name])) > limit:
            # Refused before any per-element work (yrs keeps the length: O(1)).
            raise ListTooLong(f"{name}: {length} elements > {limit} (--max-body-elements), refused")
        values = self._read_list(name)
        bad = {i for i, value in enumerate(values) if not spec.accepts(value)}
        for position in sorted(bad):
            review.rejected.append(Rejection(name, values[position], "wrong type"))
        if spec.rule is Rule.UNION:
            bad.update(duplicate_positions(values))
        if bad:
            review.list_deletions[name] = sorted(bad)
        kept = [value for position, value in enumerate(values) if position not in bad]
        old = self._list_values.get(name, [])
        if kept != old:
            review.changed[name] = (old, kept)
        self._list_values[name] = kept

    def _read_list(self, name: str) -> list[Any]:
        """One pass (`array_values`): pycrdt's `to_py` walks from the start per element, which
        is quadratic on a list of many single-element items (a crafted update)."""
        return array_values(self.lists[name])

    def _on_fields(self, _event: object) -> None:
        # Only a flag: reading the event (`event.keys`) in a transaction yrs gave up half-way
        # crashes the process (see `_review_sequential`).
        self._fields_touched = True

    def _list_flag(self, name: str) -> Any:
        def flag(_event: object) -> None:
            self._lists_touched.add(name)

        return flag


_NOTHING: Mapping[tuple[int, int], Any] = MappingProxyType({})


def _sent(
    update: bytes, integrated: DecodedUpdate, integrated_bytes: bytes
) -> tuple[Mapping[tuple[int, int], Any], Mapping[tuple[int, int], int]]:
    """The values and the content refs of the items a client sent, by item id, where they
    can differ from what the doc integrated (`integrated`, decoded from `integrated_bytes`).

    They can only for an item the doc integrated as Deleted (a write that lost Yjs's
    ordering): every other item carries the same content either way, and the review reads
    the client's bytes for nothing else. So the client's bytes are decoded only when the
    integrated update holds a Deleted item (S5: most writes do not), and not at all when
    they are the integrated bytes themselves."""
    if not any(item.deleted for item in integrated.items):
        return _NOTHING, _NOTHING
    if update == integrated_bytes:
        items = integrated.items
    else:
        # A write that lost a race was sent as an overwrite (its origin is what its writer
        # saw): `read_overwrite` reads it as `decode_update` would, in a quarter of the time.
        item = read_overwrite(update)
        items = [item] if item is not None else _decoded(update).items
    values = {i.id: i.value for i in items if i.value is not NO_VALUE}
    return values, {i.id: i.content for i in items}


def _decoded(update: bytes) -> DecodedUpdate:
    """`decode_update`, by `read_single_write` where that answers (the same answer, ~3 us
    where the full decoder takes ~8-16)."""
    return read_single_write(update) or decode_update(update)


class _Reader:
    """Reads of a `fields` map inside one open transaction, as `Map.get` and `in` answer."""

    __slots__ = ("_fields", "_integrated", "_txn")

    def __init__(self, fields: Map, transaction: Transaction) -> None:
        self._fields = fields
        self._integrated = fields.integrated
        self._txn = transaction._txn

    def has(self, key: str) -> bool:
        return bool(self._integrated.has(self._txn, key))

    def get(self, key: str) -> Any:
        if not self._integrated.has(self._txn, key):
            return NO_VALUE
        # Shared types are wrapped as `Map.__getitem__` wraps them (JSON values come as is).
        return self._fields._maybe_as_type_or_doc(self._integrated.get(self._txn, key))


def _iso(now: float) -> str:
    """A time as conflicts show it (ISO 8601, UTC)."""
    return dt.datetime.fromtimestamp(now, dt.UTC).isoformat()


def _same_json(a: Any, b: Any) -> bool:
    """Equal scalars of one JSON type: 1 and 1.0 are the same number (a number may come as
    int from one reader, float from the other), True and 1 are not."""
    if type(a) is type(b):
        return bool(a == b)
    numbers = (int, float)
    return type(a) in numbers and type(b) in numbers and a == b


def _same_value(a: Any, b: Any) -> bool:
    return a is not NO_VALUE and b is not NO_VALUE and a == b
