"""Rich-text restore (`crdt.richtext`): a forward edit that keeps what did not change."""

from __future__ import annotations

from pycrdt import Doc, XmlElement, XmlFragment, XmlText

from crdt.restore import restored_update
from crdt.richtext import node_data, restore_fragment
from crdt.schema import parse_schema

SCHEMA = parse_schema({"fields": {"body": {"kind": "richtext"}}})


def build(doc: Doc, blocks: list[tuple[str, dict[str, object], list[tuple[str, object]]]]) -> None:
    """Blocks of (type, attrs, [(text, marks)]) appended to the doc's `body`."""
    body = doc.get("body", type=XmlFragment)
    for kind, attrs, runs in blocks:
        element = body.children.append(XmlElement(kind, attrs))
        text = element.children.append(XmlText())
        for chunk, marks in runs:
            start = len(str(text).encode())
            text.insert(start, chunk)
            if marks:
                text.format(start, start + len(chunk.encode()), marks)


def body_of(doc: Doc) -> object:
    return node_data(doc.get("body", type=XmlFragment))


def test_restore_makes_the_fragment_equal_and_keeps_unchanged_blocks() -> None:
    old = Doc()
    build(
        old,
        [
            ("heading", {"level": 1}, [("Spring fair", None)]),
            ("paragraph", {}, [("We sell ", None), ("plants", {"bold": {}}), (" and tea.", None)]),
            ("paragraph", {}, [("Ünïcode stays", {"italic": {}})]),
        ],
    )
    doc = Doc()
    doc.apply_update(old.get_update())
    body = doc.get("body", type=XmlFragment)
    heading = body.children[0]
    # later edits: the middle paragraph rewritten (bold moved), a block added, a block removed
    with doc.transaction():
        text = body.children[1].children[0]
        text.insert(0, "Now ")
        text.format(4, 10, {"bold": {}})
        body.children.append(XmlElement("paragraph", {}, [XmlText("new block")]))
        del body.children[2]
    assert body_of(doc) != body_of(old)

    update = restored_update(doc.get_update(), old, SCHEMA)
    assert update is not None
    doc.apply_update(update)
    assert body_of(doc) == body_of(old)
    assert body.children[0] is not None and str(body.children[0]) == str(heading)
    # unchanged again: nothing to write
    assert restored_update(doc.get_update(), old, SCHEMA) is None


def test_restore_is_forward_an_offline_edit_merges_into_it() -> None:
    old = Doc()
    build(old, [("paragraph", {}, [("first", None)]), ("paragraph", {}, [("second", None)])])
    server = Doc()
    server.apply_update(old.get_update())
    offline = Doc()
    offline.apply_update(server.get_update())
    with server.transaction():
        server.get("body", type=XmlFragment).children[0].children[0].insert(0, "edited ")
    # an editor offline adds to the second paragraph meanwhile
    offline.get("body", type=XmlFragment).children[1].children[0].insert(6, " offline")

    with server.transaction():
        restore_fragment(server.get("body", type=XmlFragment), old.get("body", type=XmlFragment))
    server.apply_update(offline.get_update())
    offline.apply_update(server.get_update())
    expected = [
        {"type": "paragraph", "attrs": {}, "content": [[["first", None]]]},
        {"type": "paragraph", "attrs": {}, "content": [[["second offline", None]]]},
    ]
    assert body_of(server) == body_of(offline) == expected


def test_restore_to_empty_and_back_from_empty() -> None:
    old = Doc()
    doc = Doc()
    build(doc, [("bulletList", {}, [])])
    doc.get("body", type=XmlFragment)
    update = restored_update(doc.get_update(), old, SCHEMA)
    assert update is not None
    doc.apply_update(update)
    assert body_of(doc) == []
    build(old, [("paragraph", {}, [("back", {"link": {"href": "https://example.org"}})])])
    doc.apply_update(restored_update(doc.get_update(), old, SCHEMA) or b"")
    assert body_of(doc) == body_of(old)
