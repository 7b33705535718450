"""Hostile updates that reach the doc itself (issue 21, findings 1, 6 and 7): a refused update
leaves nothing behind (not in the room's doc, not in the store, not credited to anyone), and
a write is applied only if its connection may write at that moment.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest
from pycrdt import Doc, Map, Text
from websockets.exceptions import ConnectionClosed

from bench.harness import open_room
from bench.services import PostgresCluster, RedisServer
from crdt.lib0 import write_var_string, write_var_uint
from crdt.protocol import Update, encode_message
from crdt.updates import may_nest_too_deep
from tests.support.bystander import bystander_on
from tests.support.feed_reader import feed
from tests.support.pycrdt_client import PycrdtClient, connect_synced, type_into
from tests.support.raw_client import RawClient, connect_raw
from tests.support.rest import as_user, create_draft, new_id
from tests.support.server_process import ServerProcess
from tests.support.stored import stored_doc, stored_rows
from tests.support.waiting import eventually

NEAR_2_53 = 2**53 - 2


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    # As an operator chasing a Rust bug might run it: a panic's backtrace then cost the event
    # loop 0.3-0.8 s (finding 6's bystander), until the server turned backtraces off.
    debugging = {"RUST_BACKTRACE": "1"}
    process = ServerProcess(tmp_path / "data", "--room-grace", "0.3", env=debugging).start()
    yield process
    process.stop()


def text_item(client: int, clock: int, text: str, *, deletes: list[tuple[int, int, int]]) -> bytes:
    """A Yjs v1 update of one string item at the start of root text `title`, with a delete
    set of (client, clock, length) ranges, encoded by hand (no editor would send these)."""
    out = bytearray()
    write_var_uint(out, 1)  # one struct group
    write_var_uint(out, 1)  # of one struct
    write_var_uint(out, client)
    write_var_uint(out, clock)
    out.append(4)  # an item of string content whose parent is named
    write_var_uint(out, 1)
    write_var_string(out, "title")
    write_var_string(out, text)
    write_var_uint(out, len(deletes))
    for owner, start, length in deletes:
        write_var_uint(out, owner)
        write_var_uint(out, 1)
        write_var_uint(out, start)
        write_var_uint(out, length)
    return bytes(out)


async def bystander_title(server: ServerProcess, draft: str) -> str:
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.get(
            f"{server.http_url}/api/drafts/{draft}",
            headers={"Authorization": f"Bearer {server.token('alice')}"},
        )
    assert answer.status_code == 200
    return str(answer.json()["state"]["texts"]["title"])


async def the_panic(
    server: ServerProcess, draft: str, mallory: RawClient, bob: PycrdtClient
) -> None:
    """Finding 6's attack: a panicking delete set, then a joiner and the next user's sync."""
    await mallory.send(encode_message(Update(text_item(5, NEAR_2_53, "x", deletes=[]))))
    await bob.wait_for(lambda: bob.text("title") == "x")
    payload = text_item(7, 0, "UNSTORED-PAYLOAD", deletes=[(5, 1, 2**53 - 1)])
    await mallory.send(encode_message(Update(payload)))
    code, reason = await mallory.wait_closed()
    assert code == 4400 and reason and "rejected" in reason
    # The room's doc took it half-way: it is dropped, its clients reconnect to a fresh one.
    await asyncio.wait_for(bob.closed.wait(), 10)
    assert bob.close_code == 1013 and "UNSTORED" not in bob.text("title")
    assert await bystander_title(server, draft) == "x"
    joiner = await connect_synced(server, draft, "alice")
    assert joiner.text("title") == "x"
    # The next user's (empty) sync step 2 stores nothing of it under their name.
    carol = await connect_synced(server, draft, "alice")
    await carol.flush()
    await joiner.disconnect()
    await carol.disconnect()


async def test_finding_6_a_delete_set_that_panics_yrs_leaves_nothing_behind(
    server: ServerProcess,
) -> None:
    draft, other = f"panic-{uuid.uuid4().hex[:8]}", f"calm-{uuid.uuid4().hex[:8]}"
    alice = await connect_synced(server, draft, "alice")
    bob = await connect_synced(server, draft, "alice")
    bystander = await connect_synced(server, other, "alice")
    mallory = await connect_raw(server.ws_url, draft, server.token("alice"))
    try:
        async with bystander_on(server) as calm:
            await calm.measure_before()
            await calm.while_attacked(the_panic(server, draft, mallory, bob))
        calm.assert_unchanged()
        assert "UNSTORED" not in str(stored_doc(server.database, draft).get("title", type=Text))
        count = "SELECT count(*) FROM updates WHERE draft_id = ?"
        assert stored_rows(server.database, count, draft) == [(1,)]
        assert server.process is not None and server.process.poll() is None
        # Another draft's editor never noticed: its edit is stored, /healthz answers.
        await bystander.edit(type_into("still here"))
        await bystander.flush(timeout=10)
        assert await bystander_title(server, other) == "still here"
        async with httpx.AsyncClient(timeout=5) as http:
            assert (await http.get(f"{server.http_url}/healthz")).status_code == 200
    finally:
        await asyncio.gather(
            alice.disconnect(), bob.disconnect(), bystander.disconnect(), mallory.close()
        )


async def a_shared_type_in_fields(server: ServerProcess, draft: str, mallory: PycrdtClient) -> None:
    """Finding 1's attack: `fields["k"] = Y.Map()`, refused; a joiner never sees `k`."""

    def nest(doc: Doc) -> None:
        doc.get("fields", type=Map)["k"] = Map({"inner": 1})

    await mallory.edit(nest)
    await asyncio.wait_for(mallory.closed.wait(), 10)
    assert mallory.close_code == 4400 and "JSON" in (mallory.close_reason or "")
    joiner = await connect_synced(server, draft, "alice")
    assert "k" not in joiner.fields()
    await joiner.disconnect()


