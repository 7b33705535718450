"""`check_run`: after a transaction, does the doc hold (or wait on) a struct past its client's
next clock, which yrs integrates after a Skip and no update reports (fuzz seed 3)?"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Text, TransactionEvent

from crdt.gaps import RunCheck, _headers_clear, check_run
from crdt.statevector import decode_state
from crdt.updates import decode_update
from tests.support.phantom import PHANTOM

# PHANTOM: the frame of fuzz seed 3 (connection 0, frame 20) that left the room showing an
# "o" no store holds.


class Room:
    """A doc that records what each transaction reports, as the room's observer does."""

    def __init__(self) -> None:
        self.doc: Doc = Doc()
        self.doc.get("title", type=Text)
        self.reported: bytes | None = None
        self.doc.observe(self._capture)

    def _capture(self, event: TransactionEvent) -> None:
        self.reported = event.update

    def apply(self, *updates: bytes) -> bool:
        self.reported = None
        with self.doc.transaction():
            for update in updates:
                self.doc.apply_update(update)
        return check_run(self.doc, updates, self.reported) is RunCheck.GAP

    @property
    def title(self) -> str:
        return str(self.doc.get("title", type=Text))


def writer(client_id: int) -> tuple[Doc, Text]:
    doc: Doc = Doc(client_id=client_id)
    return doc, doc.get("title", type=Text)


def typed(doc: Doc, text: Text, index: int, chars: str) -> bytes:
    before = doc.get_state()
    text.insert(index, chars)
    return doc.get_update(before)


def client_11() -> tuple[bytes, bytes]:
    """Client 11 types "Hel" (clocks 0-2), then "l" (clock 3)."""
    doc, text = writer(11)
    return typed(doc, text, 0, "Hel"), typed(doc, text, 3, "l")


def fold(updates: list[bytes]) -> str:
    doc: Doc = Doc()
    for update in updates:
        doc.apply_update(update)
    return str(doc.get("title", type=Text))


def test_yrs_integrates_a_struct_held_past_its_clients_clock_and_reports_it_nowhere() -> None:
    """The bug this guards against, pinned in yrs itself: if it is fixed (the "o" stays out
    until client 119's clocks 0-3 come), this test says so."""
    room = Room()
    hel, l3 = client_11()
    reports = []
    for update in (hel, PHANTOM, l3):
        room.apply(update)
        if room.reported is not None:
            reports.append(room.reported)
    assert room.title == "Hello"  # the phantom "o", integrated with client 11's clock 3
    assert fold(reports) == "Hell"  # what the store, fed the reported updates, holds


def test_a_keystroke_taken_whole_is_no_gap() -> None:
    room = Room()
    hel, l3 = client_11()
    assert not room.apply(hel)
    assert not room.apply(l3)
    assert room.title == "Hell"


def test_a_run_of_updates_taken_whole_is_no_gap() -> None:
    room = Room()
    assert not room.apply(*client_11())
    assert room.title == "Hell"


def test_a_duplicate_is_no_gap() -> None:
    room = Room()
    hel, l3 = client_11()
    room.apply(hel, l3)
    assert not room.apply(hel)
    assert room.reported is None


def test_a_struct_held_for_a_missing_origin_at_its_clients_clock_is_no_gap() -> None:
    """Client 22 writes after client 11's "Hel", which this doc does not have yet: yrs holds
    it, and integrates and reports it once the origin comes."""
    hel, _ = client_11()
    doc, text = writer(22)
    doc.apply_update(hel)
    after = typed(doc, text, 3, "!")
    room = Room()
    assert not room.apply(after)
    assert room.reported is None and room.title == ""
    assert not room.apply(hel)
    assert room.reported is not None and fold([room.reported]) == "Hel!"


def test_a_struct_past_its_clients_clock_held_for_its_origin_is_a_gap() -> None:
    room = Room()
    hel, _ = client_11()
    room.apply(hel)
    assert room.apply(PHANTOM)  # held by yrs: the room reloads before the origin comes


