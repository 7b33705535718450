"""Rich text end to end: a schema whose `description` is `richtext`, edited in ProseMirror by
two people at once (typing, bold, a heading, a list, each other's named carets), read back by a
pycrdt client from the server, counted in the words and completion, restored as a forward
change; screenshots at desktop and phone width."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.async_api import Page, expect
from playwright.async_api import TimeoutError as PlaywrightTimeout
from pycrdt import XmlFragment

from crdt.richtext import node_data
from tests.support.pycrdt_client import PycrdtClient
from tests.support.rest import as_user
from tests.support.server_process import ServerProcess
from tests.web.conftest import (
    DESKTOP,
    PHONE,
    WAIT_MS,
    OpenPage,
    artifact,
    editor_url,
    share,
    wait_status,
)

SCHEMA = """
[fields.title]
kind = "text"

[fields.description]
kind = "richtext"

[fields.status]
kind = "value"
type = "string"
rule = "transition"
initial = "CREATING"
transitions = { CREATING = ["DRAFT"], DRAFT = ["IN_REVIEW"], IN_REVIEW = ["DRAFT"] }

[fields.tags]
kind = "list"
type = "string"
"""

EXPECTED = [
    {
        "type": "paragraph",
        "attrs": {},
        "content": [[["Hello ", None], ["world", {"bold": {}}]]],
    },
    {"type": "heading", "attrs": {"level": 2.0}, "content": [[["Plan", None]]]},
    {
        "type": "bulletList",
        "attrs": {},
        "content": [
            {
                "type": "listItem",
                "attrs": {},
                "content": [{"type": "paragraph", "attrs": {}, "content": [[["one", None]]]}],
            },
            {
                "type": "listItem",
                "attrs": {},
                "content": [{"type": "paragraph", "attrs": {}, "content": [[["two", None]]]}],
            },
        ],
    },
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("web-richtext")
    (data / "schema.toml").write_text(SCHEMA)
    process = ServerProcess(data, "--schema", str(data / "schema.toml")).start()
    yield process
    process.stop()


def rich(page: Page):  # type: ignore[no-untyped-def]
    return page.locator("[data-field=description] .ProseMirror")


_SHOWN = """() => { const copy = document.querySelector('[data-field=description] .ProseMirror')
  .cloneNode(true)
copy.querySelectorAll('.rich-caret, .ProseMirror-separator, .ProseMirror-trailingBreak')
  .forEach((w) => w.remove())
copy.querySelectorAll('.rich-selection').forEach((s) => s.replaceWith(...s.childNodes))
copy.normalize()
return copy.innerHTML }"""


async def expect_html(page: Page, html: str) -> None:
    """Wait until the editor shows `html` (the others' carets left out)."""
    try:
        await page.wait_for_function(f"(html) => ({_SHOWN})() === html", arg=html, timeout=WAIT_MS)
    except PlaywrightTimeout:
        raise AssertionError(f"shown {await page.evaluate(_SHOWN)!r}, expected {html!r}") from None


HTML = (
    "<p>Hello <strong>world</strong></p><h2>Plan</h2>"
    "<ul><li><p>one</p></li><li><p>two</p></li></ul>"
)


async def test_two_people_co_edit_rich_text_and_pycrdt_reads_the_same_fragment(
    server: ServerProcess, open_page: OpenPage
) -> None:
    draft = "rich-coedit"
    await share(server, draft, "alice", "bob")
    alice = await open_page(editor_url(server, draft, "alice"))
    bob = await open_page(editor_url(server, draft, "bob"))
    await wait_status(alice, "synced")
    await wait_status(bob, "synced")
    await expect(alice.locator("#field-status option:checked")).to_have_text("Creating")

    # alice types and makes "world" bold with the keyboard
    await rich(alice).click()
    await alice.keyboard.type("Hello world")
    for _ in range(5):
        await alice.keyboard.press("Shift+ArrowLeft")
    await alice.keyboard.press("Control+b")
    await expect_html(bob, "<p>Hello <strong>world</strong></p>")
    await expect(alice.locator("[data-tool=bold]")).to_have_attribute("aria-pressed", "true")

    # bob adds a heading and a list with the toolbar, after alice's paragraph
    await rich(bob).click()
    await bob.keyboard.press("Control+End")
    await bob.keyboard.press("Enter")
    await bob.locator("[data-tool=heading]").click()
    await bob.keyboard.type("Plan")
    await bob.keyboard.press("Enter")
    await bob.locator("[data-tool=bullet-list]").click()
    await bob.keyboard.type("one")
    await bob.keyboard.press("Enter")
    await bob.keyboard.type("two")

    # alice sees bob's caret with his name while he is in the field
    await expect(alice.locator(".rich-caret-name")).to_have_text("bob")
    for page in (alice, bob):
        await expect_html(page, HTML)
        await wait_status(page, "synced")
    await expect(alice.locator("[data-role=progress-text]")).to_contain_text("5 words")

    # a pycrdt client reads the same fragment from the server
    reader = await PycrdtClient(server.ws_url, draft, server.token("alice")).connect()
    try:
        await asyncio.wait_for(reader.synced.wait(), 10)
        fragment = reader.doc.get("description", type=XmlFragment)
        await reader.wait_for(lambda: node_data(fragment) == EXPECTED)
    finally:
        await reader.disconnect()

    # the server counts rich text: 5 words; description filled, status not moved yet
    async with as_user(server, "alice") as api:
        meta = (await api.get(f"/api/drafts/{draft}")).json()["metadata"]
        assert (meta["wordCount"], meta["filledFields"], meta["totalFields"]) == (5, 1, 4)

    for name, viewport in (("desktop", None), ("phone", PHONE)):
        if viewport:
            await alice.set_viewport_size(viewport)
        await alice.screenshot(path=artifact(f"richtext-{name}.png"), full_page=True)
    await bob.screenshot(path=artifact("richtext-bob-desktop.png"), full_page=True)


async def test_restoring_a_version_restores_rich_text_in_the_open_editors(
    server: ServerProcess, open_page: OpenPage
) -> None:
    draft = "rich-restore"
    await share(server, draft, "alice", "bob")
    alice = await open_page(editor_url(server, draft, "alice"))
    await wait_status(alice, "synced")
    await rich(alice).click()
    await alice.keyboard.type("Kept words")
    await wait_status(alice, "synced")
    async with as_user(server, "alice") as api:
        kept: dict[str, Any] = (await api.get(f"/api/drafts/{draft}")).json()
    await alice.keyboard.press("Control+a")
    await alice.keyboard.press("Control+i")
    await alice.keyboard.press("End")
    await alice.keyboard.type(" and more")
    await expect(rich(alice).locator("em")).to_have_text("Kept words and more")
    await wait_status(alice, "synced")
    async with as_user(server, "alice") as api:
        now = (await api.get(f"/api/drafts/{draft}")).json()["version"]
    # the history's preview of a version shows its rich text formatted
    await alice.locator("[data-role=open-history]").click()
    dialog = alice.locator("dialog[data-role=history]")
    await dialog.get_by_label("Version", exact=True).fill(str(now))
    await dialog.get_by_role("button", name="Compare", exact=True).click()
    await dialog.locator(".whole-version summary").click()  # the whole version, formatted
    await expect(alice.locator(".preview .rich-preview em")).to_have_text("Kept words and more")
    await alice.screenshot(path=artifact("richtext-version-preview.png"))
    await alice.locator("dialog[data-role=history] [data-role=close]").click()
    async with as_user(server, "bob") as api:
        preview = (await api.get(f"/api/drafts/{draft}/versions/{kept['version']}")).json()
        assert preview["richtext"]["description"] == [
            {"type": "paragraph", "attrs": {}, "content": [[["Kept words", None]]]}
        ]
        assert preview["state"]["texts"]["description"] == "Kept words"
        answer = await api.post(f"/api/drafts/{draft}/restore", json={"version": kept["version"]})
        assert answer.status_code == 200, answer.text
    await expect_html(alice, "<p>Kept words</p>")
    await wait_status(alice, "synced")


async def test_a_link_made_with_the_toolbar_reaches_the_other_page_and_the_server(
    server: ServerProcess, open_page: OpenPage
) -> None:
    draft = "rich-link"
    await share(server, draft, "alice", "bob")
    alice = await open_page(editor_url(server, draft, "alice"))
    bob = await open_page(editor_url(server, draft, "bob"))
    await wait_status(alice, "synced")
    await wait_status(bob, "synced")
    await rich(alice).click()
    await alice.keyboard.type("Read the docs")
    for _ in range(len("docs")):
        await alice.keyboard.press("Shift+ArrowLeft")
    asked: list[str] = []

    async def answer(dialog) -> None:  # type: ignore[no-untyped-def]
        asked.append(dialog.type)
        await dialog.accept("https://example.org/docs")

    alice.on("dialog", answer)
    await alice.locator("[data-tool=link]").click()
    html = '<p>Read the <a href="https://example.org/docs">docs</a></p>'
    await expect_html(bob, html)
    assert asked == ["prompt"]
    await expect(alice.locator("[data-tool=link]")).to_have_attribute("aria-pressed", "true")
    await wait_status(alice, "synced")

    reader = await PycrdtClient(server.ws_url, draft, server.token("bob")).connect()
    try:
        await asyncio.wait_for(reader.synced.wait(), 10)
        fragment = reader.doc.get("description", type=XmlFragment)
        link = {"link": {"href": "https://example.org/docs", "title": None}}
        wanted = [
            {"type": "paragraph", "attrs": {}, "content": [[["Read the ", None], ["docs", link]]]}
        ]
        await reader.wait_for(lambda: node_data(fragment) == wanted)
    finally:
        await reader.disconnect()
    await bob.screenshot(path=artifact("richtext-link-desktop.png"), full_page=True)


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "390"])
async def test_a_diff_between_two_versions_marks_rich_text_inline(
    server: ServerProcess, open_page: OpenPage, viewport: dict[str, int]
) -> None:
    draft = f"rich-diff-{viewport['width']}"
    alice = await open_page(editor_url(server, draft, "alice"), viewport=viewport)
    await wait_status(alice, "synced")
    await rich(alice).click()
    await alice.keyboard.type("Seeds for the garden")
    await wait_status(alice, "synced")
    async with as_user(server, "alice") as api:
        before = (await api.get(f"/api/drafts/{draft}")).json()["version"]
    for _ in range(len("garden")):
        await alice.keyboard.press("Backspace")
    await alice.keyboard.type("school")
    await alice.keyboard.press("Home")
    await alice.keyboard.type("New ")
    await expect_html(alice, "<p>New Seeds for the school</p>")
    for _ in range(len("Seeds")):  # a formatting-only change: the word made bold
        await alice.keyboard.press("Shift+ArrowRight")
    await alice.keyboard.press("Control+b")
    await expect_html(alice, "<p>New <strong>Seeds</strong> for the school</p>")
    await wait_status(alice, "synced")

    await alice.locator("[data-role=open-history]").click()
    dialog = alice.locator("dialog[data-role=history]")
    await dialog.get_by_label("Version", exact=True).fill(str(before))
    await dialog.get_by_role("button", name="Compare", exact=True).click()
    description = dialog.locator("[data-role=preview] .diff-field[data-field=description]")
    await expect(description.locator("ins")).to_have_text(["New ", "school"])
    await expect(description.locator("del")).to_have_text(["garden"])
    await expect(description).to_contain_text("+10 / \N{MINUS SIGN}6 characters, 5 formatted")
    formatted = description.locator(".diff-formatted")
    await expect(formatted).to_have_text(["Seeds"])
    await expect(formatted).to_have_attribute("title", "made bold")
    await expect(formatted.locator("strong")).to_have_text("Seeds")
    await expect(dialog.locator("[data-role=preview] .hint").first).to_contain_text(
        "Marked: added, removed and formatted"
    )
    await description.scroll_into_view_if_needed()
    await alice.screenshot(path=artifact(f"history-richtext-diff-{viewport['width']}.png"))
    width = await alice.evaluate("document.documentElement.scrollWidth")
    assert width <= viewport["width"], width
