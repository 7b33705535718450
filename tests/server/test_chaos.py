"""A seeded, bounded random schedule against ONE real server: nothing lost, nothing doubled.

Single scenarios (kill -9 mid-stream, restarts, unloading, offline merges) have their own tests;
this one mixes them, as production does: four pycrdt editors and one Node y-websocket editor on
two drafts type unique tokens (`c{i}-{n};`) at random token boundaries, delete tokens they see,
set `fields` keys (an `lww` and a `max` one), go offline and keep editing, reconnect, while the
server is killed with SIGKILL, stopped with SIGTERM and restarted on the same SQLite file and
port, or a room is left idle until it unloads (`--room-grace` short) or rejoined about when it
does. Editors keep their docs across all of it, like a browser tab does.

Checked after every kill or stop, before anyone reconnects: the store holds every token a client
saw acknowledged (write ack) or received from another client (relayed means durable), each once,
and no token whose deletion was acknowledged. Checked at quiescent points and at the end: every
replica of a draft has the same text, which is exactly the tokens typed into that draft and
deleted by no one, each once; the `fields` maps agree; a fresh client sees exactly that, and so
do the store and a fresh load after a restart. A failure names the seed and the schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import websockets
from pycrdt import Doc, Map, Text

from tests.support.node_client import NodeClient
from tests.support.pycrdt_client import PycrdtClient, connect_synced
from tests.support.rest import rooms_loaded
from tests.support.server_process import ServerProcess
from tests.support.stored import stored_doc
from tests.support.waiting import eventually

# More seeds on demand: CHAOS_SEEDS=1,2,3,4 pytest tests/server/test_chaos.py
SEEDS = tuple(int(s) for s in os.environ.get("CHAOS_SEEDS", "11,22,33").split(","))
STEPS = 45  # steps per seed; the wall-clock budget below may end a run earlier
RESTARTS = 4  # server kills and stops per seed (each start costs about 2 s)
BUDGET = 12.0  # seconds of random steps, then the final checks (about 25 s a seed)
GRACE = 0.3  # --room-grace
SETTLE = 20.0  # how long replicas may take to converge at a quiescent point
STEP_WEIGHTS = {"type": 36, "delete": 6, "field": 8, "offline": 8, "online": 8, "flush": 6}
STEP_WEIGHTS |= {"kill": 6, "term": 4, "unload": 4, "bounce": 4, "settle": 6}
TOKEN = re.compile(r"[a-z]\d+-\d+;")


def tokens_of(text: str) -> Counter[str]:
    """The tokens of a draft's text; the text must be tokens and nothing else."""
    found = TOKEN.findall(text)
    assert "".join(found) == text, f"the text holds something other than whole tokens: {text!r}"
    return Counter(found)


def boundaries(text: str) -> list[int]:
    """Where a token may go without splitting another: the start, and after each `;`."""
    return [0] + [i + 1 for i, ch in enumerate(text) if ch == ";"]


