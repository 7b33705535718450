"""The history people can read (issue 25, points 2 and 6): sessions in version order, a visual
diff between two versions, a restore confirmed then undone, a named version saved and restored;
at desktop width and at 390 px, with screenshots in test-artifacts/web/."""

from __future__ import annotations

import uuid

import pytest
from playwright.async_api import Locator, Page, expect

from tests.support.node_client import NodeClient
from tests.support.rest import as_user
from tests.support.server_process import ServerProcess
from tests.web.conftest import (
    DESKTOP,
    PHONE,
    OpenPage,
    artifact,
    editor_url,
    expect_text,
    text_field,
    wait_status,
)

VIEWPORTS = [pytest.param(DESKTOP, id="desktop"), pytest.param(PHONE, id="phone")]


async def version_of(server: ServerProcess, draft: str, user: str) -> int:
    async with as_user(server, user) as api:
        version: int = (await api.get(f"/api/drafts/{draft}")).json()["version"]
    return version


async def open_history(page: Page) -> Locator:
    await page.locator("[data-role=open-history]").click()
    dialog = page.locator("dialog[data-role=history]")
    await expect(dialog).to_be_visible()
    return dialog


async def no_sideways_scroll(page: Page) -> None:
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], width  # type: ignore[index]


@pytest.mark.parametrize("viewport", VIEWPORTS)
async def test_a_diff_between_two_versions_marks_insertions_and_deletions(
    server: ServerProcess, open_page: OpenPage, viewport: dict[str, int]
) -> None:
    draft = f"web-{uuid.uuid4().hex[:10]}"
    page = await open_page(editor_url(server, draft, "ria"), viewport=viewport)
    await wait_status(page, "synced")
    async with await NodeClient.start(server.ws_url, draft, server.token("ria")) as node:
        await node.call("wait_synced")
        await node.call("insert", field="title", index=0, text="Save the bees")
        await node.call("set", key="status", value="DRAFT")
        await node.call("push", field="tags", values=["nature", "garden"])
        await expect_text(page, "title", "Save the bees")
        first = await version_of(server, draft, "ria")
        await node.call("delete", field="title", index=0, length=len("Save "))
        await node.call("insert", field="title", index=4, text="wild ")
        await node.call("set", key="status", value="IN_REVIEW")
        await node.call("remove_list", field="tags", index=0, length=1)
        await node.call("push", field="tags", values=["spring"])
        await expect_text(page, "title", "the wild bees")
    await wait_status(page, "synced")
    second = await version_of(server, draft, "ria")

    dialog = await open_history(page)
    journal = dialog.locator("[data-role=event-list]")
    await expect(journal.locator(".session").first).to_contain_text("ria")
    # versions in order, newest first
    await expect(journal.locator(".event", has_text="Status")).to_have_count(2)
    shown = await journal.locator(".event[data-version]").evaluate_all(
        "(items) => items.map((item) => Number(item.dataset.version))"
    )
    assert len(shown) >= 4 and shown == sorted(shown, reverse=True), shown
    await expect(journal).to_contain_text("→ In review")
    await expect(journal).not_to_contain_text('["')  # no raw JSON

    # a session's own changes, in characters (the journal counts text in UTF-8 bytes)
    await (
        journal.locator(".session")
        .first.get_by_role("button", name="What this session changed")
        .click()
    )
    await expect(
        dialog.locator("[data-role=preview] .diff-field[data-field=status]")
    ).to_contain_text("In review")

    await dialog.get_by_label("Version", exact=True).fill(str(first))
    await dialog.get_by_label("Compared with", exact=True).fill(str(second))
    await dialog.get_by_role("button", name="Compare", exact=True).click()
    preview = dialog.locator("[data-role=preview]")
    title = preview.locator(".diff-field[data-field=title]").first
    await expect(title.locator("del").first).to_have_text("Save ")
    await expect(title.locator("ins").first).to_contain_text("wild")
    await expect(title).to_contain_text("+5 / \N{MINUS SIGN}5 characters")
    status = preview.locator(".diff-field[data-field=status]").first
    await expect(status).to_contain_text("Draft → In review")
    tags = preview.locator(".diff-field[data-field=tags]").first
    await expect(tags.locator(".chip-added")).to_have_text("+ spring")
    await expect(tags.locator(".chip-removed")).to_have_text("\N{MINUS SIGN} nature")
    await title.scroll_into_view_if_needed()
    name = "desktop" if viewport == DESKTOP else "390"
    await page.screenshot(path=artifact(f"history-diff-{name}.png"))
    await no_sideways_scroll(page)


