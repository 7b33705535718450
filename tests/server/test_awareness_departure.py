"""A client that leaves takes its cursors with it, for every peer, at once.

Peers time a silent state out only after 30 s (y-protocols' `outdatedTimeout`), so the server
must tell them: when a connection goes, the removal of each client id it owns (`null`, at a
clock past the last it sent) reaches every other connection, however it went: it said goodbye,
its process was killed, its last awareness update was still paced (server/sync/pacing.py),
or the server closed it and its socket lingers (a peer that never answers the close handshake
is dropped only by the keepalive, 40 s later).

The server runs in this process (tests/support/in_process_server.py), so that a test can see
the room still holds a closed connection; the peers are stock clients (Node `WebsocketProvider`,
Hocuspocus provider) and frame-level watchers. Every wait is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families
from pycrdt import Doc, Text

from bench.services import PostgresCluster, RedisServer
from crdt.awareness import AwarenessEntry, decode_awareness_update, encode_awareness_update
from crdt.protocol import Awareness, Update, WriteAck, encode_message
from server.auth import TokenSigner
from server.cluster.fanout import DEPARTURE_ECHOES
from tests.support.hocuspocus_client import HocuspocusClient
from tests.support.in_process_server import (
    InProcessServer,
    serving_in_process,
    synced_client,
    until,
)
from tests.support.instances import a_behind
from tests.support.node_client import NodeClient
from tests.support.raw_client import RawClient, connect_raw
from tests.support.redis_proxy import RedisProxy
from tests.support.rest import scrape
from tests.support.server_process import SECRET, ServerProcess, start_together

TIMEOUT = 15  # under the keepalive's 20 s ping interval: a removal must not wait for it
LEAVER = 4242  # the frame-level leaver's awareness client id
CHUNK = 256 * 1024  # characters a writer's update inserts (the slow-reader case)
MAX_ROUNDS = 48


def _token() -> str:
    return TokenSigner(SECRET).issue("alice", ttl_seconds=3600, now=time.time())


def _frame(*entries: tuple[int, int, Any]) -> bytes:
    update = encode_awareness_update(
        AwarenessEntry(client_id, clock, json.dumps(state)) for client_id, clock, state in entries
    )
    return encode_message(Awareness(update))


def _seen(watcher: RawClient, client_id: int) -> list[tuple[int, Any]]:
    """Every entry of `client_id` the watcher got, in order: (clock, state; None: removed)."""
    return [
        (entry.clock, json.loads(entry.state_json))
        for message in watcher.messages
        if isinstance(message, Awareness)
        for entry in decode_awareness_update(message.update)
        if entry.client_id == client_id
    ]


def _ends_removed(watcher: RawClient, client_id: int) -> bool:
    seen = _seen(watcher, client_id)
    return bool(seen) and seen[-1][1] is None


async def _eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Poll a Node client's view (it reports no awareness events) until true, bounded."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            if await check():
                return
            await asyncio.sleep(0.05)  # poll interval, bounded by the timeout above


async def _states(client: NodeClient) -> dict[int, Any]:
    return {int(client_id): state for client_id, state in await client.call("awareness_states")}


async def _cursor_seen(leaver: RawClient, peer: NodeClient) -> None:
    """The leaver (frame level) sets its cursor, until the peer (another instance's) shows it."""
    await peer.call("wait_synced")
    await leaver.send(_frame((LEAVER, 1, {"cursor": 1})))

    async def peer_sees_it() -> bool:
        return (await _states(peer)).get(LEAVER) == {"cursor": 1}

    await _eventually(peer_sees_it)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[InProcessServer]:
    # One relay a second: a connection's second awareness update waits in its pacer a second.
    async with serving_in_process(tmp_path, awareness_rate=1) as served:
        yield served


async def test_a_stock_client_killed_is_removed_for_its_peers(served: InProcessServer) -> None:
    """Its process killed: no goodbye from it (y-websocket's own removal on `destroy`), so the
    removal the peer sees is the server's."""
    draft, token = f"dep-{uuid.uuid4().hex[:8]}", _token()
    a = await NodeClient.start(served.ws_url, draft, token, name="A")
    b = await NodeClient.start(served.ws_url, draft, token, name="B")
    watcher = await synced_client(served.ws_url, draft, token)
    try:
        await asyncio.gather(a.call("wait_synced"), b.call("wait_synced"))
        a_id = (await a.state())["clientID"]
        await a.call("awareness_set", field="cursor", value={"anchor": 3})

        async def b_sees_a() -> bool:
            return (await _states(b)).get(a_id, {}).get("cursor") == {"anchor": 3}

        await _eventually(b_sees_a)
        await a.kill()

        async def b_sees_a_gone() -> bool:
            return a_id not in await _states(b)

        await _eventually(b_sees_a_gone)
        await watcher.wait_for(lambda: _ends_removed(watcher, a_id), timeout=TIMEOUT)
    finally:
        await asyncio.gather(a.close(), b.close(), watcher.close())


@pytest.mark.parametrize("how", ["close", "drop"])
async def test_a_leave_while_the_last_update_is_paced_ends_on_the_removal(
    served: InProcessServer, how: str
) -> None:
    """The leaver's second state waits in its pacer (one relay a second) when it goes: the
    peers get the removal, past that state's clock, and never the state."""
    draft, token = f"dep-{uuid.uuid4().hex[:8]}", _token()
    b = await NodeClient.start(served.ws_url, draft, token, name="B")
    watcher = await synced_client(served.ws_url, draft, token)
    leaver = await synced_client(served.ws_url, draft, token)
    try:
        await b.call("wait_synced")
        room = served.service.rooms.get(draft)
        assert room is not None
        await leaver.send(_frame((LEAVER, 1, {"cursor": 1})))
        await watcher.wait_for(lambda: bool(_seen(watcher, LEAVER)), timeout=TIMEOUT)
        await leaver.send(_frame((LEAVER, 2, {"cursor": 2})))  # within the interval: paced
        await until(lambda: any(p.pending for p in room._pacers.values()), "the state is paced")
        (paced,) = [conn for conn, pacer in room._pacers.items() if pacer.pending]
        if how == "close":
            await leaver.close()
        else:
            leaver.socket.transport.abort()  # no close frame: the TCP connection reset
        await watcher.wait_for(lambda: _ends_removed(watcher, LEAVER), timeout=TIMEOUT)
        seen = _seen(watcher, LEAVER)
        assert seen[0] == (1, {"cursor": 1}) and seen[-1][0] > 2, seen
        assert (2, {"cursor": 2}) not in seen  # the pacer's state was dropped, not sent after

        async def b_sees_it_gone() -> bool:
            return LEAVER not in await _states(b)

        await _eventually(b_sees_it_gone)
        assert paced not in room._pacers  # nothing of the leaver waits
    finally:
        await asyncio.gather(b.close(), watcher.close(), leaver.close())


@contextlib.asynccontextmanager
async def _stalled(served: InProcessServer, draft: str, token: str) -> AsyncIterator[Any]:
    """A client that joins, shows a cursor, then reads nothing (tests/server/test_slow_reader.py:
    `max_queue=1` and a small receive buffer, so the kernel soon stops acknowledging)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.setblocking(False)
    port = int(served.ws_url.rsplit(":", 1)[1].split("/")[0])
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    client = await websockets.connect(
        f"{served.ws_url}/{draft}?token={token}",
        sock=sock,
        max_queue=1,
        max_size=None,
        ping_interval=None,
        proxy=None,
    )
    try:
        await asyncio.wait_for(client.recv(), TIMEOUT)  # sync step 1: it is in the room
        await client.send(_frame((LEAVER, 1, {"cursor": 1})))
        yield client
    finally:
        client.transport.abort()


async def test_a_slow_reader_closed_4408_is_removed_while_its_socket_lingers(
    tmp_path: Path,
) -> None:
    """Closed 4408 (its send queue overflowed), the stalled client reads nothing, so the close
    never goes out: its socket stays until the keepalive drops it (20 s ping, 20 s timeout),
    and so did its cursor, at every peer and in every joiner's table. It goes at once."""
    draft, token = f"dep-{uuid.uuid4().hex[:8]}", _token()
    async with serving_in_process(
        tmp_path, send_queue_messages=64, send_queue_bytes=1024 * 1024
    ) as served:
        watcher = await synced_client(served.ws_url, draft, token)
        writer = await synced_client(served.ws_url, draft, token)
        room = served.service.rooms.get(draft)
        assert room is not None
        async with _stalled(served, draft, token):
            await watcher.wait_for(lambda: bool(_seen(watcher, LEAVER)), timeout=TIMEOUT)
            doc: Doc = Doc()
            body = doc.get("body", type=Text)

            def stalled_closed() -> bool:
                return any(c.close_code == 4408 for c in room.connections)

            for n in range(MAX_ROUNDS):  # ~12 MB at most, past what can wait on the way
                if stalled_closed():
                    break
                before = doc.get_state()
                body.insert(len(body), f"{n:08d}" * (CHUNK // 8))
                await writer.send(encode_message(Update(doc.get_update(before))))
                await watcher.next_message(
                    Update, where=lambda m, n=n: f"{n:08d}".encode() in m.update, timeout=TIMEOUT
                )
            await until(stalled_closed, "the stalled client is closed 4408")
            await watcher.wait_for(lambda: _ends_removed(watcher, LEAVER), timeout=TIMEOUT)
            # The socket lingers (the room still holds the connection), the cursor does not;
            # a joiner meanwhile is not shown it either.
            assert stalled_closed()
            assert room.presence.full_update() is None
            joiner = await synced_client(served.ws_url, draft, token)
            assert not _seen(joiner, LEAVER)
            await joiner.close()
        await asyncio.gather(watcher.close(), writer.close())


async def test_a_hocuspocus_provider_killed_is_removed_for_a_y_websocket_peer(
    served: InProcessServer,
) -> None:
    draft, token = f"dep-{uuid.uuid4().hex[:8]}", _token()
    hocuspocus_url = served.ws_url.removesuffix("/ws") + "/hocuspocus"
    b = await NodeClient.start(served.ws_url, draft, token, name="B")
    hp = await HocuspocusClient.launch(hocuspocus_url)
    try:
        await hp.open("a", draft, token, user="hp-a")
        await asyncio.gather(b.call("wait_synced"), hp.call("wait_synced", doc="a"))

        async def b_sees_hp() -> bool:
            names = {state.get("user", {}).get("name") for state in (await _states(b)).values()}
            return "hp-a" in names

        await _eventually(b_sees_hp)
        await hp.kill()

        async def b_sees_hp_gone() -> bool:
            return not await b_sees_hp()

        await _eventually(b_sees_hp_gone)
    finally:
        await asyncio.gather(b.close(), hp.close())


# -- several instances: a departure crosses the fan-out even when Redis was away ---------------

OUTBOX_MESSAGES = 20  # instance A's fan-out outbox bound (`--fanout-outbox-messages`)


async def _outbox(server: ServerProcess) -> dict[str, float]:
    figures = {"dropped": 0.0}
    for family in text_string_to_metric_families(await scrape(server)):
        for sample in family.samples:
            if sample.name == "draftsync_fanout_dropped_total":
                figures["dropped"] += sample.value
            elif sample.name == "draftsync_fanout_outbox":
                figures["outbox"] = sample.value
    return figures


async def test_a_departure_queued_while_redis_is_away_outlives_the_outbox_bound(
    tmp_path: Path, postgres: PostgresCluster, redis_server: RedisServer
) -> None:
    """The leaver goes while Redis is away, then its instance's outbox overflows with edits
    (the oldest dropped: the other instances read those from the store). Dropped, the
    departure left the leaver's cursor on the other instance for as long as its own lived: at
    its peers until they timed it out, and in every joiner's table. It is dropped last."""
    flags = ["--store", postgres.new_database(), "--redis", redis_server.url]
    bound = ["--fanout-outbox-messages", str(OUTBOX_MESSAGES)]
    a, b = start_together(
        ServerProcess(tmp_path / "a", *flags, *bound), ServerProcess(tmp_path / "b", *flags)
    )
    draft = f"dep-{uuid.uuid4().hex[:8]}"
    token = a.token("alice")
    writer = await synced_client(a.ws_url, draft, token)
    leaver = await synced_client(a.ws_url, draft, token)
    peer = await NodeClient.start(b.ws_url, draft, token, name="B")
    try:
        await _cursor_seen(leaver, peer)
        redis_server.stop()
        try:
            await leaver.close()

            async def departure_queued() -> bool:
                return (await _outbox(a)).get("outbox", 0) >= 1

            await _eventually(departure_queued)
            doc: Doc = Doc()
            title = doc.get("title", type=Text)
            for n in range(OUTBOX_MESSAGES + 5):  # one commit each: a message each
                before = doc.get_state()
                title.insert(len(title), f"{n % 10}")
                await writer.send(encode_message(Update(doc.get_update(before))))
                mark = f"{n}".encode()
                await writer.send(encode_message(WriteAck(mark)))
                await writer.next_message(WriteAck, where=lambda m, k=mark: m.payload == k)
            assert (await _outbox(a))["dropped"] > 0  # edits were dropped, oldest first
        finally:
            redis_server.start()

        async def drained() -> bool:
            return (await _outbox(a)).get("outbox") == 0

        await _eventually(drained)

        async def peer_sees_it_gone() -> bool:
            return LEAVER not in await _states(peer)

        await _eventually(peer_sees_it_gone)  # before its 30 s time-out
        joiner = await connect_raw(b.ws_url, draft, token)
        await joiner.next_message(Awareness, timeout=TIMEOUT)  # the peer's state, at least
        assert not _seen(joiner, LEAVER)
        await joiner.close()
    finally:
        await asyncio.gather(writer.close(), leaver.close(), peer.close())
        a.stop()
        b.stop()


class _CuttingProxy(RedisProxy):
    """Drops every connection through it, then refuses new ones for a while: its instance's
    subscription is down, as while Redis restarts or the network between them blips."""

    refusing_until = 0.0

    def cut(self, seconds: float) -> None:
        self.refusing_until = time.monotonic() + seconds
        for writer in list(self._open):
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if time.monotonic() < self.refusing_until:
            writer.close()
            return
        await super()._serve(reader, writer)


async def test_a_departure_published_while_an_instance_was_not_subscribed_still_reaches_it(
    tmp_path: Path, postgres: PostgresCluster, redis_server: RedisServer
) -> None:
    """Redis delivers a message only to the subscriptions open when it arrives. A's was down
    for 1.5 s (its connection dropped) when B published the leaver's departure: A's peer kept
    the leaver's cursor until its own 30 s time-out (the test above failed so under load,
    A's resubscribe racing B's publish after Redis restarted). B now publishes a departure
    again 2 and 4.5 s later (`DEPARTURE_ECHOES`)."""
    async with (
        _CuttingProxy(redis_server.port) as proxy,
        a_behind(proxy, tmp_path, postgres, redis_server) as (a, b),
    ):
        draft, token = f"dep-{uuid.uuid4().hex[:8]}", a.token("alice")
        leaver = await synced_client(b.ws_url, draft, token)
        peer = await NodeClient.start(a.ws_url, draft, token, name="A")
        try:
            await _cursor_seen(leaver, peer)
            proxy.cut(1.5)  # shorter than INSTANCE_TIMEOUT_SECONDS: A keeps B's cursors
            await leaver.close()

            async def peer_sees_it_gone() -> bool:
                return LEAVER not in await _states(peer)

            async with asyncio.timeout(DEPARTURE_ECHOES[-1] + 4):  # well before 30 s
                await _eventually(peer_sees_it_gone)
        finally:
            await asyncio.gather(leaver.close(), peer.close())
