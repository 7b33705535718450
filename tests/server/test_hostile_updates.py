"""Hostile updates are refused before the doc applies them, and other drafts never notice
(issue 21: findings 2 and 5; "Bounded work per message, before it touches the doc").

Each test runs the finding's attack on a real server (under an address-space limit, so that a
regression fails here instead of eating the machine), over and over from another process
(`bench.hostile.Attacker`) while a bystander edits another draft, and checks four things:

1. the attacker is closed with 4400 and a reason naming the limit's flag;
2. nothing of the attack was stored;
3. the bystander's round trip (tests/support/bystander.py) stays within a few times what it
   was before the attack, p99 against p99;
4. /healthz answers 200 throughout.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pycrdt import Doc, Map, Text

from bench.hostile import (
    Attacker,
    array_item_update,
    chained_text_update,
    cross_client_chain_update,
    empty_client_groups_update,
    fields_keys_update,
    missing_clocks_deletes,
)
from crdt.heldback import HELD_BYTES, PROBE_EVERY_RUNS
from crdt.lib0 import write_var_uint
from crdt.limits import DEFAULT_LIMITS
from crdt.protocol import SyncStep1, SyncStep2, Update, WriteAck, encode_message
from server.cli import main
from server.sync.statevector import MAX_UNKNOWN_CLIENTS
from tests.support.bystander import bystander_on
from tests.support.pycrdt_client import PycrdtClient
from tests.support.raw_client import RawClient, connect_raw
from tests.support.rest import scrape
from tests.support.serve_flags import refused_at_start
from tests.support.server_process import ServerProcess
from tests.support.store_reader import stored_doc, stored_update_count
from tests.support.waiting import eventually

ADDRESS_SPACE = 4_000_000_000  # the chained attack needed > 6 GB before it was refused
TIMEOUT = 30
MIN_ATTACKS = 5  # the bystander keeps typing until this many attacks have ended


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(
        tmp_path_factory.mktemp("hostile"), "--room-grace", "0.3", address_space=ADDRESS_SPACE
    )
    process.start()
    yield process
    process.stop()


def new_draft() -> str:
    return f"d-{uuid.uuid4().hex[:12]}"


async def health(server: ServerProcess, stop: asyncio.Event) -> list[int]:
    statuses = []
    async with httpx.AsyncClient(base_url=server.http_url, timeout=5) as http:
        while not stop.is_set():
            statuses.append((await http.get("/healthz")).status_code)
            await asyncio.sleep(0.05)
    return statuses


async def run_attack(server: ServerProcess, update: bytes, flag: str, work_dir: Path) -> None:
    victim = new_draft()
    async with bystander_on(server, "alice") as calm:
        await calm.measure_before()
        stop = asyncio.Event()
        # The attacker runs in a process of its own: masking and sending megabytes here would
        # stall this process's loop and be measured as the server's doing.
        attacker = Attacker(server.ws_url, victim, server.token("alice"), update, work_dir)
        checks = asyncio.create_task(health(server, stop))

        async def attacks() -> None:
            await attacker.start()  # returns once the first attack has ended
            await eventually(lambda: _ended(attacker), timeout=TIMEOUT * MIN_ATTACKS)

        await calm.while_attacked(attacks())
        stop.set()
        closes, statuses = await attacker.stop(), await checks

    assert closes, "no attack was sent"
    for code, reason in closes:
        assert code == 4400, f"closed with {code} ({reason!r}), expected 4400"
        assert reason is not None and "update too large" in reason and flag in reason, reason
    assert statuses and set(statuses) == {200}, f"/healthz answered {statuses}"
    calm.assert_unchanged()
    assert stored_update_count(server.database, victim) == 0
    assert str(stored_doc(server.database, victim).get("title", type=Text)) == ""
    assert server.process is not None and server.process.poll() is None, "the server died"


async def _ended(attacker: Attacker) -> bool:
    return len(attacker.closes) >= MIN_ATTACKS


async def test_finding_2_chained_text_items_are_bounded(
    limited_server: ServerProcess, tmp_path: Path
) -> None:
    update = chained_text_update(200_000)  # ~1.5 MB; 100,000 took > 6 GB before
    await run_attack(limited_server, update, "--max-update-merge-bytes", tmp_path)


async def test_finding_5_many_fields_keys_are_bounded(
    limited_server: ServerProcess, tmp_path: Path
) -> None:
    update = fields_keys_update(700_000)  # ~14 MB; acknowledged after 35.6 s before
    assert len(update) < 16 * 1024 * 1024  # within --max-message-bytes: reaches the room
    await run_attack(limited_server, update, "--max-update-field-writes", tmp_path)


def delete_ranges_update(n: int, *, owner: int = 4444) -> bytes:
    """No structs, a delete set of n one-clock ranges of one client, a clock apart: against
    a text of that client's long items each range splits one (yrs: 1,000,000 took 67 s)."""
    return missing_clocks_deletes(n, owner=owner)