async def test_finding_1_a_shared_type_in_fields_is_refused_and_the_server_carries_on(
    server: ServerProcess,
) -> None:
    draft, other = f"ymap-{uuid.uuid4().hex[:8]}", f"calm-{uuid.uuid4().hex[:8]}"
    mallory = await connect_synced(server, draft, "alice")
    bystander = await connect_synced(server, other, "alice")
    try:
        async with bystander_on(server) as calm:
            await calm.measure_before()
            await calm.while_attacked(a_shared_type_in_fields(server, draft, mallory))
        calm.assert_unchanged()
        async with httpx.AsyncClient(timeout=5) as http:
            assert (await http.get(f"{server.http_url}/healthz")).status_code == 200

        def typed(doc: Doc) -> None:
            doc.get("title", type=Text).insert(0, "still here")

        await bystander.edit(typed)
        await bystander.flush(timeout=10)
        assert await bystander_title(server, other) == "still here"
    finally:
        await asyncio.gather(mallory.disconnect(), bystander.disconnect())


# The draft's review turn across instances is a PostgreSQL advisory lock the server takes
# (server/store/postgres.py `_REVIEW_LOCK`); a test holds it so that a semantic write waits.
async def _hold_review_turn(lock: asyncpg.Connection, draft: str) -> None:
    await lock.execute("SELECT pg_advisory_lock(hashtextextended($1, 1))", draft)


async def _release_review_turn(lock: asyncpg.Connection, draft: str) -> None:
    await lock.execute("SELECT pg_advisory_unlock(hashtextextended($1, 1))", draft)


async def _review_turn_awaited(lock: asyncpg.Connection) -> None:
    """Until a write waits for the review turn the test holds."""

    async def waiting() -> bool:
        return bool(
            await lock.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            )
        )

    await eventually(waiting)


@dataclass
class _OnPostgres:
    """A server on a database of its own (PostgreSQL + Redis: the several-instances code),
    the test's own connection to that database (it holds review turns: `lock`), and the
    editors the test opened there, all closed with it (`_on_postgres`)."""

    server: ServerProcess
    lock: asyncpg.Connection
    clients: list[PycrdtClient] = field(default_factory=list)

    async def editor(self, draft: str, user: str) -> PycrdtClient:
        """`user`'s editor on `draft`, synced (`connect_synced`)."""
        return self.keep(await connect_synced(self.server, draft, user))

    def keep(self, client: PycrdtClient) -> PycrdtClient:
        self.clients.append(client)
        return client


