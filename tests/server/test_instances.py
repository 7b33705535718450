"""Two draftsync instances on one PostgreSQL and one Redis host the same drafts (issue 10).

Stock Yjs clients (Node `WebsocketProvider`) connect to different instances, as a load balancer
would spread them; everything one instance commits reaches the other's clients, `kill -9` of an
instance loses nothing any client saw, and access changes reach every instance. How rule
outcomes cross instances is in test_instances_rules.py (split so that both workers share them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families
from pycrdt import Array, Doc, Text

from bench.services import PostgresCluster, RedisServer
from server.auth import TokenSigner
from server.cluster.fanout import PREFIX
from tests.support.fanout_messages import signed, unsigned
from tests.support.instances import (
    a_behind,
    advisory_waiters,
    fanout_figures,
    new_draft,
    title_is,
)
from tests.support.instances import pair as pair
from tests.support.node_client import NodeClient
from tests.support.redis_proxy import RedisProxy
from tests.support.rest import as_user, create_draft, scrape
from tests.support.server_process import SECRET, ServerProcess, start_together
from tests.support.stored_any import snapshot_versions, stored_doc, stored_rows
from tests.support.waiting import eventually


async def node_log(client: NodeClient) -> list[str]:
    state = await client.state(lists=["log"])
    return list(state["lists"]["log"])


async def writer(client: NodeClient, name: str, cycle: int, stop: asyncio.Event) -> None:
    i = 0
    while not stop.is_set():
        with contextlib.suppress(Exception):
            await client.call("push", field="log", values=[f"{name}:{cycle}:{i}"])
            i += 1
        await asyncio.sleep(0.002)


async def test_kill_9_of_one_instance_loses_no_relayed_update(
    pair: tuple[ServerProcess, ServerProcess],
) -> None:
    """Writers on both instances; A is killed mid-stream. Every marker a client holds from
    another writer was relayed, so it is stored; after A restarts, all converge, each once."""
    a, b = pair
    draft = new_draft()
    names = ("a1", "a2", "b1", "b2")
    servers = (a, a, b, b)
    nodes = [
        await NodeClient.start(s.ws_url, draft, s.token("alice"), name=n)
        for s, n in zip(servers, names, strict=True)
    ]
    try:
        async with asyncio.timeout(120):
            for cycle in range(3):
                for node in nodes:
                    await node.call("wait_synced", timeout=20)
                stop = asyncio.Event()
                tasks = [
                    asyncio.create_task(writer(node, name, cycle, stop))
                    for node, name in zip(nodes, names, strict=True)
                ]
                await asyncio.sleep(0.8)
                a.kill()
                await asyncio.sleep(0.3)  # what B committed just before still reaches B's clients
                stop.set()
                await asyncio.gather(*tasks)

                seen = {name: await node_log(node) for name, node in zip(names, nodes, strict=True)}
                durable = Counter(stored_doc(b, draft).get("log", type=Array))
                relayed = {m for name, log in seen.items() for m in log if not m.startswith(name)}
                assert any(m.startswith("a") for m in seen["b1"]), "nothing crossed instances"
                missing = relayed - set(durable)
                assert not missing, f"cycle {cycle}: relayed but lost: {sorted(missing)[:10]}"
                assert max(durable.values()) == 1, f"cycle {cycle}: doubled in the store"

                a.start()
                everything = set().union(*map(set, seen.values()))
                await converge(nodes, everything)
    finally:
        await asyncio.gather(*(node.close() for node in nodes))


async def converge(nodes: list[NodeClient], expected: set[str]) -> None:
    async with asyncio.timeout(30):
        while True:
            logs = [await node_log(node) for node in nodes]
            if all(set(log) >= expected for log in logs) and len({len(x) for x in logs}) == 1:
                break
            await asyncio.sleep(0.1)
    for log in logs:
        assert max(Counter(log).values()) == 1, "a marker was doubled after the restart"


async def test_an_instance_that_missed_messages_catches_up_from_the_store(
    pair: tuple[ServerProcess, ServerProcess], redis_server: RedisServer
) -> None:
    """Redis goes away while A's client writes: B's client still gets every update, read by
    B from the store by version, and when Redis is back relaying resumes."""
    a, b = pair
    draft = new_draft()
    async with (
        await NodeClient.start(a.ws_url, draft, a.token("alice")) as writer_a,
        await NodeClient.start(b.ws_url, draft, b.token("alice")) as reader_b,
    ):
        await asyncio.gather(writer_a.call("wait_synced"), reader_b.call("wait_synced"))
        await writer_a.call("insert", field="title", index=0, text="one ")
        await eventually(lambda: title_is(reader_b, "one "), timeout=10)
        redis_server.stop()
        try:
            await writer_a.call("insert", field="title", index=4, text="two ")
            await eventually(lambda: title_is(reader_b, "one two "), timeout=10)
        finally:
            redis_server.start()
        await eventually(lambda: _subscribed(redis_server, 2), timeout=15)  # both resubscribed
        await writer_a.call("insert", field="title", index=8, text="three")
        await eventually(lambda: title_is(reader_b, "one two three"), timeout=10)
    assert "Traceback" not in a.log() + b.log()


async def _subscribed(redis_server: RedisServer, instances: int) -> bool:
    """`instances` subscriptions to the heartbeat channel, as Redis counts them. An instance
    subscribes to it last, on the connection its patterns were subscribed on just before."""
    client = aioredis.from_url(redis_server.url)
    try:
        [(_, count)] = await client.pubsub_numsub(f"{PREFIX}:hb")
    except (aioredis.ConnectionError, OSError):
        return False
    finally:
        await client.aclose()
    return int(count) == instances


OUTBOX_MESSAGES = 40
OUTBOX_BYTES = 16_384


async def outbox_figures(server: ServerProcess) -> dict[str, float]:
    """The fan-out outbox's metrics: what waits now, the most that ever waited, and what was
    dropped (summed over kinds)."""
    figures = {"dropped": 0.0}
    for family in text_string_to_metric_families(await scrape(server)):
        for sample in family.samples:
            if sample.name == "draftsync_fanout_dropped_total":
                figures["dropped"] += sample.value
            elif sample.name.startswith("draftsync_fanout_outbox"):
                figures[sample.name.removeprefix("draftsync_fanout_")] = sample.value
    return figures


async def test_the_outbox_stays_bounded_while_redis_is_away_and_the_others_catch_up(
    tmp_path: Path, postgres: PostgresCluster, redis_server: RedisServer
) -> None:
    """Redis stops while A's client makes hundreds of edits, small then big: A queues a
    message per commit, and its outbox holds no more than its bounds (here 40 messages, 16 KiB),
    dropping the oldest. B's client still gets every edit (B reads the store), and once Redis is
    back A's outbox drains and relaying resumes: both clients show the same text."""
    flags = ["--store", postgres.new_database(), "--redis", redis_server.url, "--room-grace", "0.3"]
    bounds = [
        *("--fanout-outbox-messages", str(OUTBOX_MESSAGES)),
        *("--fanout-outbox-bytes", str(OUTBOX_BYTES)),
    ]
    a, b = start_together(
        ServerProcess(tmp_path / "a", *flags, *bounds), ServerProcess(tmp_path / "b", *flags)
    )
    draft = new_draft()
    try:
        async with (
            await NodeClient.start(a.ws_url, draft, a.token("alice")) as writer_a,
            await NodeClient.start(b.ws_url, draft, b.token("alice")) as reader_b,
        ):
            await asyncio.gather(writer_a.call("wait_synced"), reader_b.call("wait_synced"))
            text = "start "
            await writer_a.call("insert", field="title", index=0, text=text)
            await eventually(lambda: title_is(reader_b, text), timeout=10)
            redis_server.stop()
            try:
                for i in range(150):  # small edits: the count binds
                    piece = f"{i % 10}"
                    await writer_a.call("insert", field="title", index=len(text), text=piece)
                    text += piece
                await eventually(lambda: title_is(reader_b, text), timeout=20)
                small = await outbox_figures(a)
                for i in range(40):  # big ones: the bytes bind
                    piece = chr(ord("a") + i % 26) * 1000
                    await writer_a.call("insert", field="title", index=len(text), text=piece)
                    text += piece
                await eventually(lambda: title_is(reader_b, text), timeout=20)
                big = await outbox_figures(a)
            finally:
                redis_server.start()
            # Commits may hold several edits (one message each): counts are not exact. On a
            # loaded machine one commit may hold many big edits, a message over the whole
            # bound, dropped as it comes: so the bytes the big ones filled are read as the
            # peak (40 small ones hold a few KiB), not as what is left.
            assert small["outbox"] == OUTBOX_MESSAGES and small["dropped"] > 0, small
            assert small["outbox_bytes"] <= OUTBOX_BYTES, small
            assert OUTBOX_BYTES // 2 < big["outbox_peak_bytes"] <= OUTBOX_BYTES, big
            assert big["outbox_bytes"] <= OUTBOX_BYTES, big
            assert big["outbox"] < OUTBOX_MESSAGES and big["dropped"] > small["dropped"], big
            assert big["outbox_peak"] == OUTBOX_MESSAGES, big

            async def drained() -> bool:
                return (await outbox_figures(a))["outbox"] == 0

            await eventually(drained, timeout=20)  # A reconnects to Redis and publishes the rest
            await writer_a.call("insert", field="title", index=0, text="back ")
            text = "back " + text
            await eventually(lambda: title_is(reader_b, text), timeout=10)
            assert await writer_a.text("title") == text
        assert "fan-out outbox full" in a.log()
        assert "Traceback" not in a.log() + b.log()
    finally:
        a.stop()
        b.stop()


