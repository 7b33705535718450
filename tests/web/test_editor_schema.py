"""The form follows the schema the server was started with (`draftsync serve --schema FILE`)."""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import expect
from pycrdt import Doc, Map, XmlElement, XmlFragment, XmlText

from tests.support.pycrdt_client import PycrdtClient
from tests.support.server_process import ServerProcess
from tests.web.conftest import OpenPage, editor_url, wait_status

SCHEMA = """
[fields.headline]
kind = "text"

[fields.body]
kind = "richtext"

[fields.priority]
kind = "value"
type = "string"
rule = "precedence"
precedence = ["low", "normal", "high"]

[fields.public]
kind = "value"
type = "boolean"

[fields.labels]
kind = "list"
type = "string"
rule = "lww"
"""


async def test_a_custom_schema_with_richtext_a_precedence_select_and_a_checkbox(
    tmp_path_factory: pytest.TempPathFactory, open_page: OpenPage
) -> None:
    data = tmp_path_factory.mktemp("web-schema")
    (data / "schema.toml").write_text(SCHEMA)
    server = ServerProcess(data, "--schema", str(data / "schema.toml")).start()
    try:
        page = await open_page(editor_url(server, "custom", "max"))
        await wait_status(page, "synced")
        fields = page.locator("[data-field]")
        await expect(fields).to_have_count(5)
        names = [await f.get_attribute("data-field") for f in await fields.all()]
        assert names == ["headline", "body", "priority", "public", "labels"]
        options = page.locator("#field-priority option:not([value=''])")
        await expect(options).to_have_text(["low", "normal", "high"])
        await expect(page.get_by_label("Public", exact=True)).not_to_be_checked()

        writer = await PycrdtClient(server.ws_url, "custom", server.token("max")).connect()
        try:
            await asyncio.wait_for(writer.synced.wait(), 10)

            def write(doc: Doc) -> None:
                body = doc.get("body", type=XmlFragment)
                body.children.append(XmlElement("paragraph", {}, [XmlText("Rich words")]))
                body.children.append(XmlElement("paragraph", {}, [XmlText("here")]))

            await writer.edit(write)
            await expect(page.locator("[data-field=body] .ProseMirror p")).to_have_text(
                ["Rich words", "here"]
            )
            await expect(page.get_by_label("Body", exact=True)).to_have_attribute(
                "contenteditable", "true"
            )
            await expect(page.locator("[data-role=progress-text]")).to_contain_text("3 words")

            await page.get_by_label("Priority", exact=True).select_option("high")
            await page.get_by_label("Public", exact=True).check()
            await wait_status(page, "synced")
            await writer.wait_for(lambda: writer.fields() == {"priority": "high", "public": True})
            assert isinstance(writer.doc.get("fields", type=Map)["public"], bool)
        finally:
            await writer.disconnect()
    finally:
        server.stop()