async def send_acknowledged(client: RawClient, update: bytes, mark: bytes) -> None:
    """Send `update` as a run of its own, then a write-ack request: return once answered
    (the server has handled the update)."""
    await client.send(encode_message(Update(update)))
    await client.send(encode_message(WriteAck(mark)))
    await client.next_message(WriteAck, where=lambda m: m.payload == mark, timeout=TIMEOUT)


async def closed_for(
    server: ServerProcess, draft: str, update: bytes
) -> tuple[int | None, str | None]:
    """How the server closes a connection of alice's to `draft` that sends `update`."""
    attacker = await connect_raw(server.ws_url, draft, server.token("alice"))
    try:
        await attacker.send(encode_message(Update(update)))
        return await attacker.wait_closed(timeout=TIMEOUT)
    finally:
        await attacker.close()


@pytest.mark.parametrize(
    ("runs", "ranges"),
    [
        pytest.param(6, 50_000, id="large runs, each walked then probed"),
        # under 4 KB each: never walked, probed every PROBE_EVERY_RUNS (~18 us a run held)
        pytest.param(3 * PROBE_EVERY_RUNS, 1_300, id="small runs, probed every 64"),
    ],
)
async def test_deletes_of_clocks_the_draft_lacks_are_shed_before_they_pile_up(
    limited_server: ServerProcess, runs: int, ranges: int
) -> None:
    """Runs of deletes of clocks no client has written yet, each within --max-update-deletes:
    yrs held every range aside and retried them all on each update after (100 runs of 50,000:
    152 ms a keystroke on the event loop), and deleted them from whoever wrote those clocks
    later. The room sheds them once retrying costs too much (crdt/heldback.py): the owner of
    the first run's clocks then types, and the draft keeps every character of it."""
    server, victim = limited_server, new_draft()
    owner = PycrdtClient(server.ws_url, victim, server.token("alice"), client_id=4242)
    await owner.connect()
    await asyncio.wait_for(owner.synced.wait(), TIMEOUT)
    attacker = await connect_raw(server.ws_url, victim, server.token("alice"))
    await attacker.next_message(SyncStep1, timeout=TIMEOUT)
    try:
        for run in range(runs):  # each acknowledged before the next: runs of their own
            target = 4242 if run == 0 else 9000 + run
            update = delete_ranges_update(ranges, owner=target)
            assert (len(update) > 4096) == (ranges > 1_300), "walked as the case says"
            await send_acknowledged(attacker, update, f"run-{run}".encode())
        assert not attacker.closed.is_set(), "an attacker within the limits is not refused"

        await owner.edit(lambda doc: doc.get("title", type=Text).insert(0, "hello world"))
        await owner.flush()

        assert str(stored_doc(server.database, victim).get("title", type=Text)) == "hello world"
        assert f"room shed updates held back for missing clocks draft={victim}" in server.log()
        sheds = re.search(r"^draftsync_held_back_sheds_total (\S+)$", await scrape(server), re.M)
        assert sheds is not None and float(sheds.group(1)) >= 1
        async with httpx.AsyncClient(timeout=5) as http:
            assert (await http.get(f"{server.http_url}/healthz")).status_code == 200
    finally:
        await attacker.close()
        await owner.disconnect()


