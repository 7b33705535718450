"""Roles, sharing and isolation (design.md, "Isolation", "Viewers"; issue 7).

Every endpoint is tried as a stranger, a viewer, an editor and an owner. Role changes are shown
on live stock Yjs clients (Node `WebsocketProvider`): a revoked user is closed with 4403 within
a second; an editor turned viewer is told "read-only" at once and its later edits reach nobody;
a viewer syncs and sees others' edits while its own never reach others or the store.

"Nothing arrived" is never waited for with a sleep: a client sets an awareness field after its
edit, and since the server handles a connection's messages in order, once another client sees
that field the server has handled (and dropped) the edit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pycrdt import Text

from tests.support.node_client import NodeClient
from tests.support.postgres import BACKENDS, store_flags
from tests.support.raw_client import connect_raw
from tests.support.rest import as_user, create_draft, new_id
from tests.support.server_process import ServerProcess
from tests.support.store_reader import stored_doc
from tests.support.waiting import eventually

ROLES = ("stranger", "viewer", "editor", "owner")


@pytest.fixture
async def shared(server: ServerProcess) -> AsyncIterator[tuple[str, dict[str, httpx.AsyncClient]]]:
    """A draft of `owner`, shared with `viewer` and `editor`; a REST client for each role."""
    names = {role: new_id(role) for role in ROLES}
    clients = {role: as_user(server, name) for role, name in names.items()}
    draft = await create_draft(clients["owner"], title="Shared plan", fields={"status": "DRAFT"})
    for role in ("viewer", "editor"):
        response = await clients["owner"].put(
            f"/api/drafts/{draft['id']}/access", json={"user": names[role], "role": role}
        )
        assert response.status_code == 200, response.text
    yield draft["id"], clients
    await asyncio.gather(*(c.aclose() for c in clients.values()))


async def test_every_draft_endpoint_by_role(
    shared: tuple[str, dict[str, httpx.AsyncClient]],
) -> None:
    draft_id, clients = shared
    path = f"/api/drafts/{draft_id}"
    expected = [
        # method, path, body, and the status for stranger, viewer, editor, owner
        ("GET", path, None, (404, 200, 200, 200)),
        ("GET", f"{path}/access", None, (404, 403, 403, 200)),
        ("PUT", f"{path}/access", {"user": "zed", "role": "viewer"}, (404, 403, 403, 200)),
        ("DELETE", path, None, (404, 403, 403, 204)),  # owner last: it removes the draft
    ]
    not_found = None
    for method, url, body, statuses in expected:
        for role, status in zip(ROLES, statuses, strict=True):
            response = await clients[role].request(method, url, json=body)
            assert response.status_code == status, (role, method, url, response.text)
            if status == 404:
                not_found = not_found or response.json()
                assert response.json() == not_found  # a stranger learns nothing
            if status == 403:
                assert response.json()["error"] == "forbidden"
    # A draft that never existed answers exactly like one the caller cannot reach.
    never = await clients["stranger"].get(f"/api/drafts/{new_id()}")
    assert (never.status_code, never.json()) == (404, not_found)


async def test_reads_show_each_role_what_it_may_see(
    shared: tuple[str, dict[str, httpx.AsyncClient]],
) -> None:
    draft_id, clients = shared
    for role in ("viewer", "editor", "owner"):
        draft = (await clients[role].get(f"/api/drafts/{draft_id}")).json()
        assert draft["role"] == role
        assert draft["state"]["texts"]["title"] == "Shared plan"
        assert ("access" in draft) == (role == "owner")  # only owners see who has access
    owner_view = (await clients["owner"].get(f"/api/drafts/{draft_id}")).json()
    assert sorted(owner_view["access"].values()) == ["editor", "owner", "viewer"]

    for role in ROLES:
        listed = (await clients[role].get("/api/drafts")).json()["items"]
        assert [item["id"] for item in listed] == ([] if role == "stranger" else [draft_id])
        stats = (await clients[role].get("/api/stats")).json()
        assert stats["totalDrafts"] == (0 if role == "stranger" else 1)


async def test_bodies_are_checked_only_for_those_who_may_send_them(
    shared: tuple[str, dict[str, httpx.AsyncClient]],
) -> None:
    draft_id, clients = shared
    url = f"/api/drafts/{draft_id}/access"
    expected = {"stranger": 404, "viewer": 403, "editor": 403}
    for role, status in expected.items():  # existence and role go before the body
        response = await clients[role].put(
            url, content=b"{not json", headers={"content-type": "application/json"}
        )
        assert response.status_code == status
    owner = clients["owner"]
    not_json = await owner.put(
        url, content=b"{not json", headers={"content-type": "application/json"}
    )
    assert not_json.status_code == 400
    for body in (
        {"user": "zed", "role": "admin"},
        {"user": "", "role": "viewer"},
        {"role": "viewer"},
        {"user": "zed", "role": "viewer", "expires": 3},
        {"user": 7, "role": "viewer"},
    ):
        response = await owner.put(url, json=body)
        assert response.status_code == 422, body
        assert response.json()["errors"]


async def test_the_owner_lists_who_has_access_and_sees_changes_at_once(
    shared: tuple[str, dict[str, httpx.AsyncClient]],
) -> None:
    draft_id, clients = shared
    owner = clients["owner"]
    listed = await owner.get(f"/api/drafts/{draft_id}/access")
    assert listed.status_code == 200
    roles = [entry["role"] for entry in listed.json()["items"]]
    assert sorted(roles) == ["editor", "owner", "viewer"]
    users = [entry["user"] for entry in listed.json()["items"]]
    assert users == sorted(users)
    viewer = next(e["user"] for e in listed.json()["items"] if e["role"] == "viewer")
    await owner.put(f"/api/drafts/{draft_id}/access", json={"user": viewer, "role": "none"})
    after = (await owner.get(f"/api/drafts/{draft_id}/access")).json()["items"]
    assert viewer not in [entry["user"] for entry in after]
    bad = await owner.get("/api/drafts/not%20an%20id/access")
    assert bad.status_code in (400, 404)
    async with httpx.AsyncClient(base_url=str(owner.base_url), timeout=10) as anonymous:
        assert (await anonymous.get(f"/api/drafts/{draft_id}/access")).status_code == 401


async def test_the_last_owner_cannot_leave_but_can_hand_over(server: ServerProcess) -> None:
    first, second = new_id("first"), new_id("second")
    async with as_user(server, first) as one, as_user(server, second) as two:
        draft_id = (await create_draft(one))["id"]
        url = f"/api/drafts/{draft_id}/access"
        for role in ("none", "editor", "viewer"):
            response = await one.put(url, json={"user": first, "role": role})
            assert response.status_code == 409, role
            assert "owner" in response.json()["detail"]
        assert (await one.put(url, json={"user": second, "role": "owner"})).status_code == 200
        assert (await one.put(url, json={"user": first, "role": "none"})).status_code == 200
        assert (await one.get(f"/api/drafts/{draft_id}")).status_code == 404
        assert (await two.get(f"/api/drafts/{draft_id}")).json()["access"] == {second: "owner"}
        removing_last = await two.put(url, json={"user": second, "role": "none"})
        assert removing_last.status_code == 409


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_user_name_holding_nul_is_refused_422_on_either_store(
    tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    # PostgreSQL's text cannot hold U+0000: the store refused it and the caller was told 503
    # "retry", which never helps (SQLite kept a name no PostgreSQL deployment could).
    process = ServerProcess(tmp_path, *store_flags(request, backend)).start()
    try:
        async with as_user(process, "alice") as api:
            draft_id = (await create_draft(api))["id"]
            url = f"/api/drafts/{draft_id}/access"
            for name in ("\x00", "bob\x00", "\x00admin"):
                answer = await api.put(url, json={"user": name, "role": "editor"})
                assert answer.status_code == 422, (name, answer.text)
                assert answer.json()["errors"][0]["loc"] == "user"
            assert (await api.get(url)).json()["items"] == [{"user": "alice", "role": "owner"}]
            fine = await api.put(url, json={"user": "bob smith", "role": "editor"})
            assert fine.status_code == 200, fine.text
    finally:
        process.stop()


async def test_a_stranger_is_refused_4403_on_websocket(server: ServerProcess) -> None:
    async with as_user(server, "alice") as alice:
        draft_id = (await create_draft(alice, title="private"))["id"]
    raw = await connect_raw(server.ws_url, draft_id, server.token("mallory"))
    code, _ = await raw.wait_closed()
    assert code == 4403
    assert raw.messages == []  # nothing of the draft was sent


async def test_revoking_closes_the_live_provider_4403_within_a_second(
    server: ServerProcess,
) -> None:
    async with as_user(server, "alice") as alice:
        draft_id = (await create_draft(alice, title="secret"))["id"]
        await _share(alice, draft_id, "bob", "editor")
        async with (
            await NodeClient.start(server.ws_url, draft_id, server.token("bob")) as bob,
            await NodeClient.start(server.ws_url, draft_id, server.token("alice")) as owner,
        ):
            await asyncio.gather(bob.call("wait_synced"), owner.call("wait_synced"))
            started = time.monotonic()
            response = await _share(alice, draft_id, "bob", "none")
            assert response["liveConnections"] == 1
            closed = await bob.wait_event("close", timeout=1, predicate=lambda e: not e["local"])
            assert time.monotonic() - started < 1
            assert (closed["code"], closed["reason"]) == (4403, "access revoked")
            gave_up = await bob.wait_event("closed", timeout=1)  # y-websocket stops retrying
            assert gave_up["code"] == 4403
            # The owner's connection is untouched.
            await owner.call("insert", field="title", index=0, text="still ")
            await eventually(lambda: _title_is(alice, draft_id, "still secret"))
            assert (await owner.state())["wsconnected"] is True
        # A new connection is refused too, and REST no longer shows the draft.
        assert (await _connect_close_code(server, draft_id, "bob")) == 4403
        async with as_user(server, "bob") as bob_rest:
            assert (await bob_rest.get(f"/api/drafts/{draft_id}")).status_code == 404


async def test_an_editor_turned_viewer_is_read_only_at_once(server: ServerProcess) -> None:
    async with as_user(server, "alice") as alice:
        draft_id = (await create_draft(alice, title="Title", fields={"status": "DRAFT"}))["id"]
        await _share(alice, draft_id, "carol", "editor")
        async with (
            await NodeClient.start(server.ws_url, draft_id, server.token("carol")) as carol,
            await NodeClient.start(server.ws_url, draft_id, server.token("alice")) as owner,
        ):
            await asyncio.gather(carol.call("wait_synced"), owner.call("wait_synced"))
            await carol.call("insert", field="title", index=5, text=" BEFORE")
            await eventually(lambda: _text_of(owner, "title", "Title BEFORE"))

            response = await _share(alice, draft_id, "carol", "viewer")
            assert response["liveConnections"] == 1
            denied = await carol.wait_event("permission-denied", timeout=1)
            assert denied["reason"] == "read-only"

            await carol.call("insert", field="title", index=0, text="AFTER ")
            await carol.call("set", key="status", value="ARCHIVED")
            await _handled(carol, owner, "after-edit")
            assert await owner.text("title") == "Title BEFORE"
            assert (await owner.fields())["status"] == "DRAFT"
            assert not [e for e in carol.events if e["event"] == "permission-denied"]  # once
            assert (await carol.state())["wsconnected"] is True  # stays connected

            # It still sees others' edits.
            await owner.call("insert", field="title", index=0, text="Owner ")
            await eventually(lambda: _text_contains(carol, "title", "Owner "))
            draft = (await alice.get(f"/api/drafts/{draft_id}")).json()
        assert draft["state"]["texts"]["title"] == "Owner Title BEFORE"
        assert draft["state"]["fields"]["status"] == "DRAFT"
    stored = stored_doc(server.database, draft_id)
    assert str(stored.get("title", type=Text)) == "Owner Title BEFORE"


async def test_a_viewer_syncs_and_watches_but_its_edits_go_nowhere(
    server: ServerProcess,
) -> None:
    async with as_user(server, "alice") as alice:
        draft_id = (await create_draft(alice, title="Read me"))["id"]
        await _share(alice, draft_id, "victor", "viewer")
        async with (
            await NodeClient.start(server.ws_url, draft_id, server.token("victor")) as viewer,
            await NodeClient.start(server.ws_url, draft_id, server.token("alice")) as owner,
        ):
            await asyncio.gather(viewer.call("wait_synced"), owner.call("wait_synced"))
            assert await viewer.text("title") == "Read me"
            # Told once, at its first sync step 2 (y-websocket sends one even when empty).
            denied = await viewer.wait_event("permission-denied", timeout=5)
            assert denied["reason"] == "read-only"

            await viewer.call("insert", field="title", index=0, text="VANDAL ")
            await viewer.call("insert", field="body", index=0, text="VANDAL")
            await _handled(viewer, owner, "after-edits")
            assert not [e for e in viewer.events if e["event"] == "permission-denied"]
            assert "VANDAL" not in str(await owner.state(texts=["title", "body"]))

            await owner.call("insert", field="title", index=7, text=" carefully")
            await eventually(lambda: _text_contains(viewer, "title", "Read me carefully"))
            assert (await viewer.state())["wsconnected"] is True
            draft = (await alice.get(f"/api/drafts/{draft_id}")).json()
        assert draft["state"]["texts"]["title"] == "Read me carefully"
        assert "victor" not in draft["metadata"]["contributors"]
    stored = stored_doc(server.database, draft_id)
    assert str(stored.get("title", type=Text)) == "Read me carefully"
    assert str(stored.get("body", type=Text)) == ""


async def test_a_viewer_turned_editor_writes_at_once(server: ServerProcess) -> None:
    async with as_user(server, "alice") as alice:
        draft_id = (await create_draft(alice, title="Draft"))["id"]
        await _share(alice, draft_id, "dora", "viewer")
        async with (
            await NodeClient.start(server.ws_url, draft_id, server.token("dora")) as dora,
            await NodeClient.start(server.ws_url, draft_id, server.token("alice")) as owner,
        ):
            await asyncio.gather(dora.call("wait_synced"), owner.call("wait_synced"))
            await dora.wait_event("permission-denied", timeout=5)  # as a viewer, at its sync
            response = await _share(alice, draft_id, "dora", "editor")
            assert response["liveConnections"] == 1
            await dora.call("insert", field="title", index=5, text=" by Dora")
            await eventually(lambda: _text_of(owner, "title", "Draft by Dora"))
            assert not [e for e in dora.events if e["event"] == "permission-denied"]
            # Down again: told again, at once.
            await _share(alice, draft_id, "dora", "viewer")
            assert (await dora.wait_event("permission-denied", timeout=1))["reason"] == "read-only"
        draft = (await alice.get(f"/api/drafts/{draft_id}")).json()
        assert "dora" in draft["metadata"]["contributors"]


# -- helpers ------------------------------------------------------------------------------------


async def _share(owner: httpx.AsyncClient, draft_id: str, user: str, role: str) -> Any:
    response = await owner.put(f"/api/drafts/{draft_id}/access", json={"user": user, "role": role})
    assert response.status_code == 200, response.text
    return response.json()


async def _handled(sender: NodeClient, witness: NodeClient, mark: str) -> None:
    """Return once the server has handled everything `sender` sent so far (see the docstring)."""
    await sender.call("awareness_set", field="mark", value=mark)

    async def seen() -> bool:
        states = await witness.call("awareness_states")
        return any(state.get("mark") == mark for _, state in states)

    await eventually(seen)


async def _text_of(client: NodeClient, field: str, text: str) -> bool:
    return await client.text(field) == text


async def _text_contains(client: NodeClient, field: str, text: str) -> bool:
    return text in await client.text(field)


async def _title_is(rest: httpx.AsyncClient, draft_id: str, title: str) -> bool:
    draft = (await rest.get(f"/api/drafts/{draft_id}")).json()
    return bool(draft["state"]["texts"]["title"] == title)


async def _connect_close_code(server: ServerProcess, draft_id: str, user: str) -> int | None:
    raw = await connect_raw(server.ws_url, draft_id, server.token(user))
    code, _ = await raw.wait_closed()
    return code