def test_a_struct_past_its_clients_clock_integrated_at_once_is_a_gap() -> None:
    """Fuzz finding 2: the origins are there, so yrs integrates it after a Skip; the
    transaction reports an empty update."""
    hel, _ = client_11()
    doc, text = writer(33)
    doc.apply_update(hel)
    typed(doc, text, 0, "ab")  # clocks 0-1, never sent
    late = typed(doc, text, 3, "c")  # clock 2, its origin client 33's clock 1: in a gap too
    room = Room()
    room.apply(hel)
    late_with_origin_11 = bytes.fromhex("010121028" + "40b02016300")  # 33:2 after 11:2, "c"
    assert decode_update(late_with_origin_11).starts == [(33, 2)]
    assert room.apply(late_with_origin_11)
    assert room.reported in (None, b"\x00\x00")
    assert room.apply(late)  # its origin (33, 1) is missing: held, a gap all the same


def test_an_update_with_a_skip_inside_a_group_starts_again_after_the_skip() -> None:
    # client 11: "H" at clock 0, a Skip of 2 clocks, then "l" at clock 3 (origin 11:2)
    update = bytes.fromhex("01030b000401057469746c6501480a02840b02016c00")
    assert decode_update(update).starts == [(11, 0), (11, 3)]
    assert Room().apply(update)


def crowded_room(clients: int = 200) -> Room:
    """A room whose state vector is past 1 KiB: a run is merged and diffed once."""
    room = Room()
    for client in range(1, clients + 1):
        doc, text = writer(2_000_000_000 + client)  # 32-bit ids, as Yjs clients draw them
        room.apply(typed(doc, text, 0, "c"))
    assert len(room.doc.get_state()) > 1024
    return room


def test_a_run_taken_whole_in_a_crowded_room_is_no_gap() -> None:
    room = crowded_room()
    doc, text = writer(3_000_000_001)
    run = [typed(doc, text, i, "k") for i in range(20)]
    assert not room.apply(*run)
    assert room.title.count("k") == 20


def test_a_struct_past_its_clients_clock_in_a_run_in_a_crowded_room_is_a_gap() -> None:
    room = crowded_room()
    hel, l3 = client_11()
    assert room.apply(hel, PHANTOM, l3)


# -- runs cleared by their headers (`_headers_clear`) ------------------------------------------
#
# A run of 32 updates or more is first read by its headers: one client's keystrokes (one
# struct each) and deletes (no struct) are cleared if no clock is past the client's next one.
# Every shape of gap must still be caught, by the header check itself or by the full check it
# leaves the run to.

RUN = 40  # past _HEADERS_FROM: the header check is tried first


def var(value: int, size: int = 0) -> bytes:
    """`value` as a varUint of at least `size` bytes (padded with continuation bytes)."""
    out = bytearray()
    while True:
        out.append(value & 0x7F)
        value >>= 7
        if value == 0 and len(out) >= size:
            break
    for at in range(len(out) - 1):
        out[at] |= 0x80
    return bytes(out)


def text(chars: str) -> bytes:
    data = chars.encode()
    return var(len(data)) + data


def item(
    client: int,
    clock: int | bytes,
    chars: str = "x",
    origin: tuple[int, int] | None = None,
) -> bytes:
    """One group of one struct: a string Item of `client` at `clock` (or these clock bytes),
    after `origin`, or at the start of the root text "title"."""
    where = b"\x84" + var(origin[0]) + var(origin[1]) if origin else b"\x04\x01" + text("title")
    written = clock if isinstance(clock, bytes) else var(clock)
    return b"\x01\x01" + var(client) + written + where + text(chars) + b"\x00"


def deleted(client: int, clock: int, length: int = 1) -> bytes:
    """An update with no struct: a delete of `client`'s clocks [clock, clock + length)."""
    return b"\x00\x01" + var(client) + b"\x01" + var(clock) + var(length)