@pytest.mark.parametrize("viewport", VIEWPORTS)
async def test_a_restore_is_confirmed_then_undone(
    server: ServerProcess, open_page: OpenPage, viewport: dict[str, int]
) -> None:
    draft = f"web-{uuid.uuid4().hex[:10]}"
    page = await open_page(editor_url(server, draft, "uma"), viewport=viewport)
    await wait_status(page, "synced")
    async with await NodeClient.start(server.ws_url, draft, server.token("uma")) as node:
        await node.call("wait_synced")
        await node.call("insert", field="title", index=0, text="First title")
        await expect_text(page, "title", "First title")
        first = await version_of(server, draft, "uma")
        await node.call("set", key="goal_amount", value=300)
        await node.call("delete", field="title", index=0, length=len("First"))
        await node.call("insert", field="title", index=0, text="Second")
        await expect_text(page, "title", "Second title")
    await wait_status(page, "synced")

    dialog = await open_history(page)
    await dialog.get_by_label("Version", exact=True).fill(str(first))
    await dialog.get_by_role("button", name="Compare", exact=True).click()
    await dialog.get_by_role("button", name=f"Restore version {first}…").click()
    confirm = dialog.locator(".confirm")
    await expect(confirm).to_contain_text(f"Restore version {first}? This changes")
    await expect(confirm).to_contain_text("Goal amount")
    await expect(confirm.locator(".diff-field[data-field=title] ins")).to_contain_text("First")
    name = "desktop" if viewport == DESKTOP else "390"
    await confirm.get_by_role("button", name="Cancel").scroll_into_view_if_needed()
    await page.screenshot(path=artifact(f"history-restore-confirm-{name}.png"))
    # Cancel changes nothing; the second time it is confirmed.
    await confirm.get_by_role("button", name="Cancel").click()
    await expect(confirm).to_have_count(0)
    await expect_text(page, "title", "Second title")
    await dialog.get_by_role("button", name=f"Restore version {first}…").click()
    await dialog.locator(".confirm").get_by_role("button", name="Restore", exact=True).click()
    message = dialog.locator("[data-role=history-message]")
    await expect(message).to_contain_text(f"Restored version {first} as version")
    await expect_text(page, "title", "First title")
    await expect(page.get_by_label("Goal amount", exact=True)).to_have_value("")
    await page.screenshot(path=artifact(f"history-restored-{name}.png"))

    await message.get_by_role("button", name="Undo").click()
    await expect(message).to_contain_text("Undone: the draft is as it was at version")
    await expect_text(page, "title", "Second title")
    await expect(page.get_by_label("Goal amount", exact=True)).to_have_value("300")
    await page.screenshot(path=artifact(f"history-undone-{name}.png"))
    await no_sideways_scroll(page)


@pytest.mark.parametrize("viewport", VIEWPORTS)
async def test_a_named_version_is_saved_and_restored(
    server: ServerProcess, open_page: OpenPage, viewport: dict[str, int]
) -> None:
    draft = f"web-{uuid.uuid4().hex[:10]}"
    page = await open_page(editor_url(server, draft, "ines"), viewport=viewport)
    await wait_status(page, "synced")
    async with await NodeClient.start(server.ws_url, draft, server.token("ines")) as node:
        await node.call("wait_synced")
        await node.call("insert", field="title", index=0, text="Named title")
        await expect_text(page, "title", "Named title")
        named = await version_of(server, draft, "ines")

        dialog = await open_history(page)
        await dialog.get_by_label("Version name", exact=True).fill("Sent for review")
        await dialog.get_by_role("button", name="Save version", exact=True).click()
        message = dialog.locator("[data-role=history-message]")
        await expect(message).to_have_text(f"Saved version {named} as “Sent for review”.")
        listed = dialog.locator("[data-role=named-versions] .named-version")
        await expect(listed).to_have_count(1)
        await expect(listed.first).to_contain_text(f"★ Sent for review · v{named} · ines")
        name = "desktop" if viewport == DESKTOP else "390"
        await page.screenshot(path=artifact(f"history-named-{name}.png"))

        await node.call("insert", field="title", index=len("Named title"), text=", then edited")
        await expect_text(page, "title", "Named title, then edited")
    await wait_status(page, "synced")
    async with as_user(server, "ines") as api:
        meta = (await api.get(f"/api/drafts/{draft}")).json()["metadata"]
    assert meta["manualSaveCount"] == 1

    await dialog.get_by_role("button", name="Refresh").click()
    await listed.first.get_by_role("button", name=f"Show v{named}").click()
    await expect(dialog.locator(".diff-field[data-field=title] ins")).to_have_text(", then edited")
    await dialog.get_by_role("button", name=f"Restore version {named}…").click()
    await dialog.locator(".confirm").get_by_role("button", name="Restore", exact=True).click()
    await expect(message).to_contain_text(f"Restored version {named} as version")
    await expect_text(page, "title", "Named title")
    await page.screenshot(path=artifact(f"history-named-restored-{name}.png"))
    await no_sideways_scroll(page)


async def test_a_browser_session_is_listed_with_its_device_and_fields(
    server: ServerProcess, open_page: OpenPage
) -> None:
    draft = f"web-{uuid.uuid4().hex[:10]}"
    writer = await open_page(editor_url(server, draft, "noa"))
    await wait_status(writer, "synced")
    await text_field(writer, "title").click()
    await writer.keyboard.type("Typed in Chromium")
    await writer.get_by_label("Category", exact=True).fill("Arts")
    await writer.get_by_label("Category", exact=True).press("Enter")
    await expect_text(writer, "title", "Typed in Chromium")
    await wait_status(writer, "synced")
    await writer.context.close()  # the session ends: journaled with its device and browser

    reader = await open_page(editor_url(server, draft, "noa"), viewport=PHONE)
    await wait_status(reader, "synced")
    dialog = await open_history(reader)
    session = dialog.locator("[data-role=event-list] .session", has_text="Chrome")
    for _ in range(20):  # the typing burst and the session event land after a pause
        if await session.count() and "Title" in await session.first.inner_text():
            break
        await reader.wait_for_timeout(500)
        await dialog.get_by_role("button", name="Refresh").click()
    await expect(session.first).to_contain_text("on Linux (desktop)")
    await expect(session.first.locator(".session-fields")).to_contain_text("Title")
    await expect(session.first.locator(".session-fields")).to_contain_text("Category")
    await reader.screenshot(path=artifact("history-sessions-390.png"))
    await no_sideways_scroll(reader)
    await reader.set_viewport_size(DESKTOP)
    await reader.screenshot(path=artifact("history-sessions-desktop.png"))
