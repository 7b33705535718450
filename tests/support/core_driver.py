"""The sync core of one draft (`server.sync.core.RoomCore`), driven in memory by simulated
editors (`SimClient`s, `tests.support.semantic_clients`): no event loop, no store, no socket.

Why the core and not the whole room (issue 20, point 5): the core holds every rule that
decides what an update becomes, and returns what to do as an `Outcome`; the shell
(`server/sync/room.py`) only awaits and routes. This driver is a shell without I/O. It takes
no part in the rules, and does with each `Outcome` what `Room` does, in memory:

- `writes` are taken in order, each with its ticket from the real `server.sync.gate.Gate`
  (`Room._submit`), into `pending` (the commit pipeline). They commit in order into
  `committed` (the store): at once, as the group commit does when idle, or, with `hold=True`,
  only when the test calls `commit` (a slow disk, chosen by the test). A commit tells the gate
  its ticket, and the gate releases what waited for it;
- `messages` go to the editors they are addressed to (`SENDER`, `OTHERS`, `EVERYONE` among the
  editors online now): through the gate if tagged `after`, at once if not (`Room._send`);
- `rules()` is called once the client's writes and messages are taken
  (`Room._carry_out_client`), and its outcome carried out the same way;
- `verdict`: every model scenario is one the core accepts, so anything but `OK` fails.

An editor joins with `reconnect` (the core's sync step 1, the editor's sync step 2 with what
the core lacks, the editor's sync step 1, the core's sync step 2, held until what it holds is
committed) and leaves with `go_offline` (what it has not been sent yet it never gets).

It only watches: `reviews` are what the real `SemanticFields.review` returned (a spy that
calls through); `server_writes` are the map sets of the core's "rules" writes, with the
server's state vector just before each (its causal past), as `SimClient.writes` are for the
editors. And at every delivery it checks the gate's promise: no editor is sent another
client's edit before it is committed (`_check_committed`).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from pycrdt import Array, Doc, Map, get_state

from crdt import history
from crdt.origins import ClientOrigin
from crdt.protocol import SyncStep1, SyncStep2, Update, decode_message
from crdt.schema import DEFAULT_SCHEMA, Schema
from crdt.semantics import Review
from crdt.updates import decode_update
from server.sync.core import OK, OTHERS, SENDER, Outcome, Outgoing, RoomCore
from server.sync.core import Write as CoreWrite
from server.sync.gate import Gate
from server.sync.journal import RoomJournal
from tests.support.semantic_clients import SimClient, Write, decode_state_vector

__all__ = ["DRAFT_ID", "CoreDriver", "EditorLink"]

DRAFT_ID = "model"
START = 1_700_000_000.0  # the core's clock: one second more at each reading


class EditorLink:
    """An editor's connection: what the core sends is decoded and handled as a y-websocket
    client would (updates and sync step 2 applied to its doc). Once closed it gets nothing."""

    def __init__(self, driver: CoreDriver, client: SimClient) -> None:
        self.driver = driver
        self.client = client
        self.origin = ClientOrigin(client.name, f"session-{client.name}")
        self.server_states: deque[bytes] = deque()  # the core's sync step 1, not answered yet
        self.is_open = True

    def send(self, frame: bytes, *, update: bytes | None = None) -> None:
        if not self.is_open:
            return
        message = decode_message(frame)
        if isinstance(message, SyncStep1):
            self.server_states.append(message.state_vector)
        elif isinstance(message, SyncStep2 | Update):
            self.driver.check_committed(self, message.update)
            self.client.doc.apply_update(message.update)


class CoreDriver:
    def __init__(
        self,
        *,
        server_id: int,
        skip_gc: bool = False,
        schema: Schema = DEFAULT_SCHEMA,
        hold: bool = False,
        stored: Sequence[CoreWrite] = (),
    ) -> None:
        """A core opened on the draft `stored` holds (the registry's load: `crdt.history`'s
        `rebuild` of the stored updates, here with the server's client id `server_id`, and
        keeping deleted content when `skip_gc`). `hold`: writes wait for `commit`."""
        self.hold = hold
        clock = itertools.count()
        conflict_ids = itertools.count(1)
        self.core = RoomCore(
            schema,
            clock=lambda: START + next(clock),
            new_id=lambda: f"c{next(conflict_ids)}",
        )
        updates = [write.data for write in stored]
        if skip_gc:
            doc: Doc = Doc(client_id=server_id, skip_gc=True)
            for update in updates:
                doc.apply_update(update)
        else:
            doc = history.rebuild(None, updates, client_id=server_id)
        # The room's journal, as `Room.open` makes it (its bursts are closed by nobody here).
        self.journal = RoomJournal(DRAFT_ID, doc, schema, on_burst_open=lambda: None)
        version = stored[-1].version if stored else 0
        self.core.open(doc, version, semantic_fields=True, journal=self.journal)
        self.gate = Gate()
        self.pending: deque[CoreWrite] = deque()  # taken, not committed yet
        self.committed: list[CoreWrite] = list(stored)  # the store
        self._store: Doc = Doc()  # what the store holds, to check deliveries against
        for update in updates:
            self._store.apply_update(update)
        self.reviews: list[Review] = []
        self.server_writes: list[Write] = []
        self._links: dict[SimClient, EditorLink] = {}
        assert self.core.semantics is not None
        review = self.core.semantics.review

        def spy(*args: Any, **kwargs: Any) -> Review:
            result = review(*args, **kwargs)
            self.reviews.append(result)
            return result

        self.core.semantics.review = spy  # type: ignore[method-assign]

    def restarted(self, *, server_id: int) -> CoreDriver:
        """Another process on the same store: a core loaded from what was committed (what
        was only pending is lost, as after `kill -9`)."""
        return CoreDriver(server_id=server_id, hold=self.hold, stored=self.committed)

    # -- what the core holds --------------------------------------------------------------------

    @property
    def doc(self) -> Doc:
        return self.core.doc

    @property
    def fields(self) -> Map:
        return self.doc.get("fields", type=Map)

    @property
    def conflicts(self) -> Map:
        return self.doc.get("conflicts", type=Map)

    @property
    def tags(self) -> Array:
        return self.doc.get("tags", type=Array)

    def is_online(self, client: SimClient) -> bool:
        return client in self._links

    # -- editors --------------------------------------------------------------------------------

    def reconnect(self, client: SimClient) -> Review | None:
        """The editor comes back: it sends what the core lacks (its answer to the core's sync
        step 1), then gets what it lacks (the core's answer to its sync step 1, released once
        committed). Returns the review of what it sent, if it touched semantic fields."""
        assert client not in self._links, f"{client.name} is online already"
        link = self._links[client] = EditorLink(self, client)
        for message in self.core.join(sync_on_join=True):
            self._send(link, message)
        server_state = link.server_states.popleft()
        reviewed = len(self.reviews)
        self._receive_run(link, [client.doc.get_update(server_state)])
        self._carry_out(link, self.core.sync_step1(client.doc.get_state()))
        return self._review_since(reviewed)

    def send(self, client: SimClient, update: bytes) -> Review | None:
        """An online editor sends `update` (one update frame); returns its review, if any."""
        return self.send_run(client, [update])

    def send_run(self, client: SimClient, updates: Sequence[bytes]) -> Review | None:
        """An online editor's update frames that arrived together: one run."""
        reviewed = len(self.reviews)
        self._receive_run(self._links[client], updates)
        return self._review_since(reviewed)

    def send_changes(self, client: SimClient) -> Review | None:
        """An online editor sends what the core lacks of its doc."""
        return self.send(client, client.doc.get_update(self.doc.get_state()))

    def go_offline(self, client: SimClient) -> None:
        """The editor's connection goes: what is held for it is never sent to it."""
        link = self._links.pop(client, None)
        if link is None:
            return
        link.is_open = False
        gone = self.core.leave(link)
        if gone is not None:
            self._send(link, self.core.awareness(gone))

    # -- the commit ---------------------------------------------------------------------------

    def commit(self, count: int | None = None) -> None:
        """The oldest `count` pending writes (all: None) are committed, in order."""
        for _ in range(len(self.pending) if count is None else min(count, len(self.pending))):
            write = self.pending.popleft()
            self.committed.append(write)
            self._store.apply_update(write.data)
            self.gate.commit(write.ticket)

    def settle(self) -> None:
        """Everything accepted is committed, so everything held is sent."""
        self.commit()
        assert self.gate.pending == 0

    def check_committed(self, link: EditorLink, update: bytes) -> None:
        """The gate's promise: what an editor is sent holds no other client's uncommitted edit
        (its own it holds already)."""
        sent = decode_state_vector(get_state(update))
        stored = decode_state_vector(self._store.get_state())
        ahead = {
            client: clock
            for client, clock in sent.items()
            if client != link.client.client_id and clock > stored.get(client, 0)
        }
        assert not ahead, f"{link.client.name} was sent uncommitted clocks {ahead}"

    # -- carrying out what the core returned ----------------------------------------------------

    def _receive_run(self, link: EditorLink, updates: Sequence[bytes]) -> None:
        """`Room.receive_run` from the core's call on: the run's outcome, then the rules'."""
        reviewed = len(self.reviews)
        outcome = self.core.apply_run(link.origin, updates)
        assert outcome.in_review is None, "one instance: no review turns"
        self._carry_out(link, outcome)
        if outcome.rules is not None:
            # The rules write for this run's review; its causal past is the doc as it is now.
            (review,) = self.reviews[reviewed:]
            past = decode_state_vector(self.doc.get_state())
            rules = outcome.rules()
            self._watch_server_write(review, past, rules)
            self._carry_out(None, rules)

    def _carry_out(self, sender: EditorLink | None, outcome: Outcome) -> None:
        """Take the writes, then send the messages (`Room._submit`); the verdict must be OK."""
        assert outcome.verdict is OK, outcome.verdict
        for write in outcome.writes:
            assert self.gate.accept() == write.ticket, "the core's tickets are the gate's"
            self.pending.append(write)
            if not self.hold:
                self.commit()  # as the group commit does inside `submit` when it is idle
        for message in outcome.messages:
            self._send(sender, message)

    def _send(self, sender: EditorLink | None, message: Outgoing) -> None:
        to, frame, after, update = message
        recipients: Iterable[EditorLink]
        if to is SENDER:
            assert sender is not None
            recipients = (sender,)
        else:
            exclude = sender if to is OTHERS else None
            recipients = [link for link in self._links.values() if link is not exclude]
        if after is None:
            for link in recipients:
                link.send(frame, update=update)
        else:
            self.gate.send(list(recipients), frame, after=after, update=update)

    # -- watching -----------------------------------------------------------------------------

    def _review_since(self, count: int) -> Review | None:
        reviews = self.reviews[count:]
        assert len(reviews) <= 1, reviews
        return reviews[0] if reviews else None

    def _watch_server_write(self, review: Review, past: dict[int, int], rules: Outcome) -> None:
        """The core's "rules" write for `review` (made just after it): `_apply_review` sets
        `review.values` first, then `review.reasserted`, one item (one clock) per key, in
        order."""
        assert review.writes_doc
        written = {item.id for write in rules.writes for item in decode_update(write.data).items}
        server_id = self.doc.client_id
        clock = past.get(server_id, 0)
        for offset, (key, value) in enumerate([*review.values.items(), *review.reasserted.items()]):
            item_id = (server_id, clock + offset)
            assert item_id in written, f"server write {key}={value!r} not at {item_id}"
            self.server_writes.append(Write("server", key, value, item_id, past))
