"""crdt.held: what a doc holds back for clocks it lacks, counted after the transaction."""

from __future__ import annotations

from pycrdt import Doc, Text

from crdt.held import held_units
from crdt.lib0 import write_var_uint


def deletes_of(client: int, ranges: list[tuple[int, int]]) -> bytes:
    out = bytearray([0, 1])
    write_var_uint(out, client)
    write_var_uint(out, len(ranges))
    for clock, length in ranges:
        write_var_uint(out, clock)
        write_var_uint(out, length)
    return bytes(out)


def typed(client: int, text: str) -> tuple[Doc, bytes]:
    doc: Doc = Doc(client_id=client)
    doc.get("title", type=Text).insert(0, text)
    return doc, doc.get_update()


def applied(doc: Doc, *updates: bytes) -> int:
    with doc.transaction():
        for update in updates:
            doc.apply_update(update)
    return held_units(doc, updates, None)


def test_deletes_of_what_the_doc_has_hold_nothing() -> None:
    _, update = typed(7, "hello")
    doc: Doc = Doc()
    doc.apply_update(update)
    assert applied(doc, deletes_of(7, [(0, 2), (3, 2)])) == 0


def test_deletes_past_a_clients_clock_are_held_each_range_once() -> None:
    _, update = typed(7, "hello")
    doc: Doc = Doc()
    doc.apply_update(update)
    # (4, 1) is within "hello"; (4, 3) reaches past it; 9999's clocks are all unknown
    held = applied(
        doc, deletes_of(7, [(4, 1)]), deletes_of(7, [(4, 3)]), deletes_of(9999, [(0, 1), (5, 5)])
    )
    assert held == 3


def test_a_run_that_brings_its_own_clocks_holds_nothing() -> None:
    _, update = typed(7, "hello")
    doc: Doc = Doc()
    assert applied(doc, update, deletes_of(7, [(0, 5)])) == 0


def test_structs_waiting_for_an_origin_are_held() -> None:
    source, first = typed(7, "a")
    before = source.get_state()
    source.get("title", type=Text).insert(1, "b")
    second = source.get_update(before)  # its origin is in `first`
    doc: Doc = Doc()
    doc.get("title", type=Text)
    assert applied(doc, second) >= len(second) - 2
    assert applied(doc, first) == 0  # the origin came: both integrated


def test_a_keystroke_reported_as_sent_is_free() -> None:
    _, update = typed(7, "a")
    assert held_units(Doc(), [update], update) == 0