async def test_structs_held_for_a_missing_origin_are_shed_past_their_budget(
    limited_server: ServerProcess,
) -> None:
    """Items whose origin no client has sent: yrs keeps each aside (~190 bytes; 6,000,000
    from one connection took 1.2 GB, every run within the limits), and nothing showed or
    bounded it. Past `HELD_BYTES` of such runs the room sheds them: when the origin comes
    later, what waited on it stays out of the draft."""
    server, victim = limited_server, new_draft()
    first: Doc = Doc(client_id=7001)
    first.get("title", type=Text).insert(0, "x")
    origin = first.get_update()
    second: Doc = Doc(client_id=7002)
    second.apply_update(origin)
    before = second.get_state()
    second.get("title", type=Text).insert(1, "y" * (HELD_BYTES + 1024))
    held = second.get_update(before)
    attacker = await connect_raw(server.ws_url, victim, server.token("alice"))
    await attacker.next_message(SyncStep1, timeout=TIMEOUT)
    try:
        for update, mark in ((held, b"held"), (origin, b"origin")):
            await send_acknowledged(attacker, update, mark)
        assert not attacker.closed.is_set(), "an update within the limits is not refused"
        assert str(stored_doc(server.database, victim).get("title", type=Text)) == "x"
        assert f"room shed updates held back for missing clocks draft={victim}" in server.log()
    finally:
        await attacker.close()


async def test_many_delete_ranges_are_bounded(
    limited_server: ServerProcess, tmp_path: Path
) -> None:
    await run_attack(
        limited_server, delete_ranges_update(1_000_000), "--max-update-deletes", tmp_path
    )


@pytest.mark.parametrize(
    "update",
    [empty_client_groups_update(100_000), cross_client_chain_update(20_000)],
    ids=["empty-groups-segfault", "cross-client-chain-stall"],
)
async def test_an_update_naming_many_clients_is_refused_before_yrs_sees_it(
    limited_server: ServerProcess, update: bytes
) -> None:
    """One frame of a few hundred KB from any editor: before, the first crashed the server
    (SIGSEGV) and the second held the event loop for every draft; now both are refused."""
    server, victim = limited_server, new_draft()
    code, reason = await closed_for(server, victim, update)
    assert server.process is not None and server.process.poll() is None, "the server died"
    assert code == 4400 and reason and "> 4096 (--max-update-clients)" in reason, (code, reason)
    async with httpx.AsyncClient(timeout=5) as http:
        assert (await http.get(f"{server.http_url}/healthz")).status_code == 200
    assert stored_update_count(server.database, victim) == 0


def fields_overwrites_update(n: int, first: tuple[int, int], *, client: int = 4545) -> bytes:
    """n overwrites of a `fields` key the doc already holds (its item is `first`): each item
    names only its origin (`first`: not a chain, so no merge cost), never the root or key."""
    out = bytearray()
    for value in (1, n, client, 0):
        write_var_uint(out, value)
    for i in range(n):
        out.append(8 | 0x80)
        write_var_uint(out, first[0])
        write_var_uint(out, first[1])
        write_var_uint(out, 1)
        out += bytes([125, i % 64])
    write_var_uint(out, 0)
    return bytes(out)


async def test_overwrites_of_a_stored_fields_key_count_as_field_writes(
    limited_server: ServerProcess,
) -> None:
    """99,000 overwrites of a key written earlier took the review 4.3 s on the event loop,
    since an overwrite names only its origin; the pre-scan now knows the doc's `fields` ids."""
    server, victim = limited_server, new_draft()
    owner = PycrdtClient(server.ws_url, victim, server.token("alice"), client_id=777)
    await owner.connect()
    await asyncio.wait_for(owner.synced.wait(), TIMEOUT)

    def set_key(doc: Doc) -> None:
        doc.get("fields", type=Map)["k"] = 0

    await owner.edit(set_key)
    await owner.flush()
    attacker = await connect_raw(server.ws_url, victim, server.token("alice"))
    try:
        started = time.perf_counter()
        await attacker.send(encode_message(Update(fields_overwrites_update(99_000, (777, 0)))))
        code, reason = await attacker.wait_closed(timeout=TIMEOUT)
        assert code == 4400 and reason and "--max-update-field-writes" in reason, reason
        assert time.perf_counter() - started < TIMEOUT
        assert stored_update_count(server.database, victim) == 1
        async with httpx.AsyncClient(timeout=5) as http:
            assert (await http.get(f"{server.http_url}/healthz")).status_code == 200
    finally:
        await attacker.close()
        await owner.disconnect()


def separate_items_update(n: int, *, client: int = 4646) -> bytes:
    """n one-character items of `title`, each inserted before the last (nothing chains)."""
    doc: Doc = Doc(client_id=client)
    title = doc.get("title", type=Text)
    with doc.transaction():
        for _ in range(n):
            title.insert(0, "x")
    return doc.get_update()