@dataclass
class Replica:
    """One editor: its doc outlives its sockets and server restarts, like a browser tab's."""

    name: str
    draft: str
    client: PycrdtClient | None = None  # None: the Node editor
    node: NodeClient | None = None
    typed: list[str] = field(default_factory=list)
    acked: set[str] = field(default_factory=set)
    deleted: list[str] = field(default_factory=list)
    acked_deletes: set[str] = field(default_factory=set)
    online: bool = True  # the user wants it connected (a dead server does not change this)
    count: int = 0

    async def text(self) -> str:
        if self.client is not None:
            return self.client.text("title")
        assert self.node is not None
        return await self.node.text("title")

    async def fields(self) -> dict[str, Any]:
        if self.client is not None:
            return self.client.fields()
        assert self.node is not None
        return await self.node.fields()

    async def type_token(self, places: random.Random) -> None:
        """Insert a fresh token at a random boundary; sent if connected, kept locally anyway.
        `places` is a generator of its own: which boundaries exist depends on timing, so
        drawing from the schedule's generator would make the schedule depend on it too."""
        token = f"{self.name}-{self.count};"
        self.count += 1
        self.typed.append(token)
        if self.node is not None:
            # At 0, the one boundary a relay landing between reading the Node doc and
            # inserting into it cannot move.
            await self.node.call("insert", field="title", index=0, text=token)
            return
        assert self.client is not None
        at = places.choice(boundaries(self.client.text("title")))  # no await until the edit
        await self._edit(lambda doc: doc.get("title", type=Text).insert(at, token))

    async def set_field(self, rng: random.Random) -> str:
        key, value = (
            ("category", f"{self.name}-{self.count}")
            if rng.random() < 0.5
            else ("current_step", rng.randint(1, 40))
        )
        self.count += 1
        if self.node is not None:
            await self.node.call("set", key=key, value=value)
        else:
            await self._edit(lambda doc: doc.get("fields", type=Map).__setitem__(key, value))
        return f"{key}={value!r}"

    async def _edit(self, change: Any) -> None:
        assert self.client is not None
        # The socket may be closing under us (a server just killed): the edit stays in the doc.
        with contextlib.suppress(websockets.ConnectionClosed):
            await self.client.edit(change)

    async def flush(self) -> None:
        """Ask for the write ack; once it comes, everything typed so far is on disk."""
        assert self.client is not None
        typed, deleted = list(self.typed), list(self.deleted)
        await self.client.flush(timeout=15)
        self.acked.update(typed)
        self.acked_deletes.update(deleted)

    async def delete_token(self, places: random.Random) -> str | None:
        """Delete one token this editor sees (anyone's); None if it sees none."""
        assert self.client is not None
        text = self.client.text("title")
        spans = [(m.start(), m.end(), m.group()) for m in TOKEN.finditer(text)]
        if not spans:
            return None
        start, end, token = places.choice(spans)
        self.deleted.append(token)

        def cut(doc: Doc) -> None:
            del doc.get("title", type=Text)[start:end]

        await self._edit(cut)  # no await between reading the text and cutting it
        return token

    async def go_offline(self) -> None:
        self.online = False
        if self.node is not None:
            await self.node.call("disconnect")
        else:
            assert self.client is not None
            await self.client.disconnect()

    async def come_back(self) -> None:
        """(Re)connect and wait for the server's sync step 2; offline edits go up meanwhile."""
        self.online = True
        if self.node is not None:
            await self.node.call("connect")
            await self.node.call("wait_synced", timeout=15, timeout_ms=12000)
            return
        assert self.client is not None
        await self.client.disconnect()
        await self.client.connect()
        await asyncio.wait_for(self.client.synced.wait(), 10)