async def test_unreadable_messages_on_the_channels_leave_every_instance_serving(
    pair: tuple[ServerProcess, ServerProcess], redis_server: RedisServer
) -> None:
    """Messages no instance can read (not JSON, no sender, a wrong type, an awareness update
    that is not one, a heartbeat that is not text) reach every instance subscribed: each is
    skipped, changing nothing. They are not the instance's failure: counted as one, five of
    them would stop every instance of the service (exit 70), and one on a draft's channel
    would close that draft's clients."""
    a, b = pair
    draft = new_draft()
    async with (
        await NodeClient.start(a.ws_url, draft, a.token("alice")) as on_a,
        await NodeClient.start(b.ws_url, draft, b.token("alice")) as on_b,
    ):
        await asyncio.gather(on_a.call("wait_synced"), on_b.call("wait_synced"))
        garbage = [
            (f"{PREFIX}:u:{draft}", b"not json"),
            (f"{PREFIX}:u:{draft}", b'{"v": 99}\n'),  # no sender
            (f"{PREFIX}:u:{draft}", b'{"i": "x", "v": "one"}\n'),
            (f"{PREFIX}:u:{draft}", b"[1, 2]\n"),
            (f"{PREFIX}:u:not-loaded", b"\xff\xfe"),
            (f"{PREFIX}:a:{draft}", b'{"i": "x"}\n\x05garbage'),
            (f"{PREFIX}:access", b'{"i": "x", "d": "d", "u": "bob", "r": "emperor"}\n'),
            (f"{PREFIX}:hb", b"\xff\xfe"),
        ]
        publisher = aioredis.from_url(redis_server.url)
        try:
            for channel, message in garbage:  # signed: read, and found unreadable
                await publisher.publish(channel, signed(channel, message))
        finally:
            await publisher.aclose()
        await on_a.call("insert", field="title", index=0, text="still here")
        await eventually(lambda: title_is(on_b, "still here"), timeout=10)
        for server in (a, b):
            assert server.process is not None and server.process.poll() is None, server.log()
            async with httpx.AsyncClient() as http:
                health = await http.get(f"{server.http_url}/healthz", timeout=5)
            assert health.status_code == 200, health.text
        assert not [e for e in on_a.events + on_b.events if e["event"] in ("error", "closed")]


