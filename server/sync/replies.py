"""Sync step 2 replies shared by joiners: one encode per state of the doc, not one per joiner.

After a deploy every client of a draft reconnects at once (a reconnect storm). Clients that
start empty send the same state vector (no entries), clients that were synced and idle send
the same one too, and the doc has not changed in between: encoding the reply afresh for each
of them cost one full `get_update` (15-30 ms and a fresh copy for a 5 MB draft) per joiner.
Here the encoded frame is kept, keyed by the joiner's state vector, and handed to every joiner
that sends the same one while the doc is unchanged; the room drops every entry when its doc
changes (its observer, `Room._capture_changes`), so an entry always holds the doc as it is.

What a reply reveals is unchanged: the room still hands it to its gate tagged with the ticket
the doc is at (server/sync/gate.py), so a reply that holds accepted but uncommitted changes
leaves only once they are committed, cached or not.

The diff for a joiner with a state vector stays on the event loop: pycrdt 0.14 holds the GIL
while it encodes (a thread spinning beside `Doc.get_update` and `pycrdt.get_update` of a 5 MB
doc ran once in 16-39 ms), so a worker thread would stall the loop the same and reorder the
reply behind later relays. Sharing the reply is what saves the work.

Keyed by the joiner's state vector normalized (server/sync/statevector.py): the reply depends
only on its clocks for the doc's clients, capped at the doc's, so a vector naming clients the
doc lacks (a hostile client's fresh bogus vector each frame) is answered from the frame kept
for the empty one instead of a full encode each. The doc's own state vector, decoded for that,
is kept beside its sync step 1 (`doc_state`) and dropped with it.

Bounded: at most `max_entries` state vectors per room (least recently used goes), and a frame
larger than `max_frame_bytes` is not kept.

The room's own sync step 1 (its state vector, sent to every y-websocket joiner) is kept the
same way (`step1`): a connect storm on one draft encoded the same state vector for each of
3,000 joiners, ~7 % of a connect's CPU (`bench relay` N3000, docs/performance-notes.md).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from crdt.protocol import SyncStep1, SyncStep2, encode_message
from crdt.statevector import decode_state

__all__ = ["LARGE_REPLY_BYTES", "SyncReplies"]

# A kept reply at least this large is paced like an encode (server/sync/step2budget.py): it
# costs no encode, but its bytes are copied to the socket (a 5 MB draft's reply, ~1-2 ms of
# kernel time) and a 4-byte SyncStep1 asks for it again. Smaller ones (a near-synced joiner's
# diff) stay free.
LARGE_REPLY_BYTES = 256 * 1024

_Encode = Callable[[bytes], bytes]
"""The doc's update for a state vector (`Doc.get_update`); ValueError if it is undecodable."""


class SyncReplies:
    __slots__ = (
        "_entries",
        "_max_entries",
        "_max_frame_bytes",
        "_state",
        "_step1",
        "encoded",
        "shared",
    )

    def __init__(self, *, max_entries: int = 4, max_frame_bytes: int = 256 * 1024 * 1024) -> None:
        self._entries: OrderedDict[bytes, bytes] = OrderedDict()
        self._max_entries = max_entries
        self._max_frame_bytes = max_frame_bytes
        self.encoded = 0  # replies encoded (for tests and the bench: encodes per joiner)
        self.shared = 0  # replies handed out again
        self._step1: bytes | None = None  # the doc's sync step 1 frame, while it is unchanged
        self._state: dict[int, int] | None = None  # the doc's state vector, decoded, likewise

    def __len__(self) -> int:
        return len(self._entries)

    def kept(self, state_vector: bytes) -> bytes | None:
        """The kept sync step 2 frame for a joiner at `state_vector`, if the doc has not
        changed since it was made; None if there is none (it would take an encode)."""
        entries = self._entries
        frame = entries.get(state_vector)
        if frame is not None:
            entries.move_to_end(state_vector)
            self.shared += 1
        return frame

    def frame(self, state_vector: bytes, encode: _Encode) -> bytes:
        """The sync step 2 frame for a joiner at `state_vector`: the kept one if the doc has
        not changed since it was made, else `encode(state_vector)` framed (and kept)."""
        frame = self.kept(state_vector)
        if frame is not None:
            return frame
        entries = self._entries
        frame = encode_message(SyncStep2(encode(state_vector)))  # ValueError: not kept
        self.encoded += 1
        if len(frame) <= self._max_frame_bytes:
            entries[bytes(state_vector)] = frame
            while len(entries) > self._max_entries:
                entries.popitem(last=False)
        return frame

    def keep(self, state_vector: bytes, update: bytes) -> None:
        """Keep `update`, framed, as the reply for `state_vector`, without encoding it from the
        doc: the caller vouches that it is the doc's update for that state vector. A room
        opened from a snapshot and no tail holds exactly the snapshot, so its bytes answer a
        joiner that starts empty (`RoomRegistry`): after a restart that joiner's reply was a
        full `get_update` of the doc on its critical path (~0.1 ms for 20 KB, `bench relay`
        C1; tens of ms for megabytes)."""
        frame = encode_message(SyncStep2(update))
        if len(frame) <= self._max_frame_bytes:
            entries = self._entries
            entries[bytes(state_vector)] = frame
            while len(entries) > self._max_entries:
                entries.popitem(last=False)

    def step1(self, state: Callable[[], bytes]) -> bytes:
        """The doc's sync step 1 frame: the kept one if the doc has not changed since it was
        made, else `state()` (the doc's state vector) framed, and kept."""
        frame = self._step1
        if frame is None:
            frame = self._step1 = encode_message(SyncStep1(state()))
        return frame

    def doc_state(self, state: Callable[[], bytes]) -> dict[int, int]:
        """The doc's state vector decoded ({client: clock}): the kept one if the doc has not
        changed since, else `state()` decoded, and kept (normalizing joiners' vectors)."""
        decoded = self._state
        if decoded is None:
            decoded = self._state = decode_state(state())
        return decoded

    def clear(self) -> None:
        """The doc changed (or was replaced): no kept reply holds it any more."""
        self._step1 = None
        self._state = None
        if self._entries:
            self._entries.clear()