class Chaos:
    """The schedule's state: the server, the replicas, what each step did (for the report)."""

    def __init__(self, server: ServerProcess, seed: int, drafts: tuple[str, str]) -> None:
        self.server = server
        self.rng = random.Random(seed)
        self.places = random.Random(-seed)
        self.drafts = drafts
        self.replicas: list[Replica] = []
        self.schedule: list[str] = []
        self.restarts = 0
        self.started = time.monotonic()

    def log(self, line: str) -> None:
        self.schedule.append(
            f"{len(self.schedule):3d} {time.monotonic() - self.started:6.2f}s {line}"
        )

    def of(self, draft: str) -> list[Replica]:
        return [r for r in self.replicas if r.draft == draft]

    def expected(self, draft: str) -> Counter[str]:
        """Every token typed into `draft` and deleted by no one, once."""
        gone = {t for r in self.of(draft) for t in r.deleted}
        return Counter(t for r in self.of(draft) for t in r.typed if t not in gone)

    # -- steps --------------------------------------------------------------------------------

    async def step(self) -> None:
        rng = self.rng
        kind = rng.choices(list(STEP_WEIGHTS), weights=list(STEP_WEIGHTS.values()))[0]
        replica = rng.choice(self.replicas)
        if kind == "type":
            n = rng.randint(1, 3)
            for _ in range(n):
                await replica.type_token(self.places)
            self.log(f"{replica.name} types {n} ({'on' if replica.online else 'off'}line)")
        elif kind == "delete" and replica.client is not None:
            token = await replica.delete_token(self.places)
            self.log(f"{replica.name} deletes {token} ({'on' if replica.online else 'off'}line)")
        elif kind == "field":
            self.log(f"{replica.name} sets {await replica.set_field(rng)}")
        elif kind == "offline" and replica.online:
            await replica.go_offline()
            self.log(f"{replica.name} goes offline")
        elif kind == "online" and not replica.online:
            await replica.come_back()
            self.log(f"{replica.name} reconnects")
        elif kind == "flush" and replica.online and replica.client is not None:
            await self.reconnect_closed()
            await replica.flush()
            self.log(f"{replica.name} flushes")
        elif kind in ("kill", "term") and self.restarts < RESTARTS:
            self.restarts += 1
            await self.restart(graceful=kind == "term")
        elif kind == "unload":
            await self.unload(rng.choice(self.drafts))
        elif kind == "bounce":
            await self.bounce(rng.choice(self.drafts))
        elif kind == "settle":
            await self.settle()

    async def restart(self, *, graceful: bool) -> None:
        """SIGKILL (or SIGTERM), check the store, type while it is down, start it again."""
        unsent = [r for r in self.replicas if r.online and r.client is not None]
        # some typing right before: sent, likely not acknowledged when the signal lands
        for replica in self.rng.sample(unsent, k=min(2, len(unsent))):
            await replica.type_token(self.places)
        if graceful:
            self.server.terminate()
        else:
            self.server.kill()
        self.log(f"server {'SIGTERM' if graceful else 'kill -9'}")
        for draft in self.drafts:
            await self.check_durable(draft)
        for replica in self.rng.sample(self.replicas, k=2):  # edits while the server is down
            await replica.type_token(self.places)
        self.server.start()
        self.log("server restarted")
        await self.reconnect_closed()

    async def check_durable(self, draft: str) -> None:
        """Acknowledged or relayed means on disk, once."""
        stored = tokens_of(str(stored_doc(self.server.database, draft).get("title", type=Text)))
        doubled = sorted(t for t, n in stored.items() if n > 1)
        assert not doubled, f"{draft}: doubled in the store: {doubled}"
        must: set[str] = set()
        gone: set[str] = set()  # deleted by someone: may be gone from the store
        for replica in self.of(draft):
            own = set(replica.typed)
            must |= replica.acked
            must |= {t for t in tokens_of(await replica.text()) if t not in own}
            gone |= set(replica.deleted)
        lost = sorted(must - gone - set(stored))
        assert not lost, f"{draft}: acknowledged or relayed, then lost: {lost}"
        back = sorted({t for r in self.of(draft) for t in r.acked_deletes} & set(stored))
        assert not back, f"{draft}: deleted and acknowledged, still stored: {back}"

    async def reconnect_closed(self) -> None:
        """Editors the user keeps online reconnect when their socket is gone (as providers do)."""
        for replica in self.replicas:
            if replica.online and replica.client is not None and replica.client.closed.is_set():
                await replica.come_back()

    async def unload(self, draft: str) -> None:
        """Every editor of `draft` leaves; wait until its room is unloaded; edit offline."""
        for replica in self.of(draft):
            if replica.online:
                await replica.go_offline()
        busy = {r.draft for r in self.replicas if r.online}

        async def unloaded() -> bool:
            return await rooms_loaded(self.server) == len(busy)

        await eventually(unloaded, timeout=10, interval=GRACE / 3)
        self.log(f"{draft} unloaded (all its editors offline)")
        for replica in self.rng.sample(self.of(draft), k=2):
            await replica.type_token(self.places)

    async def bounce(self, draft: str) -> None:
        """Every editor of `draft` leaves and comes back about when the grace period ends:
        the room may be unloading, unloaded or still open as they rejoin."""
        for replica in self.of(draft):
            if replica.online:
                await replica.go_offline()
        pause = self.rng.uniform(GRACE * 0.7, GRACE * 1.5)
        await asyncio.sleep(pause)  # a schedule's delay, not a wait for anything
        for replica in self.rng.sample(self.of(draft), k=2):
            await replica.type_token(self.places)
        await asyncio.gather(*(r.come_back() for r in self.of(draft)))
        self.log(f"{draft}: all leave, back after {pause:.2f}s")

    # -- invariants ---------------------------------------------------------------------------

    async def settle(self) -> None:
        """A quiescent point: everyone online, flushed, converged on exactly what was typed."""
        self.log("settle")
        for replica in self.replicas:
            if not replica.online or (
                replica.client is not None and replica.client.closed.is_set()
            ):
                await replica.come_back()
        for replica in self.replicas:
            if replica.client is not None:
                await replica.flush()
        for draft in self.drafts:
            await self.converged(draft)

    async def converged(self, draft: str) -> None:
        expected = self.expected(draft)
        replicas = self.of(draft)

        async def agree() -> bool:
            texts = [await r.text() for r in replicas]
            fields = [await r.fields() for r in replicas]
            return (
                len(set(texts)) == 1
                and Counter(TOKEN.findall(texts[0])) == expected
                and all(f == fields[0] for f in fields)
            )

        try:
            await eventually(agree, timeout=SETTLE, interval=0.05)
        except TimeoutError:
            report = [f"{r.name}: {await r.text()!r} {await r.fields()}" for r in replicas]
            counts = Counter(TOKEN.findall(await replicas[0].text()))
            lost = sorted(expected - counts)
            doubled = sorted(t for t, n in counts.items() if n > 1)
            raise AssertionError(
                f"{draft} did not converge: lost {lost}, doubled {doubled}\n" + "\n".join(report)
            ) from None
        text, fields = await replicas[0].text(), await replicas[0].fields()
        tokens_of(text)
        fresh = await connect_synced(self.server, draft)
        try:
            assert fresh.text("title") == text, f"{draft}: a fresh client sees other text"
            assert fresh.fields() == fields, f"{draft}: a fresh client sees other fields"
        finally:
            await fresh.disconnect()

    async def final(self) -> None:
        """Settle, then the store and a fresh load after a restart hold the converged draft."""
        await self.settle()
        final = {d: (await self.of(d)[0].text(), await self.of(d)[0].fields()) for d in self.drafts}
        for replica in self.replicas:
            if replica.online:
                await replica.go_offline()
        self.server.terminate()
        self.log("server SIGTERM (final)")
        for draft, (text, fields) in final.items():
            doc: Doc = stored_doc(self.server.database, draft)
            assert str(doc.get("title", type=Text)) == text, f"{draft}: the store holds other text"
            assert (doc.get("fields", type=Map).to_py() or {}) == fields, f"{draft}: stored fields"
        self.server.start()
        self.log("server restarted (final)")
        for draft, (text, fields) in final.items():
            fresh = await connect_synced(self.server, draft)
            try:
                assert fresh.text("title") == text, f"{draft}: a fresh load after restart differs"
                assert fresh.fields() == fields, f"{draft}: fields after restart differ"
            finally:
                await fresh.disconnect()


