"""Completion and word count by the schema, rich text included, and restoring rich text.

A value field with an `initial` value counts as filled once moved from it (a new draft's
status CREATING is not a choice yet), or as its `filled` key says; a `richtext` field's words
count and it is filled once it holds a non-blank character. A restore rewrites a rich-text
field as a forward change: an editor that was offline meanwhile merges into it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from pycrdt import Doc, Map, XmlElement, XmlFragment, XmlText

from crdt.richtext import node_data
from tests.support.pycrdt_client import PycrdtClient
from tests.support.rest import as_user, create_draft, new_id
from tests.support.server_process import ServerProcess
from tests.support.waiting import eventually

SCHEMA = """
[fields.title]
kind = "text"

[fields.body]
kind = "richtext"

[fields.status]
kind = "value"
type = "string"
rule = "transition"
initial = "CREATING"
transitions = { CREATING = ["DRAFT"], DRAFT = ["IN_REVIEW"], IN_REVIEW = ["DRAFT"] }

[fields.step]
kind = "value"
type = "integer"
rule = "max"
initial = 1
filled = "set"

[fields.phase]
kind = "value"
type = "string"
filled = ["DONE"]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("completion")
    (data / "schema.toml").write_text(SCHEMA)
    process = ServerProcess(data, "--schema", str(data / "schema.toml")).start()
    yield process
    process.stop()


async def meta_of(server: ServerProcess, draft: str) -> dict[str, Any]:
    async with as_user(server, "alice") as api:
        answer = await api.get(f"/api/drafts/{draft}")
        assert answer.status_code == 200, answer.text
        meta: dict[str, Any] = answer.json()["metadata"]
        return meta


def paragraphs(doc: Doc, *texts: str) -> None:
    body = doc.get("body", type=XmlFragment)
    for text in texts:
        body.children.append(XmlElement("paragraph", {}, [XmlText(text)]))


async def test_status_counts_once_moved_from_its_initial_value_and_rich_text_counts(
    server: ServerProcess,
) -> None:
    async with as_user(server, "alice") as api:
        schema = (await api.get("/api/schema")).json()
        filled = {f["name"]: f["filled"] for f in schema["fields"]}
        assert filled == {
            "title": None,
            "body": None,
            "status": "moved",
            "step": "set",
            "phase": ["DONE"],
        }
        # a new draft: step's initial counts (filled = "set"), status's does not ("moved")
        fresh = (await create_draft(api))["id"]
        # status given as its initial value: still not moved
        at_initial = (await create_draft(api, fields={"status": "CREATING"}))["id"]
    for draft in (fresh, at_initial):
        meta = await meta_of(server, draft)
        assert (meta["filledFields"], meta["totalFields"], meta["completion"]) == (1, 5, 20.0)

    writer = await PycrdtClient(server.ws_url, fresh, server.token("alice")).connect()
    try:
        await asyncio.wait_for(writer.synced.wait(), 10)

        def fill(doc: Doc) -> None:
            paragraphs(doc, "Rich words", "on two lines")
            fields = doc.get("fields", type=Map)
            fields["status"] = "DRAFT"
            fields["phase"] = "STARTED"  # not one of the values that count

        await writer.edit(fill)
        await writer.flush()
        meta = await meta_of(server, fresh)
        assert (meta["wordCount"], meta["filledFields"], meta["completion"]) == (5, 3, 60.0)

        await writer.edit(lambda doc: doc.get("fields", type=Map).update({"phase": "DONE"}))
        await writer.flush()
        meta = await meta_of(server, fresh)
        assert (meta["filledFields"], meta["completion"]) == (4, 80.0)
    finally:
        await writer.disconnect()


async def test_restore_rewrites_rich_text_forward_and_an_offline_edit_merges(
    server: ServerProcess,
) -> None:
    draft = new_id("rich")
    token = server.token("alice")
    online = await PycrdtClient(server.ws_url, draft, token).connect()
    offline = await PycrdtClient(server.ws_url, draft, token).connect()
    try:
        await asyncio.wait_for(online.synced.wait(), 10)
        await online.edit(lambda doc: paragraphs(doc, "First version", "second block"))
        await online.flush()
        await offline.wait_for(lambda: len(offline.doc.get("body", type=XmlFragment).children) == 2)
        async with as_user(server, "alice") as api:
            old = (await api.get(f"/api/drafts/{draft}")).json()["version"]

        def rewrite(doc: Doc) -> None:
            body = doc.get("body", type=XmlFragment)
            text = body.children[0].children[0]
            assert isinstance(text, XmlText)
            text.insert(0, "Rewritten ")
            text.format(0, 9, {"bold": {}})
            body.children.append(XmlElement("heading", {"level": 2}, [XmlText("Added")]))

        await online.edit(rewrite)
        await online.flush()
        await offline.disconnect()

        def add_offline(doc: Doc) -> None:
            text = doc.get("body", type=XmlFragment).children[1].children[0]
            assert isinstance(text, XmlText)
            text.insert(len("second block"), " and an offline note")

        await offline.edit(add_offline)

        async with as_user(server, "alice") as api:
            preview = (await api.get(f"/api/drafts/{draft}/versions/{old}")).json()
            assert preview["state"]["texts"]["body"] == "First version\nsecond block"
            answer = await api.post(f"/api/drafts/{draft}/restore", json={"version": old})
            assert answer.status_code == 200, answer.text

        restored = [
            {"type": "paragraph", "attrs": {}, "content": [[["First version", None]]]},
            {"type": "paragraph", "attrs": {}, "content": [[["second block", None]]]},
        ]
        body = online.doc.get("body", type=XmlFragment)
        await online.wait_for(lambda: node_data(body) == restored)

        await offline.connect()
        await offline.flush()
        merged = [
            restored[0],
            {
                "type": "paragraph",
                "attrs": {},
                "content": [[["second block and an offline note", None]]],
            },
        ]
        await online.wait_for(lambda: node_data(body) == merged)
        offline_body = offline.doc.get("body", type=XmlFragment)
        await offline.wait_for(lambda: node_data(offline_body) == merged)

        async def counted() -> bool:
            return (await meta_of(server, draft))["wordCount"] == 2 + 6

        await eventually(counted)
    finally:
        await asyncio.gather(online.disconnect(), offline.disconnect())
