"""Diffs between versions, named versions, editing sessions and conflict frequency (issue 25,
points 2 and 6), over a real server and real clients."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from pycrdt import Array, Map, Text

from crdt.diff import WORD_LIMIT
from tests.support.hocuspocus_client import HocuspocusClient
from tests.support.postgres import BACKENDS, store_flags
from tests.support.pycrdt_client import PycrdtClient, write_while_apart
from tests.support.rest import as_user, create_draft, new_id
from tests.support.server_process import ServerProcess
from tests.support.waiting import eventually

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)
FIREFOX = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[ServerProcess]:
    """One real server per backend: named versions, sessions and conflict counts are queries
    of each store's journal (SQLite file, PostgreSQL database)."""
    flags = store_flags(request, request.param)
    process = ServerProcess(
        tmp_path_factory.mktemp("versions"), "--snapshot-every", "4", "--room-grace", "0.3", *flags
    ).start()
    yield process
    process.stop()


async def edited_draft(server: ServerProcess, steps: list[Any]) -> tuple[str, list[int]]:
    """A draft edited one step a version; the version after each step."""
    draft = new_id("diff")
    writer = await PycrdtClient(server.ws_url, draft, server.token("alice")).connect()
    versions = []
    try:
        await asyncio.wait_for(writer.synced.wait(), 10)
        for step in steps:
            await writer.edit(step)
            await writer.flush()
            async with as_user(server, "alice") as api:
                versions.append((await api.get(f"/api/drafts/{draft}")).json()["version"])
    finally:
        await writer.disconnect()
    return draft, versions


def sides(ops: list[dict[str, str]]) -> tuple[str, str]:
    """The old and the new text the inline operations stand for."""
    old = "".join(o["text"] for o in ops if o["op"] != "insert")
    return old, "".join(o["text"] for o in ops if o["op"] != "delete")


def marked(ops: list[dict[str, str]], kind: str) -> list[str]:
    return [o["text"] for o in ops if o["op"] == kind]


