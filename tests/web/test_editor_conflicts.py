"""Manual-rule conflicts in the editor: two offline writers of `goal_amount` (rule manual)."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from playwright.async_api import Page, expect

from tests.support.node_client import NodeClient
from tests.support.server_process import ServerProcess
from tests.web.conftest import (
    PHONE,
    OpenPage,
    artifact,
    editor_url,
    share,
    wait_status,
)


@dataclass
class Conflicted:
    gina: Page  # desktop
    hank: Page  # phone
    candidates: list[tuple[str, str]]  # (value, user) in the order the dialog lists them


@pytest.fixture
async def conflicted(server: ServerProcess, open_page: OpenPage) -> AsyncIterator[Conflicted]:
    """gina and hank, offline, each set `goal_amount`; the second to reconnect opens a conflict.

    The writer with the larger Yjs client id reconnects second, so that its write is also the
    one Yjs keeps: the server does not open a conflict when the later write loses Yjs's
    last-writer-wins (a server-side gap, reported; design.md says it should), and this file
    tests the editor, not that detection.
    """
    draft = f"web-{uuid.uuid4().hex[:10]}"
    await share(server, draft, "gina", "hank")
    gina = await open_page(editor_url(server, draft, "gina"))
    hank = await open_page(editor_url(server, draft, "hank"), viewport=PHONE)
    writers = [
        (await NodeClient.start(server.ws_url, draft, server.token(user)), user, value)
        for user, value in (("gina", 1500), ("hank", 2000))
    ]
    try:
        ids = {}
        for client, user, _ in writers:
            await client.call("wait_synced")
            ids[user] = (await client.state())["clientID"]
        await writers[0][0].call("set", key="goal_amount", value=1000)
        for page in (gina, hank):
            await expect(page.get_by_label("Goal amount", exact=True)).to_have_value("1000")
        for client, _, value in writers:
            await client.call("disconnect")
            await client.call("set", key="goal_amount", value=value)
        writers.sort(key=lambda writer: ids[writer[1]])
        for client, _, _ in writers:
            await client.call("connect")
            await client.call("wait_synced")
        yield Conflicted(gina, hank, [(str(value), user) for _, user, value in writers])
    finally:
        for client, _, _ in writers:
            await client.close()


async def test_a_conflict_appears_in_both_pages_with_its_candidates(
    conflicted: Conflicted,
) -> None:
    for page in (conflicted.gina, conflicted.hank):
        await wait_status(page, "conflict")
        await expect(page.locator("[data-role=conflict-count]")).to_have_text("1")
        await expect(page.locator("[data-field=goal_amount] .badge-conflict")).to_be_visible()

    hank = conflicted.hank
    await hank.locator("[data-field=goal_amount] .badge-conflict").click()
    dialog = hank.locator("dialog[data-role=conflicts]")
    await expect(dialog).to_be_visible()
    await expect(dialog.locator(".conflict h3")).to_have_text("Goal amount")
    candidates = dialog.locator(".candidate")
    await expect(candidates).to_have_count(2)
    for index, (value, user) in enumerate(conflicted.candidates):
        await expect(candidates.nth(index).locator(".candidate-value")).to_have_text(value)
        await expect(candidates.nth(index).locator(".candidate-who")).to_contain_text(user)
    await hank.screenshot(path=artifact("conflicts-phone.png"))
    await hank.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()


async def test_resolving_a_conflict_in_one_page_clears_it_in_the_other(
    conflicted: Conflicted,
) -> None:
    gina = conflicted.gina
    chosen, _ = conflicted.candidates[0]  # the value Yjs did not keep
    await wait_status(gina, "conflict")
    await gina.locator("[data-role=open-conflicts]").click()
    await gina.locator("dialog[data-role=conflicts] .candidate", has_text=chosen).click()
    message = gina.locator("[data-role=conflict-message]")
    await expect(message).not_to_have_text(re.compile(r"^$|…$"))  # the server answered
    assert await message.text_content() == f"Goal amount set to {chosen}."
    for page in (gina, conflicted.hank):
        await wait_status(page, "synced")
        await expect(page.locator("[data-role=conflict-count]")).to_have_text("0")
        await expect(page.get_by_label("Goal amount", exact=True)).to_have_value(chosen)
    await expect(gina.locator("dialog[data-role=conflicts]")).to_contain_text("No open conflicts")