@asynccontextmanager
async def _on_postgres(
    tmp_path: Path, postgres: PostgresCluster, redis_server: RedisServer, *flags: str
) -> AsyncIterator[_OnPostgres]:
    store = postgres.new_database()
    server = ServerProcess(
        tmp_path / "a", "--store", store, "--redis", redis_server.url, *flags
    ).start()
    try:
        on = _OnPostgres(server, await asyncpg.connect(store))
        try:
            yield on
        finally:
            await on.lock.close()
            for client in on.clients:
                await client.disconnect()
    finally:
        server.stop()


async def test_finding_7_a_write_waiting_when_its_sender_is_downgraded_is_not_applied(
    tmp_path: Path,
) -> None:
    """The real room and store in-process, so that the downgrade lands exactly while the
    update waits (on the nesting check's worker thread) between the first rights check and
    the doc: it must not be applied, stored or acknowledged."""
    source = Doc()
    source.get("notes", type=Map).update({f"u{i}v": "uv" * 4 for i in range(2_000)})
    update = source.get_update()
    assert may_nest_too_deep(update)  # so the room awaits a worker thread before applying
    async with open_room(tmp_path) as harness:
        editor, _ = await harness.connect("editor")
        room = harness.room
        assert room is not None
        version = room.version
        receiving = asyncio.create_task(room.receive_run(editor, [update]))
        await asyncio.sleep(0)  # the run is now waiting on the worker thread
        assert not receiving.done()
        editor.set_can_write(False)  # what an owner's downgrade does (server/sync/sharing.py)
        await receiving
        await harness.committed()
        assert room.version == version and "u0v" not in room.doc.get("notes", type=Map)


async def test_finding_7_a_write_waiting_for_its_review_turn_is_not_stored_after_a_downgrade(
    tmp_path: Path, postgres: PostgresCluster, redis_server: RedisServer
) -> None:
    """Several instances (PostgreSQL + Redis): a write to a semantic field is applied to the
    doc, then waits for the draft's review turn (a PostgreSQL advisory lock, held here by the
    test). The owner downgrades its sender meanwhile (200): once the turn comes, the write is
    not stored, journaled or credited, and the room does not keep it either."""
    async with (
        _on_postgres(tmp_path, postgres, redis_server, "--room-grace", "0.3") as on,
        as_user(on.server, "alice") as alice,
    ):
        async with bystander_on(on.server) as calm:
            draft = (await create_draft(alice, fields={"category": "kept"}))["id"]
            answer = await alice.put(
                f"/api/drafts/{draft}/access", json={"user": "bob", "role": "editor"}
            )
            assert answer.status_code == 200, answer.text
            owner = await on.editor(draft, "alice")
            bob = await on.editor(draft, "bob")
            await calm.measure_before()

            async def downgraded_while_waiting() -> None:
                await _hold_review_turn(on.lock, draft)
                await bob.edit(
                    lambda doc: doc.get("fields", type=Map).__setitem__("category", "BOB")
                )

                await _review_turn_awaited(on.lock)
                answer = await alice.put(
                    f"/api/drafts/{draft}/access", json={"user": "bob", "role": "viewer"}
                )
                assert answer.status_code == 200, answer.text
                await _release_review_turn(on.lock, draft)

                # The owner's own write takes its turn after bob's: once it is acknowledged, bob's
                # turn has passed. The owner may have to reconnect (the room reloads).
                async def owner_writes() -> bool:
                    nonlocal owner
                    if owner.closed.is_set():
                        await owner.disconnect()
                        owner = await on.editor(draft, "alice")
                    try:  # the room may reload between the check above and the send
                        await owner.edit(type_into("after"))
                        await owner.flush(timeout=5)
                    except (TimeoutError, ConnectionError, ConnectionClosed):
                        return False
                    return not owner.closed.is_set()

                await eventually(owner_writes, timeout=30)

            await calm.while_attacked(downgraded_while_waiting())
            calm.assert_unchanged()
            read = await alice.get(f"/api/drafts/{draft}")
            assert read.status_code == 200, read.text
            assert read.json()["state"]["fields"]["category"] == "kept"
            events = (await alice.get(f"/api/drafts/{draft}/events")).json()["items"]
            credited = [e for e in events if e["user"] == "bob" and e["type"] != "SESSION"]
            assert not credited, events  # bob's session (he joined) is journaled, no write
        credited = await on.lock.fetchval(
            'SELECT count(*) FROM updates WHERE draft_id = $1 AND "user" = $2', draft, "bob"
        )
        assert credited == 0


