"""`bench hostile`: a bystander's round trip while another draft is attacked (issue 21).

A real `draftsync serve` process (under an address-space limit: a regression aborts the server,
not the machine) gets one attack at a time, sent again and again on fresh connections, while
two pycrdt editors on another draft measure their round trip: one types a character, the other
waits for it. The same round trips are measured before the attack, so each row reads as "how
much slower did the attack make everyone else": p50 and p99 before and during, their ratio,
the attacks sent and how they ended (close code and reason), /healthz answers that were not
200, and the server's peak RSS.

    finding-2   one update of N chained one-character text items (clock i, origin i - 1):
                before the limits, 100,000 items took > 6 GB in yrs
    finding-3   REST `POST /api/drafts` with 100,000 tags (refused, 422) and with 10,000 (the
                `--max-body-elements` limit, created), and restores of a version holding
                10,000 tags: before, 10,000 tags took 2.9 s on the event loop and 2 GB
    finding-4   one update appending 10,000 copies of "dup" to `tags` (a `union` list, at
                its `--max-body-elements` bound), each on a draft of its own, and one of
                60,000 (refused, 4400): before, the duplicates were deleted one index at a
                time and 60,000 froze the loop 16.6 s
    finding-5   one update of 700,000 new keys of `fields` (~14 MB): before, acknowledged
                after 35.6 s with the event loop blocked throughout
    held-back   40 updates in turn, each deleting 50,000 clocks of a client no one has
                written, on the bystander's own draft: yrs held them all and retried them on
                every keystroke (2,000,000 ranges: ~28 ms each, on the event loop); the room
                sheds them (crdt/heldback.py)
    held-items  40 updates in turn, each of 40,000 items whose origin no one has sent, on
                another draft: yrs held them all (~190 bytes each: ~300 MB); the room sheds
                them past 1 MiB of such runs

`--attack NAME` runs one row (repeat it for several).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import matplotlib.pyplot as plt
import websockets
from pycrdt import (
    Array,
    Doc,
    Text,
    YMessageType,
    create_sync_message,
    create_update_message,
    handle_sync_message,
)

from bench.report import Column, format_table, publish
from bench.runtime import environment, percentile, progress
from bench.servers import REPO, ServerProc
from crdt.bulk_array import array_item_update
from crdt.lib0 import write_var_string, write_var_uint
from crdt.protocol import Update, encode_message
from server.argtypes import positive_int

__all__ = [
    "Attack",
    "Attacker",
    "HostileOptions",
    "add_command",
    "attack_updates",
    "attacks",
    "chained_text_update",
    "cross_client_chain_update",
    "duplicate_tags_update",
    "empty_client_groups_update",
    "fields_keys_update",
    "items_of_a_missing_origin",
    "missing_clocks_deletes",
    "plot_hostile",
    "run_hostile",
    "tags_body",
]

ADDRESS_SPACE = 4_000_000_000
TIMEOUT = 60.0
MIN_ATTACKS = 5  # the bystander keeps typing until this many attacks have ended


@dataclass(frozen=True, slots=True)
class HostileOptions:
    out: Path
    quick: bool
    round_trips: int | None
    progress: bool
    only: tuple[str, ...] = ()  # attack names to run (empty: every one)


def chained_text_update(n: int, *, client: int = 4242) -> bytes:
    """Finding 2: n one-character items of `title`, each continuing the one before (clock i,
    origin i - 1), separate structs that yrs squashes at commit, copying the rest each time."""
    out = bytearray()
    for value in (1, n, client, 0):
        write_var_uint(out, value)
    out.append(4)
    write_var_uint(out, 1)
    write_var_string(out, "title")
    write_var_string(out, "a")
    for i in range(1, n):
        out.append(0x84)
        write_var_uint(out, client)
        write_var_uint(out, i - 1)
        write_var_string(out, "a")
    write_var_uint(out, 0)
    return bytes(out)


def fields_keys_update(n: int, *, client: int = 4343) -> bytes:
    """Finding 5: n new keys of the `fields` map, one number each, in one update."""
    out = bytearray()
    for value in (1, n, client, 0):
        write_var_uint(out, value)
    for i in range(n):
        out.append(8 | 0x20)
        write_var_uint(out, 1)
        write_var_string(out, "fields")
        write_var_string(out, f"k{i:06d}")
        write_var_uint(out, 1)
        out += bytes([125, 1])
    write_var_uint(out, 0)
    return bytes(out)


def empty_client_groups_update(n: int, *, first: int = 5000) -> bytes:
    """n struct groups without a struct, each of a client of its own: ~87,000 overflowed
    yrs's stack while applying it, a segfault that ended the server for every draft."""
    out = bytearray()
    write_var_uint(out, n)
    for client in range(first, first + n):
        out.append(0)
        write_var_uint(out, client)
        out.append(0)
    return bytes(out + b"\x00")


