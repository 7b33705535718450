"""Awareness belongs to its connection (issue 21 point 4, finding 8; server/sync/presence.py).

Each attack of the finding, on a running server: a viewer (a frame-level client) goes after
bob's awareness client id while bob is a stock Yjs client (Node `WebsocketProvider`), alice
another, and a frame-level watcher records every awareness entry the server relays. The viewer
may not overwrite, delete or pin bob's entry, nor remove it by leaving (a stock client that
hears its own entry removed re-announces itself, so only the watcher shows that it was); an
update over the per-connection limits closes it with 4400 and nothing of it reaches anyone; a
flood is relayed paced, ending on the last state sent.

"Nothing arrived" is never waited for with a sleep: after its attack the viewer sets a mark in
its own awareness entry, and since the server handles a connection's frames in order, once
alice sees the mark the server has handled (and dropped) the attack.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bench.services import PostgresCluster, RedisServer
from crdt.awareness import AwarenessEntry, decode_awareness_update, encode_awareness_update
from crdt.protocol import Awareness, SyncStep1, encode_message
from server.sync.presence import MAX_BYTES, MAX_STATES, RATE
from tests.support.bystander import Bystander, bystander_on
from tests.support.node_client import NodeClient
from tests.support.raw_client import RawClient, connect_raw
from tests.support.rest import as_user, create_draft
from tests.support.server_process import REPO, ServerProcess, start_together
from tests.support.waiting import eventually

TIMEOUT = 10
EVE_ID = 777_001  # the viewer's own awareness client id


def frame(*entries: tuple[int, int, Any]) -> bytes:
    """An awareness frame; a state of None is a removal."""
    update = encode_awareness_update(
        AwarenessEntry(client_id, clock, json.dumps(state)) for client_id, clock, state in entries
    )
    return encode_message(Awareness(update))


async def states_of(client: NodeClient) -> dict[int, Any]:
    return {int(client_id): state for client_id, state in await client.call("awareness_states")}


class Room:
    def __init__(self, server: ServerProcess, draft: str, bob: NodeClient, alice: NodeClient):
        self.server = server
        self.draft = draft
        self.bob = bob
        self.alice = alice
        self.bob_id = 0
        self.marks = 0
        self.watcher: RawClient | None = None

    async def viewer(self) -> RawClient:
        eve = await connect_raw(self.server.ws_url, self.draft, self.server.token("eve"))
        await eve.next_message(SyncStep1, timeout=TIMEOUT)
        return eve

    async def handled(self, eve: RawClient) -> None:
        """Return once the server has handled everything `eve` sent so far (module docstring)."""
        self.marks += 1
        mark = self.marks
        await eve.send(frame((EVE_ID, mark, {"mark": mark})))

        async def seen() -> bool:
            return (await states_of(self.alice)).get(EVE_ID, {}).get("mark") == mark

        await eventually(seen, timeout=TIMEOUT)
        assert self.watcher is not None
        await self.watcher.next_message(
            Awareness,
            where=lambda m: (
                AwarenessEntry(EVE_ID, mark, json.dumps({"mark": mark}))
                in decode_awareness_update(m.update)
            ),
            timeout=TIMEOUT,
        )

    def bob_entries_relayed(self) -> list[Any]:
        """Every state of bob's id the watcher was sent (None: a removal), in order."""
        assert self.watcher is not None
        return [
            json.loads(entry.state_json)
            for message in self.watcher.messages
            if isinstance(message, Awareness)
            for entry in decode_awareness_update(message.update)
            if entry.client_id == self.bob_id
        ]

    async def bob_as_everyone_sees_him(self) -> list[Any]:
        """Bob's entry as bob himself, alice and a client joining now hold it."""
        joiner = await self.viewer()
        try:
            _, greeting = await joiner.next_message(Awareness, timeout=TIMEOUT)
        finally:
            await joiner.close()
        joined = {e.client_id: e for e in decode_awareness_update(greeting.update)}
        entry = joined.get(self.bob_id)
        return [
            (await states_of(self.bob)).get(self.bob_id),
            (await states_of(self.alice)).get(self.bob_id),
            None if entry is None else json.loads(entry.state_json),
        ]