class _SilencingProxy(RedisProxy):
    """A proxy to Redis whose `silence` makes the subscriptions open through it go quiet
    without closing (a half-open connection: a peer gone without a reset, a middlebox that
    dropped the flow): nothing more passes either way. Connections opened after pass again."""

    def __init__(self, redis_port: int) -> None:
        super().__init__(redis_port)
        self._subscribers: set[asyncio.StreamWriter] = set()
        self._silenced: set[asyncio.StreamWriter] = set()
        self.subscribed_again = asyncio.Event()
        """Set when a connection opened after `silence` subscribes: the waited-for event."""

    def silence(self) -> int:
        self._silenced |= self._subscribers
        return len(self._silenced)

    def passes_up(self, client: asyncio.StreamWriter, chunk: bytes) -> bool:
        if b"SUBSCRIBE" in chunk.upper():
            self._subscribers.add(client)
            if self._silenced and client not in self._silenced:
                self.subscribed_again.set()
        return client not in self._silenced

    def passes_down(self, client: asyncio.StreamWriter) -> bool:
        return client not in self._silenced


async def test_a_subscription_gone_silent_is_opened_again(
    tmp_path: Path, postgres: PostgresCluster, redis_server: RedisServer
) -> None:
    """A's subscription goes quiet without an error (half-open): A hears nothing more from
    Redis, not even its own heartbeat. Updates would still reach it from the store, but B's
    clients' awareness and rule outcomes only come through Redis: A must notice the silence
    and subscribe again, so that its client sees B's client's cursor.

    bob's cursor set while A is deaf is lost to A; his client would send it again on its own
    awareness renewal (y-protocols: every 15 s). The test has it renewed more often once a new
    connection of A's subscribes through the proxy (an event, not a sleep): what A's client
    sees can only have come through that new subscription."""
    async with (
        _SilencingProxy(redis_server.port) as proxy,
        a_behind(proxy, tmp_path, postgres, redis_server) as (a, b),
    ):
        draft = new_draft()
        async with (
            await NodeClient.start(a.ws_url, draft, a.token("alice")) as alice,
            await NodeClient.start(b.ws_url, draft, b.token("alice")) as bob,
        ):
            await asyncio.gather(alice.call("wait_synced"), bob.call("wait_synced"))
            # One subscription, or more when a loaded machine delayed A's heartbeats enough for
            # it to subscribe again already: all of them go quiet.
            assert proxy.silence() >= 1
            await bob.call("awareness_set", field="user", value={"name": "bob"})

            async def alice_sees_bob() -> bool:
                states = await alice.call("awareness_states")
                return any(state.get("user") == {"name": "bob"} for _, state in states)

            assert not await alice_sees_bob()
            # A notices after INSTANCE_TIMEOUT_SECONDS (5 s) of silence and subscribes again.
            await asyncio.wait_for(proxy.subscribed_again.wait(), 30)
            # bob's client renews its cursor, every quarter second rather than every 15 s: a
            # renewal that reached A before A dropped B's cursors (B was silent to A for as long
            # as A's own heartbeat, INSTANCE_TIMEOUT_SECONDS) is dropped with them.
            async with asyncio.timeout(30):
                for _ in range(120):
                    await bob.call("awareness_set", field="user", value={"name": "bob"})
                    if await alice_sees_bob():
                        break
                    await asyncio.sleep(0.25)
            assert await alice_sees_bob()


