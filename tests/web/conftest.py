"""Browser tests: Debian's chromium, headless, driven by Playwright for Python.

`playwright install` is never run (no browser download is reachable): Playwright launches the
system `/usr/bin/chromium` (`make test` installs it when missing). Each test gets a fresh browser
(Playwright gives it a fresh temporary profile) and one browser context per person, so two pages
share no storage. The bundle must be built first (`make web`); the tests say so if it is not.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect
from playwright.async_api import TimeoutError as PlaywrightTimeout

from server.http.pages import WEB_DIST
from tests.support.server_process import REPO, ServerProcess

CHROMIUM = os.environ.get("DRAFTSYNC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "test-artifacts" / "web"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
WAIT_MS = 10_000

expect.set_options(timeout=WAIT_MS)

OpenPage = Callable[..., Awaitable[Page]]


@pytest.fixture(scope="session", autouse=True)
def _prerequisites() -> None:
    if not Path(CHROMIUM).is_file() and shutil.which("chromium") is None:
        pytest.fail(f"{CHROMIUM} not found: `make test` installs it (apt-get install chromium)")
    if not (WEB_DIST / "editor.js").is_file():
        pytest.fail(f"{WEB_DIST} is not built: run `make web`")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def open_page(browser: Browser) -> AsyncIterator[OpenPage]:
    """`await open_page(url, viewport=DESKTOP)`: a page in its own context (its own person).

    Errors thrown in a page fail the test: they are collected and checked at teardown.
    """
    errors: list[str] = []

    async def open_(url: str, *, viewport: dict[str, int] = DESKTOP) -> Page:
        context = await browser.new_context(viewport=viewport)
        page = await context.new_page()
        page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}"))
        await page.goto(url)
        return page

    yield open_
    assert not errors, "errors in the page:\n" + "\n".join(errors)


def editor_url(server: ServerProcess, draft: str, user: str) -> str:
    return f"{server.http_url}/d/{draft}?token={server.token(user)}"


async def wait_status(page: Page, status: str, timeout: float = WAIT_MS) -> None:
    await expect(page.locator("[data-role=status]")).to_have_attribute(
        "data-status", status, timeout=timeout
    )


async def share(
    server: ServerProcess, draft: str, owner: str, user: str, role: str = "editor"
) -> None:
    """Create `draft` for `owner` (REST) and give `user` a role on it."""
    headers = {"Authorization": f"Bearer {server.token(owner)}"}
    async with httpx.AsyncClient(base_url=server.http_url, headers=headers, timeout=10) as client:
        created = await client.post("/api/drafts", json={"id": draft})
        assert created.status_code == 201, created.text
        shared = await client.put(f"/api/drafts/{draft}/access", json={"user": user, "role": role})
        assert shared.status_code == 200, shared.text


def text_field(page: Page, name: str):  # type: ignore[no-untyped-def]
    return page.locator(f"[data-field={name}] .cm-content")


# the doc's text of a field, and what its editor shows without the others' carets and names
_TEXTS = """(field) => {
  const content = document.querySelector(`[data-field=${field}] .cm-content`)
  const shown = Array.from(content.querySelectorAll('.cm-line'), (line) => {
    const copy = line.cloneNode(true)
    copy.querySelectorAll('.cm-ySelectionCaret, .cm-widgetBuffer').forEach((w) => w.remove())
    return copy.textContent
  }).join('\\n')
  return [window.draftsync.doc.getText(field).toString(), shown]
}"""


async def expect_text(page: Page, field: str, text: str, timeout: float = WAIT_MS) -> None:
    """Wait until text field `field` holds `text`, in the doc and on screen."""
    check = (
        f"(field) => {{ const [doc, shown] = ({_TEXTS})(field)\n"
        f"  return doc === shown && doc === {json.dumps(text)} }}"
    )
    try:
        await page.wait_for_function(check, arg=field, timeout=timeout)
    except PlaywrightTimeout:
        doc, shown = await page.evaluate(_TEXTS, field)
        raise AssertionError(f"{field}: doc {doc!r}, shown {shown!r}, expected {text!r}") from None


def artifact(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]", "_", name)