@pytest.mark.parametrize("seed", SEEDS)
async def test_random_schedule_loses_and_doubles_nothing(tmp_path: Path, seed: int) -> None:
    server = ServerProcess(tmp_path / "data", "--room-grace", str(GRACE), "--snapshot-every", "8")
    server.start()
    drafts = (f"chaos-a-{uuid.uuid4().hex[:8]}", f"chaos-b-{uuid.uuid4().hex[:8]}")
    chaos = Chaos(server, seed, drafts)
    token = server.token("alice")
    try:
        for i in range(4):
            client = await connect_synced(server, drafts[i % 2])
            chaos.replicas.append(Replica(f"c{i}", drafts[i % 2], client=client))
        node = await NodeClient.start(server.ws_url, drafts[0], token, name="n0")
        chaos.replicas.append(Replica("n0", drafts[0], node=node))
        await node.call("wait_synced", timeout=15, timeout_ms=12000)
        started = time.monotonic()
        try:
            async with asyncio.timeout(90):
                for _ in range(STEPS):
                    if time.monotonic() - started > BUDGET:
                        break
                    await chaos.step()
                await chaos.final()
        except Exception as exc:
            schedule = "\n".join(chaos.schedule)
            raise AssertionError(
                f"chaos seed {seed} failed: {exc!r}\nschedule:\n{schedule}\n"
                f"server log tail:\n{server.log()[-3000:]}"
            ) from exc
    finally:
        for replica in chaos.replicas:
            if replica.client is not None:
                await replica.client.disconnect()
            if replica.node is not None:
                await replica.node.close()
        server.stop()
