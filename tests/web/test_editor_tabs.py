"""Two tabs of one draft in one browser profile: what one tab kept here is not lost by the other.

Both tabs write the draft's copy in IndexedDB and its line in the index of copies (pending:
changes not on the server yet). A tab whose socket never got through (a dead connection, an
expired token) keeps its work there only; the tab left open must neither call the copy clean
in the index nor let "Sign out" delete that work without asking.
"""

from __future__ import annotations

import asyncio

from playwright.async_api import Browser, Dialog, WebSocketRoute

from tests.support.server_process import ServerProcess
from tests.support.waiting import eventually
from tests.web import test_editor_offline
from tests.web.conftest import editor_url, text_field, wait_status
from tests.web.test_editor_offline import (
    Errors,
    new_draft,
    new_person,
    offline_ready,
    server_text,
    wait_saved_here,
)

# the offline tests' fixtures: one browser per test, errors in its pages fail the test
playwright = test_editor_offline.playwright
chromium = test_editor_offline.chromium
errors = test_editor_offline.errors

SIGN_OUT_WAIT_S = 10


async def test_sign_out_in_one_tab_never_silently_deletes_another_tabs_unsent_work(
    server: ServerProcess, chromium: Browser, errors: Errors
) -> None:
    draft = new_draft()
    context, left_open = await new_person(chromium, errors)
    await left_open.goto(editor_url(server, draft, "tara"))
    await wait_status(left_open, "synced")
    await offline_ready(left_open)

    # a second tab of the draft whose socket never gets through (opened, then silent)
    cut = errors.watch(await context.new_page())
    held: list[WebSocketRoute] = []
    await cut.route_web_socket("**/ws/**", lambda ws: held.append(ws))
    await cut.goto(f"{server.http_url}/d/{draft}")  # a copied link: the stored token
    await text_field(cut, "title").click()
    await cut.keyboard.type("typed in the cut tab")
    await wait_saved_here(cut)
    await cut.close()  # its work is in IndexedDB only

    # the tab left open goes on working, online, and its changes are acknowledged
    await text_field(left_open, "description").click()
    await left_open.keyboard.type("typed in the tab left open")
    await wait_status(left_open, "synced")

    asked: list[str] = []

    async def on_dialog(dialog: Dialog) -> None:
        asked.append(dialog.message)
        await dialog.dismiss()

    left_open.on("dialog", on_dialog)
    await left_open.locator("[data-role=sign-out]").click()
    async with asyncio.timeout(SIGN_OUT_WAIT_S):
        # told no, the page stays; not asked, it signs out and goes to the drafts list
        while not asked and left_open.url.endswith(draft):  # noqa: ASYNC110 - a page event
            await asyncio.sleep(0.05)
    title = await server_text(server, draft, "tara", "title")
    # before the fix: signed out without a question, the cut tab's work deleted with the copy
    assert asked or title == "typed in the cut tab", (
        f"signed out without asking; the server's title is {title!r}"
    )
    if asked:
        assert asked[0].startswith("1 draft has changes not yet on the server")

    # the tab left open read the cut tab's work from IndexedDB and sent it
    async def on_the_server() -> bool:
        return await server_text(server, draft, "tara", "title") == "typed in the cut tab"

    await eventually(on_the_server)
