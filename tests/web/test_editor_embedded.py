"""The editor pages inside a host application that mounts draftsync under `/collab`
(tests/support/embedded_host.py): every path the pages build (the bundle, REST, the WebSocket,
links between pages) stays under the prefix, and two people edit one draft live."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from server.auth import TokenSigner
from tests.support.embedded_host import PREFIX, EmbeddedHost
from tests.support.server_process import SECRET
from tests.web.conftest import OpenPage, expect_text, text_field, wait_status


@pytest.fixture
def host(tmp_path: Path) -> Iterator[EmbeddedHost]:
    process = EmbeddedHost(tmp_path).start()
    yield process
    process.stop()


def token(user: str) -> str:
    return TokenSigner(SECRET).issue(user, ttl_seconds=600, now=time.time())


async def test_the_editor_works_under_the_hosts_prefix(
    host: EmbeddedHost, open_page: OpenPage
) -> None:
    draft = f"embedded-{uuid.uuid4().hex[:10]}"
    headers = {"Authorization": f"Bearer {token('alice')}"}
    async with httpx.AsyncClient(base_url=host.http_url, headers=headers, timeout=10) as client:
        assert (await client.post(f"{PREFIX}/api/drafts", json={"id": draft})).status_code == 201
        shared = await client.put(
            f"{PREFIX}/api/drafts/{draft}/access", json={"user": "bob", "role": "editor"}
        )
        assert shared.status_code == 200

    # alice starts from the drafts list and follows its link to the editor.
    alice = await open_page(f"{host.http_url}{PREFIX}/?token={token('alice')}")
    await alice.locator(f"a[href*='/d/{draft}']").click()
    await alice.wait_for_url(f"{host.http_url}{PREFIX}/d/{draft}*")
    bob = await open_page(f"{host.http_url}{PREFIX}/d/{draft}?token={token('bob')}")
    await wait_status(alice, "synced")
    await wait_status(bob, "synced")
    await text_field(alice, "title").click()
    await alice.keyboard.type("Embedded")
    await expect_text(bob, "title", "Embedded")
    await wait_status(alice, "synced")  # the write ack came back over /collab/ws
    home = await bob.locator("[data-role=home]").get_attribute("href")
    assert home == f"{PREFIX}/"  # links carry no token: it is kept per origin (session.js)