BOGUS_VERSION = 10**12


def stored_last(server: ServerProcess, draft_id: str) -> int:
    [(last,)] = stored_rows(
        server, "SELECT COALESCE(MAX(version), 0) FROM updates WHERE draft_id = ?", draft_id
    )
    return int(last)  # type: ignore[call-overload]


async def rest_version(server: ServerProcess, draft_id: str) -> int:
    async with as_user(server, "alice") as alice:
        response = await alice.get(f"/api/drafts/{draft_id}")
    assert response.status_code == 200, response.text
    return int(response.json()["version"])


def forged_update(text: str) -> bytes:
    """A valid Yjs update no client of the draft wrote: `text` at the start of the title."""
    doc = Doc()
    doc["title"] = title = Text()
    title.insert(0, text)
    return doc.get_update()


async def test_a_message_naming_a_version_the_store_never_gave_is_dropped(
    pair: tuple[ServerProcess, ServerProcess], redis_server: RedisServer
) -> None:
    """A message on a draft's channel, from an instance id that is none of ours, names version
    10**12 (signed, as a bug or a holder of the secret could: the store check stands behind
    the signature, test_a_forged_message_naming_the_next_version_reaches_no_client): once
    with an empty update, once with a valid one. Versions come from the store, not from
    messages: B holds them past the gap, its gap fill finds the store has no such version,
    drops them (a warning) and stops filling. B's version stays the store's, the forged text
    reaches no client, and after more edits and an unload (the figures B saves then are keyed
    by its version) everything stored, and only that, loads again."""
    a, b = pair
    async with as_user(a, "alice") as alice:
        draft = (await create_draft(alice, title="one"))["id"]
    on_a = await NodeClient.start(a.ws_url, draft, a.token("alice"))
    on_b = await NodeClient.start(b.ws_url, draft, b.token("alice"))
    try:
        await asyncio.gather(on_a.call("wait_synced"), on_b.call("wait_synced"))
        publisher = aioredis.from_url(redis_server.url)
        try:
            for number, (version, payload) in enumerate(
                [(BOGUS_VERSION, b"\x00\x00"), (BOGUS_VERSION + 7, forged_update("FORGED "))],
                start=1,
            ):
                header = {"i": f"forged{number}", "v": version, "u": "mallory", "n": 1}
                message = json.dumps(header).encode() + b"\n" + payload
                channel = f"{PREFIX}:u:{draft}"
                assert await publisher.publish(channel, signed(channel, message)) == 2
        finally:
            await publisher.aclose()
        # Published after the forged messages, so B has handled them once it relays this.
        await on_a.call("insert", field="title", index=3, text=" two")
        await eventually(lambda: title_is(on_b, "one two"), timeout=10)

        assert await rest_version(b, draft) == stored_last(a, draft) < BOGUS_VERSION

        async def dropped() -> bool:
            return (await fanout_figures(b)).get("unconfirmed") == 2

        await eventually(dropped, timeout=10)
        assert f"version={BOGUS_VERSION} instance=forged1" in b.log()
        assert f"version={BOGUS_VERSION + 7} instance=forged2" in b.log()
        assert "FORGED" not in b.log()  # no payload in the warning
        # The gap is closed: no fill is scheduled for it any more (`_watch_gap`).
        assert await fanout_figures(b) == {"gaps": 0, "held": 0, "unconfirmed": 2}
        assert await on_b.text("title") == "one two"

        await on_b.call("insert", field="title", index=7, text=" three")
        await on_a.call("insert", field="title", index=0, text="zero ")
        await eventually(lambda: title_is(on_b, "zero one two three"), timeout=10)
        assert await rest_version(b, draft) == stored_last(a, draft) < BOGUS_VERSION
    finally:
        await asyncio.gather(on_a.close(), on_b.close())

    for server in (a, b):  # the room unloads (grace 0.3 s), saving its figures at its version
        await eventually(lambda s=server: _unloaded(s, draft), timeout=10)  # type: ignore[misc]
    last = stored_last(a, draft)

    async def figures_saved_at_last() -> bool:  # saved by a task once the room is gone
        rows = stored_rows(a, "SELECT version FROM draft_meta WHERE draft_id = ?", draft)
        return rows == [(last,)]

    # Before: B saved them under 10**12, and no later save (an older version) replaced them.
    await eventually(figures_saved_at_last, timeout=10)
    assert all(version <= last for version in snapshot_versions(a, draft))
    for server in (a, b):
        async with await NodeClient.start(server.ws_url, draft, server.token("alice")) as fresh:
            await fresh.call("wait_synced")
            assert await fresh.text("title") == "zero one two three"
        assert await rest_version(server, draft) == last
    for server in (a, b):
        assert "Traceback" not in server.log()
        async with httpx.AsyncClient() as http:
            health = await http.get(f"{server.http_url}/healthz", timeout=5)
        assert health.status_code == 200, health.text


