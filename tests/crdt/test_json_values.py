"""Issue 21, finding 1 (its JSON part): a `fields` value must be JSON. A shared type (or binary,
or a subdocument) written under a key is refused by `check_json_values` with a ProtocolError
naming the key; JSON values pass."""

from __future__ import annotations

from typing import Any

import pytest
from pycrdt import Array, Doc, Map, Text

from crdt.errors import NonJsonValue, ProtocolError
from crdt.fields import FieldIndex, check_json_values
from crdt.updates import decode_update


def _writes(update: bytes) -> list[Any]:
    return FieldIndex().ingest(update)


@pytest.mark.parametrize(
    ("make", "name"),
    [(Map, "a shared type"), (Array, "a shared type"), (Text, "a shared type")],
    ids=["Map", "Array", "Text"],
)
def test_a_shared_type_under_fields_is_refused(make: Any, name: str) -> None:
    doc: Doc = Doc(client_id=7)
    fields = doc.get("fields", type=Map)
    fields["k"] = make()
    writes = _writes(doc.get_update())
    with pytest.raises(NonJsonValue, match=rf'fields\["k"\]: values must be JSON, not {name}'):
        check_json_values(writes)
    assert issubclass(NonJsonValue, ProtocolError)  # the room answers it with 4400


def test_binary_under_fields_is_refused() -> None:
    doc: Doc = Doc(client_id=7)
    doc.get("fields", type=Map)["k"] = b"\x00\x01"
    with pytest.raises(NonJsonValue, match="not binary"):
        check_json_values(_writes(doc.get_update()))


def test_an_overwrite_with_a_shared_type_is_refused_too() -> None:
    """A later write of a key carries only its origin, not the key: the index resolves it."""
    doc: Doc = Doc(client_id=7)
    fields = doc.get("fields", type=Map)
    fields["k"] = "plain"
    index = FieldIndex()
    check_json_values(index.ingest(doc.get_update()))
    state = doc.get_state()
    fields["k"] = Map()
    with pytest.raises(NonJsonValue, match=r'fields\["k"\]'):
        check_json_values(index.ingest(doc.get_update(state)))


@pytest.mark.parametrize("value", ["text", 3, 2.5, True, None, {"a": [1, "b"]}, [1, 2]], ids=repr)
def test_json_values_pass(value: Any) -> None:
    doc: Doc = Doc(client_id=7)
    doc.get("fields", type=Map)["k"] = value
    check_json_values(_writes(doc.get_update()))


def test_the_sent_content_counts_for_a_write_the_doc_reports_deleted() -> None:
    """A write that lost Yjs's ordering comes Deleted in the doc's report: the client's bytes
    (content refs by id) still say it was a shared type."""
    doc: Doc = Doc(client_id=7)
    doc.get("fields", type=Map)["k"] = Map()
    sent = {item.id: item.content for item in decode_update(doc.get_update()).items}
    deleted = [w for w in _writes(doc.get_update())]
    as_deleted = [type(w)(**{**_fields_of(w), "content": 1}) for w in deleted]
    check_json_values(as_deleted)  # alone it looks harmless
    with pytest.raises(NonJsonValue):
        check_json_values(as_deleted, sent)


def _fields_of(write: Any) -> dict[str, Any]:
    return {name: getattr(write, name) for name in write.__slots__}