def cross_client_chain_update(n: int, *, first: int = 5000) -> bytes:
    """n one-character items of `title`, each of a client of its own whose origin is the item
    of the client before: yrs integrates the clients from the highest down, so each waits for
    the next, in time growing with the square of n (20,000: the loop stalled 0.9 s; 60,000:
    14 s) and a native stack frame each (99,000: a segfault)."""
    out = bytearray()
    write_var_uint(out, n)
    for client in range(first, first + n):
        for value in (1, client, 0):
            write_var_uint(out, value)
        if client == first:
            out.append(4)
            write_var_uint(out, 1)
            write_var_string(out, "title")
        else:
            out.append(0x84)
            write_var_uint(out, client - 1)
            write_var_uint(out, 0)
        write_var_string(out, "x")
    return bytes(out + b"\x00")


def duplicate_tags_update(n: int, *, client: int = 777) -> bytes:
    """Finding 4: what a Yjs client's push of n copies of "dup" to `tags` sends (one item)."""
    return array_item_update("tags", client, 0, ["dup"] * n)


def tags_body(n: int) -> dict[str, Any]:
    """Finding 3: a `POST /api/drafts` body with n distinct tags."""
    return {"fields": {"tags": [f"t{i}" for i in range(n)]}}


WRITE_ACK = 102  # draftsync's write acknowledgement (crdt/protocol.py)
RESTORED_TAGS = 10_000


@dataclass(frozen=True, slots=True)
class Attack:
    """One row: a WebSocket update (`update`) or REST requests (`path`, `bodies`, sent in
    turn), sent again and again."""

    name: str
    what: str
    update: Callable[[], bytes | list[bytes]] | None = None  # a list: one a connection, in turn
    fresh_draft: bool = False  # an update the server accepts: each attack on a new draft
    # Updates the server accepts, each acknowledged, on the draft the bystander edits: the
    # attack is what each of its keystrokes costs after them.
    on_bystanders_draft: bool = False
    acknowledged: bool = False  # accepted updates on one draft: each acknowledged, then the next
    path: str = ""  # REST: POST here ("{draft}": the draft `restore_draft` made)
    bodies: Callable[[], list[Any]] | None = None
    restore_draft: bool = False  # bodies: restore its version of 10,000 tags, then of none


def attack_updates() -> dict[str, tuple[str, Callable[[], bytes | list[bytes]]]]:
    """Attack name -> (what it is, a builder of its update): the WebSocket attacks."""
    return {
        attack.name: (attack.what, attack.update)
        for attack in attacks()
        if attack.update is not None
    }


