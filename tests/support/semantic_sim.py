"""In-process simulation of a room's semantic-field pipeline, without network or store.

`SimRoom` does what `server.rooms.Room` does with an update (`_on_update`, `write_as_server`,
`_apply_review`): apply it to the server doc in a transaction whose origin is a `ClientOrigin`,
take the update pycrdt integrated (a doc observer's `TransactionEvent.update`), ask
`SemanticFields.review`, and when the review writes, apply it in a server transaction with the
room's own `_apply_review` and hand the server's change to `SemanticFields.absorb`.

`SimClient` is an editor's pycrdt doc that can go offline, write, and reconnect. Every write
records its item id and the writer's state vector just before it (its causal past), so tests can
tell concurrent writes from sequential ones without asking the code under test.

`IndexedServer` is the lighter harness of the `crdt.fields` tests: a server doc that applies
client updates the way the room does and feeds what pycrdt integrated to a `FieldIndex`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from pycrdt import Array, Doc, Map, Subscription, TransactionEvent

from crdt.fields import FieldIndex, MapWrite
from crdt.lib0 import Reader
from crdt.origins import ClientOrigin, ServerOrigin
from crdt.schema import Schema
from crdt.updates import NO_VALUE, decode_update
from server.rooms import _apply_review
from server.semantics import Review, SemanticFields

__all__ = [
    "IndexedServer",
    "Outcome",
    "SimClient",
    "SimRoom",
    "Write",
    "concurrent",
    "decode_state_vector",
    "happened_before",
    "snapshot",
]

Id = tuple[int, int]


def decode_state_vector(state: bytes) -> dict[int, int]:
    """A Yjs state vector (varUint count, then (client, clock) pairs) as a dict."""
    reader = Reader(state)
    vector = {}
    for _ in range(reader.read_var_uint()):
        client = reader.read_var_uint()
        vector[client] = reader.read_var_uint()
    reader.expect_end()
    return vector


@dataclass(frozen=True)
class Write:
    """One map set as its writer made it: which item, which value, what the writer had seen."""

    writer: str
    key: str
    value: Any
    id: Id
    past: dict[int, int]  # the writer's state vector just before the write


def happened_before(a: Write, b: Write) -> bool:
    """`a` is in `b`'s causal past (`b`'s writer had integrated `a` when writing)."""
    client, clock = a.id
    return b.past.get(client, 0) > clock


def concurrent(a: Write, b: Write) -> bool:
    return a.id != b.id and not happened_before(a, b) and not happened_before(b, a)


class _Capture:
    """The update of the last transaction on a doc, as the room's `_capture_changes` takes it."""

    def __init__(self, doc: Doc) -> None:
        self.changes: bytes | None = None
        self._subscription: Subscription = doc.observe(self._on_transaction)

    def _on_transaction(self, event: TransactionEvent) -> None:
        self.changes = event.update

    def take(self) -> bytes | None:
        changes, self.changes = self.changes, None
        return changes


def sent_values(update: bytes) -> dict[tuple[int, int], Any]:
    """Item id -> value of what a client sent (what `SemanticFields.review` passes on)."""
    return {i.id: i.value for i in decode_update(update).items if i.value is not NO_VALUE}


class IndexedServer:
    """A server doc applying client updates like the room, indexing what pycrdt integrated."""

    def __init__(self, client_id: int = 4_000_000_000, *, skip_gc: bool = False) -> None:
        self.doc: Doc = Doc(client_id=client_id, skip_gc=skip_gc)
        self.index = FieldIndex()
        self.changes: list[bytes] = []  # every integrated update, in order
        self._capture = _Capture(self.doc)

    @property
    def fields(self) -> Map:
        return self.doc.get("fields", type=Map)

    def receive(self, update: bytes) -> list[MapWrite]:
        with self.doc.transaction(origin=ClientOrigin("user", "session")):
            self.doc.apply_update(update)
        changes = self._capture.take()
        if changes is None:
            return []
        self.changes.append(changes)
        # As the room does: values the integrated update lost come from the client's bytes.
        return self.index.ingest(changes, sent_values(update))


class SimClient:
    """An editor's doc. Writes go to `fields` (and `tags`); `writes` records each map set."""

    def __init__(self, name: str, client_id: int) -> None:
        self.name = name
        self.doc: Doc = Doc(client_id=client_id)
        self.client_id = client_id
        self.online = False
        self.writes: list[Write] = []
        self.pushed_tags: list[str] = []

    @property
    def fields(self) -> Map:
        return self.doc.get("fields", type=Map)

    @property
    def tags(self) -> Array:
        return self.doc.get("tags", type=Array)

    def state(self) -> dict[int, int]:
        return decode_state_vector(self.doc.get_state())

    def set(self, key: str, value: Any) -> Write:
        past = self.state()
        self.fields[key] = value
        write = Write(self.name, key, value, (self.client_id, past.get(self.client_id, 0)), past)
        self.writes.append(write)
        return write

    def push_tag(self, tag: str) -> None:
        self.tags.append(tag)
        self.pushed_tags.append(tag)


