"""A client's sync step 1 cannot stall the event loop for everyone.

A reply that is not kept is one `Doc.get_update` on the loop (~22 ms for a 5 MB draft). The
room keys its kept replies by the state vector normalized (server/sync/statevector.py): a
vector naming clients the doc lacks is answered from the frame kept for the empty one; and a
connection may cause only a few encodes, refilled slowly (server/sync/step2budget.py): past
them, its latest vector is answered when a token is back.

The server tests run a real server in this process (tests/support/in_process_server.py) to
read the room's encode counter; the clients are real WebSocket clients on loopback.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Text

from crdt.protocol import SyncStep1, SyncStep2, Update, encode_message
from crdt.schema import DEFAULT_SCHEMA
from crdt.statevector import decode_state
from server.auth import TokenSigner
from server.sync.core import RoomCore
from server.sync.registry import EMPTY_STATE_VECTOR
from server.sync.replies import LARGE_REPLY_BYTES
from server.sync.room import Room
from server.sync.statevector import FREE_ENTRIES, UNKNOWN_CLIENTS_DECODED, normalize
from server.sync.step2budget import BURST, REFILL_SECONDS
from tests.support.in_process_server import (
    InProcessServer,
    serving_in_process,
    synced_client,
    until,
)
from tests.support.raw_client import RawClient
from tests.support.server_process import SECRET

# -- normalizing gives the same reply, byte for byte ------------------------------------------


def _varuint(value: int) -> bytes:
    """A varUint of any size (lib0's writer stops at 2**53 - 1; a hostile client need not)."""
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _encode(entries: list[tuple[int, int]]) -> bytes:
    parts = [_varuint(len(entries))]
    for client, clock in entries:
        parts += [_varuint(client), _varuint(clock)]
    return b"".join(parts)


_edits = st.lists(
    st.tuples(
        st.integers(0, 3),  # which client edits
        st.booleans(),  # insert (or delete)
        st.integers(0, 1000),  # where (modulo the length)
        st.text(alphabet="abcd", min_size=1, max_size=8),
    ),
    min_size=0,
    max_size=25,
)


def _random_doc(edits: list[tuple[int, bool, int, str]]) -> Doc:
    """Up to four clients editing one text, each edit synced to all (deletes make a delete set)."""
    docs = [Doc(client_id=100 + n) for n in range(4)]
    for who, insert, where, text in edits:
        doc = docs[who]
        before = doc.get_state()
        field = doc.get("title", type=Text)
        if insert or len(field) == 0:
            field.insert(where % (len(field) + 1), text)
        else:
            start = where % len(field)
            del field[start : min(len(field), start + len(text))]
        update = doc.get_update(before)
        for other in docs:
            if other is not doc:
                other.apply_update(update)
    return docs[0]


_clients = st.one_of(
    st.sampled_from([100, 101, 102, 103]),  # known (if they edited)
    st.integers(0, 2**64 - 1),  # unknown, bogus (yrs reads a u64)
    st.integers(2**64, 2**69),  # past a u64: left to yrs
)
_clocks = st.one_of(st.integers(0, 300), st.integers(0, 2**33))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_edits, st.lists(st.tuples(_clients, _clocks), max_size=12), st.binary(max_size=4))
def test_the_reply_to_a_normalized_state_vector_is_the_reply_to_the_raw_one(
    edits: list[tuple[int, bool, int, str]], entries: list[tuple[int, int]], tail: bytes
) -> None:
    doc = _random_doc(edits)
    raw = _encode(entries) + tail  # yrs ignores bytes after the last entry
    normalized = normalize(raw, decode_state(doc.get_state()))
    if normalized is None:  # not decoded here: the raw bytes are the key, yrs decodes them
        assert any(c >= 2**64 or k >= 2**32 for c, k in entries)
        return
    assert doc.get_update(normalized) == doc.get_update(raw)


def test_a_bogus_state_vector_normalizes_to_the_empty_one() -> None:
    doc = _random_doc([(0, True, 0, "hello")])
    state = decode_state(doc.get_state())
    assert normalize(_encode([(999_999, 5)]), state) == EMPTY_STATE_VECTOR
    assert normalize(_encode([(100, 0), (5, 7)]), state) == EMPTY_STATE_VECTOR
    # past the doc's clock: the doc's own (nothing to send either way)
    assert normalize(_encode([(100, 99)]), state) == _encode([(100, 5)])


