"""Clients that hold the whole old doc come back after a restart that compacted the draft.

What users of other Yjs servers report most after a deploy is doubled text: the server came
back with the draft rebuilt from its storage, and a client that kept its doc across the
restart merged its copy in again. Here the server stops with a long tail (it leaves a snapshot,
`UNLOAD_TAIL`), and while it was down both a y-websocket (Node) client and a pycrdt client
kept their docs and edited offline. After the restart the draft loads from the snapshot alone
(its reply to an empty joiner is the stored snapshot itself: `SyncReplies.keep`), both clients
resync, and every keystroke, offline or not, is there exactly once, in the store too.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pycrdt import Doc, Text

from server.store.snapshots import UNLOAD_TAIL
from tests.support.node_client import NodeClient
from tests.support.postgres import BACKENDS, store_flags
from tests.support.pycrdt_client import PycrdtClient
from tests.support.rest import new_id
from tests.support.server_process import ServerProcess
from tests.support.stored_any import snapshot_versions, stored_doc
from tests.support.waiting import eventually

TIMEOUT = 20
EVERY = 100  # --snapshot-every: one taken live, then a tail the stop leaves one for


def append(doc: Doc, text: str) -> None:
    title = doc.get("title", type=Text)
    title.insert(len(title), text)


def loaded_tails(server: ServerProcess, draft: str) -> list[int]:
    pattern = rf"room loaded draft={re.escape(draft)} version=\d+ snapshot=\d+ tail=(\d+)"
    return [int(tail) for tail in re.findall(pattern, server.log())]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_clients_with_the_old_doc_and_offline_edits_double_nothing_after_a_compacting_restart(
    tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    # A snapshot every EVERY versions while live, and one at the stop for the tail after it.
    flags = ["--snapshot-every", str(EVERY), *store_flags(request, backend)]
    server = ServerProcess(tmp_path / "data", *flags).start()
    draft = new_id("stale")
    token = server.token("alice")
    python = await PycrdtClient(server.ws_url, draft, token).connect()
    node = await NodeClient.start(server.ws_url, draft, token)
    try:
        await python.wait_for(python.synced.is_set, timeout=TIMEOUT)
        await node.call("wait_synced")
        typed = ""
        for i in range(EVERY + UNLOAD_TAIL + 6):  # past one live snapshot, then a long tail
            letter = "xy"[i % 2]
            await python.edit(lambda doc, letter=letter: append(doc, letter))
            await python.flush()
            typed += letter
        assert python.text("title") == typed

        async def node_has_it() -> bool:
            return await node.text("title") == typed

        await eventually(node_has_it, timeout=TIMEOUT)

        # Both go offline holding the whole doc, and edit while the server is down.
        await node.call("disconnect")
        await python.disconnect()
        assert server.terminate() == 0
        # one taken live, one left by the stop for the tail after it
        assert snapshot_versions(server, draft) == [EVERY, EVERY + UNLOAD_TAIL + 6]
        await node.call("insert", field="title", index=0, text="N")
        await python.edit(lambda doc: append(doc, "P"))
        expected = "N" + typed + "P"

        server.start()
        await python.connect()
        await node.call("connect")
        await python.wait_for(lambda: python.text("title") == expected, timeout=TIMEOUT)

        async def node_converged() -> bool:
            return await node.text("title") == expected

        await eventually(node_converged, timeout=TIMEOUT)
        await python.flush()
        assert loaded_tails(server, draft)[-1] == 0  # loaded from the stop's snapshot alone

        # A client that starts empty gets the same, once; and so does the store.
        fresh = await PycrdtClient(server.ws_url, draft, token).connect()
        try:
            await fresh.wait_for(lambda: fresh.text("title") == expected, timeout=TIMEOUT)
        finally:
            await fresh.disconnect()
        await node.call("disconnect")
        await python.disconnect()
        assert server.terminate() == 0
        assert str(stored_doc(server, draft).get("title", type=Text)) == expected
    finally:
        await python.disconnect()
        await node.close()
        server.stop()
