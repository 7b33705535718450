"""The editor in Chromium against a real server: people and a Node client edit one draft live."""

from __future__ import annotations

import asyncio
import uuid

from playwright.async_api import expect

from tests.support.node_client import NodeClient
from tests.support.server_process import ServerProcess
from tests.web.conftest import (
    OpenPage,
    artifact,
    editor_url,
    expect_text,
    share,
    text_field,
    wait_status,
)


def new_draft() -> str:
    return f"web-{uuid.uuid4().hex[:10]}"


async def test_two_pages_see_each_others_text_and_cursors(
    server: ServerProcess, open_page: OpenPage
) -> None:
    draft = new_draft()
    await share(server, draft, "alice", "bob")
    alice = await open_page(editor_url(server, draft, "alice"))
    bob = await open_page(editor_url(server, draft, "bob"))
    await wait_status(alice, "synced")
    await wait_status(bob, "synced")

    await text_field(alice, "title").click()
    await alice.keyboard.type("Library books")
    await expect_text(bob, "title", "Library books")
    await expect(bob.locator("[data-role=title]")).to_have_text("Library books")
    # alice's caret, with her name, in bob's title field
    await expect(bob.locator("[data-field=title] .cm-ySelectionInfo")).to_have_text("alice")
    await expect(bob.locator("[data-role=people]")).to_contain_text("alice")
    await text_field(alice, "title").press("Shift+Home")  # a selection, shown to bob too
    await expect(bob.locator("[data-field=title] .cm-ySelection")).not_to_have_count(0)
    await bob.screenshot(path=artifact("editor-two-people.png"))

    await text_field(bob, "description").click()
    await bob.keyboard.type("New shelves for the school.")
    await expect_text(alice, "description", "New shelves for the school.")
    await wait_status(alice, "synced")
    await wait_status(bob, "synced")


async def test_a_node_clients_edits_appear_live_and_the_page_writes_the_doc(
    server: ServerProcess, open_page: OpenPage
) -> None:
    draft = new_draft()
    token = server.token("carol")
    page = await open_page(editor_url(server, draft, "carol"))
    await wait_status(page, "synced")
    progress = page.locator("[data-role=progress-text]")
    await expect(progress).to_contain_text("0% complete")
    node = await NodeClient.start(server.ws_url, draft, token, name="node")
    try:
        await node.call("wait_synced")
        await node.call("insert", field="description", index=0, text="one two three")
        await node.call("set", key="goal_amount", value=2500)
        await node.call("set", key="status", value="DRAFT")
        await node.call("push", field="tags", values=["music"])
        await expect_text(page, "description", "one two three")
        await expect(page.get_by_label("Goal amount", exact=True)).to_have_value("2500")
        await expect(page.get_by_label("Status", exact=True)).to_have_value("DRAFT")
        await expect(page.locator("[data-field=tags] .chip span")).to_have_text(["music"])
        # 4 of the 8 fields of the default schema: description, goal_amount, status, tags
        await expect(progress).to_have_text("50% complete · 4 of 8 fields · 3 words")

        # from DRAFT only IN_REVIEW and ARCHIVED are allowed moves
        await expect(page.locator("#field-status option[value=PUBLISHED]")).to_be_disabled()
        await page.get_by_label("Status", exact=True).select_option("IN_REVIEW")
        await page.get_by_label("Category", exact=True).fill("Arts")
        await page.get_by_label("Category", exact=True).press("Enter")
        await page.get_by_label("Tags", exact=True).fill("choir")
        await page.get_by_label("Tags", exact=True).press("Enter")
        await page.get_by_role("button", name="Remove music").click()
        await wait_status(page, "synced")

        async def node_sees_it() -> bool:
            state = await node.state(lists=["tags"])
            fields = state["fields"]
            return (
                fields.get("status") == "IN_REVIEW"
                and fields.get("category") == "Arts"
                and state["lists"]["tags"] == ["choir"]
            )

        async with asyncio.timeout(10):
            while not await node_sees_it():  # noqa: ASYNC110 - the state is in another process
                await asyncio.sleep(0.05)
    finally:
        await node.close()


async def test_status_goes_offline_and_back_to_synced_with_the_offline_edit_stored(
    tmp_path_factory, open_page: OpenPage
) -> None:  # type: ignore[no-untyped-def]
    server = ServerProcess(tmp_path_factory.mktemp("web-restart"), "--room-grace", "0.3")
    server.start()
    try:
        draft = new_draft()
        page = await open_page(editor_url(server, draft, "dana"))
        await wait_status(page, "synced")
        server.kill()
        await wait_status(page, "offline")
        await text_field(page, "title").click()
        await page.keyboard.type("written offline")
        await wait_status(page, "offline")
        server.start()
        await wait_status(page, "synced", timeout=15_000)

        async with await NodeClient.start(server.ws_url, draft, server.token("dana")) as check:
            await check.call("wait_synced")
            assert await check.text("title") == "written offline"
    finally:
        server.stop()


async def test_a_refused_connection_shows_the_error_and_a_viewer_cannot_edit(
    server: ServerProcess, open_page: OpenPage
) -> None:
    draft = new_draft()
    await share(server, draft, "erin", "viv", role="viewer")
    owner = await open_page(editor_url(server, draft, "erin"))
    await wait_status(owner, "synced")
    viewer = await open_page(editor_url(server, draft, "viv"))
    await expect(viewer.locator("[data-role=banner]")).to_have_text(
        "You can read this draft but not change it."
    )
    # it informs, it does not alarm: styled as info, announced politely
    await expect(viewer.locator("[data-role=banner]")).to_have_attribute("data-tone", "info")
    await expect(viewer.locator("[data-role=banner]")).to_have_attribute("role", "status")
    await expect(text_field(viewer, "title")).to_have_attribute("contenteditable", "false")
    await expect(viewer.get_by_label("Goal amount", exact=True)).to_be_disabled()
    await wait_status(viewer, "synced")
    stranger = await open_page(editor_url(server, draft, "frank"))
    await wait_status(stranger, "error")
    # one sentence, not "no access to this draft" twice
    await expect(stranger.locator("[data-role=banner]")).to_have_text(
        "You have no access to this draft."
    )
    await expect(stranger.locator("[data-role=banner]")).to_have_attribute("role", "alert")
    await expect(text_field(stranger, "title")).to_have_attribute("contenteditable", "false")

    expired = f"{server.http_url}/d/{draft}?token={server.token('erin', ttl=1, now=1_000)}"
    late = await open_page(expired)
    await wait_status(late, "error")
    await expect(late.locator("[data-role=banner]")).to_contain_text("expired")