def by_field(diff: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {change["field"]: change for change in diff["changes"]}


async def test_a_diff_marks_text_values_and_list_items(server: ServerProcess) -> None:
    draft, versions = await edited_draft(
        server,
        [
            lambda d: d.get("title", type=Text).insert(0, "Save the bees"),
            lambda d: d.get("fields", type=Map).__setitem__("status", "DRAFT"),
            lambda d: d.get("tags", type=Array).extend(["nature", "garden"]),
            lambda d: d.get("title", type=Text).insert(9, "wild "),  # Save the wild bees
            lambda d: d.get("title", type=Text).__delitem__(slice(0, 5)),  # the wild bees
            lambda d: d.get("fields", type=Map).__setitem__("status", "IN_REVIEW"),
            lambda d: d.get("tags", type=Array).__delitem__(0),
            lambda d: d.get("tags", type=Array).append("spring"),
        ],
    )
    first = versions[2]  # "Save the bees", DRAFT, [nature, garden]
    async with as_user(server, "alice") as api:
        answer = await api.get(f"/api/drafts/{draft}/diff", params={"from": first})
        assert answer.status_code == 200, answer.text
        diff = answer.json()
        assert diff["fromVersion"] == first and diff["toVersion"] == versions[-1]
        assert diff["bounded"] is False
        changes = by_field(diff)
        title = changes["title"]
        assert title["kind"] == "text" and title["granularity"] == "char"
        assert sides(title["ops"]) == ("Save the bees", "the wild bees")
        assert marked(title["ops"], "delete") == ["Save "]
        assert [t.strip() for t in marked(title["ops"], "insert")] == ["wild"]
        assert (title["inserted"], title["deleted"]) == (5, 5)
        assert changes["status"] == {
            "field": "status",
            "kind": "value",
            "old": "DRAFT",
            "new": "IN_REVIEW",
        }
        tags = changes["tags"]
        assert tags["added"] == ["spring"] and tags["removed"] == ["nature"]
        assert set(changes) == {"title", "status", "tags"}

        # Between two chosen versions, either way round; the same version: nothing changed.
        between = (
            await api.get(f"/api/drafts/{draft}/diff?from={versions[3]}&to={versions[0]}")
        ).json()
        back = by_field(between)["title"]["ops"]
        assert sides(back) == ("Save the wild bees", "Save the bees")
        assert [t.strip() for t in marked(back, "delete")] == ["wild"]
        assert marked(back, "insert") == []
        assert set(by_field(between)) == {"title", "status", "tags"}  # status, tags: not yet
        same = (await api.get(f"/api/drafts/{draft}/diff?from=3&to=3")).json()
        assert same["changes"] == []
        characters = (await api.get(f"/api/drafts/{draft}/diff?from=0&to={versions[0]}")).json()
        assert by_field(characters)["title"]["inserted"] == len("Save the bees")

        # Bad parameters: 400; a version past the last or an unknown draft: 404.
        for query in ("", "?from=abc", "?from=-1", "?from=1&to=x", f"?from={2**63}"):
            bad = await api.get(f"/api/drafts/{draft}/diff{query}")
            assert bad.status_code == 400, (query, bad.text)
        beyond = await api.get(f"/api/drafts/{draft}/diff?from=1&to={versions[-1] + 1}")
        assert beyond.status_code == 404 and "out of range" in beyond.json()["detail"]
        assert (await api.get(f"/api/drafts/{new_id('nope')}/diff?from=0")).status_code == 404
    async with as_user(server, "stranger") as api:
        assert (await api.get(f"/api/drafts/{draft}/diff?from=0")).status_code == 404


async def test_characters_are_counted_as_characters(server: ServerProcess) -> None:
    draft, _ = await edited_draft(
        server, [lambda d: d.get("title", type=Text).insert(0, "Crème brûlée 🐝")]
    )
    async with as_user(server, "alice") as api:
        diff = (await api.get(f"/api/drafts/{draft}/diff?from=0")).json()
    assert by_field(diff)["title"]["inserted"] == len("Crème brûlée 🐝") == 14


async def test_a_huge_text_is_compared_by_lines_and_says_so(server: ServerProcess) -> None:
    lines = "".join(f"line {n} of a long description\n" for n in range(WORD_LIMIT // 4))
    draft, versions = await edited_draft(
        server,
        [
            lambda d: d.get("description", type=Text).insert(0, lines),
            lambda d: d.get("description", type=Text).insert(0, "A new first line\n"),
            lambda d: d.get("description", type=Text).insert(
                len(lines) + len("A new first line\n"), "A new last line\n"
            ),
        ],
    )
    async with as_user(server, "alice") as api:
        bounded = (await api.get(f"/api/drafts/{draft}/diff?from={versions[0]}")).json()
        # one edit in one place: the rest is cut as common prefix and suffix, by characters
        one = (await api.get(f"/api/drafts/{draft}/diff?from={versions[1]}")).json()
    assert bounded["bounded"] is True
    description = by_field(bounded)["description"]
    assert description["granularity"] == "line"
    assert [o["op"] for o in description["ops"]] == ["insert", "equal", "insert"]
    assert description["ops"][0]["text"] == "A new first line\n"
    assert description["ops"][2]["text"] == "A new last line\n"
    assert one["bounded"] is False
    assert by_field(one)["description"]["granularity"] == "char"
    assert marked(by_field(one)["description"]["ops"], "insert") == ["A new last line\n"]


async def test_named_versions_are_saved_listed_counted_and_restored(
    server: ServerProcess,
) -> None:
    async with as_user(server, "alice") as alice, as_user(server, "vera") as vera:
        draft = (await create_draft(alice, title="First title"))["id"]
        await alice.put(f"/api/drafts/{draft}/access", json={"user": "vera", "role": "viewer"})
        url = f"/api/drafts/{draft}/versions"
        named = await alice.post(url, json={"label": "  Before   review "})
        assert named.status_code == 201, named.text
        first = named.json()
        assert first["label"] == "Before review" and first["user"] == "alice"
        assert first["version"] >= 1

        writer = await PycrdtClient(server.ws_url, draft, server.token("alice")).connect()
        try:
            await asyncio.wait_for(writer.synced.wait(), 10)
            await writer.edit(lambda d: d.get("title", type=Text).insert(0, "Changed: "))
            await writer.flush()
        finally:
            await writer.disconnect()
        second = (await alice.post(url, json={"label": "After"})).json()
        assert second["version"] > first["version"]

        listed = (await vera.get(url)).json()["items"]
        assert [(i["label"], i["version"]) for i in listed] == [
            ("After", second["version"]),
            ("Before review", first["version"]),
        ]
        meta = (await alice.get(f"/api/drafts/{draft}")).json()["metadata"]
        assert meta["manualSaveCount"] == 2
        assert meta["autoSaveCount"] == second["version"]

        # Viewers compare and list, they do not name; bad labels are refused.
        refused = await vera.post(url, json={"label": "mine"})
        assert refused.status_code == 403
        for body in ({"label": ""}, {"label": "   "}, {"label": "x" * 101}, {"label": 5}, {}):
            assert (await alice.post(url, json=body)).status_code == 422, body
        not_json = await alice.post(
            url, content=b"{nope", headers={"content-type": "application/json"}
        )
        assert not_json.status_code == 400
        unknown = await alice.post(f"/api/drafts/{new_id('nope')}/versions", json={"label": "a"})
        assert unknown.status_code == 404

        restored = await alice.post(
            f"/api/drafts/{draft}/restore", json={"version": first["version"]}
        )
        assert restored.status_code == 200, restored.text
        state = (await alice.get(f"/api/drafts/{draft}")).json()["state"]
        assert state["texts"]["title"] == "First title"


async def test_a_session_is_journaled_with_device_and_browser(server: ServerProcess) -> None:
    async with as_user(server, "alice") as api:
        draft = (await create_draft(api, title="Sessions"))["id"]
    for agent, category in ((IPHONE, "phone"), (FIREFOX, "desk")):
        client = await PycrdtClient(
            server.ws_url, draft, server.token("alice"), headers={"User-Agent": agent}
        ).connect()
        await asyncio.wait_for(client.synced.wait(), 10)
        await client.edit(
            lambda d, c=category: d.get("fields", type=Map).__setitem__("category", c)
        )
        await client.flush()
        await client.disconnect()

    async def sessions() -> list[dict[str, Any]]:
        async with as_user(server, "alice") as api:
            items = (await api.get(f"/api/drafts/{draft}/events")).json()["items"]
        return [e for e in items if e["type"] == "SESSION"]

    await eventually(lambda: _count(sessions, 2))
    async with as_user(server, "alice") as api:
        events = (await api.get(f"/api/drafts/{draft}/events")).json()["items"]
        meta = (await api.get(f"/api/drafts/{draft}")).json()["metadata"]
    # A session is journaled once the server has handled its connection's end, which the
    # client's close does not wait for: the phone's can be stored after the desktop's. Each
    # session is found by the edit its connection made, not by its place in the journal.
    changed = [e for e in events if e["type"] == "FIELD_UPDATED" and e["field"] == "category"]
    edited_in = {e["new"]: e["session"] for e in changed}
    assert len(changed) == 2 and set(edited_in) == {"phone", "desk"}
    by_id = {e["session"]: e for e in events if e["type"] == "SESSION"}
    assert set(by_id) == set(edited_in.values())  # two sessions, each the one of its edit
    phone, desktop = by_id[edited_in["phone"]], by_id[edited_in["desk"]]
    assert (phone["device"], phone["browser"], phone["os"]) == ("mobile", "Mobile Safari", "iOS")
    assert (desktop["device"], desktop["browser"]) == ("desktop", "Firefox")
    for session in (phone, desktop):
        assert session["user"] == "alice" and session["session"]
        assert session["duration_s"] >= 0
        assert session["started_at"] > 0
        assert "text" not in session and "value" not in session  # no content
    assert meta["sessionCount"] == 2


async def test_a_hocuspocus_document_session_is_journaled_too(server: ServerProcess) -> None:
    async with as_user(server, "alice") as api:
        draft = (await create_draft(api, title="Over Hocuspocus"))["id"]
    client = await HocuspocusClient.launch(f"ws://127.0.0.1:{server.port}/hocuspocus")
    try:
        await client.open("a", draft, server.token("alice"))
        await client.call("wait_synced", doc="a")
        await client.call("insert", doc="a", field="title", index=0, text="Seen ")
        await client.call("wait_saved", doc="a")
    finally:
        await client.close()

    async def sessions() -> list[dict[str, Any]]:
        async with as_user(server, "alice") as api:
            items = (await api.get(f"/api/drafts/{draft}/events")).json()["items"]
        return [e for e in items if e["type"] == "SESSION"]

    await eventually(lambda: _count(sessions, 1))
    (session,) = await sessions()
    assert session["user"] == "alice" and session["session"] and session["duration_s"] >= 0
    assert session["device"] in {"other", "desktop"}  # Node's WebSocket sends no browser


async def _count(read: Any, wanted: int) -> bool:
    return len(await read()) == wanted


async def test_stats_count_conflicts_per_field(server: ServerProcess) -> None:
    draft = new_id("freq")
    token = server.token("carla")
    first = await PycrdtClient(server.ws_url, draft, token, client_id=100).connect()
    second = await PycrdtClient(server.ws_url, draft, token, client_id=200).connect()
    try:
        await asyncio.wait_for(first.synced.wait(), 10)
        await write_while_apart(first, second, "goal_amount", 500, (1000, 2000))

        async def counted() -> bool:
            async with as_user(server, "carla") as api:
                stats = (await api.get("/api/stats")).json()
            return stats["conflictsByField"] == {"goal_amount": 1}

        await eventually(counted)
    finally:
        await first.disconnect()
        await second.disconnect()
    async with as_user(server, "someone-else") as api:
        assert (await api.get("/api/stats")).json()["conflictsByField"] == {}
