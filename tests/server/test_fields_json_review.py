"""Issue 21, finding 1 (its JSON part): `SemanticFields.review` refuses a `fields` value that
is not JSON with a ProtocolError (the room turns it into a 4400 refusal); JSON passes."""

from __future__ import annotations

from typing import Any

import pytest
from pycrdt import Array, Doc, Map, Text, TransactionEvent

from crdt.errors import NonJsonValue, ProtocolError
from crdt.origins import ClientOrigin
from crdt.schema import DEFAULT_SCHEMA
from crdt.semantics import Review, SemanticFields

ORIGIN = ClientOrigin("mallory", "s1")


def _review(change: Any) -> Review:
    """Apply an editor's change to a server doc as the room does, and review it."""
    server: Doc = Doc(client_id=4_000_000_000)
    semantics = SemanticFields(server, DEFAULT_SCHEMA, new_id=lambda: "c1")
    captured: list[bytes] = []

    def capture(event: TransactionEvent) -> None:
        captured.append(event.update)

    subscription = server.observe(capture)
    editor: Doc = Doc(client_id=5)
    editor["fields"] = fields = Map()
    change(fields)
    sent = editor.get_update()
    with server.transaction(origin=ORIGIN):
        server.apply_update(sent)
    server.unobserve(subscription)
    assert semantics.touched
    return semantics.review(captured[-1], sent, ORIGIN, now=0.0)


@pytest.mark.parametrize("shared", [Map, Array, Text], ids=["Map", "Array", "Text"])
def test_a_shared_type_value_of_a_key_outside_the_schema_is_refused(shared: Any) -> None:
    def put(fields: Map) -> None:
        fields["k"] = shared()

    with pytest.raises(ProtocolError, match=r'fields\["k"\]: values must be JSON, not a shared'):
        _review(put)


def test_a_shared_type_value_of_a_schema_key_is_refused() -> None:
    def put(fields: Map) -> None:
        fields["category"] = Map({"nested": 1})

    with pytest.raises(NonJsonValue, match=r'fields\["category"\]'):
        _review(put)


def test_json_values_still_pass() -> None:
    def put(fields: Map) -> None:
        fields["k"] = {"a": [1, "two"], "b": None}
        fields["category"] = "news"

    review = _review(put)
    assert review.changed["k"] == (None, {"a": [1, "two"], "b": None})
    assert not review.rejected
