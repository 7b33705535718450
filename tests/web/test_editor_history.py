"""The history panel: the journal, a version preview and restore (REST endpoints)."""

from __future__ import annotations

import uuid

from playwright.async_api import Route, expect

from tests.support.node_client import NodeClient
from tests.support.server_process import ServerProcess
from tests.web.conftest import OpenPage, artifact, editor_url, expect_text, wait_status


async def test_the_panel_says_so_when_the_server_has_no_history_endpoints(
    server: ServerProcess, open_page: OpenPage
) -> None:
    page = await open_page(editor_url(server, f"web-{uuid.uuid4().hex[:10]}", "kim"))

    async def not_found(route: Route) -> None:
        await route.fulfill(status=404, json={"error": "not_found", "detail": "Not Found"})

    await page.route("**/api/drafts/*/events*", not_found)
    await page.route("**/api/drafts/*/versions/*", not_found)
    await wait_status(page, "synced")
    await page.locator("[data-role=open-history]").click()
    dialog = page.locator("dialog[data-role=history]")
    await expect(dialog.locator("[data-role=event-list]")).to_contain_text(
        "The journal is not available here."
    )
    await dialog.get_by_label("Version", exact=True).fill("1")
    await dialog.get_by_role("button", name="Compare", exact=True).click()
    await expect(dialog.locator("[data-role=preview]")).to_have_text(
        "Version 1 is not available here."
    )
    await wait_status(page, "synced")  # the rest of the page goes on


async def test_the_journal_a_preview_and_restore(
    server: ServerProcess, open_page: OpenPage
) -> None:
    draft = f"web-{uuid.uuid4().hex[:10]}"
    page = await open_page(editor_url(server, draft, "lee"))
    await wait_status(page, "synced")
    async with await NodeClient.start(server.ws_url, draft, server.token("lee")) as node:
        await node.call("wait_synced")
        await node.call("insert", field="title", index=0, text="First title")  # version 1
        await expect_text(page, "title", "First title")
        await node.call("set", key="goal_amount", value=300)
        await node.call("delete", field="title", index=0, length=len("First title"))
        await node.call("insert", field="title", index=0, text="Second title")
        await expect_text(page, "title", "Second title")
    await wait_status(page, "synced")

    await page.locator("[data-role=open-history]").click()
    dialog = page.locator("dialog[data-role=history]")
    journal = dialog.locator("[data-role=event-list]")
    await expect(journal.locator(".event", has_text="Goal amount")).to_contain_text("→ 300")
    # typing is journaled in bursts that close after a pause: refresh until the title's shows
    typed = journal.locator(".event", has_text="Title")
    for _ in range(20):
        if await typed.count():
            break
        await page.wait_for_timeout(500)
        await dialog.get_by_role("button", name="Refresh").click()
        await expect(journal).not_to_have_text("Loading…")
    await expect(typed.first).to_contain_text("typed")
    await expect(typed.first).to_contain_text("lee")

    await dialog.get_by_label("Version", exact=True).fill("1")
    await dialog.get_by_role("button", name="Compare", exact=True).click()
    await expect(dialog.locator("[data-role=preview] dl")).to_contain_text("First title")
    await dialog.get_by_role("button", name="Restore version 1…").click()
    await dialog.get_by_role("button", name="Restore", exact=True).click()
    await expect(dialog.locator("[data-role=history-message]")).to_contain_text(
        "Restored version 1 as version"
    )
    await expect_text(page, "title", "First title")
    await expect(page.get_by_label("Goal amount", exact=True)).to_have_value("")
    await expect(journal.locator(".event", has_text="Restored")).to_contain_text("from v1")
    await page.screenshot(path=artifact("history-desktop.png"))
    await wait_status(page, "synced")