async def test_a_write_waiting_for_its_review_turn_reaches_no_joiner_before_it_is_stored(
    tmp_path: Path, postgres: PostgresCluster, redis_server: RedisServer
) -> None:
    """Durable before visible, for a write held for its review turn (several instances): the
    doc holds it, not stored yet, while the turn is awaited. A joiner's sync step 2 made then
    carried it; the sender downgraded, the write was dropped, and the joiner, reconnecting
    after the room's reload, sent it back as its own sync: stored, under the joiner's right.
    The joiner's answer, and a REST read of the room, now wait for the turn."""
    async with (
        _on_postgres(tmp_path, postgres, redis_server, "--room-grace", "0.3") as on,
        as_user(on.server, "alice") as alice,
    ):
        draft = (await create_draft(alice, fields={"category": "kept"}))["id"]
        for user in ("bob", "carol"):
            answer = await alice.put(
                f"/api/drafts/{draft}/access", json={"user": user, "role": "editor"}
            )
            assert answer.status_code == 200, answer.text
        bob = await on.editor(draft, "bob")
        await _hold_review_turn(on.lock, draft)
        await bob.edit(lambda doc: doc.get("fields", type=Map).__setitem__("category", "BOB"))

        await _review_turn_awaited(on.lock)
        carol = on.keep(
            await PycrdtClient(on.server.ws_url, draft, on.server.token("carol")).connect()
        )
        # Time for a server that answers at once to do so (not asserted on: a slow one
        # would only make this test pass without showing anything).
        reading = asyncio.ensure_future(alice.get(f"/api/drafts/{draft}"))
        await asyncio.wait([asyncio.ensure_future(carol.synced.wait()), reading], timeout=3)
        answer = await alice.put(
            f"/api/drafts/{draft}/access", json={"user": "bob", "role": "viewer"}
        )
        assert answer.status_code == 200, answer.text
        await _release_review_turn(on.lock, draft)
        assert carol.fields().get("category") != "BOB"
        read = await reading  # a REST reader of the room is not shown it either
        assert read.status_code != 200 or read.json()["state"]["fields"]["category"] == "kept"

        async def carol_synced_anew() -> bool:  # after the room's reload, as a provider does
            if carol.closed.is_set():
                await carol.connect()
            try:
                await carol.flush(timeout=5)
            except (TimeoutError, ConnectionError, ConnectionClosed):
                return False
            return carol.synced.is_set() and not carol.closed.is_set()

        await eventually(carol_synced_anew, timeout=30)
        read = await alice.get(f"/api/drafts/{draft}")
        assert read.status_code == 200, read.text
        assert read.json()["state"]["fields"]["category"] == "kept"


