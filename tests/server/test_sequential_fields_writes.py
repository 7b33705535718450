"""A `fields` write shaped as the review's commonest one (one item whose origin is the key's
value, one Any value: `SemanticFields._review_sequential`) is still refused with 4400 when it
is not JSON, through a real server; an honest one is stored and relayed.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from pycrdt import Doc, Map

from crdt.lib0 import write_var_bytes, write_var_uint
from crdt.protocol import Update, encode_message
from tests.support.pycrdt_client import PycrdtClient
from tests.support.raw_client import connect_raw
from tests.support.server_process import ServerProcess
from tests.support.store_reader import stored_doc, stored_update_count

TIMEOUT = 30
OWNER_ID = 777


def binary_overwrite(origin: tuple[int, int]) -> bytes:
    """Client 999's first item: origin `origin` (the key's winner), no right origin, Any
    content of one value, binary (lib0 tag 116); a delete set removing the origin."""
    out = bytearray([1, 1])
    write_var_uint(out, 999)
    write_var_uint(out, 0)
    out.append(0xA8)  # a left origin, a key (unread with an origin), Any content
    write_var_uint(out, origin[0])
    write_var_uint(out, origin[1])
    out += bytes([1, 116])
    write_var_bytes(out, b"\x00\x01")
    out += bytes([1])
    write_var_uint(out, origin[0])
    out += bytes([1])
    write_var_uint(out, origin[1])
    out += bytes([1])
    return bytes(out)


def set_category(value: str) -> Callable[[Doc], None]:
    return lambda doc: doc.get("fields", type=Map).__setitem__("category", value)


async def test_a_sequential_looking_binary_write_is_refused_and_an_honest_one_stands(
    server: ServerProcess,
) -> None:
    draft = f"d-{uuid.uuid4().hex[:12]}"
    owner = PycrdtClient(server.ws_url, draft, server.token("alice"), client_id=OWNER_ID)
    await owner.connect()
    await asyncio.wait_for(owner.synced.wait(), TIMEOUT)
    await owner.edit(set_category("a"))
    await owner.flush()

    attacker = await connect_raw(server.ws_url, draft, server.token("alice"))
    try:
        await attacker.send(encode_message(Update(binary_overwrite((OWNER_ID, 0)))))
        code, reason = await attacker.wait_closed(timeout=TIMEOUT)
    finally:
        await attacker.close()
    assert code == 4400 and reason and "binary" in reason, (code, reason)
    assert stored_update_count(server.database, draft) == 1
    assert stored_doc(server.database, draft).get("fields", type=Map).to_py() == {"category": "a"}

    # The room that took it was dropped; the next one judges the owner's next write as usual.
    await asyncio.wait_for(owner.closed.wait(), TIMEOUT)
    await owner.connect()
    await asyncio.wait_for(owner.synced.wait(), TIMEOUT)
    reader = PycrdtClient(server.ws_url, draft, server.token("alice"))
    await reader.connect()
    try:
        await asyncio.wait_for(reader.synced.wait(), TIMEOUT)
        # "b": the first write since the load (a full review, which builds the index); "c":
        # a sequential one, reviewed the short way.
        for value in ("b", "c"):
            await owner.edit(set_category(value))
            await owner.flush()
            await reader.wait_for(lambda: reader.fields().get("category") == value, TIMEOUT)  # noqa: B023
    finally:
        await reader.disconnect()
        await owner.disconnect()
    stored = stored_doc(server.database, draft)
    assert stored.get("fields", type=Map).to_py() == {"category": "c"}
    assert stored_update_count(server.database, draft) == 3
