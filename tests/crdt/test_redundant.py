"""`is_redundant`: an update that changes nothing is told apart from one that would, without
applying it (what a reader sends on joining passes while the server refuses writes)."""

from __future__ import annotations

from pycrdt import Array, Doc, Map, Text

from crdt.redundant import is_redundant


def server_doc() -> Doc:
    doc = Doc()
    doc.get("title", type=Text).insert(0, "hello world")
    doc.get("fields", type=Map)["status"] = "draft"
    del doc.get("title", type=Text)[5:11]  # a delete set, sent along with every diff
    return doc


def replica_of(doc: Doc) -> Doc:
    replica = Doc()
    replica.apply_update(doc.get_update())
    return replica


def changes(update: bytes, doc: Doc) -> bool:
    """The truth: apply to a copy and compare what it holds."""
    copy = replica_of(doc)
    before = copy.get_update()
    copy.apply_update(update)
    return copy.get_update() != before


def test_a_joiners_sync_step_2_is_redundant() -> None:
    server = server_doc()
    fresh = Doc()
    assert is_redundant(fresh.get_update(server.get_state()), server)
    synced = replica_of(server)  # a reconnecting reader: its diff holds the whole delete set
    diff = synced.get_update(server.get_state())
    assert not changes(diff, server)
    assert is_redundant(diff, server)
    assert is_redundant(b"\x00\x00", server)


def test_new_content_or_a_new_deletion_is_not() -> None:
    server = server_doc()
    writer = replica_of(server)
    writer.get("title", type=Text).insert(0, "Oh, ")
    typed = writer.get_update(server.get_state())
    assert changes(typed, server) and not is_redundant(typed, server)

    deleter = replica_of(server)
    before = deleter.get_state()
    del deleter.get("title", type=Text)[0:2]
    deletion = deleter.get_update(before)
    assert changes(deletion, server) and not is_redundant(deletion, server)

    lister = replica_of(server)
    lister.get("tags", type=Array).append("x")
    assert not is_redundant(lister.get_update(server.get_state()), server)


def test_an_unreadable_update_is_not_redundant() -> None:
    server = server_doc()
    assert not is_redundant(b"\xff\xff\x01", server)
    assert not is_redundant(b"", server)


def test_a_clients_next_keystroke_is_not() -> None:
    # Its structs start past clock 0: judged by the doc's state vector, not from clock 0.
    writer = Doc(client_id=7)
    writer.get("title", type=Text).insert(0, "abc")
    server = replica_of(writer)
    before = writer.get_state()
    writer.get("title", type=Text).insert(3, "d")
    keystroke = writer.get_update(before)
    assert changes(keystroke, server) and not is_redundant(keystroke, server)
    assert is_redundant(keystroke, replica_of(writer))  # once the doc has it, it is