def attacks() -> list[Attack]:
    return [
        Attack("finding-2", "200,000 chained text items", lambda: chained_text_update(200_000)),
        Attack(
            "finding-3 refused",
            "POST /api/drafts, 100,000 tags",
            path="/api/drafts",
            bodies=lambda: [tags_body(100_000)],
        ),
        Attack(
            "finding-3 at limit",
            "POST /api/drafts, 10,000 tags",
            path="/api/drafts",
            bodies=lambda: [tags_body(10_000)],
        ),
        Attack(
            "finding-3 restore",
            "restore 10,000 tags / none, in turn",
            path="/api/drafts/{draft}/restore",
            restore_draft=True,
        ),
        Attack(
            "finding-4",
            '10,000 x "dup" pushed to tags (the bound)',
            lambda: duplicate_tags_update(10_000),
            fresh_draft=True,
        ),
        Attack(
            "finding-4 over",
            '60,000 x "dup" pushed to tags (refused)',
            lambda: duplicate_tags_update(60_000),
        ),
        Attack("finding-5", "700,000 keys of fields", lambda: fields_keys_update(700_000)),
        Attack(
            "many clients",
            "100,000 empty struct groups, a client each (was a segfault)",
            lambda: empty_client_groups_update(100_000),
        ),
        Attack(
            "client chain",
            "20,000 items, each of its own client, chained (was a 0.9 s stall)",
            lambda: cross_client_chain_update(20_000),
        ),
        Attack(
            "held-back",
            "40 x 50,000 deletes of clocks no one wrote, on the bystander's draft",
            lambda: [missing_clocks_deletes(50_000, owner=9000 + n) for n in range(40)],
            on_bystanders_draft=True,
        ),
        Attack(
            "held-items",
            "40 x 40,000 items whose origin no one sent (the peak RSS column)",
            lambda: [items_of_a_missing_origin(40_000, client=8000 + n) for n in range(40)],
            on_bystanders_draft=False,
            acknowledged=True,
        ),
    ]


def items_of_a_missing_origin(n: int, *, client: int, origin: int = 77) -> bytes:
    """One group of n one-character items of `client`, each inserted right of clock 0 of
    `origin` (no chain: every one names the same origin): if no one has sent that clock, yrs
    holds them all until it comes."""
    out = bytearray([1])
    write_var_uint(out, n)
    write_var_uint(out, client)
    write_var_uint(out, 0)
    item = bytearray([0x84])  # an origin, String content
    write_var_uint(item, origin)
    write_var_uint(item, 0)
    item += b"\x01a"
    out += bytes(item) * n
    out.append(0)  # no delete set
    return bytes(out)


def missing_clocks_deletes(n: int, *, owner: int) -> bytes:
    """No structs, a delete set of n one-clock ranges of `owner`, a clock apart: if `owner`
    has written none of them, yrs holds the ranges back until those clocks come."""
    out = bytearray([0, 1])
    write_var_uint(out, owner)
    write_var_uint(out, n)
    for i in range(n):
        write_var_uint(out, 2 * i)
        write_var_uint(out, 1)
    return bytes(out)


