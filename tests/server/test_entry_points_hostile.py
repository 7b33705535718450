"""What one client sends at the entry points hurts no one else (review of the entry points).

Each test: a real server, real sockets; the hostile connection gets its documented close code,
and the server (its health, the other clients) is as it was.
"""

from __future__ import annotations

import asyncio
import uuid

import httpx
from websockets.asyncio.client import ClientConnection, connect

from crdt.awareness import AwarenessEntry, encode_awareness_update
from crdt.hocuspocus import encode_authenticated, encode_sync_status, prefix
from crdt.lib0 import write_var_bytes, write_var_string, write_var_uint
from crdt.protocol import Awareness, SyncStep1, SyncStep2, Update, encode_message
from server.sync.presence import MAX_BYTES, MAX_ENTRIES
from tests.support.raw_client import connect_raw
from tests.support.rest import as_user, create_draft, scrape
from tests.support.server_process import ServerProcess
from tests.support.sqlite_lock import write_lock
from tests.support.waiting import eventually

TIMEOUT = 10


def new_draft() -> str:
    return f"d-{uuid.uuid4().hex[:12]}"


async def test_a_deeply_nested_awareness_state_closes_4400_and_leaves_the_server_healthy(
    server: ServerProcess,
) -> None:
    """Valid JSON nested deeper than Python's recursion limit, under `--awareness-max-bytes`:
    `json.loads` raises RecursionError, not ValueError. It is bad input (4400), not a server
    fault: a fault is 1011, turns /healthz 503 and, five in a minute, stops the server."""
    depth = 20_000
    state = "[" * depth + "]" * depth
    assert len(state) < MAX_BYTES
    attack = encode_message(Awareness(encode_awareness_update([AwarenessEntry(4242, 1, state)])))
    draft = new_draft()
    client = await connect_raw(server.ws_url, draft, server.token("alice"))
    try:
        await client.next_message(SyncStep1, timeout=TIMEOUT)
        await client.send(attack)
        code, reason = await client.wait_closed(timeout=TIMEOUT)
    finally:
        await client.close()
    assert code == 4400, (code, reason)
    assert reason
    async with httpx.AsyncClient() as http:
        health = await http.get(f"{server.http_url}/healthz")
    assert health.status_code == 200, health.text


def deeply_nested_update(depth: int, *, client: int = 5151) -> bytes:
    """One item of `notes` whose Any value is `depth` arrays, each inside the one before:
    yrs reads it recursively, without a limit, and a deep enough one overflows its stack
    (a segfault: the whole process goes). The room reads such updates in Python first."""
    out = bytearray()
    for value in (1, 1, client, 0):  # one struct group of one struct, at clock 0
        write_var_uint(out, value)
    out.append(8)  # Any content, its parent named
    write_var_uint(out, 1)
    write_var_string(out, "notes")
    write_var_uint(out, 1)  # one value
    out += b"u\x01" * depth + bytes([126])  # [[[...[null]...]]]
    write_var_uint(out, 0)  # no delete set
    return bytes(out)


def hocuspocus_frame(address: str, body: bytes, payload: str | bytes) -> bytes:
    out = bytearray(prefix(address) + body)
    if isinstance(payload, str):
        write_var_string(out, payload)
        write_var_string(out, "4.8.0")
    else:
        write_var_bytes(out, payload)
    return bytes(out)


async def receive(socket: ClientConnection) -> bytes:
    data = await asyncio.wait_for(socket.recv(), TIMEOUT)
    assert isinstance(data, bytes), data
    return data


async def test_a_hocuspocus_viewers_step_2_gets_the_writers_checks_before_any_doc(
    server: ServerProcess,
) -> None:
    """A viewer's step 2 is not applied to the room's doc, but the endpoint tries it on a copy
    (does it hold anything new?): that copy must not take what the room refuses from a
    writer. Deep nesting is the sharpest case: yrs overflowed its stack and the server died."""
    async with as_user(server, "alice") as alice:
        draft = str((await create_draft(alice, title="Read me"))["id"])
        shared = await alice.put(
            f"/api/drafts/{draft}/access", json={"user": "victor", "role": "viewer"}
        )
        assert shared.status_code == 200, shared.text
    async with connect(f"ws://127.0.0.1:{server.port}/hocuspocus") as socket:
        await socket.send(hocuspocus_frame(draft, bytes([2, 0]), server.token("victor")))
        assert await receive(socket) == prefix(draft) + encode_authenticated("readonly")
        await socket.send(hocuspocus_frame(draft, bytes([0, 1]), deeply_nested_update(100_000)))
        # Refused as bad input on that document: a `draftsync.closed` notice with 4400.
        notice = await receive(socket)
        assert notice.startswith(prefix(draft) + bytes([5])), notice
        assert b'"code":4400' in notice, notice
    assert server.process is not None and server.process.poll() is None, "the server died"
    async with httpx.AsyncClient() as http:
        health = await http.get(f"{server.http_url}/healthz")
    assert health.status_code == 200, health.text