@pytest.fixture
async def room(server: ServerProcess) -> AsyncIterator[Room]:
    """A draft of alice's, shared with bob (editor) and eve (viewer); bob and alice connected,
    bob's cursor at 1 and seen by alice."""
    async with as_user(server, "alice") as rest:
        draft = (await create_draft(rest, title="plan"))["id"]
        for user, role in (("bob", "editor"), ("eve", "viewer")):
            shared = await rest.put(
                f"/api/drafts/{draft}/access", json={"user": user, "role": role}
            )
            assert shared.status_code == 200, shared.text
    async with contextlib.AsyncExitStack() as stack:
        bob = await stack.enter_async_context(
            await NodeClient.start(server.ws_url, draft, server.token("bob"), name="bob")
        )
        alice = await stack.enter_async_context(
            await NodeClient.start(server.ws_url, draft, server.token("alice"), name="alice")
        )
        await asyncio.gather(bob.call("wait_synced"), alice.call("wait_synced"))
        the_room = Room(server, draft, bob, alice)
        the_room.bob_id = (await bob.state())["clientID"]
        await bob.call("awareness_set", field="cursor", value={"anchor": 1})
        await eventually(lambda: _alice_sees_cursor(the_room, {"anchor": 1}), timeout=TIMEOUT)
        the_room.watcher = await the_room.viewer()
        await the_room.watcher.next_message(Awareness, timeout=TIMEOUT)  # the greeting
        try:
            yield the_room
        finally:
            await the_room.watcher.close()


@pytest.fixture
async def calm(server: ServerProcess) -> AsyncIterator[Bystander]:
    async with bystander_on(server) as editor:
        yield editor


async def _alice_sees_cursor(room: Room, cursor: Any) -> bool:
    return (await states_of(room.alice)).get(room.bob_id, {}).get("cursor") == cursor


BOB_REAL = {"user": {"name": "bob"}, "cursor": {"anchor": 1}}
FAKE = {"user": {"name": "bob (not)"}, "cursor": {"anchor": 99}}


async def test_a_viewer_cannot_overwrite_another_connections_state(room: Room) -> None:
    eve = await room.viewer()
    try:
        await eve.send(frame((room.bob_id, 50, FAKE)))
        await room.handled(eve)
        assert await room.bob_as_everyone_sees_him() == [BOB_REAL] * 3
        assert room.bob_entries_relayed() == [BOB_REAL]
    finally:
        await eve.close()


async def test_a_viewer_cannot_delete_another_connections_state(room: Room) -> None:
    eve = await room.viewer()
    try:
        # At bob's own clock (y-protocols lets a removal win a tie) and past it.
        for clock in range(1, 6):
            await eve.send(frame((room.bob_id, clock, None)))
        await eve.send(frame((room.bob_id, 1000, None)))
        await room.handled(eve)
        assert await room.bob_as_everyone_sees_him() == [BOB_REAL] * 3
        assert room.bob_entries_relayed() == [BOB_REAL]
    finally:
        await eve.close()


async def test_a_viewer_cannot_pin_another_connections_clock(room: Room) -> None:
    eve = await room.viewer()
    try:
        await eve.send(frame((room.bob_id, 10**15, FAKE)))
        await room.handled(eve)
        # Bob's next change (his clock + 1) is still taken and relayed.
        await room.bob.call("awareness_set", field="cursor", value={"anchor": 2})
        await eventually(lambda: _alice_sees_cursor(room, {"anchor": 2}), timeout=TIMEOUT)
        moved = {**BOB_REAL, "cursor": {"anchor": 2}}
        assert await room.bob_as_everyone_sees_him() == [moved] * 3
        assert room.bob_entries_relayed() == [BOB_REAL, moved]
    finally:
        await eve.close()


