"""The history panel rides out "try again later" (web/src/api.js): with one version rebuilt at a
time per user (`--max-rebuilds-per-user 1`) and that one taken, the panel's diff and whole
version, asked at once, are refused 429 with Retry-After, asked again once it passed, and shown.

The slot is kept taken without timing anything: `DRAFTSYNC_FAULTS=rebuild` holds the first
rebuild on its worker thread (so its slot) until the test sends the server SIGUSR1
(server/faults.py), once the page's two refusals were seen."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Response, expect

from tests.support.rest import as_user, create_draft, new_id
from tests.support.server_process import ServerProcess
from tests.web.conftest import WAIT_MS, OpenPage, artifact, editor_url, wait_status


@pytest.fixture
def one_rebuild_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server that rebuilds one version at a time per user and holds its first rebuild."""
    process = ServerProcess(
        tmp_path / "data",
        "--room-grace",
        "0.3",
        "--max-rebuilds-per-user",
        "1",
        env={"DRAFTSYNC_FAULTS": "rebuild"},
    )
    process.start()
    yield process
    process.stop()


def refused(path: str) -> Callable[[Response], bool]:
    """The page's answer to `path` refused for now."""
    return lambda response: path in response.url and response.status == 429


async def take_the_slot(api: httpx.AsyncClient, draft: str) -> asyncio.Task[httpx.Response]:
    """Two rebuilds at once: the first to take the user's one slot is held by the server (the
    first rebuild), the other is refused 429. Returns the held one, still under way."""
    path = f"/api/drafts/{draft}/versions/0"
    both = {asyncio.create_task(api.get(path)), asyncio.create_task(api.get(path))}
    done, held = await asyncio.wait(both, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    assert len(done) == 1 and len(held) == 1, "one request should be held, one refused"
    assert done.pop().result().status_code == 429
    return held.pop()


async def test_a_compared_version_shows_once_the_users_rebuild_slot_is_free(
    one_rebuild_server: ServerProcess, open_page: OpenPage
) -> None:
    server = one_rebuild_server
    draft = new_id("web")
    async with as_user(server, "rey") as api:
        await create_draft(api, id=draft, title="Hold the line")
        api.timeout = httpx.Timeout(60)  # the held request waits for the test, at most 60 s
        held = await take_the_slot(api, draft)
        try:
            page = await open_page(editor_url(server, draft, "rey"))
            await wait_status(page, "synced")
            await page.locator("[data-role=open-history]").click()
            dialog = page.locator("dialog[data-role=history]")
            await dialog.get_by_label("Version", exact=True).fill("0")
            async with (
                page.expect_response(refused("/diff?"), timeout=WAIT_MS) as diff_refused,
                page.expect_response(refused("/versions/0"), timeout=WAIT_MS) as whole_refused,
            ):
                await dialog.get_by_role("button", name="Compare", exact=True).click()
            for answer in (await diff_refused.value, await whole_refused.value):
                assert isinstance(answer, Response)
                assert await answer.header_value("Retry-After") == "1"
        finally:
            assert server.process is not None
            os.kill(server.process.pid, signal.SIGUSR1)  # the held rebuild goes on
            assert (await asyncio.wait_for(held, 10)).status_code == 200

    preview = dialog.locator("[data-role=preview]")
    await expect(preview).not_to_contain_text("Loading version 0")  # retried after Retry-After
    shown = await preview.inner_text()
    assert "failed (" not in shown, shown
    await expect(preview.locator("h3")).to_have_text("Version 0 compared with the current draft")
    await expect(preview.locator("ins", has_text="Hold the line")).to_be_visible()
    await expect(preview.locator("details.whole-version summary")).to_have_text(
        "The whole of version 0"
    )
    await page.screenshot(path=artifact("history-retried-desktop.png"))