async def test_a_write_waiting_for_its_review_turn_is_not_counted_before_it_is_stored(
    tmp_path: Path, postgres: PostgresCluster, redis_server: RedisServer
) -> None:
    """Durable before visible, for the figures too (several instances): while a write waits
    for its review turn, `GET /api/stats` and the dashboard counted the room's doc, which holds
    it (words, filled fields, title), though it may be dropped and was, here: its sender is
    downgraded. They now answer at once, while the turn is still held, with the draft's
    stored figures and the draft "pending" (they once waited for the turn: ten seconds and
    a 503 when another instance held it). A twin draft, created alike and never edited, gives
    the figures the draft must keep."""
    async with (
        _on_postgres(tmp_path, postgres, redis_server, "--room-grace", "0.3") as on,
        as_user(on.server, "alice") as alice,
    ):
        draft, twin = await _a_write_held_for_review_beside_a_twin(on, alice)
        twin_read = await alice.get(f"/api/drafts/{twin}")  # not loaded: from the store
        assert twin_read.status_code == 200, twin_read.text
        twin_completion = twin_read.json()["metadata"]["completion"]

        # Asked and answered while the turn is held (the test releases it only after).
        stats, dashboard = await asyncio.gather(
            alice.get("/api/stats"), alice.get("/api/dashboard")
        )
        assert dashboard.status_code == 200, dashboard.text
        items = {item["id"]: item for item in dashboard.json()["items"]}
        for key in ("title", "wordCount", "filledFields", "completion"):
            assert items[draft][key] == items[twin][key], key
        assert (items[draft]["sync"], items[twin]["sync"]) == ("pending", "synced")
        assert stats.status_code == 200, stats.text
        figures = stats.json()
        assert figures["totalWordCount"] == 0, figures
        assert figures["averageCompletion"] == twin_completion, figures
        assert figures["syncedDrafts"] == 1, figures

        answer = await alice.put(
            f"/api/drafts/{draft}/access", json={"user": "bob", "role": "viewer"}
        )
        assert answer.status_code == 200, answer.text
        await _release_review_turn(on.lock, draft)
        await eventually(lambda: _reads_as_twin(alice, draft, twin))


async def test_the_change_feed_is_not_held_up_by_a_draft_whose_write_waits_for_its_turn(
    tmp_path: Path, postgres: PostgresCluster, redis_server: RedisServer
) -> None:
    """The change feed publishes its dirty drafts one after another: a summary that waited
    for one draft's review turn held back every draft after it, and, once the wait gave up
    (ten seconds), that draft's summary was never sent. While the turn is held, the draft's
    summary now comes at once with its stored figures, and a draft changed after it follows."""
    async with (
        _on_postgres(tmp_path, postgres, redis_server) as on,
        as_user(on.server, "alice") as alice,
    ):
        draft, _twin = await _a_write_held_for_review_beside_a_twin(on, alice)
        async with feed(on.server, "alice") as reader:
            # Both changed in one round or in two, the held draft first (ids sort so).
            answer = await alice.put(
                f"/api/drafts/{draft}/access", json={"user": "carol", "role": "viewer"}
            )
            assert answer.status_code == 200, answer.text
            later = (await create_draft(alice, id=new_id("z")))["id"]
            held = await reader.until("summary", draft)
            assert held["sync"] == "pending"
            assert held["filledFields"] == (await reader.until("summary", later))["filledFields"]
        await _release_review_turn(on.lock, draft)


async def _a_write_held_for_review_beside_a_twin(
    on: _OnPostgres, alice: httpx.AsyncClient
) -> tuple[str, str]:
    """Two drafts of alice's made alike (the first's id sorts first); bob, an editor of the
    first, has written `category` and three title words there, and that write waits for the
    draft's review turn, which `on.lock` holds."""
    draft = (await create_draft(alice, id=new_id("a")))["id"]
    twin = (await create_draft(alice))["id"]
    answer = await alice.put(f"/api/drafts/{draft}/access", json={"user": "bob", "role": "editor"})
    assert answer.status_code == 200, answer.text
    bob = await on.editor(draft, "bob")
    await _hold_review_turn(on.lock, draft)

    def category_and_words(doc: Doc) -> None:  # one transaction: held as one write
        doc.get("fields", type=Map)["category"] = "BOB"
        doc.get("title", type=Text).insert(0, "three more words")

    await bob.edit(category_and_words)
    await _review_turn_awaited(on.lock)
    return draft, twin


async def _reads_as_twin(alice: httpx.AsyncClient, draft: str, twin: str) -> bool:
    """The dashboard shows `draft` synced, with `twin`'s figures."""
    read = await alice.get("/api/dashboard")
    items = {item["id"]: item for item in read.json()["items"]}
    keys = ("title", "wordCount", "filledFields", "completion")
    return items[draft]["sync"] == "synced" and all(
        items[draft][key] == items[twin][key] for key in keys
    )