async def test_an_attacker_leaving_does_not_remove_another_connections_entry(room: Room) -> None:
    eve = await room.viewer()
    await eve.send(frame((room.bob_id, 50, FAKE), (room.bob_id, 51, None)))
    await room.handled(eve)
    await eve.close()

    async def eve_gone() -> bool:
        return EVE_ID not in await states_of(room.alice)

    await eventually(eve_gone, timeout=TIMEOUT)  # the server has handled eve's departure
    assert await room.bob_as_everyone_sees_him() == [BOB_REAL] * 3
    assert room.bob_entries_relayed() == [BOB_REAL]


@pytest.mark.parametrize(
    ("entries", "reason"),
    [
        # the finding sent 186k states in 16 MB; the server refuses at the first one too many
        (
            [(1_000_000 + i, 1, {"user": {"name": f"ghost {i}"}}) for i in range(20_000)],
            "entries in one update",
        ),
        ([(1_000_000 + i, 1, {"n": i}) for i in range(MAX_STATES + 1)], "ids"),
        ([(1_000_000, 1, {"blob": "x" * MAX_BYTES})], "bytes"),
    ],
    ids=["20000-states", "one-state-too-many", "one-state-too-big"],
)
async def test_an_update_over_the_limits_closes_with_4400_and_reaches_no_one(
    room: Room, calm: Bystander, entries: list[tuple[int, int, Any]], reason: str
) -> None:
    eve = await room.viewer()
    attack = frame(*entries)  # built before the bystander types: this process's own work
    await calm.measure_before()

    async def sent() -> tuple[int | None, str | None]:
        await eve.send(attack)
        return await eve.wait_closed(timeout=TIMEOUT)

    code, text = await calm.while_attacked(sent())
    calm.assert_unchanged()
    assert code == 4400
    assert text is not None and text.startswith("awareness:") and reason in text
    # Anything relayed of it would reach alice before bob's next change.
    await room.bob.call("awareness_set", field="cursor", value={"anchor": 3})
    await eventually(lambda: _alice_sees_cursor(room, {"anchor": 3}), timeout=TIMEOUT)
    assert set(await states_of(room.alice)) == {room.bob_id, (await room.alice.state())["clientID"]}
    joined = await room.bob_as_everyone_sees_him()
    assert joined == [{**BOB_REAL, "cursor": {"anchor": 3}}] * 3


async def test_a_flood_is_relayed_paced_and_ends_on_the_last_state(
    room: Room, calm: Bystander
) -> None:
    flooder = await room.viewer()
    watcher = await room.viewer()
    sent = 1000
    try:
        await calm.measure_before()

        def flood_state(message: Awareness) -> int | None:
            for entry in decode_awareness_update(message.update):
                if entry.client_id == EVE_ID:
                    return int(json.loads(entry.state_json)["n"])
            return None

        async def flood() -> float:
            started = time.monotonic()
            for batch in range(50):  # 1000 updates over about a second, 20 at a time
                flooder.send_together(
                    [frame((EVE_ID, n, {"n": n})) for n in range(batch * 20 + 1, batch * 20 + 21)]
                )
                await asyncio.sleep(0.02)
            await watcher.next_message(
                Awareness, where=lambda m: flood_state(m) == sent, timeout=TIMEOUT
            )
            return time.monotonic() - started

        elapsed = await calm.while_attacked(flood())
        calm.assert_unchanged()
        relayed = [
            n for m in watcher.messages if isinstance(m, Awareness) and (n := flood_state(m))
        ]
        assert relayed[-1] == sent  # the last state sent is the one everyone ends on
        assert relayed == sorted(relayed)
        # One relay at once, then at most one per 1/RATE s; a little slack for timer jitter.
        assert len(relayed) <= RATE * elapsed + 3, (len(relayed), elapsed)

        # alice is another client: the last state reaches her a moment after the watcher.
        async def alice_ends_on_the_last() -> bool:
            return (await states_of(room.alice)).get(EVE_ID) == {"n": sent}

        await eventually(alice_ends_on_the_last, timeout=TIMEOUT)
    finally:
        await asyncio.gather(flooder.close(), watcher.close())


