"""Relay: what one connection sends reaches every other connection of the room, never itself.

- a document update is relayed to every other connection (pycrdt and stock Yjs clients) and is
  never echoed to its sender, which the write acknowledgement (message 102) makes observable:
  the ack comes after the update is committed and relayed, so an echo would precede it;
- write acks come back once per request, in order, only to the connection that asked, and only
  once everything it sent before is committed;
- awareness is relayed, announced as removed when its client goes (whether that client said
  goodbye or not), and a query-awareness gets every state the room holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from pycrdt import Doc, Text

from crdt.awareness import AwarenessEntry, decode_awareness_update, encode_awareness_update
from crdt.protocol import (
    Awareness,
    QueryAwareness,
    SyncStep1,
    SyncStep2,
    Update,
    WriteAck,
    encode_message,
)
from tests.support.node_client import NodeClient
from tests.support.pycrdt_client import PycrdtClient
from tests.support.raw_client import RawClient, connect_raw
from tests.support.server_process import ServerProcess
from tests.support.store_reader import stored_doc

TIMEOUT = 10


def new_draft() -> str:
    return f"d-{uuid.uuid4().hex[:12]}"


class LocalDoc:
    """A pycrdt doc whose edits come out as y-protocols update frames, for a `RawClient`."""

    def __init__(self) -> None:
        self.doc: Doc = Doc()

    def insert(self, field: str, text: str) -> bytes:
        before = self.doc.get_state()
        root = self.doc.get(field, type=Text)
        root.insert(len(root), text)
        return encode_message(Update(self.doc.get_update(before)))


async def joined_raw(server: ServerProcess, draft: str) -> RawClient:
    client = await connect_raw(server.ws_url, draft, server.token("alice"))
    await client.next_message(SyncStep1, timeout=TIMEOUT)
    return client


async def ack(client: RawClient, payload: bytes) -> int:
    """Send a write-ack request and return the index of its answer among the received messages."""
    await client.send(encode_message(WriteAck(payload)))
    index, _ = await client.next_message(
        WriteAck, where=lambda m: m.payload == payload, timeout=TIMEOUT
    )
    return index


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = TIMEOUT) -> None:
    """Poll a check of a Node client (it reports no awareness or document events) until true."""
    async with asyncio.timeout(timeout):
        while True:
            if await check():
                return
            await asyncio.sleep(0.05)  # poll interval, bounded by the timeout above


@contextlib.asynccontextmanager
async def node_clients(
    server: ServerProcess, draft: str, *names: str
) -> AsyncIterator[list[NodeClient]]:
    token = server.token("alice")
    clients: list[NodeClient] = []
    try:
        for name in names:
            clients.append(await NodeClient.start(server.ws_url, draft, token, name=name))
            await clients[-1].call("wait_synced")
        yield clients
    finally:
        await asyncio.gather(*(c.close() for c in clients))


async def awareness_of(client: NodeClient) -> dict[int, Any]:
    """The awareness states a Node client holds, by Yjs client id."""
    pairs = await client.call("awareness_states")
    return {int(client_id): state for client_id, state in pairs}


# -- document updates --------------------------------------------------------------------------


async def test_an_update_reaches_every_other_connection_and_never_its_sender(
    server: ServerProcess,
) -> None:
    draft = new_draft()
    token = server.token("alice")
    editors: list[PycrdtClient] = []
    try:
        for _ in range(2):
            editors.append(await PycrdtClient(server.ws_url, draft, token).connect())
            await asyncio.wait_for(editors[-1].synced.wait(), TIMEOUT)
        async with node_clients(server, draft, "node") as (node,):
            sender = await joined_raw(server, draft)
            local = LocalDoc()
            await sender.send(local.insert("title", "hello"))
            acked = await ack(sender, b"first")

            before_ack = sender.messages[:acked]
            assert not [m for m in before_ack if isinstance(m, Update | SyncStep2)]
            for editor in editors:
                await editor.wait_for(lambda e=editor: e.text("title") == "hello", TIMEOUT)
            await eventually(lambda: _has_text(node, "title", "hello"))

            # A later edit by someone else does reach the sender; still nothing of its own.
            await editors[0].edit(lambda doc: doc.get("notes", type=Text).insert(0, "other"))
            await sender.next_message(Update, after=acked, timeout=TIMEOUT)
            await ack(sender, b"second")
            received: Doc = Doc()
            for message in sender.messages:
                if isinstance(message, Update | SyncStep2):
                    received.apply_update(message.update)
            assert str(received.get("notes", type=Text)) == "other"
            assert str(received.get("title", type=Text)) == "", "the sender got its own update"
            await sender.close()
    finally:
        await asyncio.gather(*(e.disconnect() for e in editors))


async def _has_text(client: NodeClient, field: str, text: str) -> bool:
    return await client.text(field) == text


async def test_write_acks_come_back_in_order_after_the_commit(server: ServerProcess) -> None:
    draft = new_draft()
    writer = await joined_raw(server, draft)
    bystander = await joined_raw(server, draft)
    try:
        # nothing pending: answered at once, payload untouched (any bytes)
        await ack(writer, b"\x00\xffempty")

        local = LocalDoc()
        for i in range(10):
            await writer.send(local.insert("title", f"[{i}]"))
        await writer.send(encode_message(WriteAck(b"ten")))
        for i in range(10, 15):
            await writer.send(local.insert("title", f"[{i}]"))
        last = await ack(writer, b"fifteen")
        # every update sent before an ack was stored when the ack came back
        expected = "".join(f"[{i}]" for i in range(15))
        assert str(stored_doc(server.database, draft).get("title", type=Text)) == expected

        acks = [m.payload for m in writer.messages[: last + 1] if isinstance(m, WriteAck)]
        assert acks == [b"\x00\xffempty", b"ten", b"fifteen"]
        relayed: Doc = Doc()
        applied: list[bytes] = []

        def has_everything() -> bool:
            updates = [m.update for m in bystander.messages if isinstance(m, Update)]
            for update in updates[len(applied) :]:
                relayed.apply_update(update)
                applied.append(update)
            return str(relayed.get("title", type=Text)) == expected

        await bystander.wait_for(has_everything, TIMEOUT)
        assert not [m for m in bystander.messages if isinstance(m, WriteAck)]
    finally:
        await asyncio.gather(writer.close(), bystander.close())


# -- awareness ---------------------------------------------------------------------------------


async def test_awareness_is_relayed_and_removed_when_its_client_exits(
    server: ServerProcess,
) -> None:
    draft = new_draft()
    async with node_clients(server, draft, "A", "B") as (a, b):
        a_id = (await a.state())["clientID"]
        await a.call("awareness_set", field="cursor", value={"anchor": 3})

        async def b_sees_a_cursor() -> bool:
            state = (await awareness_of(b)).get(a_id)
            return state is not None and state.get("cursor") == {"anchor": 3}

        await eventually(b_sees_a_cursor)
        await a.close()

        async def b_sees_a_gone() -> bool:
            return a_id not in await awareness_of(b)

        await eventually(b_sees_a_gone)


async def test_a_client_that_vanishes_is_removed_from_awareness_by_the_server(
    server: ServerProcess,
) -> None:
    draft = new_draft()
    async with node_clients(server, draft, "B") as (b,):
        raw = await joined_raw(server, draft)
        state = json.dumps({"user": {"name": "raw"}})
        entry = AwarenessEntry(client_id=4242, clock=1, state_json=state)
        await raw.send(encode_message(Awareness(encode_awareness_update([entry]))))

        async def b_sees_raw() -> bool:
            return (await awareness_of(b)).get(4242) == {"user": {"name": "raw"}}

        await eventually(b_sees_raw)
        await raw.close()  # no awareness goodbye (state null) was sent: the server must say it

        async def b_sees_raw_gone() -> bool:
            return 4242 not in await awareness_of(b)

        await eventually(b_sees_raw_gone)


async def test_query_awareness_answers_with_every_state(server: ServerProcess) -> None:
    draft = new_draft()
    async with node_clients(server, draft, "A", "B") as (a, b):
        ids = {(await c.state())["clientID"] for c in (a, b)}

        async def everyone_seen_by(client: NodeClient) -> bool:
            return ids <= set(await awareness_of(client))

        await eventually(lambda: everyone_seen_by(a))
        await eventually(lambda: everyone_seen_by(b))

        def names(message: Awareness) -> dict[int, str]:
            entries = decode_awareness_update(message.update)
            return {
                e.client_id: json.loads(e.state_json)["user"]["name"]
                for e in entries
                if not e.removed
            }

        def covers_everyone(message: Awareness) -> bool:
            return ids <= set(names(message))

        raw = await joined_raw(server, draft)
        try:
            # the room greets a newcomer with everyone's state; the query must do it again
            greeting, _ = await raw.next_message(Awareness, where=covers_everyone)
            await raw.send(encode_message(QueryAwareness()))
            _, answer = await raw.next_message(
                Awareness, after=greeting + 1, where=covers_everyone, timeout=TIMEOUT
            )
            assert sorted(names(answer).values()) == ["A", "B"]
        finally:
            await raw.close()