async def unsigned_count(server: ServerProcess) -> float:
    """Fan-out messages the server dropped unread: no valid signature."""
    for family in text_string_to_metric_families(await scrape(server)):
        for sample in family.samples:
            if sample.name == "draftsync_fanout_unsigned_total":
                return sample.value
    return 0.0


async def test_a_forged_message_naming_the_next_version_reaches_no_client(
    pair: tuple[ServerProcess, ServerProcess], redis_server: RedisServer
) -> None:
    """Anything that can PUBLISH on Redis sends B the very next version of a draft, a valid
    update with text of its own: unsigned, with a tag of random bytes, signed with another
    secret, and signed for another draft's channel. The next version is applied at once (no
    store read to catch it), so the signature must: each is dropped unread (counted, a warning
    without its content), the forged text reaches no client, and A's real next version, which
    the forgery would have shadowed, still reaches B's client."""
    a, b = pair
    async with as_user(a, "alice") as alice:
        draft = (await create_draft(alice, title="one"))["id"]
    on_a = await NodeClient.start(a.ws_url, draft, a.token("alice"))
    on_b = await NodeClient.start(b.ws_url, draft, b.token("alice"))
    try:
        await asyncio.gather(on_a.call("wait_synced"), on_b.call("wait_synced"))
        before = await unsigned_count(b)
        channel = f"{PREFIX}:u:{draft}"
        header = {"i": "forger", "v": stored_last(a, draft) + 1, "u": "mallory", "n": 1}
        message = json.dumps(header).encode() + b"\n" + forged_update("FORGED ")
        forgeries = [
            message,
            bytes(32) + message,
            uuid.uuid4().bytes * 2 + message,
            signed(channel, message, secret="not-the-service-secret"),
            signed(f"{PREFIX}:u:{new_draft()}", message),
        ]
        publisher = aioredis.from_url(redis_server.url)
        try:
            for forged in forgeries:
                assert await publisher.publish(channel, forged) == 2
        finally:
            await publisher.aclose()
        # Published after the forgeries, so B has handled them once it relays this.
        await on_a.call("insert", field="title", index=3, text=" two")
        await eventually(lambda: title_is(on_b, "one two"), timeout=10)
        assert await unsigned_count(b) == before + len(forgeries)
        assert "without a valid signature" in b.log()
        assert "FORGED" not in b.log() and "mallory" not in b.log()
        assert await rest_version(b, draft) == stored_last(a, draft)
        await on_b.call("insert", field="title", index=0, text="zero ")
        await eventually(lambda: title_is(on_a, "zero one two"), timeout=10)
        assert await on_b.text("title") == "zero one two"
        assert not [e for e in on_a.events + on_b.events if e["event"] in ("error", "closed")]
    finally:
        await asyncio.gather(on_a.close(), on_b.close())


async def _capture(pubsub: Any, wanted: Any, *, limit: int = 200) -> bytes:
    """The first message on `pubsub` whose signed bytes `wanted` accepts, as published (tag
    and all): what anything listening on Redis can keep and PUBLISH again."""
    async with asyncio.timeout(15):
        for _ in range(limit):
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None and wanted(message["channel"], message["data"]):
                return bytes(message["data"])
    raise AssertionError("no such message was published")