def state_vector(vector: dict[int, int]) -> bytes:
    return var(len(vector)) + b"".join(var(c) + var(k) for c, k in vector.items())


def truly_a_gap(updates: list[bytes], state: bytes) -> bool:
    """What the full check decides, from every run of clocks each update starts."""
    known = decode_state(state)
    return any(
        clock & 0xFFFF_FFFF > known.get(client, 0)
        for update in updates
        for client, clock in decode_update(update).starts
    )


def keystrokes(client_id: int, count: int = RUN) -> tuple[Doc, Text, list[bytes]]:
    """`count` keystrokes and a few deletes of one editor, as its client sends them."""
    doc, title = writer(client_id)
    run = [typed(doc, title, i, "k") for i in range(count)]
    for at in (3, 7):
        before = doc.get_state()
        del title[at]
        run.append(doc.get_update(before))
    return doc, title, run


def test_a_run_of_one_clients_keystrokes_and_deletes_is_cleared_by_its_headers() -> None:
    _, _, run = keystrokes(2_000_000_001)
    room = Room()
    assert not room.apply(*run)
    assert room.title == "k" * (RUN - 2)
    assert _headers_clear(run, room.doc.get_state())
    assert not truly_a_gap(run, room.doc.get_state())


def test_a_run_in_a_crowded_room_is_cleared_by_its_headers() -> None:
    room = crowded_room()
    _, _, run = keystrokes(3_000_000_001)
    assert not room.apply(*run)
    assert _headers_clear(run, room.doc.get_state())


def test_a_struct_held_at_its_clients_next_clock_ends_a_cleared_run() -> None:
    """The last keystroke follows client 11's "Hel", which the room lacks: yrs holds it at its
    client's next clock (no gap), and the headers say so too."""
    doc, title, run = keystrokes(22)
    hel, _ = client_11()
    doc.apply_update(hel)
    run.append(typed(doc, title, len(str(title)), "!"))
    room = Room()
    assert not room.apply(*run)
    assert _headers_clear(run, room.doc.get_state())
    assert not room.apply(hel)
    assert room.title == str(title)  # the "!" came in order, once its origin did


def test_a_struct_past_its_clients_clock_among_its_keystrokes_is_a_gap() -> None:
    """Fuzz finding 2's shape inside a run: clock 25 of a client at 20, its origin present, is
    integrated after a Skip; the header check sees a clock past the client's next one."""
    _, _, run = keystrokes(33)
    late = item(33, RUN + 5, "c", origin=(33, RUN - 1))
    room = Room()
    assert room.apply(*run, late)
    assert not _headers_clear([*run, late], room.doc.get_state())
    assert room.title.endswith("c")  # shown by yrs, reported nowhere


def test_a_struct_past_its_clients_clock_held_for_its_origin_among_keystrokes_is_a_gap() -> None:
    """Room-fuzz seed 3's shape inside a run: the origin (client 11's clock 3) is missing."""
    _, _, run = keystrokes(119)
    phantom = item(119, RUN + 4, "o", origin=(11, 3))
    room = Room()
    assert room.apply(*run, phantom)
    assert not _headers_clear([*run, phantom], room.doc.get_state())


def test_a_gapped_update_in_the_middle_of_honest_ones_is_a_gap() -> None:
    doc, title, run = keystrokes(44)
    late = item(44, RUN + 9, "c", origin=(44, RUN - 1))
    more = [typed(doc, title, 0, "m") for _ in range(5)]
    mixed = [*run[:10], late, *run[10:], *more]
    room = Room()
    assert room.apply(*mixed)
    assert not _headers_clear(mixed, room.doc.get_state())


def test_another_clients_gap_among_keystrokes_is_left_to_the_full_check() -> None:
    hel, _ = client_11()
    _, _, run = keystrokes(55)
    room = Room()
    room.apply(hel)
    assert room.apply(*run, PHANTOM)
    assert not _headers_clear([*run, PHANTOM], room.doc.get_state())


