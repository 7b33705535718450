"""Semantic fields end to end: offline writers, real clients, the rules' answers everywhere."""

from __future__ import annotations

import asyncio
import uuid

from pycrdt import Array, Map

from crdt.lib0 import write_var_string, write_var_uint
from crdt.protocol import Update, encode_message
from tests.support.node_client import NodeClient
from tests.support.pycrdt_client import PycrdtClient
from tests.support.server_process import ServerProcess
from tests.support.waiting import eventually


def new_draft() -> str:
    return f"sem-{uuid.uuid4().hex[:10]}"


async def settled(clients: list[NodeClient], python: PycrdtClient, check) -> None:  # type: ignore[no-untyped-def]
    """Wait until every Node client and the pycrdt client satisfy `check(fields, tags)`."""

    async def all_match() -> bool:
        for client in clients:
            state = await client.state(lists=["tags"])
            if not check(state["fields"], state["lists"]["tags"]):
                return False
        tags = python.doc.get("tags", type=Array).to_py() or []
        return bool(check(python.fields(), tags))

    await eventually(all_match, timeout=15)


async def test_offline_writers_converge_to_the_rules_answers(server: ServerProcess) -> None:
    draft = new_draft()
    token = server.token("alice")
    a, b = [await NodeClient.start(server.ws_url, draft, token) for _ in range(2)]
    python = await PycrdtClient(server.ws_url, draft, token).connect()
    try:
        for client in (a, b):
            await client.call("wait_synced")
        await a.call("set", key="status", value="DRAFT")
        await a.call("set", key="current_step", value=1)
        await settled([a, b], python, lambda f, t: f.get("status") == "DRAFT")

        await a.call("disconnect")
        await b.call("disconnect")
        await a.call("set", key="status", value="IN_REVIEW")  # allowed from DRAFT
        await b.call("set", key="status", value="PUBLISHED")  # not allowed from DRAFT
        await a.call("set", key="current_step", value=3)
        await b.call("set", key="current_step", value=5)
        await a.call("push", field="tags", values=["shared", "from-a"])
        await b.call("push", field="tags", values=["shared", "from-b"])
        await b.call("connect")
        await b.call("wait_synced")
        await a.call("connect")
        await a.call("wait_synced")

        def rules_applied(fields: dict, tags: list) -> bool:  # type: ignore[type-arg]
            return (
                fields.get("status") == "IN_REVIEW"
                and fields.get("current_step") == 5
                and sorted(tags) == ["from-a", "from-b", "shared"]
            )

        await settled([a, b], python, rules_applied)
    finally:
        await python.disconnect()
        await asyncio.gather(a.close(), b.close())


async def test_a_sequential_write_stands_even_against_max(server: ServerProcess) -> None:
    draft = new_draft()
    token = server.token("alice")
    a = await NodeClient.start(server.ws_url, draft, token)
    python = await PycrdtClient(server.ws_url, draft, token).connect()
    try:
        await a.call("wait_synced")
        await a.call("set", key="current_step", value=4)
        await python.wait_for(lambda: python.fields().get("current_step") == 4)
        await a.call("set", key="current_step", value=2)  # moving back is the user's intent
        await python.wait_for(lambda: python.fields().get("current_step") == 2)
        await python.flush()
        assert (await a.fields())["current_step"] == 2
    finally:
        await python.disconnect()
        await a.close()


async def test_a_wrong_type_is_reverted_and_the_writer_stays_connected(
    server: ServerProcess,
) -> None:
    draft = new_draft()
    token = server.token("alice")
    a = await NodeClient.start(server.ws_url, draft, token)
    watcher = await PycrdtClient(server.ws_url, draft, token).connect()
    try:
        await a.call("wait_synced")
        await a.call("set", key="goal_amount", value=1000)
        await watcher.wait_for(lambda: watcher.fields().get("goal_amount") == 1000)
        await a.call("set", key="goal_amount", value="a lot")
        await eventually(lambda: _field_is(a, "goal_amount", 1000))
        await watcher.flush()
        assert watcher.fields()["goal_amount"] == 1000
        assert (await a.state())["wsconnected"]
    finally:
        await watcher.disconnect()
        await a.close()


async def _field_is(client: NodeClient, key: str, value: object) -> bool:
    return (await client.fields()).get(key) == value


async def test_a_crafted_string_item_on_a_fields_key_is_validated(server: ServerProcess) -> None:
    """A String item whose origin is a `fields` item becomes that key's value in pycrdt."""
    draft = new_draft()
    token = server.token("alice")
    writer = await PycrdtClient(server.ws_url, draft, token, client_id=1111).connect()
    watcher = await NodeClient.start(server.ws_url, draft, token)
    try:
        await asyncio.wait_for(writer.synced.wait(), 10)
        await writer.edit(lambda doc: doc.get("fields", type=Map).__setitem__("goal_amount", 50))
        await writer.flush()
        # client 2222, clock 0: info 0x84 = has origin + String content; origin = (1111, 0)
        crafted = bytearray()
        for number in (1, 1, 2222, 0):  # 1 group, 1 struct, client, clock
            write_var_uint(crafted, number)
        crafted.append(0x84)
        write_var_uint(crafted, 1111)
        write_var_uint(crafted, 0)
        write_var_string(crafted, "evil")
        write_var_uint(crafted, 0)  # empty delete set
        await writer._socket.send(encode_message(Update(bytes(crafted))))  # type: ignore[union-attr]
        await writer.flush()
        await watcher.call("wait_synced")
        await eventually(lambda: _field_is(watcher, "goal_amount", 50))
        await writer.wait_for(lambda: writer.fields().get("goal_amount") == 50)
    finally:
        await writer.disconnect()
        await watcher.close()


async def test_an_offline_write_from_before_a_restart_is_still_concurrent(
    server: ServerProcess,
) -> None:
    draft = new_draft()
    token = server.token("alice")
    # `late` has the larger client id: Yjs alone would let its stale write win.
    early = await PycrdtClient(server.ws_url, draft, token, client_id=1000).connect()
    late = await PycrdtClient(server.ws_url, draft, token, client_id=9000).connect()
    try:
        await early.edit(lambda doc: doc.get("fields", type=Map).__setitem__("current_step", 3))
        await early.flush()
        await late.wait_for(lambda: late.fields().get("current_step") == 3)
        await late.disconnect()
        await early.edit(lambda doc: doc.get("fields", type=Map).__setitem__("current_step", 5))
        await early.flush()
        await early.disconnect()

        server.terminate()
        server.start()

        await late.edit(lambda doc: doc.get("fields", type=Map).__setitem__("current_step", 4))
        await late.connect()
        await late.flush()
        await late.wait_for(lambda: late.fields().get("current_step") == 5)
        await early.connect()
        await early.wait_for(lambda: early.fields().get("current_step") == 5)
    finally:
        await early.disconnect()
        await late.disconnect()
