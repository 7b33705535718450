"""A Tiptap editor in the browser on draftsync's `/hocuspocus` (issue 23): the minimal page of
tests/interop/tiptap/ (@tiptap/core, StarterKit, Collaboration, CollaborationCaret and a stock
`HocuspocusProvider` given url, name and token), bundled by esbuild there (`make test` builds
it; it is never part of the shipped web bundle), served to Debian's chromium by a static file
server of its own, as an app serves its page, and connected to draftsync's endpoint."""

from __future__ import annotations

import asyncio
import functools
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

import pytest
from playwright.async_api import Browser, Page, expect
from pycrdt import Doc, XmlElement, XmlFragment, XmlText

from tests.support.pycrdt_client import PycrdtClient
from tests.support.server_process import REPO, ServerProcess
from tests.support.sqlite_lock import write_lock
from tests.support.stored import stored_doc
from tests.web.conftest import ARTIFACTS, WAIT_MS, share

PAGE_DIST = REPO / "tests" / "interop" / "tiptap" / "dist"
HELD = 0.8  # seconds the SQLite write lock is held while the test looks

SCHEMA = """
[fields.title]
kind = "text"

[fields.body]
kind = "richtext"
"""

OpenTiptap = Callable[..., Awaitable[Page]]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    if not (PAGE_DIST / "page.js").is_file():
        pytest.fail(f"{PAGE_DIST} is not built: `make test` builds it (npm ci + node build.mjs)")
    (tmp_path / "schema.toml").write_text(SCHEMA)
    process = ServerProcess(tmp_path / "data", "--schema", str(tmp_path / "schema.toml")).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def page_url() -> Iterator[str]:
    """The built page, served from loopback by a plain static file server (a page of another
    origin, as an app's own; Chromium lets a loopback page open a loopback WebSocket)."""
    handler = functools.partial(_QuietHandler, directory=str(PAGE_DIST))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/index.html"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Tokens are in the query string: no access log."""


@pytest.fixture
async def open_tiptap(
    browser: Browser, server: ServerProcess, page_url: str
) -> AsyncIterator[OpenTiptap]:
    """`await open_tiptap(draft, user, token=None, synced=True)`: the Tiptap page as `user`
    (or with `token`), in a context of its own (one person each), once its provider synced;
    errors thrown in a page fail the test."""
    errors: list[str] = []

    async def open_(
        draft: str, user: str, *, token: str | None = None, synced: bool = True
    ) -> Page:
        context = await browser.new_context(viewport={"width": 900, "height": 600})
        page = await context.new_page()
        page.on("pageerror", lambda error: errors.append(f"{user}: {error}"))
        token = server.token(user) if token is None else token
        url = f"ws://127.0.0.1:{server.port}/hocuspocus"
        query = urlencode({"draft": draft, "token": token, "user": user, "url": url})
        await page.goto(f"{page_url}?{query}")
        await page.wait_for_function("window.tiptap !== undefined")
        if synced:
            await page.wait_for_function("window.tiptap.provider.synced")
        return page

    yield open_
    assert not errors, "errors in the page:\n" + "\n".join(errors)


def paragraphs(fragment: XmlFragment) -> list[str]:
    """The text of each top-level element of a Tiptap document (formatting ignored)."""

    def text_of(node: object) -> str:
        if isinstance(node, XmlText):
            return str(node)
        if isinstance(node, XmlElement):
            return "".join(text_of(child) for child in node.children)
        return ""

    return [text_of(child) for child in fragment.children]


def body_of(doc: Doc) -> list[str]:
    return paragraphs(doc.get("body", type=XmlFragment))


async def type_at_end(page: Page, text: str) -> None:
    """Put the caret at the end of the document and type `text`, key by key."""
    await page.evaluate("window.tiptap.editor.commands.focus('end')")
    # Tiptap focuses on the next animation frame: a key typed before would be lost.
    await page.wait_for_function("window.tiptap.editor.isFocused")
    await page.keyboard.type(text)


_PARAGRAPHS = """(expected) => {
  const shown = []
  window.tiptap.editor.state.doc.forEach((node) => shown.push(node.textContent))
  return JSON.stringify(shown) === JSON.stringify(expected)
}"""