def test_a_skip_inside_a_group_among_keystrokes_is_a_gap() -> None:
    """One group of three structs: "x" at the client's next clock, a Skip of 2, "y" after it.
    Only a group of one struct is read by its header; this one is diffed in yrs."""
    _, _, run = keystrokes(66)
    group = (
        b"\x01\x03"
        + var(66)
        + var(RUN)
        + b"\x84"
        + var(66)
        + var(RUN - 1)
        + text("x")
        + b"\x0a\x02"
        + b"\x84"
        + var(66)
        + var(RUN)
        + text("y")
        + b"\x00"
    )
    assert decode_update(group).starts == [(66, RUN), (66, RUN + 3)]
    room = Room()
    assert room.apply(*run, group)
    assert not _headers_clear([*run, group], room.doc.get_state())


def test_a_clock_past_2_32_among_keystrokes_is_read_as_yrs_reads_it() -> None:
    """yrs keeps a clock's low 32 bits (fuzz finding 6). The header check reads clocks of at
    most 4 bytes (below 2**28, where the two agree) and leaves longer ones to the full check,
    which masks them: 2**32 + the next clock is that clock, 2**32 + 3 past it a gap."""
    doc, title, run = keystrokes(77)
    next_one = typed(doc, title, 0, "n")
    assert next_one.startswith(b"\x01\x01" + var(77) + var(RUN))
    rest = next_one[3 + len(var(RUN)) :]
    for clock, gap in ((2**32 + RUN, False), (2**32 + RUN + 3, True)):
        written = b"\x01\x01" + var(77) + var(clock) + rest
        room = Room()
        assert room.apply(*run, written) is gap
        assert not _headers_clear([*run, written], room.doc.get_state())


@pytest.mark.parametrize("digits", [1, 2, 3, 4])
def test_each_clock_length_is_compared_with_the_next_clock_to_the_unit(digits: int) -> None:
    """Clocks written in `digits` bytes (padded too), against next clocks at, below and past
    the largest of them, and past what that many bytes can hold (up to 2**32 - 1). A clock
    at the next one is not cleared: the state does not cover it (held, or a gap)."""
    top = (1 << 7 * digits) - 1
    clocks = [top - i for i in range(RUN)]
    written = [item(5, var(k, digits)) for k in clocks]
    for next_clock, cleared, gap in (
        (top, False, False),
        (top - 1, False, True),
        (top + 1, True, False),
        (2**28, True, False),
        (2**32 - 1, True, False),
        (0, False, True),
    ):
        state = state_vector({5: next_clock, 6: top + 1})
        assert _headers_clear(written, state) is cleared, next_clock
        assert truly_a_gap(written, state) is gap
    padded = [item(5, var(0, digits)) for _ in range(RUN)]
    assert _headers_clear(padded, state_vector({5: 1})) and not truly_a_gap(padded, b"\x00")
    assert not _headers_clear(padded, state_vector({}))  # clock 0 of a client it lacks


def test_a_run_of_deletes_alone_is_cleared() -> None:
    run = [deleted(9, k) for k in range(RUN)]
    assert _headers_clear(run, state_vector({}))


_NEXT_CLOCKS = st.one_of(
    st.integers(min_value=0, max_value=300),
    st.sampled_from([127, 128, 2**14 - 1, 2**14, 2**21 - 1, 2**21, 2**28 - 1, 2**28, 2**32 - 1]),
    st.integers(min_value=0, max_value=2**32 - 1),
)