def map_keys_update(n: int, *, client: int = 4747) -> bytes:
    doc: Doc = Doc(client_id=client)
    notes = doc.get("notes", type=Map)
    with doc.transaction():
        for i in range(n):
            notes[f"k{i}"] = "v"
    return doc.get_update()


async def test_each_update_limit_is_the_flag_given(tmp_path: Path) -> None:
    """Every update limit set low on the command line: an update past one of them (and within
    the others) is refused with 4400 naming that flag; nothing of it is stored."""
    flags = {
        "--max-update-structs": 3_000,
        "--max-update-keys": 50,
        "--max-insert-elements": 200,
        "--max-update-field-writes": 4,
        "--max-update-deletes": 50,
        "--max-update-merge-bytes": 100_000,
        "--max-update-clients": 40,
    }
    attacks = {
        "--max-update-structs": separate_items_update(3_500),
        "--max-update-keys": map_keys_update(60),
        "--max-insert-elements": array_item_update("notes", 4848, 0, list(range(300))),
        "--max-update-field-writes": fields_keys_update(10),
        "--max-update-deletes": delete_ranges_update(60),
        "--max-update-merge-bytes": chained_text_update(1_000),  # 1,000 structs, > 100,000 B
        "--max-update-clients": cross_client_chain_update(45),
    }
    arguments = [str(part) for flag, value in flags.items() for part in (flag, value)]
    server = ServerProcess(tmp_path / "limits", *arguments).start()
    try:
        for flag, update in attacks.items():
            draft = new_draft()
            code, reason = await closed_for(server, draft, update)
            assert code == 4400 and reason and "update too large" in reason, (flag, reason)
            assert f"> {flags[flag]} ({flag})" in reason, (flag, reason)
            assert stored_update_count(server.database, draft) == 0
    finally:
        server.stop()


UPDATE_FLAGS = [
    "--max-update-structs",
    "--max-update-keys",
    "--max-insert-elements",
    "--max-update-field-writes",
    "--max-update-deletes",
    "--max-update-merge-bytes",
    "--max-update-clients",
]


@pytest.mark.parametrize("value", ["0", "-5", "many"])
@pytest.mark.parametrize("option", UPDATE_FLAGS)
def test_an_update_limit_that_cannot_work_is_refused_at_start(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    refused_at_start(capsys, option, value)


def test_serve_help_gives_each_update_limits_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    defaults = DEFAULT_LIMITS
    for option, default in zip(
        UPDATE_FLAGS,
        (
            defaults.structs,
            defaults.keys,
            defaults.elements,
            defaults.field_writes,
            defaults.delete_ranges,
            defaults.merge_bytes,
            defaults.clients,
        ),
        strict=True,
    ):
        help_of_option = text.split(f"{option} ")[-1].split(" --")[0]
        assert f"({default})" in help_of_option, help_of_option


def long_state_vector(n: int, *, first: int = 10**6) -> bytes:
    out = bytearray()
    write_var_uint(out, n)
    for client in range(first, first + n):
        write_var_uint(out, client)
        write_var_uint(out, 5)
    return bytes(out)


async def test_a_state_vector_naming_far_more_clients_than_the_draft_is_refused(
    limited_server: ServerProcess,
) -> None:
    """yrs decoded every entry of a joiner's state vector on the event loop (1,500,000
    entries, 6.4 MB: healthz waited up to 213 ms); one naming more than the draft's clients
    plus MAX_UNKNOWN_CLIENTS is refused with 4400 before anything decodes it."""
    server = limited_server
    attacker = await connect_raw(server.ws_url, new_draft(), server.token("alice"))
    try:
        await attacker.send(encode_message(SyncStep1(long_state_vector(MAX_UNKNOWN_CLIENTS + 1))))
        code, reason = await attacker.wait_closed(timeout=TIMEOUT)
    finally:
        await attacker.close()
    assert code == 4400 and reason and "state vector too long" in reason, (code, reason)
    honest = await connect_raw(server.ws_url, new_draft(), server.token("alice"))
    try:  # as many unknown clients as allowed: answered
        await honest.send(encode_message(SyncStep1(long_state_vector(MAX_UNKNOWN_CLIENTS))))
        await honest.next_message(SyncStep2, timeout=TIMEOUT)
    finally:
        await honest.close()