def connections_gauge(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith("draftsync_connections "):
            return float(line.split()[1])
    raise AssertionError("no draftsync_connections in /metrics")


async def test_a_hocuspocus_document_closed_while_its_draft_loads_does_not_stay_in_the_room(
    server: ServerProcess,
) -> None:
    """A document is closed while it waits for its room (here its token expires while the
    draft loads: the load's journal recovery waits for SQLite's write lock). Once the load
    ends, the closed document must not be added to the room: it was, and nothing ever took
    it out again (the room never unloaded, the connections gauge never went down)."""
    async with as_user(server, "alice") as alice:
        draft = str((await create_draft(alice, title="Slow to load"))["id"])
    assert connections_gauge(await scrape(server)) == 0
    async with connect(f"ws://127.0.0.1:{server.port}/hocuspocus") as socket:
        with write_lock(server.database):
            await socket.send(hocuspocus_frame(draft, bytes([2, 0]), server.token("alice", ttl=2)))
            assert await receive(socket) == prefix(draft) + encode_authenticated("read-write")
            frames = []
            while not frames or frames[-1][len(prefix(draft)) :][:1] != bytes([7]):
                frames.append(await receive(socket))  # the refresh request, notice, CLOSE
            assert b"token expired" in frames[-1], frames
    # The load goes on now; the socket is gone: the room unloads once loaded.

    async def unloaded() -> bool:
        return f"room unloaded draft={draft}" in server.log()

    await eventually(unloaded, timeout=TIMEOUT)
    assert connections_gauge(await scrape(server)) == 0


def text_item(client: int, clock: int, text: str, *, deletes: list[tuple[int, int, int]]) -> bytes:
    """One string item at the start of `title`, with a delete set of (client, clock, length)
    ranges, encoded by hand (test_hostile_doc.py, finding 6)."""
    out = bytearray()
    for value in (1, 1, client, clock):
        write_var_uint(out, value)
    out.append(4)
    write_var_uint(out, 1)
    write_var_string(out, "title")
    write_var_string(out, text)
    write_var_uint(out, len(deletes))
    for owner, start, length in deletes:
        for value in (owner, 1, start, length):
            write_var_uint(out, value)
    return bytes(out)


async def test_a_hocuspocus_viewers_step_2_that_would_panic_yrs_is_answered_not_applied(
    server: ServerProcess,
) -> None:
    """Finding 6's delete set, as a viewer's step 2: yrs panicked on the copy of the doc it
    was tried on, and the panic (a BaseException) went past every handler and ended the
    whole socket (its other documents too). No doc takes a viewer's update now (its delete
    set is compared with the doc's, server/sync/hocuspocus.py `_nothing_new`): the step 2 is
    answered "not applied", and the socket's documents go on."""
    async with as_user(server, "alice") as alice:
        draft = str((await create_draft(alice, title="Read me"))["id"])
        shared = await alice.put(
            f"/api/drafts/{draft}/access", json={"user": "victor", "role": "viewer"}
        )
        assert shared.status_code == 200, shared.text
        other = str((await create_draft(alice, title="Other"))["id"])
        shared = await alice.put(
            f"/api/drafts/{other}/access", json={"user": "victor", "role": "viewer"}
        )
        assert shared.status_code == 200, shared.text
    writer = await connect_raw(server.ws_url, draft, server.token("alice"))
    try:
        await writer.next_message(SyncStep1, timeout=TIMEOUT)
        near_2_53 = 2**53 - 2
        await writer.send(encode_message(Update(text_item(5, near_2_53, "x", deletes=[]))))
        async with connect(f"ws://127.0.0.1:{server.port}/hocuspocus") as socket:
            for address in (draft, other):
                await socket.send(hocuspocus_frame(address, bytes([2, 0]), server.token("victor")))
                assert await receive(socket) == prefix(address) + encode_authenticated("readonly")
            panics = text_item(7, 0, "P", deletes=[(5, 1, 2**53 - 1)])
            await socket.send(hocuspocus_frame(draft, bytes([0, 1]), panics))
            assert await receive(socket) == prefix(draft) + encode_sync_status(False)
            # The socket's other document goes on: its step 1 is answered.
            await socket.send(hocuspocus_frame(other, bytes([0, 0]), b"\x00"))
            while not (answer := await receive(socket)).startswith(prefix(other)):
                pass
            assert answer.startswith(prefix(other) + bytes([0, 0])), answer
    finally:
        await writer.close()


async def test_an_awareness_update_of_too_many_entries_is_refused_before_it_is_decoded(
    server: ServerProcess,
) -> None:
    """1,500,000 entries (10.5 MB) were decoded in Python on the event loop: /healthz waited
    2.0 s. Past MAX_ENTRIES the count alone closes the sender with 4400; as many is taken."""
    entries = [AwarenessEntry(7, 1, "null")] * (MAX_ENTRIES + 1)
    attacker = await connect_raw(server.ws_url, new_draft(), server.token("alice"))
    try:
        await attacker.send(encode_message(Awareness(encode_awareness_update(entries))))
        code, reason = await attacker.wait_closed(timeout=TIMEOUT)
    finally:
        await attacker.close()
    assert code == 4400 and reason and f"entries in one update > {MAX_ENTRIES}" in reason, (
        code,
        reason,
    )
    honest = await connect_raw(server.ws_url, new_draft(), server.token("alice"))
    try:
        await honest.send(encode_message(Awareness(encode_awareness_update(entries[1:]))))
        await honest.send(encode_message(SyncStep1(b"\x00")))
        await honest.next_message(SyncStep2, timeout=TIMEOUT)
        assert not honest.closed.is_set()
    finally:
        await honest.close()