async def test_a_replayed_signed_message_of_a_gone_instance_changes_nothing(
    pair: tuple[ServerProcess, ServerProcess], redis_server: RedisServer
) -> None:
    """Something listening on Redis keeps three of A's messages, validly signed: a heartbeat,
    alice's awareness, and "bob lost his role" (bob's access was then given back). A dies:
    its heartbeat, published again and again, must not keep it alive on B (alice's cursor
    goes after INSTANCE_TIMEOUT_SECONDS, as without it). Once B has forgotten A, the other two
    are published again, byte for byte. Neither may act: bob's connection on B stays open and
    writable (a replayed revocation closed it 4403), and alice's cursor stays gone."""
    a, b = pair
    access, presence = f"{PREFIX}:access", f"{PREFIX}:a:"
    listener = aioredis.from_url(redis_server.url)
    pubsub = listener.pubsub()
    on_a = bob = None
    try:
        async with as_user(a, "alice") as alice:
            draft = (await create_draft(alice, title="one"))["id"]
            await pubsub.subscribe(access, f"{presence}{draft}", f"{PREFIX}:hb")
            for role in ("editor", "none", "editor"):
                shared = await alice.put(
                    f"/api/drafts/{draft}/access", json={"user": "bob", "role": role}
                )
                assert shared.status_code == 200, shared.text
        revocation = await _capture(
            pubsub, lambda ch, data: ch == access.encode() and b'"r":null' in unsigned(data)
        )
        on_a = await NodeClient.start(a.ws_url, draft, a.token("alice"))
        bob = await NodeClient.start(b.ws_url, draft, b.token("bob"))
        await asyncio.gather(on_a.call("wait_synced"), bob.call("wait_synced"))
        await on_a.call("awareness_set", field="user", value={"name": "alice"})
        cursor = await _capture(
            pubsub, lambda ch, data: ch.startswith(presence.encode()) and b"alice" in data
        )
        found = re.search(r"fan-out on instance=(\w+)", a.log())
        assert found is not None, a.log()
        a_id = found.group(1).encode()
        heartbeat = await _capture(pubsub, lambda ch, data: ch.endswith(b":hb") and a_id in data)

        async def bob_sees_alice() -> bool:
            assert bob is not None
            states = await bob.call("awareness_states")
            return any(state.get("user") == {"name": "alice"} for _, state in states)

        async def alice_gone() -> bool:
            return not await bob_sees_alice()

        async def beat_again() -> None:  # A's heartbeat, replayed, bounded
            for _ in range(80):
                await replayer.publish(f"{PREFIX}:hb", heartbeat)
                await asyncio.sleep(0.25)

        await eventually(bob_sees_alice, timeout=10)
        a.kill()
        replayer = aioredis.from_url(redis_server.url)
        beating = asyncio.create_task(beat_again())
        try:
            await eventually(alice_gone, timeout=15)  # B forgot A: its real heartbeats stopped
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating
            await replayer.aclose()

        before = await unsigned_count(b)
        publisher = aioredis.from_url(redis_server.url)
        try:
            assert await publisher.publish(access, revocation) == 2  # B and the listener
            assert await publisher.publish(f"{presence}{draft}", cursor) == 2
            # Published after the replays, on B's one subscription: once B counts it, B has
            # handled them.
            assert await publisher.publish(access, b"not signed") == 2
        finally:
            await publisher.aclose()

        async def handled() -> bool:
            return await unsigned_count(b) == before + 1

        await eventually(handled, timeout=10)
        assert not [e for e in bob.events if e["event"] in ("close", "closed", "error")]
        assert not await bob_sees_alice()
        assert await replayed_count(b) >= 2
        await bob.call("insert", field="title", index=3, text=" two")
        async with await NodeClient.start(b.ws_url, draft, b.token("alice")) as fresh:
            await fresh.call("wait_synced")
            await eventually(lambda: title_is(fresh, "one two"), timeout=10)
    finally:
        await pubsub.aclose()
        await listener.aclose()
        await asyncio.gather(*(c.close() for c in (on_a, bob) if c is not None))


async def replayed_count(server: ServerProcess) -> float:
    """Fan-out messages the server dropped as replays (signed, but stale or seen)."""
    for family in text_string_to_metric_families(await scrape(server)):
        for sample in family.samples:
            if sample.name == "draftsync_fanout_replayed_total":
                return sample.value
    return 0.0


async def test_instances_with_different_secrets_do_not_hear_each_other(
    tmp_path: Path, postgres: PostgresCluster, redis_server: RedisServer
) -> None:
    """B runs with another secret than A (a misconfiguration): every message of A's, its
    heartbeats too, fails B's signature check. B says why in its log, once and not once a
    message (A beats every second), and still serves A's writes from the store (its catch-up
    loop), so nothing stored is lost, only the fan-out's speed."""
    flags = ["--store", postgres.new_database(), "--redis", redis_server.url]
    other = "another-secret-of-the-same-length-0123456789abcdef"
    b = ServerProcess(tmp_path / "b", *flags, env={"DRAFTSYNC_SECRET": other})
    b.signer = TokenSigner(other)
    a, _ = start_together(ServerProcess(tmp_path / "a", *flags), b)
    try:
        async with as_user(a, "alice") as alice:
            draft = (await create_draft(alice, title="one"))["id"]
        async with await NodeClient.start(b.ws_url, draft, b.token("alice")) as on_b:
            await on_b.call("wait_synced")

            async def refused_several() -> bool:
                return await unsigned_count(b) >= 3

            await eventually(refused_several, timeout=20)
            warnings = b.log().count("without a valid signature")
            assert 1 <= warnings < await unsigned_count(b)
            assert "different secret" in b.log()
            assert other not in b.log() and SECRET not in b.log()
            async with await NodeClient.start(a.ws_url, draft, a.token("alice")) as on_a:
                await on_a.call("wait_synced")
                await on_a.call("insert", field="title", index=3, text=" two")
                await eventually(lambda: title_is(on_b, "one two"), timeout=10)
    finally:
        b.stop()
        a.stop()


