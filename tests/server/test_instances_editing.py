"""Clients on two draftsync instances edit, see each other and lose access alike (issue 10):
the tests of test_instances.py that neither stop, kill nor slow an instance or Redis, nor count
Redis receivers, so that they share one pair of instances (`shared_pair`: two server starts and
a database a test saved). Each touches only drafts of its own.
"""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
from pycrdt import Text

from tests.support.instances import advisory_waiters, new_draft
from tests.support.instances import shared_pair as shared_pair
from tests.support.node_client import NodeClient, edit_all_at_once
from tests.support.pycrdt_client import connect_synced
from tests.support.rest import as_user, create_draft
from tests.support.server_process import ServerProcess
from tests.support.stored_any import stored_doc, stored_rows
from tests.support.waiting import eventually


async def texts_agree(clients: list[NodeClient], field: str) -> str | None:
    texts = {await c.text(field) for c in clients}
    return texts.pop() if len(texts) == 1 else None


async def test_clients_on_two_instances_co_edit_and_converge(
    shared_pair: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = shared_pair
    draft = new_draft()
    on_a = [await NodeClient.start(a.ws_url, draft, a.token("alice")) for _ in range(2)]
    on_b = [await NodeClient.start(b.ws_url, draft, b.token("alice")) for _ in range(2)]
    clients = on_a + on_b
    try:
        for client in clients:
            await client.call("wait_synced")
        await edit_all_at_once(clients)

        # Each client's last edit is its `set` of round 4, sent after its last insert: the
        # title can be whole on every client while a last `set` is still on its way.
        async def converged() -> bool:
            text = await texts_agree(clients, "title")
            return (
                text is not None
                and all(text.count(f"[{i}.{r}]") == 1 for i in range(4) for r in range(5))
                and [await c.fields() for c in clients] == [{f"k{i}": 4 for i in range(4)}] * 4
            )

        await eventually(converged, timeout=15)
        stored = str(stored_doc(a, draft).get("title", type=Text))
        assert stored == await clients[0].text("title")
    finally:
        await asyncio.gather(*(c.close() for c in clients))


async def test_awareness_crosses_instances_and_goes_with_its_client(
    shared_pair: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = shared_pair
    draft = new_draft()
    async with (
        await NodeClient.start(a.ws_url, draft, a.token("alice")) as alice,
        await NodeClient.start(b.ws_url, draft, b.token("alice")) as bob,
    ):
        await asyncio.gather(alice.call("wait_synced"), bob.call("wait_synced"))
        await alice.call("awareness_set", field="user", value={"name": "alice"})

        async def bob_sees_alice() -> bool:
            states = await bob.call("awareness_states")
            return any(state.get("user") == {"name": "alice"} for _, state in states)

        await eventually(bob_sees_alice, timeout=10)
        await alice.close()

        async def bob_no_longer_sees_alice() -> bool:
            return not await bob_sees_alice()

        await eventually(bob_no_longer_sees_alice, timeout=10)


async def shared_with_bob(alice: httpx.AsyncClient) -> str:
    """A new draft of alice's, titled "secret", that bob may edit: its id."""
    draft_id = str((await create_draft(alice, title="secret"))["id"])
    shared = await alice.put(
        f"/api/drafts/{draft_id}/access", json={"user": "bob", "role": "editor"}
    )
    assert shared.status_code == 200, shared.text
    return draft_id


async def test_revoking_on_one_instance_closes_the_socket_on_the_other(
    shared_pair: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = shared_pair
    async with as_user(a, "alice") as alice:
        draft_id = await shared_with_bob(alice)
        async with await NodeClient.start(b.ws_url, draft_id, b.token("bob")) as bob:
            await bob.call("wait_synced")
            assert await bob.text("title") == "secret"
            revoked = await alice.put(
                f"/api/drafts/{draft_id}/access", json={"user": "bob", "role": "none"}
            )
            assert revoked.status_code == 200, revoked.text
            closed = await bob.wait_event("close", timeout=5, predicate=lambda e: not e["local"])
            assert (closed["code"], closed["reason"]) == (4403, "access revoked")


async def test_deleting_on_one_instance_leaves_no_update_the_other_was_committing(
    shared_pair: tuple[ServerProcess, ServerProcess],
) -> None:
    """Instance A deletes a draft while B's commit of an edit to it is under way (held here
    by the draft's versions lock, as a slow commit would be): A does not wait for B's room,
    so the purge must not run before that commit, nor may the commit store the edit after
    the purge. Either way the deleted draft's content is gone from the store."""
    a, b = shared_pair
    async with as_user(a, "alice") as alice:
        draft_id = await shared_with_bob(alice)
        carol = await connect_synced(b, new_draft(), "carol")
        bob = await connect_synced(b, draft_id, "bob")
        lock = await asyncpg.connect(a.store_url)
        try:
            await lock.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", draft_id)
            await bob.edit(lambda doc: doc.get("title", type=Text).insert(0, "MORE "))
            # B's commit waits for the lock, then A's purge behind it (`lock_drafts`)
            await eventually(lambda: advisory_waiters(lock, 1), timeout=10)
            deleting = asyncio.create_task(alice.delete(f"/api/drafts/{draft_id}"))
            await eventually(lambda: advisory_waiters(lock, 2), timeout=10)
            await lock.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", draft_id)
            assert (await asyncio.wait_for(deleting, 10)).status_code == 204
        finally:
            await lock.close()
        # B commits in order: once carol's later edit is acknowledged, bob's commit is over.
        await carol.edit(lambda doc: doc.get("title", type=Text).insert(0, "later"))
        await carol.flush()
        await asyncio.gather(bob.disconnect(), carol.disconnect())
    assert stored_rows(a, "SELECT version FROM updates WHERE draft_id = ?", draft_id) == []
