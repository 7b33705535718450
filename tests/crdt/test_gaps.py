"""`holds_a_gap`: after a transaction, does the doc hold (or wait on) a struct past its client's
next clock, which yrs integrates after a Skip and no update reports (fuzz seed 3)?"""

from __future__ import annotations

from pycrdt import Doc, Text, TransactionEvent

from crdt.gaps import holds_a_gap
from crdt.updates import decode_update

# Client 119's clock 4 (clocks 0-3 never sent), an "o" whose origin is client 11's clock 3:
# the frame of fuzz seed 3 (connection 0, frame 20) that left the room showing an "o" no
# store holds.
PHANTOM = bytes.fromhex("01017704840b03016f00")


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
        return holds_a_gap(self.doc, updates, self.reported)

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