@dataclass
class Outcome:
    """What one client update did at the server."""

    changes: bytes | None = None
    review: Review | None = None
    server_changes: bytes | None = None
    server_writes: list[Write] = field(default_factory=list)


class SimRoom:
    """The server side of a room: doc, SemanticFields, relay to online clients."""

    def __init__(
        self,
        schema: Schema,
        client_id: int,
        *,
        skip_gc: bool = False,
        state: bytes | None = None,
    ) -> None:
        """`state`: a stored draft to load first, as the registry rebuilds it after a restart
        (`Room.open` makes SemanticFields on the loaded doc)."""
        self.client_id = client_id
        self.doc: Doc = Doc(client_id=client_id, skip_gc=skip_gc)
        if state is not None:
            self.doc.apply_update(state)
        self.semantics = SemanticFields(self.doc, schema)
        self.clients: list[SimClient] = []
        self.server_writes: list[Write] = []
        self.reviews: list[Review] = []
        self._capture = _Capture(self.doc)
        self._clock = itertools.count(1_700_000_000)

    def connect(self, client: SimClient) -> None:
        if client not in self.clients:
            self.clients.append(client)

    def receive(self, sender: SimClient, update: bytes) -> Outcome:
        """`Room._on_update`: apply, review, write as the server, relay (never echo)."""
        origin = ClientOrigin(sender.name, f"session-{sender.name}")
        with self.doc.transaction(origin=origin):
            self.doc.apply_update(update)
        outcome = Outcome(changes=self._capture.take())
        if outcome.changes is None:
            return outcome  # a duplicate: nothing stored, nothing relayed
        self._relay(outcome.changes, sender=sender)
        if self.semantics.touched:
            review = self.semantics.review(outcome.changes, update, origin, now=next(self._clock))
            outcome.review = review
            self.reviews.append(review)
            if review.writes_doc:
                outcome.server_changes, outcome.server_writes = self._write_as_server(review)
        return outcome

    def _write_as_server(self, review: Review) -> tuple[bytes | None, list[Write]]:
        """`Room.write_as_server` with `_apply_review`, recording the server's map sets."""
        past = decode_state_vector(self.doc.get_state())
        with self.doc.transaction(origin=ServerOrigin("rules")):
            _apply_review(SimpleNamespace(semantics=self.semantics), review)  # type: ignore[arg-type]
        changes = self._capture.take()
        if changes is None:
            return None, []
        self.semantics.absorb(changes)
        # `_apply_review` sets review.values first, one item (one clock) per key, in order.
        clock = past.get(self.client_id, 0)
        written = {item.id: item for item in decode_update(changes).items}
        writes = []
        for offset, (key, value) in enumerate(review.values.items()):
            item_id = (self.client_id, clock + offset)
            assert item_id in written, f"server write {key}={value!r} not at {item_id}"
            writes.append(Write("server", key, value, item_id, past))
        self.server_writes.extend(writes)
        self._relay(changes, sender=None)
        return changes, writes

    def _relay(self, update: bytes, *, sender: SimClient | None) -> None:
        for client in self.clients:
            if client.online and client is not sender:
                client.doc.apply_update(update)

    def reconnect(self, client: SimClient) -> Outcome:
        """The client comes back: it sends what the server lacks, then gets what it lacks."""
        self.connect(client)
        client.online = True
        outcome = self.receive(client, client.doc.get_update(self.doc.get_state()))
        client.doc.apply_update(self.doc.get_update(client.doc.get_state()))
        return outcome

    def go_offline(self, client: SimClient) -> None:
        client.online = False

    @property
    def fields(self) -> Map:
        return self.doc.get("fields", type=Map)

    @property
    def conflicts(self) -> Map:
        return self.doc.get("conflicts", type=Map)

    @property
    def tags(self) -> Array:
        return self.doc.get("tags", type=Array)


def snapshot(doc: Doc) -> tuple[dict[str, Any], list[Any], dict[str, Any]]:
    """`fields`, `tags` and `conflicts` of a replica, as plain Python."""
    return (
        dict(doc.get("fields", type=Map).to_py() or {}),
        list(doc.get("tags", type=Array).to_py() or []),
        dict(doc.get("conflicts", type=Map).to_py() or {}),
    )