async def _unloaded(server: ServerProcess, draft_id: str) -> bool:
    return f"room unloaded draft={draft_id}" in server.log()


class _CapturingProxy(RedisProxy):
    """A proxy to Redis that keeps A's update messages on `draft`'s channel instead of passing
    them on, answering A as Redis would ("1 receiver"): the test publishes them itself, in
    another order."""

    def __init__(self, redis_port: int) -> None:
        super().__init__(redis_port)
        self.draft: str | None = None
        self.captured: list[bytes] = []

    def passes_up(self, client: asyncio.StreamWriter, chunk: bytes) -> bool:
        channel = f"{PREFIX}:u:{self.draft}".encode()
        if self.draft is None or b"PUBLISH" not in chunk or channel not in chunk:
            return True
        if b'"v":' not in chunk:
            return True  # journal events: passed on
        self.captured.append(chunk)
        client.write(b":1\r\n")
        return False


async def test_updates_of_another_instance_arriving_out_of_order_are_applied_in_order(
    tmp_path: Path, postgres: PostgresCluster, redis_server: RedisServer
) -> None:
    """Redis may deliver two instances' messages out of order. Here A's two updates reach B
    newest first: B holds the second past the gap, applies both once the first comes (or reads
    them from the store), and drops neither as a version the store does not have."""
    async with (
        _CapturingProxy(redis_server.port) as proxy,
        a_behind(proxy, tmp_path, postgres, redis_server) as (a, b),
    ):
        async with as_user(b, "alice") as alice:
            draft = (await create_draft(alice, title="one"))["id"]
        on_a = await NodeClient.start(a.ws_url, draft, a.token("alice"))
        on_b = await NodeClient.start(b.ws_url, draft, b.token("alice"))
        try:
            await asyncio.gather(on_a.call("wait_synced"), on_b.call("wait_synced"))
            proxy.draft = draft
            for count, (index, text) in enumerate([(3, " two"), (7, " three")], start=1):
                await on_a.call("insert", field="title", index=index, text=text)

                async def captured(count: int = count) -> bool:
                    return len(proxy.captured) == count

                await eventually(captured, timeout=10)
            # As if two instances had stored them: one instance's messages keep their order
            # (one task publishes them, numbered: `Fanout._senders`), two instances' may not.
            publisher = aioredis.from_url(redis_server.url)
            try:
                for k, chunk in reversed(list(enumerate(proxy.captured))):
                    channel, message = _published(chunk)
                    text, _, payload = unsigned(message).partition(b"\n")
                    header = {**json.loads(text), "i": f"other{k}", "n": 1}
                    framed = json.dumps(header).encode() + b"\n" + payload
                    assert await publisher.publish(channel, signed(channel, framed)) == 2
            finally:
                await publisher.aclose()
            await eventually(lambda: title_is(on_b, "one two three"), timeout=10)

            async def settled() -> bool:
                figures = await fanout_figures(b)
                return figures.get("gaps") == 0 and figures.get("held") == 0

            await eventually(settled, timeout=10)
            assert (await fanout_figures(b)).get("unconfirmed", 0) == 0
            assert await rest_version(b, draft) == stored_last(b, draft) == 3
            assert "Traceback" not in a.log() + b.log()
        finally:
            await asyncio.gather(on_a.close(), on_b.close())


def _published(chunk: bytes) -> tuple[str, bytes]:
    """The channel and message of one RESP `PUBLISH` command (an array of 3 bulk strings)."""
    assert chunk.startswith(b"*3\r\n"), chunk[:20]
    rest = chunk[4:]
    parts = []
    for _ in range(3):
        head, _, rest = rest.partition(b"\r\n")
        size = int(head.removeprefix(b"$"))
        parts.append(rest[:size])
        rest = rest[size + 2 :]
    assert parts[0].upper() == b"PUBLISH" and not rest, parts[0]
    return parts[1].decode(), parts[2]


