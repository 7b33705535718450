"""A `manual` field's concurrent writes open one conflict everyone sees; REST resolves it."""

from __future__ import annotations

import asyncio

from pycrdt import Map

from tests.support.node_client import NodeClient
from tests.support.pycrdt_client import PycrdtClient, write_while_apart
from tests.support.rest import as_user, new_id
from tests.support.server_process import ServerProcess
from tests.support.waiting import eventually


async def test_a_manual_conflict_is_seen_everywhere_and_resolved_over_rest(
    server: ServerProcess,
) -> None:
    draft = new_id("conflict")
    token = server.token("alice")
    first = await PycrdtClient(server.ws_url, draft, token, client_id=100).connect()
    second = await PycrdtClient(server.ws_url, draft, token, client_id=200).connect()
    watcher = await NodeClient.start(server.ws_url, draft, token)
    try:
        await write_while_apart(first, second, "goal_amount", 500, (1000, 2000))

        async def one_conflict() -> bool:
            conflicts = (await watcher.state())["conflicts"]
            return len(conflicts) == 1

        await eventually(one_conflict)
        ((conflict_id, entry),) = (await watcher.state())["conflicts"].items()
        assert entry["field"] == "goal_amount" and entry["opened_at"]
        values = sorted(c["value"] for c in entry["candidates"])
        assert values == [1000, 2000]
        assert all(c["user"] == "alice" and c["at"] for c in entry["candidates"])
        for client in (first, second):
            await client.wait_for(lambda c=client: len(c.doc.get("conflicts", type=Map)) == 1)

        async with as_user(server, "alice") as api:
            url = f"/api/drafts/{draft}/conflicts/{conflict_id}/resolve"
            wrong = await api.post(url, json={"value": 1500})
            assert wrong.status_code == 422 and "candidates" in wrong.json()["detail"]
            mistyped = await api.post(url, json={"value": "lots"})
            assert mistyped.status_code == 422
            not_json = await api.post(
                url, content=b"{not json", headers={"content-type": "application/json"}
            )
            assert not_json.status_code == 400
            done = await api.post(url, json={"value": 1000})
            assert done.status_code == 200, done.text
            again = await api.post(url, json={"value": 1000})
            assert again.status_code == 404
        async with as_user(server, "stranger") as api:
            assert (await api.post(url, json={"value": 1000})).status_code == 404

        async def resolved() -> bool:
            state = await watcher.state()
            return not state["conflicts"] and state["fields"]["goal_amount"] == 1000

        await eventually(resolved)
        for client in (first, second):
            await client.wait_for(
                lambda c=client: (
                    not len(c.doc.get("conflicts", type=Map)) and c.fields()["goal_amount"] == 1000
                )
            )
        async with as_user(server, "alice") as api:
            events = (await api.get(f"/api/drafts/{draft}/events", params={"limit": 1000})).json()
        kinds = [e["type"] for e in events["items"]]
        assert kinds.count("CONFLICT_OPENED") == 1 and kinds.count("CONFLICT_RESOLVED") == 1
    finally:
        await asyncio.gather(first.disconnect(), second.disconnect(), watcher.close())