class _Editor:
    """A pycrdt doc over a WebSocket, speaking y-sync with pycrdt's own helpers."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.doc: Doc = Doc()
        self.changed = asyncio.Condition()
        self.synced = asyncio.Event()
        self._socket: Any = None
        self._reader: asyncio.Task[None] | None = None

    async def connect(self) -> _Editor:
        self._socket = await websockets.connect(self.url, max_size=None, proxy=None)
        self._reader = asyncio.create_task(self._read())
        await self._socket.send(create_sync_message(self.doc))
        await asyncio.wait_for(self.synced.wait(), TIMEOUT)
        return self

    def length(self) -> int:
        return len(self.doc.get("title", type=Text))

    async def change(self, edit: Callable[[Doc], None]) -> None:
        before = self.doc.get_state()
        edit(self.doc)
        await self._socket.send(create_update_message(self.doc.get_update(before)))

    async def type_one(self) -> None:
        before = self.doc.get_state()
        title = self.doc.get("title", type=Text)
        title.insert(len(title), "x")
        await self._socket.send(create_update_message(self.doc.get_update(before)))

    async def wait_length(self, length: int) -> None:
        async with asyncio.timeout(TIMEOUT), self.changed:
            await self.changed.wait_for(lambda: self.length() >= length)

    async def close(self) -> None:
        await self._socket.close()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await self._reader

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for message in self._socket:
                if message[0] == YMessageType.SYNC:
                    reply = handle_sync_message(message[1:], self.doc)
                    if reply is not None:
                        await self._socket.send(reply)
                    if message[1] == 1:  # sync step 2
                        self.synced.set()
                async with self.changed:
                    self.changed.notify_all()


async def _round_trips(writer: _Editor, reader: _Editor, count: int, show: bool, desc: str) -> list:
    samples = []
    for _ in progress(range(count), desc=desc, unit="rt", enabled=show):
        expected = reader.length() + 1
        started = time.perf_counter()
        await writer.type_one()
        await reader.wait_length(expected)
        samples.append(time.perf_counter() - started)
    return samples


async def _attack(url: str, frames: list[bytes], stop: asyncio.Event, ack: bool = False) -> None:
    """Send `frames` in turn, one a fresh connection, to `url` ("{n}" in it: the attack's
    number) until `stop`; print each attack's [close code, reason] as a JSON line. With `ack`,
    ask for a write acknowledgement after the frame and close once it comes ([None,
    "acknowledged"])."""
    number = 0
    while not stop.is_set():
        frame = frames[number % len(frames)]
        number += 1
        acked = False
        try:
            target = url.replace("{n}", str(number))
            async with websockets.connect(target, max_size=None, proxy=None) as socket:
                await socket.recv()  # sync step 1: joined
                await socket.send(frame)
                if ack:
                    await socket.send(bytes([WRITE_ACK, 1, 0]))
                async with asyncio.timeout(TIMEOUT):
                    with contextlib.suppress(websockets.ConnectionClosed):
                        async for message in socket:
                            if ack and isinstance(message, bytes) and message[0] == WRITE_ACK:
                                acked = True
                                break
                received = socket.protocol.close_rcvd
                if received:
                    close = [received.code, received.reason]
                else:
                    close = [None, "acknowledged" if acked else None]
        except (OSError, websockets.WebSocketException, TimeoutError) as error:
            close = [None, f"{type(error).__name__}: {error}"]
            await asyncio.sleep(0.1)
        print(json.dumps(close), flush=True)


async def _post(url: str, token: str, bodies: list[bytes], stop: asyncio.Event) -> None:
    """POST `bodies` in turn to `url` until `stop`; print each [HTTP status, reason] (the
    answer's start unless it is a success) as a JSON line."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    number = 0
    async with httpx.AsyncClient(headers=headers, timeout=TIMEOUT) as http:
        while not stop.is_set():
            body = bodies[number % len(bodies)]
            number += 1
            try:
                answer = await http.post(url, content=body)
                answer_line = [answer.status_code, "" if answer.is_success else answer.text[:200]]
            except httpx.HTTPError as error:
                answer_line = [None, f"{type(error).__name__}: {error}"]
                await asyncio.sleep(0.1)
            print(json.dumps(answer_line), flush=True)


class Attacker:
    """`_attack` (or `_post`) in a process of its own (`python -m bench.hostile ws URL FILE`,
    `... http URL FILE TOKEN`), so that building, masking and sending megabytes of frames never
    stalls the bystander's loop in the measuring process: what the bystander sees is the
    server's doing. `fresh_draft`: each attack on a draft of its own (`draft`-1, -2, ...)."""

    def __init__(
        self,
        ws_url: str,
        draft: str,
        token: str,
        update: bytes | list[bytes],
        work_dir: Path,
        *,
        fresh_draft: bool = False,
        ack: bool = False,
    ) -> None:
        target = f"{draft}-{{n}}" if fresh_draft else draft
        self.frame_path = work_dir / f"attack-{uuid.uuid4().hex[:8]}.bin"
        updates = update if isinstance(update, list) else [update]
        # Length-prefixed frames (`_frames`): the attacker process sends them in turn.
        self.frame_path.write_bytes(
            b"".join(len(f).to_bytes(4, "big") + f for f in map(_update_frame, updates))
        )
        acked = ["ack"] if fresh_draft or ack else []
        self._argv = ["ws", f"{ws_url}/{target}?token={token}", str(self.frame_path), *acked]
        self.closes: list[tuple[Any, Any]] = []
        self._first = asyncio.Event()
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    def rest(cls, url: str, token: str, bodies: list[Any], work_dir: Path) -> Attacker:
        """POSTs of `bodies` (JSON values, sent in turn) to `url`; `closes` holds
        (HTTP status, reason)."""
        attacker = cls.__new__(cls)
        attacker.frame_path = work_dir / f"attack-{uuid.uuid4().hex[:8]}.json"
        attacker.frame_path.write_text(json.dumps(bodies))
        attacker._argv = ["http", url, str(attacker.frame_path), token]
        attacker.closes = []
        attacker._first = asyncio.Event()
        attacker._process = None
        attacker._reader = None
        return attacker

    async def start(self) -> None:
        """Start attacking; return once the first attack has ended."""
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.hostile",
            *self._argv,
            cwd=REPO,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read())
        await asyncio.wait_for(self._first.wait(), TIMEOUT)

    async def stop(self) -> list[tuple[Any, Any]]:
        """Stop after the attack under way; each attack's (close code, reason)."""
        process = self._process
        assert process is not None and process.stdin is not None and self._reader is not None
        process.stdin.close()
        await asyncio.wait_for(self._reader, TIMEOUT * 2)
        await process.wait()
        self.frame_path.unlink(missing_ok=True)
        return self.closes

    async def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        async for line in self._process.stdout:
            code, reason = json.loads(line)
            self.closes.append((code, reason))
            self._first.set()
        self._first.set()


