"""How the editor looks and works by keyboard: screenshots at desktop and phone width, touch
targets of at least 44 px, labels, focus order, and the drafts page."""

from __future__ import annotations

import uuid

import httpx
from playwright.async_api import Page, expect

from tests.support.node_client import NodeClient
from tests.support.server_process import ServerProcess
from tests.web.conftest import (
    DESKTOP,
    PHONE,
    OpenPage,
    artifact,
    editor_url,
    expect_text,
    share,
    wait_status,
)

# every visible control smaller than 44 x 44 px, and whether the page scrolls sideways
SMALL_TARGETS = """() => {
  const small = []
  const controls = 'a[href], button, input, select, textarea, [contenteditable=true], [tabindex]'
  for (const el of document.querySelectorAll(controls)) {
    const box = el.getBoundingClientRect()
    if (box.width === 0 || box.height === 0 || el.tabIndex < 0) continue
    if (box.height < 44 || box.width < 44) {
      small.push(`${el.tagName} ${el.id || el.className} ${box.width}x${box.height}`)
    }
  }
  const overflow = document.documentElement.scrollWidth > window.innerWidth
  return { small, overflow }
}"""


async def filled_draft(server: ServerProcess, open_page: OpenPage) -> tuple[str, NodeClient]:
    draft = f"web-{uuid.uuid4().hex[:10]}"
    await share(server, draft, "alice", "bob")
    node = await NodeClient.start(server.ws_url, draft, server.token("bob"), name="bob")
    await node.call("wait_synced")
    await node.call("insert", field="title", index=0, text="Books for the village school")
    description = "We raise money for new books and shelves in the village school library."
    await node.call("insert", field="description", index=0, text=description)
    await node.call("set", key="status", value="DRAFT")
    await node.call("set", key="goal_amount", value=5000)
    await node.call("set", key="category", value="Education")
    await node.call("push", field="tags", values=["school", "books", "reading"])
    await node.call("awareness_set", field="user", value={"name": "bob", "color": "#b3261e"})
    return draft, node


async def check_page(page: Page) -> None:
    found = await page.evaluate(SMALL_TARGETS)
    assert found["small"] == [], f"touch targets under 44 px: {found['small']}"
    assert not found["overflow"], "the page scrolls sideways"


async def test_screenshots_and_touch_targets_at_desktop_and_phone_width(
    server: ServerProcess, open_page: OpenPage
) -> None:
    draft, node = await filled_draft(server, open_page)
    try:
        for name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            page = await open_page(editor_url(server, draft, "alice"), viewport=viewport)
            await wait_status(page, "synced")
            await expect_text(page, "title", "Books for the village school")
            await expect(page.locator("[data-role=people]")).to_contain_text("bob")
            await expect(page.locator("[data-role=progress-text]")).to_have_text(
                "75% complete · 6 of 8 fields · 18 words"
            )
            await check_page(page)
            await page.screenshot(path=artifact(f"editor-{name}.png"), full_page=True)

            drafts = await open_page(
                f"{server.http_url}/?token={server.token('alice')}", viewport=viewport
            )
            await expect(drafts.locator(f"[data-draft={draft}] .draft-title")).to_have_text(
                "Books for the village school"
            )
            await check_page(drafts)
            await drafts.screenshot(path=artifact(f"drafts-{name}.png"), full_page=True)
            await page.context.close()
            await drafts.context.close()
    finally:
        await node.close()


async def test_the_form_is_labelled_and_keyboard_operable(
    server: ServerProcess, open_page: OpenPage
) -> None:
    draft = f"web-{uuid.uuid4().hex[:10]}"
    page = await open_page(editor_url(server, draft, "ivy"))
    await wait_status(page, "synced")
    labels = ["Title", "Description", "Status", "Current step", "Goal amount", "Category"]
    for label in [*labels, "Deadline", "Tags"]:
        await expect(page.get_by_label(label, exact=True)).to_have_count(1)

    # The draft is new: this page's connection created it, and the owner's Share button
    # comes once the access list can be read (it answered 404 before the draft existed).
    await expect(page.locator("[data-role=open-share]")).to_be_visible()

    # focus order: the header and summary controls, then the fields in schema order
    order: list[str] = []
    await page.locator("body").focus()
    for _ in range(30):
        if len(order) == 15:
            break
        await page.keyboard.press("Tab")
        where = await page.evaluate(
            """() => { const el = document.activeElement
              const field = el.closest('[data-field]')
              return field ? field.dataset.field : (el.dataset.role || el.className) }"""
        )
        if order[-1:] != [where] or where == "tags":
            order.append(where)  # a date input takes three Tabs (its parts): count it once
    assert order == [
        "skip",
        "home",
        "sign-out",
        "open-conflicts",
        "open-history",
        "open-share",
        "title",
        "description",
        "status",
        "current_step",
        "goal_amount",
        "category",
        "deadline",
        "tags",  # the tag input
        "tags",  # its Add button
    ]

    # type into fields by keyboard only
    await page.get_by_label("Title", exact=True).focus()
    await page.keyboard.type("Keyboard only")
    await page.keyboard.press("Tab")
    await page.keyboard.type("Line one")
    await page.keyboard.press("Enter")
    await page.keyboard.type("Line two")
    await page.get_by_label("Tags", exact=True).focus()
    await page.keyboard.type("first")
    await page.keyboard.press("Enter")
    await expect(page.locator("[data-field=tags] .chip")).to_have_count(1)
    await page.keyboard.press("Tab")  # Add
    await page.keyboard.press("Shift+Tab")
    await wait_status(page, "synced")
    assert await page.evaluate("window.draftsync.doc.getText('title').toString()") == (
        "Keyboard only"
    )
    assert await page.evaluate("window.draftsync.doc.getText('description').toString()") == (
        "Line one\nLine two"
    )

    # dialogs open with Enter and close with Escape, giving focus back
    await page.locator("[data-role=open-history]").focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("dialog[data-role=history]")).to_be_visible()
    await page.keyboard.press("Escape")
    await expect(page.locator("dialog[data-role=history]")).to_be_hidden()
    assert await page.evaluate("document.activeElement.dataset.role") == "open-history"


