"""Rule outcomes across two draftsync instances on one PostgreSQL and one Redis (issue 10).

A conflict written on two instances is resolved once, to the rules' answer; a write the rules
reject is told to Hocuspocus clients of every instance, once, with the version the store gave it,
even when its messages are lost or published twice. Split from test_instances.py so that both
workers of `pytest -n 2 --dist loadfile` share the tests of several instances.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis

from bench.services import PostgresCluster, RedisServer
from server.cluster.fanout import PREFIX
from tests.support.fanout_messages import signed
from tests.support.hocuspocus_client import HocuspocusClient
from tests.support.instances import a_behind, fanout_figures, new_draft
from tests.support.instances import shared_pair as shared_pair
from tests.support.node_client import NodeClient
from tests.support.redis_proxy import RedisProxy
from tests.support.rest import as_user, create_draft
from tests.support.server_process import ServerProcess
from tests.support.stored_any import stored_rows
from tests.support.waiting import eventually


async def offline_conflict(clients: tuple[NodeClient, NodeClient], watcher: NodeClient) -> None:
    """The status/current_step conflict of test_semantic_fields, written while offline; b comes
    back first, and once `watcher` (on a's instance) shows b's writes as the rules left them, a
    comes back: each to its own instance."""
    a, b = clients
    for client in clients:
        await client.call("wait_synced")
    await a.call("set", key="status", value="DRAFT")
    await a.call("set", key="current_step", value=1)

    async def both_draft() -> bool:
        return [(await c.fields()).get("status") for c in clients] == ["DRAFT", "DRAFT"]

    await eventually(both_draft, timeout=10)
    await a.call("disconnect")
    await b.call("disconnect")
    await a.call("set", key="status", value="IN_REVIEW")  # allowed from DRAFT
    await b.call("set", key="status", value="PUBLISHED")  # not allowed from DRAFT
    await a.call("set", key="current_step", value=3)
    await b.call("set", key="current_step", value=5)
    await b.call("connect")
    await b.call("wait_synced")

    async def watcher_has_b() -> bool:
        fields = await watcher.fields()
        return (fields.get("status"), fields.get("current_step")) == ("DRAFT", 5)

    await eventually(watcher_has_b, timeout=10)
    await a.call("connect")
    await a.call("wait_synced")

    async def rules_applied() -> bool:
        for client in clients:
            fields = await client.fields()
            if (fields.get("status"), fields.get("current_step")) != ("IN_REVIEW", 5):
                return False
        return True

    await eventually(rules_applied, timeout=15)


def rule_writes(server: ServerProcess, draft: str) -> int:
    [(count,)] = stored_rows(
        server, "SELECT count(*) FROM updates WHERE draft_id = ? AND session = 'rules'", draft
    )
    return int(count)  # type: ignore[call-overload]


async def test_a_conflict_written_on_two_instances_is_resolved_once_to_the_rules_answer(
    shared_pair: tuple[ServerProcess, ServerProcess],
) -> None:
    """The same offline conflict, its writers on one instance and then on two: every replica
    ends with the rules' answer, and the servers write exactly as many resolutions.

    Resolution runs on the instance that receives the second write, once the first one has
    reached it (the next test has them arrive at the same moment)."""
    a, b = shared_pair
    counts = []
    for second in (a, b):
        draft = new_draft()
        one = await NodeClient.start(a.ws_url, draft, a.token("alice"))
        two = await NodeClient.start(second.ws_url, draft, second.token("alice"))
        watcher = await NodeClient.start(a.ws_url, draft, a.token("alice"))
        try:
            await offline_conflict((one, two), watcher)
            await asyncio.sleep(1.5)  # a second resolution, if any, would land by now
            counts.append(rule_writes(a, draft))
        finally:
            await asyncio.gather(one.close(), two.close(), watcher.close())
    assert counts[0] >= 1
    assert counts[1] == counts[0], f"one instance: {counts[0]} rule writes, two: {counts[1]}"


async def test_conflicting_writes_reaching_two_instances_at_once_are_resolved_once(
    shared_pair: tuple[ServerProcess, ServerProcess],
) -> None:
    """Two offline writers come back at the same moment, one to each instance: the manual
    field gets exactly one conflict holding both values, the `max` field the larger value,
    the forbidden status move is rejected once and the `union` list keeps a tag both added
    once, on every replica.

    Without a review serialised across instances each instance judges its own client's write
    against a document that lacks the other's: neither sees a conflict."""
    a, b = shared_pair
    for _round in range(3):
        draft = new_draft()
        one = await NodeClient.start(a.ws_url, draft, a.token("alice"))
        two = await NodeClient.start(b.ws_url, draft, b.token("alice"))
        clients = (one, two)
        try:
            await asyncio.gather(*(c.call("wait_synced") for c in clients))
            await one.call("set", key="status", value="DRAFT")
            await one.call("set", key="current_step", value=1)
            await one.call("set", key="goal_amount", value=50)

            async def based(clients: tuple[NodeClient, ...] = clients) -> bool:
                seen = [await c.fields() for c in clients]
                return all(f.get("goal_amount") == 50 and f.get("status") == "DRAFT" for f in seen)

            await eventually(based, timeout=10)
            await asyncio.gather(*(c.call("disconnect") for c in clients))
            await one.call("set", key="goal_amount", value=100)
            await one.call("set", key="current_step", value=3)
            await one.call("set", key="status", value="IN_REVIEW")  # allowed from DRAFT
            await one.call("push", field="tags", values=["launch", "one"])
            await two.call("push", field="tags", values=["launch", "two"])
            await two.call("set", key="goal_amount", value=200)
            await two.call("set", key="current_step", value=5)
            await two.call("set", key="status", value="PUBLISHED")  # not allowed from DRAFT
            await asyncio.gather(*(c.call("connect") for c in clients))

            async def settled(clients: tuple[NodeClient, ...] = clients) -> bool:
                states = [await c.state(lists=["tags"]) for c in clients]
                return all(
                    len(s["conflicts"]) == 1
                    and s["fields"].get("current_step") == 5
                    and s["fields"].get("status") == "IN_REVIEW"
                    and sorted(s["lists"]["tags"]) == ["launch", "one", "two"]
                    for s in states
                )

            await eventually(settled, timeout=15)
            await asyncio.sleep(1.0)  # a second resolution, if any, would land by now
            states = [await c.state(lists=["tags"]) for c in clients]
            assert states[0]["conflicts"] == states[1]["conflicts"]
            assert states[0]["lists"]["tags"] == states[1]["lists"]["tags"]
            assert sorted(states[0]["lists"]["tags"]) == ["launch", "one", "two"]
            ((entry),) = states[0]["conflicts"].values()
            assert entry["field"] == "goal_amount"
            assert sorted(c["value"] for c in entry["candidates"]) == [100, 200]
            assert [c["user"] for c in entry["candidates"]] == ["alice", "alice"]
            events = journal_types(a, draft)
            assert events.count("CONFLICT_OPENED") == 1, events
            assert events.count("VALUE_REJECTED") == 1, events
        finally:
            await asyncio.gather(one.close(), two.close())


def journal_types(server: ServerProcess, draft: str) -> list[str]:
    rows = stored_rows(server, "SELECT type FROM events WHERE draft_id = ? ORDER BY id", draft)
    return [str(row[0]) for row in rows]  # type: ignore[index]


async def test_rule_outcomes_reach_hocuspocus_clients_of_every_instance(
    shared_pair: tuple[ServerProcess, ServerProcess], redis_server: RedisServer
) -> None:
    """A write the rules reject on instance a (judged there only): a Hocuspocus provider on
    instance b hears of it as Stateless JSON too, through the fan-out, as one on a does.
    Unreadable event messages on the channel are skipped: no reload, nobody closed."""
    a, b = shared_pair
    async with as_user(a, "alice") as alice:
        draft = (await create_draft(alice, title="Plan", fields={"status": "DRAFT"}))["id"]
    writer = await NodeClient.start(a.ws_url, draft, a.token("alice"))
    on_a = await HocuspocusClient.launch(f"ws://127.0.0.1:{a.port}/hocuspocus")
    on_b = await HocuspocusClient.launch(f"ws://127.0.0.1:{b.port}/hocuspocus")
    try:
        await on_a.open("d", draft, a.token("alice"))
        await on_b.open("d", draft, b.token("alice"))
        await asyncio.gather(
            writer.call("wait_synced"),
            on_a.call("wait_synced", doc="d"),
            on_b.call("wait_synced", doc="d"),
        )
        garbage = [
            {"e": "not a list"},
            {"e": [{"t": "NO_SUCH_EVENT", "v": 1, "at": 0, "d": {}}]},
            {"e": [{"t": "VALUE_REJECTED", "v": "x", "at": 0, "d": {}}]},
            {"e": [{"t": "VALUE_REJECTED", "v": 1, "at": 0, "d": "not an object"}]},
            {"e": [{"t": "VALUE_REJECTED", "v": 1, "at": 0, "d": {}, "u": ["no"]}]},
            {"e": [{"v": 1}]},
        ]
        publisher = aioredis.from_url(redis_server.url)
        try:
            for number, header in enumerate(garbage, start=1):  # signed: read, unreadable
                message = json.dumps({"i": "a-test", "n": number, **header}).encode() + b"\n"
                channel = f"{PREFIX}:u:{draft}"
                await publisher.publish(channel, signed(channel, message))
        finally:
            await publisher.aclose()
        await writer.call("set", key="status", value="PUBLISHED")  # DRAFT -> PUBLISHED: no
        for client in (on_a, on_b):
            told = json.loads((await client.wait_doc_event("d", "stateless", 15))["payload"])
            assert told["type"] == "draftsync.event" and told["event"] == "VALUE_REJECTED"
            assert told["data"]["field"] == "status" and told["data"]["value"] == "PUBLISHED"
            assert told["user"] == "alice" and told["yours"] is False
            assert told["version"] > 0

        async def reverted() -> bool:
            return (await on_b.doc_state("d"))["fields"].get("status") == "DRAFT"

        await eventually(reverted, timeout=10)
        # Told once each: no echo of the message back to its instance, nothing doubled.
        assert not [e for e in on_a.events + on_b.events if e["event"] == "stateless"]
        assert not [e for e in on_a.events + on_b.events if e["event"] in ("close", "disconnect")]
        assert not [e for e in writer.events if e["event"] in ("error", "closed")]
    finally:
        await asyncio.gather(writer.close(), on_a.close(), on_b.close())


async def test_rule_outcomes_are_told_with_the_version_the_store_gave_their_write(
    shared_pair: tuple[ServerProcess, ServerProcess],
) -> None:
    """A's text write and B's rejected status write commit at once (held here by the draft's
    versions lock, as a slow commit would be): the store numbers A's first, so B's write, and
    its journal events, move one version on. The rule outcome told to Hocuspocus clients on
    both instances carries the version the journal stored, not the one B's room gave."""
    a, b = shared_pair
    async with as_user(a, "alice") as alice:
        draft = (await create_draft(alice, title="Plan", fields={"status": "DRAFT"}))["id"]
    writer_a = await NodeClient.start(a.ws_url, draft, a.token("alice"))
    writer_b = await NodeClient.start(b.ws_url, draft, b.token("alice"))
    on_a = await HocuspocusClient.launch(f"ws://127.0.0.1:{a.port}/hocuspocus")
    on_b = await HocuspocusClient.launch(f"ws://127.0.0.1:{b.port}/hocuspocus")
    lock = await asyncpg.connect(a.store_url)
    try:
        await on_a.open("d", draft, a.token("alice"))
        await on_b.open("d", draft, b.token("alice"))
        await asyncio.gather(
            writer_a.call("wait_synced"),
            writer_b.call("wait_synced"),
            on_a.call("wait_synced", doc="d"),
            on_b.call("wait_synced", doc="d"),
        )
        await lock.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", draft)
        try:
            await writer_a.call("insert", field="title", index=0, text="A ")
            await asyncio.sleep(0.5)  # A's commit waits for the lock, first in line
            await writer_b.call("set", key="status", value="PUBLISHED")  # DRAFT -> PUBLISHED: no
            await asyncio.sleep(0.5)  # B's, numbered before A's is stored, waits behind it
        finally:
            await lock.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", draft)
        told = [
            json.loads((await client.wait_doc_event("d", "stateless", 15))["payload"])
            for client in (on_a, on_b)
        ]
        [(stored_version,)] = stored_rows(
            a, "SELECT version FROM events WHERE draft_id = ? AND type = 'VALUE_REJECTED'", draft
        )
        for message in told:
            assert message["event"] == "VALUE_REJECTED"
            assert message["version"] == stored_version, (message, stored_version)
    finally:
        await lock.close()
        await asyncio.gather(writer_a.close(), writer_b.close(), on_a.close(), on_b.close())


class _ReplyLosingProxy(RedisProxy):
    """A proxy to Redis that, once, loses the reply to a PUBLISH of journal events: the
    command reaches Redis (so the message is published), then the connection drops before the
    reply is back, as a network fault would. The publisher cannot tell, and publishes again."""

    lost = 0

    def is_last(self, client: asyncio.StreamWriter, chunk: bytes) -> bool:
        losing = not self.lost and b"PUBLISH" in chunk and b'"e":[' in chunk
        self.lost += losing
        return losing


async def test_rule_outcomes_published_again_after_a_lost_reply_are_told_once(
    tmp_path: Path, postgres: PostgresCluster, redis_server: RedisServer
) -> None:
    """The reply to A's PUBLISH of a rule outcome is lost (the message did reach Redis): A
    publishes it again, as it must (a message may be lost). B's Hocuspocus client is told of
    the outcome once, not once per copy: updates are idempotent, told events are not."""
    async with (
        _ReplyLosingProxy(redis_server.port) as proxy,
        a_behind(proxy, tmp_path, postgres, redis_server) as (a, b),
    ):
        async with as_user(a, "alice") as alice:
            draft = (await create_draft(alice, title="Plan", fields={"status": "DRAFT"}))["id"]
        writer = await NodeClient.start(a.ws_url, draft, a.token("alice"))
        on_b = await HocuspocusClient.launch(f"ws://127.0.0.1:{b.port}/hocuspocus")
        try:
            await on_b.open("d", draft, b.token("alice"))
            await asyncio.gather(writer.call("wait_synced"), on_b.call("wait_synced", doc="d"))
            await writer.call("set", key="status", value="PUBLISHED")  # DRAFT -> PUBLISHED: no
            told = json.loads((await on_b.wait_doc_event("d", "stateless", 15))["payload"])
            assert told["event"] == "VALUE_REJECTED"

            async def reverted() -> bool:
                return (await on_b.doc_state("d"))["fields"].get("status") == "DRAFT"

            await eventually(reverted, timeout=10)
            await asyncio.sleep(1.5)  # a second copy, if any, would be told by now
            assert proxy.lost == 1
            doubled = [e for e in on_b.events if e["event"] == "stateless"]
            assert not doubled, doubled
        finally:
            await asyncio.gather(writer.close(), on_b.close())


class _OutcomeLosingProxy(RedisProxy):
    """A proxy to Redis that loses every message of A's carrying rule outcomes (a journal
    events list, `"e":[`): A is answered as Redis would ("1 receiver"), nothing is published,
    as when A's outbox dropped them (Redis away) or Redis lost them."""

    lost = 0

    def passes_up(self, client: asyncio.StreamWriter, chunk: bytes) -> bool:
        if b"PUBLISH" not in chunk or b'"e":[' not in chunk:
            return True
        self.lost += 1
        client.write(b":1\r\n")
        return False


async def test_rule_outcomes_whose_messages_were_lost_reach_the_other_instance_once(
    tmp_path: Path, postgres: PostgresCluster, redis_server: RedisServer
) -> None:
    """A judges two writes the rules reject, and every message carrying their outcomes is
    lost on the way to Redis. B catches the versions up from the store (its gap fill, or its
    catch-up loop): its Hocuspocus client must be told each outcome too, once, in order, with
    the version the store gave it, as a client on A is; a later edit still crosses at once."""
    async with (
        _OutcomeLosingProxy(redis_server.port) as proxy,
        a_behind(proxy, tmp_path, postgres, redis_server) as (a, b),
    ):
        async with as_user(a, "alice") as alice:
            draft = (await create_draft(alice, title="Plan", fields={"status": "DRAFT"}))["id"]
        writer = await NodeClient.start(a.ws_url, draft, a.token("alice"))
        on_b = await HocuspocusClient.launch(f"ws://127.0.0.1:{b.port}/hocuspocus")
        try:
            await on_b.open("d", draft, b.token("alice"))
            await asyncio.gather(writer.call("wait_synced"), on_b.call("wait_synced", doc="d"))

            async def status_is(value: str) -> bool:
                return (await on_b.doc_state("d"))["fields"].get("status") == value

            for count in (1, 2):  # DRAFT -> PUBLISHED: rejected, put back

                async def put_back(count: int = count) -> bool:
                    stored = await _stored_rejections(a, draft)
                    return stored == count and (await writer.fields()).get("status") == "DRAFT"

                await writer.call("set", key="status", value="PUBLISHED")
                await eventually(put_back, timeout=10)
            told = [
                json.loads((await on_b.wait_doc_event("d", "stateless", 15))["payload"])
                for _ in range(2)
            ]
            stored = stored_rows(
                a,
                "SELECT version FROM events WHERE draft_id = ? AND type = 'VALUE_REJECTED'"
                " ORDER BY id",
                draft,
            )
            assert proxy.lost >= 2
            assert [m["event"] for m in told] == ["VALUE_REJECTED"] * 2, told
            versions = [int(row[0]) for row in stored]  # type: ignore[index]
            assert [m["version"] for m in told] == versions, (told, versions)
            await eventually(lambda: status_is("DRAFT"), timeout=10)
            await writer.call("insert", field="title", index=0, text="later ")

            async def later_seen() -> bool:
                return (await on_b.doc_text("d", "title")).startswith("later ")

            await eventually(later_seen, timeout=10)

            async def settled() -> bool:
                return (await fanout_figures(b)).get("gaps") == 0

            await eventually(settled, timeout=10)
            await asyncio.sleep(1.5)  # the catch-up loop ran again: a second telling would be in
            doubled = [e for e in on_b.events if e["event"] == "stateless"]
            assert not doubled, doubled
            assert "Traceback" not in a.log() + b.log()
        finally:
            await asyncio.gather(writer.close(), on_b.close())


async def _stored_rejections(server: ServerProcess, draft: str) -> int:
    rows = await asyncio.to_thread(
        stored_rows,
        server,
        "SELECT 1 FROM events WHERE draft_id = ? AND type = 'VALUE_REJECTED'",
        draft,
    )
    return len(rows)