def test_a_state_vector_past_the_bound_is_left_to_yrs_and_a_truncated_one_is_refused() -> None:
    doc = _random_doc([(0, True, 0, "hello")])
    state = decode_state(doc.get_state())
    many = _encode([(n, 1) for n in range(len(state) + UNKNOWN_CLIENTS_DECODED + 1)])
    assert normalize(many, state) is None
    core = RoomCore(DEFAULT_SCHEMA)
    core.open(doc, 0, semantic_fields=False, journal=None)
    for truncated in (b"", b"\x01\x05", b"\x02\x05\x01\x07"):
        outcome = core.sync_step1(truncated)
        assert outcome.verdict.refused is not None, truncated
    assert len(core.replies) == 0


def test_a_bogus_state_vector_is_answered_from_the_frame_kept_for_an_empty_joiner() -> None:
    doc = _random_doc([(0, True, 0, "hello")])
    core = RoomCore(DEFAULT_SCHEMA)
    core.open(doc, 0, semantic_fields=False, journal=None)
    (empty,) = core.sync_step1(EMPTY_STATE_VECTOR).messages
    for client in range(1000, 1010):
        (bogus,) = core.sync_step1(_encode([(client, 5)])).messages
        assert bogus.frame is empty.frame
    assert core.replies.encoded == 1


def test_a_connection_over_its_budget_is_answered_later() -> None:
    """The core asks before each encode, and only then: a kept reply costs nothing."""
    doc = _random_doc([(0, True, 0, "hello world")])
    core = RoomCore(DEFAULT_SCHEMA)
    core.open(doc, 0, semantic_fields=False, journal=None)
    asked = []

    def no() -> bool:
        asked.append(1)
        return False

    assert core.sync_step1(_encode([(100, 3)]), may_encode=no) is None
    assert (core.replies.encoded, len(asked)) == (0, 1)
    core.sync_step1(EMPTY_STATE_VECTOR)
    assert core.sync_step1(_encode([(7, 3)]), may_encode=no) is not None  # kept: not asked
    assert len(asked) == 1


def test_a_long_state_vector_costs_a_token_before_it_is_decoded() -> None:
    doc = _random_doc([(0, True, 0, "hello world")])
    core = RoomCore(DEFAULT_SCHEMA)
    core.open(doc, 0, semantic_fields=False, journal=None)
    core.sync_step1(EMPTY_STATE_VECTOR)
    long = _encode([(5000 + n, 1) for n in range(FREE_ENTRIES + 1)])  # all bogus: kept reply
    asked: list[bool] = []

    def answer(yes: bool) -> Callable[[], bool]:
        def may_encode() -> bool:
            asked.append(yes)
            return yes

        return may_encode

    assert core.sync_step1(long, may_encode=answer(False)) is None
    assert core.replies.shared == 0  # not even looked up
    outcome = core.sync_step1(
        _encode([(100, 3), *[(5000 + n, 1) for n in range(70)]]), may_encode=answer(True)
    )
    assert outcome is not None and outcome.messages  # a miss: encoded on the same token
    assert asked == [False, True] and core.replies.encoded == 2


# -- on a real server ------------------------------------------------------------------------

CHUNK = 256 * 1024  # characters an update of the writer inserts
CHUNKS = 10  # a ~2.5 MB draft
WRITER = 4242
AT_ONCE = 4  # bogus vectors the hostile client sends together


def _draft_updates() -> tuple[Doc, list[bytes]]:
    doc: Doc = Doc(client_id=WRITER)
    field = doc.get("title", type=Text)
    updates = []
    for n in range(CHUNKS):
        before = doc.get_state()
        field.insert(len(field), chr(ord("a") + n) * CHUNK)
        updates.append(doc.get_update(before))
    return doc, updates


async def _big_draft(served: InProcessServer, draft: str, token: str) -> Room:
    """A draft of a few megabytes, written in a few large updates, all applied and committed:
    its room, whose doc then stays as it is."""
    doc, updates = _draft_updates()
    writer = await synced_client(served.ws_url, draft, token)
    for update in updates:
        await writer.send(encode_message(Update(update)))
    state = doc.get_state()

    def written() -> bool:
        room = served.service.rooms.get(draft)
        return room is not None and room.doc.get_state() == state and room.is_drained

    await until(written, "the draft is written and committed")
    await writer.close()
    room = served.service.rooms.get(draft)
    assert room is not None
    return room


def _step2s(client: RawClient) -> list[SyncStep2]:
    return [m for m in client.messages if isinstance(m, SyncStep2)]


