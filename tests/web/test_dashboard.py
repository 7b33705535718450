"""The drafts page as a dashboard and sharing in the editor (issue 25, points 3 and 4), in
Chromium at desktop and phone width: the figures are those of `GET /api/stats`, each draft's
line shows its status, completion, words, conflicts, last change and people, and changes
arrive live (the drafts feed); an owner invites a person from the Share dialog and the draft
appears in that person's open list; a role turned viewer makes their page read-only, a removal
closes it and takes the draft off their list."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.support.node_client import NodeClient
from tests.support.pycrdt_client import PycrdtClient, write_while_apart
from tests.support.server_process import ServerProcess
from tests.web.conftest import (
    DESKTOP,
    PHONE,
    OpenPage,
    artifact,
    editor_url,
    share,
    text_field,
    wait_status,
)
from tests.web.test_editor_layout import check_page

VIEWPORTS = [pytest.param(DESKTOP, id="desktop"), pytest.param(PHONE, id="phone")]


def new_user(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


async def stats_of(server: ServerProcess, user: str) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {server.token(user)}"}
    async with httpx.AsyncClient(base_url=server.http_url, headers=headers, timeout=10) as client:
        answer = await client.get("/api/stats")
    assert answer.status_code == 200
    return answer.json()  # type: ignore[no-any-return]


async def expect_figures(page: Page, stats: dict[str, float]) -> None:
    for key, value in stats.items():
        if not isinstance(value, int | float):  # conflictsByField: a map, not a figure
            continue
        shown = str(int(value)) if float(value).is_integer() else str(value)  # as JS writes it
        await expect(page.locator(f"[data-stat={key}]")).to_have_attribute("data-value", shown)


def drafts_url(server: ServerProcess, user: str) -> str:
    return f"{server.http_url}/?token={server.token(user)}"


@pytest.mark.parametrize("viewport", VIEWPORTS)
async def test_the_dashboard_shows_the_stats_figures_and_live_draft_lines(
    server: ServerProcess, open_page: OpenPage, viewport: dict[str, int]
) -> None:
    owner, helper = new_user("dana"), new_user("eli")
    headers = {"Authorization": f"Bearer {server.token(owner)}"}
    async with httpx.AsyncClient(base_url=server.http_url, headers=headers, timeout=10) as client:
        ids = []
        for title, fields in (
            ("Community garden plan for the long spring weekend", {"status": "DRAFT"}),
            ("Library books", {"status": "CREATING", "goal_amount": 5000, "category": "Education"}),
            ("Empty one", {}),
        ):
            created = await client.post("/api/drafts", json={"title": title, "fields": fields})
            assert created.status_code == 201, created.text
            ids.append(created.json()["id"])
        await client.put(f"/api/drafts/{ids[0]}/access", json={"user": helper, "role": "editor"})
    page = await open_page(drafts_url(server, owner), viewport=viewport)
    await expect(page.locator("[data-role=live]")).to_have_text(
        "Live: changes appear as they happen."
    )
    await expect_figures(page, await stats_of(server, owner))
    row = page.locator(f"[data-draft='{ids[0]}']")
    await expect(row.locator(".draft-title")).to_have_text(
        "Community garden plan for the long spring weekend"
    )
    await expect(row.locator("[data-role=draft-status]")).to_have_text("Draft")
    await expect(page.locator(f"[data-draft='{ids[1]}'] [data-role=draft-status]")).to_have_text(
        "Creating"
    )
    await expect(row.locator("[data-role=draft-conflicts]")).to_have_text("No conflicts")
    await expect(row.locator(".draft-meta")).to_contain_text(f"by {owner}")
    # each line's completion bar shows the completion GET /api/dashboard gives
    async with httpx.AsyncClient(base_url=server.http_url, headers=headers, timeout=10) as client:
        items = (await client.get("/api/dashboard")).json()["items"]
    # as the page rounds (Math.round: halves up; Python's round() rounds 12.5 to 12)
    completions = {item["id"]: int(item["completion"] + 0.5) for item in items}
    assert completions[ids[1]] > completions[ids[2]] > 0  # more fields filled, a title only
    for draft_id, completion in completions.items():
        line = page.locator(f"[data-draft='{draft_id}'] [data-role=draft-completion]")
        await expect(line.locator("progress")).to_have_attribute("value", str(completion))
        await expect(line).to_contain_text(f"{completion}%")

    # another person edits: the line and the figures change without a reload
    node = await NodeClient.start(server.ws_url, ids[0], server.token(helper), name=helper)
    try:
        await node.call("wait_synced")
        await node.call("insert", field="description", index=0, text="Seeds, tools and a shed.")
        await expect(row.locator("[data-role=draft-words]")).to_have_text("13 words")
        await expect(row.locator(".draft-meta")).to_contain_text(f"by {helper}")
        await expect(row.locator("[data-role=draft-people]")).to_contain_text(helper)
    finally:
        await node.close()
    stats = await stats_of(server, owner)
    assert stats["totalWordCount"] >= 13
    await expect_figures(page, stats)
    await check_page(page)
    await page.screenshot(path=artifact(f"dashboard-{viewport['width']}.png"), full_page=True)


async def test_an_open_conflict_shows_on_its_line_and_in_the_figures(
    server: ServerProcess, open_page: OpenPage
) -> None:
    user = new_user("cora")
    draft = f"web-{uuid.uuid4().hex[:10]}"
    token = server.token(user)
    page = await open_page(drafts_url(server, user))
    await expect(page.locator("[data-role=live]")).to_have_text(
        "Live: changes appear as they happen."
    )
    first = await PycrdtClient(server.ws_url, draft, token, client_id=100).connect()
    second = await PycrdtClient(server.ws_url, draft, token, client_id=200).connect()
    try:
        await asyncio.wait_for(first.synced.wait(), 10)
        # two editors apart write goal_amount (a `manual` field): a conflict opens
        await write_while_apart(first, second, "goal_amount", 500, (1000, 2000))
    finally:
        await first.disconnect()
        await second.disconnect()
    conflicts = page.locator(f"[data-draft='{draft}'] [data-role=draft-conflicts]")
    await expect(conflicts).to_have_text("1 open conflict")
    await expect(conflicts).to_have_class("conflicts open")
    stats = await stats_of(server, user)
    assert stats["conflictedDrafts"] == 1
    await expect_figures(page, stats)
    await page.screenshot(path=artifact("dashboard-conflict-1280.png"), full_page=True)


async def test_the_dashboard_pages_by_cursor(server: ServerProcess, open_page: OpenPage) -> None:
    user = new_user("many")
    headers = {"Authorization": f"Bearer {server.token(user)}"}
    async with httpx.AsyncClient(base_url=server.http_url, headers=headers, timeout=10) as client:
        for index in range(23):
            created = await client.post("/api/drafts", json={"title": f"Draft {index}"})
            assert created.status_code == 201
    page = await open_page(drafts_url(server, user))
    await expect(page.locator("li.draft")).to_have_count(20)
    await expect_figures(page, await stats_of(server, user))  # over all 23, not the page
    await page.get_by_role("button", name="Show more drafts").click()
    await expect(page.locator("li.draft")).to_have_count(23)
    await expect(page.get_by_role("button", name="Show more drafts")).to_be_hidden()


@pytest.mark.parametrize("viewport", VIEWPORTS)
async def test_an_invitation_shows_live_and_a_revocation_closes_the_invitee_s_page(
    server: ServerProcess, open_page: OpenPage, viewport: dict[str, int]
) -> None:
    owner, guest = new_user("olga"), new_user("gus")
    draft = f"web-{uuid.uuid4().hex[:10]}"
    await share(server, draft, owner, new_user("third"), role="viewer")
    width = viewport["width"]

    guest_list = await open_page(drafts_url(server, guest), viewport=viewport)
    await expect(guest_list.locator("[data-role=live]")).to_have_text(
        "Live: changes appear as they happen."
    )
    await expect(guest_list.locator(f"[data-draft='{draft}']")).to_have_count(0)

    editor = await open_page(editor_url(server, draft, owner), viewport=viewport)
    await wait_status(editor, "synced")
    await editor.get_by_role("button", name="Share").click()
    dialog = editor.locator("[data-role=share]")
    await expect(dialog.locator(f"[data-user={owner}]")).to_contain_text("(you)")
    await dialog.get_by_label("User name").fill(guest)
    await dialog.get_by_label("Role for the invited person").select_option("editor")
    await dialog.get_by_role("button", name="Invite", exact=True).click()
    await expect(dialog.locator(f"[data-user={guest}]")).to_have_attribute("data-role", "editor")
    await check_page(editor)
    await editor.screenshot(path=artifact(f"share-dialog-{width}.png"), full_page=True)

    # the invitee's open list shows the draft, live
    row = guest_list.locator(f"[data-draft='{draft}']")
    await expect(row).to_have_count(1)
    await expect(row.locator(".draft-meta")).to_contain_text("editor")
    await expect_figures(guest_list, await stats_of(server, guest))
    await check_page(guest_list)
    await guest_list.screenshot(path=artifact(f"invitee-list-{width}.png"), full_page=True)

    # the invitee opens it; the owner turns them viewer: read-only at once
    guest_page = await guest_list.context.new_page()
    await guest_page.goto(f"{server.http_url}/d/{draft}")
    await wait_status(guest_page, "synced")
    await expect(text_field(guest_page, "title")).to_have_attribute("contenteditable", "true")
    await dialog.get_by_label(f"Role of {guest}").select_option("viewer")
    await expect(guest_page.locator("[data-role=banner]")).to_have_text(
        "You can read this draft but not change it."
    )
    await expect(text_field(guest_page, "title")).to_have_attribute("contenteditable", "false")
    await expect(row.locator(".draft-meta")).to_contain_text("viewer")

    # removed: the page closes and the list drops the draft
    await dialog.get_by_role("button", name=f"Remove {guest}").click()
    await expect(dialog.locator(f"[data-user={guest}]")).to_have_count(0)
    await expect(guest_page.locator("[data-role=banner]")).to_contain_text("no access")
    await expect(text_field(guest_page, "title")).to_have_attribute("contenteditable", "false")
    await expect(row).to_have_count(0)
    await guest_page.screenshot(path=artifact(f"invitee-revoked-{width}.png"), full_page=True)


async def test_the_share_button_is_for_owners_only_and_errors_are_one_sentence(
    server: ServerProcess, open_page: OpenPage
) -> None:
    owner, editor_user = new_user("ona"), new_user("ed")
    draft = f"web-{uuid.uuid4().hex[:10]}"
    await share(server, draft, owner, editor_user, role="editor")
    as_editor = await open_page(editor_url(server, draft, editor_user))
    await wait_status(as_editor, "synced")
    await expect(as_editor.locator("[data-role=open-history]")).to_be_visible()
    await expect(as_editor.get_by_role("button", name="Share")).to_have_count(0)

    as_owner = await open_page(editor_url(server, draft, owner))
    await wait_status(as_owner, "synced")
    await as_owner.get_by_role("button", name="Share").click()
    dialog = as_owner.locator("[data-role=share]")
    await dialog.get_by_role("button", name=f"Remove {owner}").click()  # the last owner
    await expect(dialog.locator("[data-role=share-message]")).to_have_text(
        "The draft needs an owner: make someone else an owner first."
    )
    await dialog.get_by_role("button", name="Invite", exact=True).click()  # no name
    await expect(dialog.locator("[data-role=share-message]")).to_have_text(
        "Type the name of the person to invite."
    )