def _update_frame(update: bytes) -> bytes:
    return encode_message(Update(update))


def _frames(payload: bytes) -> list[bytes]:
    """The frames `Attacker` wrote, each after its length (4 bytes, big-endian)."""
    frames, at = [], 0
    while at < len(payload):
        size = int.from_bytes(payload[at : at + 4], "big")
        frames.append(payload[at + 4 : at + 4 + size])
        at += 4 + size
    return frames


def _attacker_main(argv: list[str]) -> None:
    kind, url, path, *rest = argv
    payload = Path(path).read_bytes()

    async def attack() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_reader(sys.stdin.fileno(), stop.set)  # EOF: stop
        if kind == "http":
            bodies = [json.dumps(body).encode() for body in json.loads(payload)]
            await _post(url, rest[0], bodies, stop)
        else:
            await _attack(url, _frames(payload), stop, ack=rest == ["ack"])

    asyncio.run(attack())


async def _health(server: ServerProc, stop: asyncio.Event) -> list[int]:
    statuses: list[int] = []
    base = server.url.replace("ws://", "http://").removesuffix("/ws")
    async with httpx.AsyncClient(base_url=base, timeout=5) as http:
        while not stop.is_set():
            try:
                statuses.append((await http.get("/healthz")).status_code)
            except httpx.HTTPError:
                statuses.append(0)
            await asyncio.sleep(0.05)
    return statuses


def _http_base(server: ServerProc) -> str:
    return server.url.replace("ws://", "http://").removesuffix("/ws")