# -- the flags ---------------------------------------------------------------------------------


def test_serve_help_explains_each_awareness_flag_with_its_default() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "server", "serve", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    for flag, default in (
        ("--awareness-max-states", MAX_STATES),
        ("--awareness-max-bytes", MAX_BYTES),
        ("--awareness-rate", RATE),
    ):
        help_of_flag = text.split(f"{flag} ")[-1].split(" --")[0]
        assert help_of_flag.endswith(f"({default})"), help_of_flag


def test_an_awareness_flag_below_one_is_refused_with_the_option_named() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "server", "serve", "--awareness-rate", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "--awareness-rate" in done.stderr, done.stderr


async def test_the_limits_are_the_flags_given(tmp_path: Path) -> None:
    strict = ServerProcess(tmp_path, "--awareness-max-states", "2", "--awareness-max-bytes", "100")
    strict.start()
    try:
        # Each time two ids are within both limits, then a third id, or 100 bytes more, is not.
        for first, over, reason in (
            (10, (12, 1, {}), "over 2 client ids"),
            (20, (20, 2, "x" * 100), "at most 100"),
        ):
            client = await connect_raw(strict.ws_url, "limits", strict.token("zoe"))
            await client.next_message(SyncStep1, timeout=TIMEOUT)
            await client.send(frame((first, 1, {}), (first + 1, 1, {})))
            await client.send(frame(over))
            code, text = await client.wait_closed(timeout=TIMEOUT)
            assert code == 4400 and text is not None and reason in text, (code, text)
    finally:
        strict.stop()


# -- several instances -------------------------------------------------------------------------


async def test_another_instances_clients_are_owned_by_it(
    tmp_path: Path, postgres: PostgresCluster, redis_server: RedisServer
) -> None:
    """Bob on instance A, alice and eve (a viewer) on B: B holds bob's id as A's, so eve can
    neither overwrite it nor take it away by leaving, on either instance."""
    flags = ["--store", postgres.new_database(), "--redis", redis_server.url]
    a, b = start_together(
        ServerProcess(tmp_path / "a", *flags, "--room-grace", "0.3"),
        ServerProcess(tmp_path / "b", *flags, "--room-grace", "0.3"),
    )
    try:
        async with as_user(a, "alice") as rest:
            draft = (await create_draft(rest, title="plan"))["id"]
            shared = await rest.put(
                f"/api/drafts/{draft}/access", json={"user": "eve", "role": "viewer"}
            )
            assert shared.status_code == 200, shared.text
        async with (
            await NodeClient.start(a.ws_url, draft, a.token("alice"), name="bob") as bob,
            await NodeClient.start(b.ws_url, draft, b.token("alice"), name="alice") as alice,
        ):
            await asyncio.gather(bob.call("wait_synced"), alice.call("wait_synced"))
            bob_id = (await bob.state())["clientID"]
            await bob.call("awareness_set", field="cursor", value={"anchor": 1})
            room = Room(b, draft, bob, alice)
            room.bob_id = bob_id
            await eventually(lambda: _alice_sees_cursor(room, {"anchor": 1}), timeout=TIMEOUT)
            room.watcher = await room.viewer()
            await room.watcher.next_message(Awareness, timeout=TIMEOUT)
            eve = await room.viewer()
            await eve.send(frame((bob_id, 50, FAKE)))
            await room.handled(eve)
            await eve.close()

            async def eve_gone() -> bool:
                return EVE_ID not in await states_of(alice)

            await eventually(eve_gone, timeout=TIMEOUT)
            assert await room.bob_as_everyone_sees_him() == [BOB_REAL] * 3
            assert room.bob_entries_relayed() == [BOB_REAL]
            await room.watcher.close()
    finally:
        a.stop()
        b.stop()