async def test_the_drafts_page_lists_creates_and_opens_drafts_with_the_token(
    server: ServerProcess, open_page: OpenPage
) -> None:
    token = server.token("jo")
    headers = {"Authorization": f"Bearer {token}"}
    draft = f"web-{uuid.uuid4().hex[:10]}"
    async with httpx.AsyncClient(base_url=server.http_url, headers=headers) as client:
        created = await client.post("/api/drafts", json={"id": draft, "title": "Listed"})
    assert created.status_code == 201
    page = await open_page(f"{server.http_url}/?token={token}")
    await expect(page.locator("[data-role=user]")).to_have_text("Signed in as jo")
    assert "token" not in page.url  # kept in localStorage, out of the address bar
    link = page.locator(f"[data-draft={draft}] a")
    await expect(link.locator(".draft-title")).to_have_text("Listed")
    assert await link.get_attribute("href") == f"/d/{draft}"  # the token stays in this browser

    await page.get_by_label("Title", exact=True).fill("Made in the browser")
    await page.get_by_role("button", name="Create draft").click()
    await page.wait_for_url(f"{server.http_url}/d/**")
    await wait_status(page, "synced")
    await expect(page.locator("[data-role=title]")).to_have_text("Made in the browser")
    assert "token" not in page.url
    await page.locator("[data-role=home]").click()
    await expect(page.locator(".draft-title", has_text="Made in the browser")).to_be_visible()


# the page is as wide as the window: nothing to scroll sideways
NO_SIDEWAYS = """() => {
  const root = document.documentElement
  return { scrollWidth: root.scrollWidth, clientWidth: root.clientWidth }
}"""

LONG_TITLE = "A very long title for a campaign that nobody could ever fit on one line " * 3 + (
    "Donaudampfschifffahrtsgesellschaftskapitänswitwenrentenversicherung"
)
LONG_TAGS = ["a-tag-without-any-space-that-goes-on-and-on-and-on-and-on-and-on", "x" * 90]


async def test_no_page_scrolls_sideways_at_320_to_1280_px_with_a_long_title_and_tags(
    server: ServerProcess, open_page: OpenPage
) -> None:
    draft = f"web-{uuid.uuid4().hex[:10]}"
    await share(server, draft, "alice", "bob")
    node = await NodeClient.start(server.ws_url, draft, server.token("bob"), name="bob")
    try:
        await node.call("wait_synced")
        await node.call("insert", field="title", index=0, text=LONG_TITLE)
        await node.call("set", key="status", value="DRAFT")
        await node.call("push", field="tags", values=LONG_TAGS)
        await node.call("set", key="status", value="IN_REVIEW")
        editor = await open_page(editor_url(server, draft, "alice"))
        drafts = await open_page(f"{server.http_url}/?token={server.token('alice')}")
        await wait_status(editor, "synced")
        await expect_text(editor, "title", LONG_TITLE)
        await expect(editor.locator("[data-field=tags] .chip")).to_have_count(2)
        # the dashboard's summary cuts a title this long (server/sync/summaries.py)
        title = drafts.locator(f"[data-draft={draft}] .draft-title")
        await expect(title).to_contain_text(LONG_TITLE[:120])
        # readable status labels, the schema's values underneath
        status = editor.get_by_label("Status", exact=True)
        await expect(status).to_have_value("IN_REVIEW")
        await expect(status.locator("option:checked")).to_have_text("In review")
        await expect(status.locator("option[value=CREATING]")).to_have_text("Creating")
        # no conflicts: a quiet (secondary) control, not the loudest button on the page
        conflicts = editor.locator("[data-role=open-conflicts]")
        await expect(conflicts).to_have_class("secondary")
        for width in (320, 390, 768, 1280):
            for name, page in (("editor", editor), ("drafts", drafts)):
                await page.set_viewport_size({"width": width, "height": 900})
                size = await page.evaluate(NO_SIDEWAYS)
                assert size["scrollWidth"] <= size["clientWidth"], (name, width, size)
                if width in (390, 1280):
                    shot = artifact(f"long-title-{name}-{width}.png")
                    await page.screenshot(path=shot, full_page=True)
    finally:
        await node.close()