async def _restore_draft(server: ServerProc, token: str) -> tuple[str, list[Any]]:
    """A draft with a version of 10,000 tags and a later one of none: (its id, restore bodies
    for each in turn), so that every restore rewrites the list."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=_http_base(server), headers=headers, timeout=60) as http:
        created = await http.post("/api/drafts", json=tags_body(RESTORED_TAGS))
        assert created.status_code == 201, created.text
        draft, full = created.json()["id"], created.json()["version"]
        editor = await _Editor(f"{server.url}/{draft}?token={token}").connect()
        try:
            await editor.change(lambda doc: doc.get("tags", type=Array).clear())
            async with asyncio.timeout(TIMEOUT):
                while True:
                    read = (await http.get(f"/api/drafts/{draft}")).json()
                    if not read["state"]["lists"].get("tags"):
                        break
                    await asyncio.sleep(0.1)
        finally:
            await editor.close()
        empty = read["version"]
        for version, length in ((full, RESTORED_TAGS), (empty, 0)):
            state = (await http.get(f"/api/drafts/{draft}/versions/{version}")).json()["state"]
            assert len(state["lists"].get("tags", [])) == length, (version, length)
    return draft, [{"version": full}, {"version": empty}]


def _attacker(server: ServerProc, attack: Attack, token: str, victim: str, work: Path) -> Attacker:
    if attack.update is not None:
        update = attack.update()
        return Attacker(
            server.url,
            victim,
            token,
            update,
            work,
            fresh_draft=attack.fresh_draft,
            ack=attack.on_bystanders_draft or attack.acknowledged,
        )
    assert attack.bodies is not None
    url = _http_base(server) + attack.path
    return Attacker.rest(url, token, attack.bodies(), work)


async def _one_attack(
    server: ServerProc, attack: Attack, count: int, show: bool, work: Path
) -> dict[str, object]:
    token = server.token
    assert token is not None
    name = attack.name
    if attack.restore_draft:
        draft, bodies = await _restore_draft(server, token)
        path = attack.path.replace("{draft}", draft)
        attack = Attack(name, attack.what, path=path, bodies=lambda: bodies)
    victim = f"victim-{uuid.uuid4().hex[:8]}"
    attacker = _attacker(server, attack, token, victim, work)
    sent = attacker.frame_path.stat().st_size
    bystanders = victim if attack.on_bystanders_draft else f"bystander-{uuid.uuid4().hex[:8]}"
    url = f"{server.url}/{bystanders}?token={token}"
    writer = await _Editor(url).connect()
    reader = await _Editor(url).connect()
    try:
        before = await _round_trips(writer, reader, count, show, f"{name} before")
        stop = asyncio.Event()
        checks = asyncio.create_task(_health(server, stop))
        await attacker.start()
        during = await _round_trips(writer, reader, count, show, f"{name} during")
        while len(attacker.closes) < MIN_ATTACKS:  # the attack goes on while we measure
            during += await _round_trips(writer, reader, 10, False, "")
        stop.set()
        closes, statuses = await attacker.stop(), await checks
    finally:
        await writer.close()
        await reader.close()
    reasons = sorted({str(reason) for _, reason in closes if reason})
    if attack.fresh_draft:  # what the first attacked draft kept
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=_http_base(server), headers=headers) as http:
            read = (await http.get(f"/api/drafts/{victim}-1")).json()
        reasons.append(f"the draft kept tags {read['state']['lists'].get('tags')!r}")
    answers: dict[str, int] = {}
    for code, reason in closes:
        key = "ack" if reason == "acknowledged" else str(code)
        answers[key] = answers.get(key, 0) + 1
    p99_before, p99_during = percentile(before, 99) * 1000, percentile(during, 99) * 1000
    return {
        "attack": name,
        "what": attack.what,
        "frame_bytes": sent,
        "p50_before_ms": percentile(before, 50) * 1000,
        "p99_before_ms": p99_before,
        "p50_during_ms": percentile(during, 50) * 1000,
        "p99_during_ms": p99_during,
        "p99_ratio": p99_during / p99_before if p99_before else float("nan"),
        "attacks": len(closes),
        "answers": answers,
        "answered": ", ".join(f"{key} x{n}" for key, n in sorted(answers.items())),
        "reasons": reasons,
        "healthz": len(statuses),
        "healthz_not_200": sum(1 for s in statuses if s != 200),
        "peak_rss_mb": server.peak_rss_mb(),
    }


def _chosen(only: tuple[str, ...]) -> list[Attack]:
    """The attacks named (the CLI refuses an unknown name), or every one."""
    return [attack for attack in attacks() if not only or attack.name in only]


async def run_hostile(options: HostileOptions) -> dict[str, object]:
    count = options.round_trips or (50 if options.quick else 300)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp:
        server = ServerProc("draftsync", Path(tmp), address_space=ADDRESS_SPACE).start()
        try:
            for attack in _chosen(options.only):
                rows.append(await _one_attack(server, attack, count, options.progress, Path(tmp)))
            peak = server.peak_rss_mb()
            alive = server.process is not None and server.process.poll() is None
        finally:
            server.stop()
    result: dict[str, object] = {
        "environment": environment(),
        "round_trips": count,
        "address_space": ADDRESS_SPACE,
        "server_peak_rss_mb": peak,
        "server_alive": alive,
        "rows": rows,
    }
    columns = [
        Column("attack", "attack", str),
        Column("frame_bytes", "sent B", lambda v: f"{v:,}"),
        Column("p50_before_ms", "p50 before ms"),
        Column("p99_before_ms", "p99 before ms"),
        Column("p50_during_ms", "p50 during ms"),
        Column("p99_during_ms", "p99 during ms"),
        Column("p99_ratio", "p99 x"),
        Column("attacks", "attacks"),
        Column("answered", "answered", str),
        Column("healthz_not_200", "healthz !200"),
        Column("peak_rss_mb", "peak RSS MB"),
    ]
    reasons = "; ".join(
        f"{row['attack']}: {' | '.join(row['reasons'])}"  # type: ignore[arg-type]
        for row in rows
        if row["reasons"]
    )
    footer = (
        f"bystander round trip: {count} characters typed on another draft (held-back: on the "
        "attacked one), before and during; "
        f"server peak RSS {peak:.0f} MB, alive: {alive}\nreasons: {reasons}"
    )
    table = format_table(
        "bench hostile: a bystander while a draft is attacked", columns, rows, footer
    )
    publish(result, options.out, "hostile", plot_hostile, table)
    return result


def plot_hostile(result: Mapping[str, Any], path: Path) -> None:
    rows = result["rows"]
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.9 * len(rows)))
    labels = [str(row["attack"]) for row in rows]
    y = range(len(rows))
    ax.barh([i - 0.2 for i in y], [row["p99_before_ms"] for row in rows], 0.4, label="before")
    ax.barh([i + 0.2 for i in y], [row["p99_during_ms"] for row in rows], 0.4, label="during")
    ax.set_yticks(list(y), labels)
    ax.invert_yaxis()
    ax.set_xlabel("bystander round trip p99 (ms)")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def add_command(
    commands: Any, common: Callable[[argparse.ArgumentParser, str], None]
) -> argparse.ArgumentParser:
    """`bench hostile` on the CLI's sub-parsers (`common` adds --quick, --out, --no-progress)."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "hostile",
        help="a bystander's round trip on one draft while another is attacked (issue 21)",
        description="Run each attack of issue 21 again and again against a real server "
        "under a 4 GB address-space limit (finding 2: 200,000 chained text items; finding 3: "
        "POST /api/drafts with 100,000 tags, refused, and with 10,000, created, and restores "
        "of 10,000 tags; finding 4: 60,000 duplicates pushed to the union list tags; finding "
        "5: 700,000 keys of fields; many clients: 100,000 empty struct groups, a client each, "
        "which crashed the server; client chain: 20,000 items of as many clients chained, "
        "which stalled it; held-back: 40 x 50,000 deletes of clocks no one wrote, which made "
        "each keystroke on that draft stall the server), while two editors on another draft "
        "(held-back: on the attacked one) time their round trip; "
        "report p50/p99 before and during, how each attack was answered (close code or HTTP "
        "status, reasons), /healthz answers that were not 200 and the server's peak RSS.",
    )
    common(parser, "50 round trips before and during each attack instead of 300 (under a minute)")
    parser.add_argument(
        "--round-trips",
        type=positive_int,
        metavar="N",
        help="characters typed before and during each attack (300; --quick 50)",
    )
    parser.add_argument(
        "--attack",
        action="append",
        default=[],
        choices=[attack.name for attack in attacks()],
        metavar="NAME",
        help="run only this attack's row (repeat for several), e.g. --attack held-back; one "
        "of: " + ", ".join(attack.name for attack in attacks()),
    )

    async def command(args: argparse.Namespace) -> None:
        await run_hostile(
            HostileOptions(
                args.out, args.quick, args.round_trips, not args.no_progress, tuple(args.attack)
            )
        )

    parser.set_defaults(command_runner=command)
    return parser


if __name__ == "__main__":
    _attacker_main(sys.argv[1:])