async def test_a_rest_write_answers_the_version_the_store_gave_it(
    pair: tuple[ServerProcess, ServerProcess],
) -> None:
    """B's client's write and A's REST restore are numbered alike (neither room has seen the
    other's write: neither is stored yet, held by the draft's versions lock as a slow commit
    would be). The store takes B's first and moves A's one version on: the restore answers the
    version its change was stored as, the one the journal's RESTORED event names, not the one
    A's room gave it."""
    a, b = pair
    async with as_user(a, "alice") as alice:
        draft = (await create_draft(alice, title="Plan"))["id"]
    writer_b = await NodeClient.start(b.ws_url, draft, b.token("alice"))
    lock = await asyncpg.connect(a.store_url)
    try:
        await writer_b.call("wait_synced")
        await writer_b.call("insert", field="title", index=0, text="X ")
        await eventually(lambda: _stored_at_least(a, draft, 2), timeout=10)
        await lock.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", draft)
        try:
            await writer_b.call("insert", field="title", index=0, text="Y ")
            # B's commit, first in line
            await eventually(lambda: advisory_waiters(lock, 1), timeout=10)
            async with as_user(a, "alice") as alice:
                restoring = asyncio.ensure_future(
                    alice.post(f"/api/drafts/{draft}/restore", json={"version": 1})
                )
                await eventually(lambda: advisory_waiters(lock, 2), timeout=10)  # A's, behind it
                await lock.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", draft)
                restored = await restoring
        finally:
            await lock.execute("SELECT pg_advisory_unlock_all()")
        assert restored.status_code == 200, restored.text
        [(stored_version,)] = stored_rows(
            a, "SELECT version FROM events WHERE draft_id = ? AND type = 'RESTORED'", draft
        )
        [(update_version,)] = stored_rows(
            a, "SELECT version FROM updates WHERE draft_id = ? AND session = 'restore'", draft
        )
        assert stored_version == update_version == 4  # B's write was stored as 3, before it
        assert restored.json()["version"] == stored_version, (restored.json(), stored_version)
    finally:
        await lock.close()
        await writer_b.close()


async def _stored_at_least(server: ServerProcess, draft_id: str, version: int) -> bool:
    return await asyncio.to_thread(stored_last, server, draft_id) >= version


class _KeepingProxy(_CapturingProxy):
    """A `_CapturingProxy` that keeps A's journal events on `draft`'s channel too: B hears
    nothing of A's writes (an event naming a version B lacks would have it catch up)."""

    def passes_up(self, client: asyncio.StreamWriter, chunk: bytes) -> bool:
        channel = f"{PREFIX}:u:{self.draft}".encode()
        if self.draft is None or b"PUBLISH" not in chunk or channel not in chunk:
            return True
        self.captured.append(chunk)
        client.write(b":1\r\n")
        return False


async def test_a_restore_answers_the_version_the_store_has_even_when_it_changes_nothing(
    tmp_path: Path, postgres: PostgresCluster, redis_server: RedisServer
) -> None:
    """A's client's write is stored as version n + 1, and its messages never reach B (the
    proxy keeps them): B learns of it only from its catch-up loop (every CATCH_UP_SECONDS).
    Restoring version n on B before then changes nothing B's room holds: nothing is written,
    and the answer is the draft's version in the store, n + 1, as every REST write answers
    the store's version (it was B's room's own count, n, a version the draft moved past).
    A restore that did write answers the version of its RESTORED event. Whether B caught up
    first is a race the test does not control: it tries until one restore was a no-op,
    at most ATTEMPTS times (each catch-up window is a second; a try takes far less)."""
    attempts = 6
    async with (
        _KeepingProxy(redis_server.port) as proxy,
        a_behind(proxy, tmp_path, postgres, redis_server) as (a, b),
    ):
        async with as_user(b, "alice") as alice:
            draft = (await create_draft(alice, title="one"))["id"]
        on_a = await NodeClient.start(a.ws_url, draft, a.token("alice"))
        on_b = await NodeClient.start(b.ws_url, draft, b.token("alice"))
        no_ops = 0
        try:
            await asyncio.gather(on_a.call("wait_synced"), on_b.call("wait_synced"))
            proxy.draft = draft
            for _ in range(attempts):
                before = stored_last(b, draft)
                kept = len(proxy.captured)
                await on_a.call("insert", field="title", index=0, text="x")

                async def committed_on_a(kept: int = kept) -> bool:
                    return len(proxy.captured) > kept  # published once committed

                await eventually(committed_on_a, timeout=10)
                async with as_user(b, "alice") as alice:
                    restored = await alice.post(
                        f"/api/drafts/{draft}/restore", json={"version": before}
                    )
                assert restored.status_code == 200, restored.text
                written = stored_rows(
                    b,
                    "SELECT version FROM events WHERE draft_id = ? AND type = 'RESTORED'"
                    " AND version > ?",
                    draft,
                    before,
                )
                if written:  # B had caught up: the restore undid A's write
                    assert restored.json()["version"] == written[0][0]  # type: ignore[index]
                    continue
                no_ops += 1
                assert stored_last(b, draft) == before + 1  # the no-op restore wrote nothing
                assert restored.json()["version"] == before + 1, restored.json()
                break
        finally:
            await asyncio.gather(on_a.close(), on_b.close())
        assert no_ops == 1, f"B caught up before each of {attempts} restores"
