"""One document detached from a shared provider socket (`provider.detach()`: CLOSE 7, its
awareness not cleared by the provider) while the socket and its other document stay: the
server removes its awareness for the room's peers, its room is unloaded after the grace, and
the other document keeps syncing. A regression test: this held when written."""

from __future__ import annotations

import asyncio

from pycrdt import Text

from tests.support.hocuspocus_client import HocuspocusClient
from tests.support.node_client import NodeClient
from tests.support.rest import new_id, rooms_loaded
from tests.support.server_process import ServerProcess
from tests.support.stored import stored_doc
from tests.support.waiting import eventually


async def test_a_detached_document_leaves_its_room_and_awareness_the_other_syncs_on(
    server: ServerProcess,
) -> None:
    watched, alone = new_id("watched"), new_id("alone")
    token = server.token("alice")
    hp = await HocuspocusClient.launch(f"ws://127.0.0.1:{server.port}/hocuspocus", shared=True)
    peer = await NodeClient.start(server.ws_url, watched, token, name="peer")
    try:
        await hp.open("watched", watched, token, user="hp-watched")
        await hp.open("alone", alone, token)
        await asyncio.gather(
            hp.call("wait_synced", doc="watched"),
            hp.call("wait_synced", doc="alone"),
            peer.call("wait_synced"),
        )

        async def peer_sees_hp() -> bool:
            states = await peer.call("awareness_states")
            return any(state.get("user", {}).get("name") == "hp-watched" for _, state in states)

        await eventually(peer_sees_hp)
        await hp.call("detach_doc", doc="watched")

        async def peer_sees_hp_gone() -> bool:
            return not await peer_sees_hp()

        await eventually(peer_sees_hp_gone)
        loaded = await rooms_loaded(server)
        await hp.call("detach_doc", doc="alone")

        async def alone_unloaded() -> bool:
            return await rooms_loaded(server) == loaded - 1

        await eventually(alone_unloaded)
        await hp.open("again", alone, token)  # the same socket, the unloaded draft reopened
        await hp.call("wait_synced", doc="again")
        await hp.call("insert", doc="again", field="title", index=0, text="reopened")
        await hp.call("wait_saved", doc="again")
        assert not [e for e in hp.events if e["event"] == "socket-disconnect"]
    finally:
        await asyncio.gather(hp.close(), peer.close())
    assert str(stored_doc(server.database, alone).get("title", type=Text)) == "reopened"