@st.composite
def _runs(draw: st.DrawFn) -> tuple[list[bytes], bytes]:
    """A run of mostly one client's updates, its clocks near that client's next clock (so
    that the header check has something to clear), and the state vector after it."""
    main = draw(st.sampled_from([5, 300, 2**31 + 7]))
    next_clock = draw(_NEXT_CLOCKS)
    near = st.integers(min_value=max(0, next_clock - 40), max_value=next_clock + 2)
    far = st.one_of(near, st.integers(min_value=0, max_value=2**35), st.just(2**32 + next_clock))
    clients = st.one_of(st.just(main), st.just(main), st.just(main), st.sampled_from([6, 2**40]))

    @st.composite
    def update(draw: st.DrawFn) -> bytes:
        client = draw(clients)
        clock = draw(st.one_of(near, near, near, far))
        shape = draw(st.sampled_from(["item"] * 6 + ["padded", "deleted", "skip", "groups"]))
        if shape == "item":
            return item(client, clock)
        if shape == "padded":
            return item(client, var(clock, draw(st.integers(min_value=1, max_value=6))))
        if shape == "deleted":
            return deleted(client, clock)
        skip = draw(st.integers(min_value=1, max_value=3))
        if shape == "skip":
            return (
                b"\x01\x03" + var(client) + var(clock) + b"\x04\x01" + text("title") + text("a")
                + b"\x0a" + var(skip) + b"\x84" + var(client) + var(clock) + text("b") + b"\x00"
            )  # fmt: skip
        return b"\x02" + item(client, clock)[1:-1] + item(7, skip)[1:]

    updates = draw(st.lists(update(), min_size=1, max_size=40))
    others = draw(st.dictionaries(st.sampled_from([6, 7, 2**40]), _NEXT_CLOCKS, max_size=2))
    return updates, state_vector({main: next_clock, **others})


@given(run=_runs())
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_header_check_clears_no_run_that_starts_a_clock_past_its_clients(
    run: tuple[list[bytes], bytes],
) -> None:
    """Whatever it is given, the header check clears a run only if the state covers where
    each of its runs of clocks starts: no gap, and nothing held at the next clock."""
    updates, state = run
    if _headers_clear(updates, state):
        known = decode_state(state)
        starts = [start for update in updates for start in decode_update(update).starts]
        assert all(clock & 0xFFFF_FFFF < known.get(client, 0) for client, clock in starts)


# -- the state vector read inside the transaction (server/sync/core.py) -----------------------
#
# The room reads the doc's state vector inside the run's transaction, after the last update,
# and hands it to `check_run` (no transaction of its own). Every verdict must be the one
# `doc.get_state()` after the transaction gives, gap or not, for every kind of run.


class RoomReadingStateInside(Room):
    def apply(self, *updates: bytes) -> bool:
        self.reported = None
        with self.doc.transaction() as txn:
            for update in updates:
                self.doc.apply_update(update)
            state = self.doc._doc.get_state(txn._txn)
        assert state == self.doc.get_state()
        return check_run(self.doc, updates, self.reported, state=state) is RunCheck.GAP


def _runs_with_and_without_gaps() -> list[tuple[str, list[bytes], bool]]:
    hel, l3 = client_11()
    doc, text = writer(44)
    keys = [typed(doc, text, i, "k") for i in range(RUN)]
    return [
        ("honest pair", [hel, l3], False),
        ("phantom in a short run", [hel, PHANTOM, l3], True),
        ("honest run of 40", keys, False),
        ("phantom in a run of 40", [hel, *keys[:20], PHANTOM, *keys[20:]], True),
        # finding 2: 33:2 after 11:2, its origins present, integrated after a Skip at once
        ("skipped clock in a short run", [hel, bytes.fromhex("010121028" + "40b02016300")], True),
    ]


@pytest.mark.parametrize(
    ("run", "gap"),
    [(run, gap) for _, run, gap in _runs_with_and_without_gaps()],
    ids=[name for name, _, _ in _runs_with_and_without_gaps()],
)
def test_the_state_read_inside_the_transaction_gives_the_same_verdict(
    run: list[bytes], gap: bool
) -> None:
    inside, outside = RoomReadingStateInside(), Room()
    assert inside.apply(*run) is gap
    assert outside.apply(*run) is gap