async def wait_paragraphs(page: Page, expected: list[str]) -> None:
    """Until the editor's document (what Tiptap shows, without the others' carets) holds
    exactly the paragraphs `expected`."""
    await page.wait_for_function(_PARAGRAPHS, arg=expected, timeout=WAIT_MS)


async def unsynced(page: Page) -> bool:
    return bool(await page.evaluate("window.tiptap.provider.hasUnsyncedChanges"))


async def test_two_browsers_co_edit_a_tiptap_document_and_saved_means_on_disk(
    server: ServerProcess, open_tiptap: OpenTiptap
) -> None:
    draft = f"tiptap-{uuid.uuid4().hex[:8]}"
    await share(server, draft, "alice", "bob")
    alice = await open_tiptap(draft, "alice")
    bob = await open_tiptap(draft, "bob")
    alice_editor = alice.locator("#editor .ProseMirror")
    bob_editor = bob.locator("#editor .ProseMirror")

    # Each sees the other's typing.
    await type_at_end(alice, "Hello from Alice")
    await expect(bob_editor).to_contain_text("Hello from Alice", timeout=WAIT_MS)
    await type_at_end(bob, " and Bob")
    await bob.keyboard.press("Enter")
    await bob.keyboard.type("A second paragraph")
    await expect(alice_editor).to_contain_text("Hello from Alice and Bob", timeout=WAIT_MS)
    await wait_paragraphs(alice, ["Hello from Alice and Bob", "A second paragraph"])
    # Bob's caret is drawn in Alice's editor, under his name (awareness over /hocuspocus).
    await expect(alice.locator(".collaboration-carets__label")).to_have_text("bob")

    # A y-websocket client (pycrdt) reads the same XmlFragment from the server.
    reader = await PycrdtClient(server.ws_url, draft, server.token("alice")).connect()
    try:
        await asyncio.wait_for(reader.synced.wait(), 10)
        expected = ["Hello from Alice and Bob", "A second paragraph"]
        await reader.wait_for(lambda: body_of(reader.doc) == expected, 10)
    finally:
        await reader.disconnect()

    # "Saved" (hasUnsyncedChanges false) only once the edit is on disk: with the commit held
    # the provider keeps it unsynced; once the commit goes through it turns false, and the
    # store holds the edit.
    await alice.wait_for_function("!window.tiptap.provider.hasUnsyncedChanges")
    with write_lock(server.database):
        await type_at_end(alice, " (kept)")
        await expect(alice.locator("#status")).to_have_attribute("data-unsynced", "true")
        await asyncio.sleep(HELD)  # the server applied it; its commit waits for the lock
        assert await unsynced(alice), "acknowledged before the commit"
        assert "(kept)" not in " ".join(body_of(stored_doc(server.database, draft)))
        await expect(bob_editor).not_to_contain_text("(kept)")  # visible only once durable
    await alice.wait_for_function("!window.tiptap.provider.hasUnsyncedChanges")
    await expect(alice.locator("#status")).to_have_attribute("data-unsynced", "false")
    assert body_of(stored_doc(server.database, draft)) == [
        "Hello from Alice and Bob",
        "A second paragraph (kept)",
    ]
    await wait_paragraphs(bob, ["Hello from Alice and Bob", "A second paragraph (kept)"])

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await alice.screenshot(path=str(ARTIFACTS / "tiptap-alice.png"), full_page=True)
    await bob.screenshot(path=str(ARTIFACTS / "tiptap-bob.png"), full_page=True)


async def test_the_page_with_a_bad_token_is_refused_and_writes_nothing(
    server: ServerProcess, open_tiptap: OpenTiptap
) -> None:
    """The same page with a token that is not one: the provider hears authenticationFailed
    with the reason (its socket stays open) and nothing typed there reaches the store."""
    draft = f"tiptap-{uuid.uuid4().hex[:8]}"
    await share(server, draft, "alice", "bob")
    page = await open_tiptap(draft, "mallory", token="not-a-token", synced=False)
    status = page.locator("#status")
    await expect(status).to_have_attribute("data-auth", "failed")
    assert "invalid token" in (await status.get_attribute("data-reason") or "")
    await type_at_end(page, "should not be stored")
    await asyncio.sleep(HELD)  # sent by now: queued by the server for an auth that never comes
    assert await unsynced(page)
    await expect(status).to_have_attribute("data-status", "connected")
    assert body_of(stored_doc(server.database, draft)) == []