async def test_bogus_state_vectors_cost_one_encode_and_another_draft_keeps_relaying(
    tmp_path: Path,
) -> None:
    """Bogus vectors are answered from the frame kept for the empty joiner (no encode); that
    frame is megabytes, so its sends are paced too: a burst, then the latest one once a token
    is back, while another draft's clients go on as ever."""
    token = TokenSigner(SECRET).issue("alice", ttl_seconds=3600, now=time.time())
    victim, other = f"big-{uuid.uuid4().hex[:8]}", f"calm-{uuid.uuid4().hex[:8]}"
    frames = 40
    async with serving_in_process(tmp_path) as served:
        room = await _big_draft(served, victim, token)
        encoded = room.replies.encoded
        started = time.monotonic()
        hostile = await synced_client(served.ws_url, victim, token)  # the empty joiner's reply
        writer = await synced_client(served.ws_url, other, token)
        reader = await synced_client(served.ws_url, other, token)
        assert len(_step2s(hostile)) == 1
        # A new bogus vector each frame (clients the doc lacks), a few at a time.
        for batch in range(frames // AT_ONCE):
            vectors = [_encode([(10_000 + batch * AT_ONCE + n, 5)]) for n in range(AT_ONCE)]
            hostile.send_together([encode_message(SyncStep1(v)) for v in vectors])
        typed: Doc = Doc()
        before = typed.get_state()
        typed.get("title", type=Text).insert(0, "still here")
        await writer.send(encode_message(Update(typed.get_update(before))))
        await reader.next_message(Update, timeout=20)
        # the rest of the burst at once, then the latest vector once a token is back
        await hostile.wait_for(
            lambda: hostile.closed.is_set() or len(_step2s(hostile)) == BURST + 1,
            timeout=REFILL_SECONDS + 20,
        )
        elapsed = time.monotonic() - started
        assert hostile.close_code is None
        assert len(_step2s(hostile)) <= BURST + 1 + elapsed / REFILL_SECONDS
        # the empty joiner's reply was kept (or encoded once, if the doc had changed since)
        assert room.replies.encoded - encoded <= 1
        replies = {m.update for m in _step2s(hostile)}
        assert len(replies) == 1  # every bogus vector got the empty joiner's reply
        for client in (hostile, writer, reader):
            await client.close()


def test_a_large_kept_reply_is_paced_a_small_one_is_not() -> None:
    """A kept reply costs no encode, but one of LARGE_REPLY_BYTES or more is megabytes on the
    socket for four bytes asked: it takes a token; a small kept one does not ask."""
    asked: list[int] = []

    def no() -> bool:
        asked.append(1)
        return False

    small = RoomCore(DEFAULT_SCHEMA)
    small.open(_random_doc([(0, True, 0, "hello")]), 0, semantic_fields=False, journal=None)
    small.sync_step1(EMPTY_STATE_VECTOR)
    assert small.sync_step1(EMPTY_STATE_VECTOR, may_encode=no) is not None and not asked
    doc, _ = _draft_updates()
    large = RoomCore(DEFAULT_SCHEMA)
    large.open(doc, 0, semantic_fields=False, journal=None)
    (kept,) = large.sync_step1(EMPTY_STATE_VECTOR).messages
    assert len(kept.frame) >= LARGE_REPLY_BYTES
    assert large.sync_step1(EMPTY_STATE_VECTOR, may_encode=no) is None and len(asked) == 1
    assert large.sync_step1(EMPTY_STATE_VECTOR, may_encode=lambda: True) is not None
    assert large.replies.encoded == 1


async def test_distinct_state_vectors_in_range_are_paced_and_the_last_is_answered(
    tmp_path: Path,
) -> None:
    token = TokenSigner(SECRET).issue("alice", ttl_seconds=3600, now=time.time())
    draft = f"big-{uuid.uuid4().hex[:8]}"
    frames = 30
    async with serving_in_process(tmp_path) as served:
        room = await _big_draft(served, draft, token)
        encoded = room.replies.encoded
        started = time.monotonic()
        # Its empty vector's reply is not kept (the doc changed since the writer joined): an
        # encode, one token of its burst.
        hostile = await synced_client(served.ws_url, draft, token)
        base = len(_step2s(hostile))
        vectors = [_encode([(WRITER, 1 + 1000 * n)]) for n in range(frames)]  # each a real diff
        last = room.doc.get_update(vectors[-1])
        for vector in vectors:
            await hostile.send(encode_message(SyncStep1(vector)))
        # the rest of the burst at once, then the latest vector once a token is back
        await hostile.wait_for(  # (or its queue overflowed: closed, 4408)
            lambda: hostile.closed.is_set() or _step2s(hostile)[-1].update == last,
            timeout=REFILL_SECONDS + 20,
        )
        elapsed = time.monotonic() - started
        assert room.replies.encoded - encoded <= BURST + 1 + elapsed / REFILL_SECONDS
        assert len(_step2s(hostile)) == BURST + 1  # the others waited and were coalesced
        assert base == 1 and hostile.close_code is None
        await hostile.close()
