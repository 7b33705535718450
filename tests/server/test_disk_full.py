"""Disk full is survivable (issue 27, point 7): with the data directory on a small tmpfs that a
filler file fills, joins and reads still work, writes close with 1013 and are not stored, and
once the filler is gone a write succeeds without a restart and the reserve file is back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pycrdt import Doc, Map, Text

from tests.support import tmpfs
from tests.support.pycrdt_client import PycrdtClient, connect_synced
from tests.support.rest import as_user, new_id
from tests.support.server_process import REPO, ServerProcess
from tests.support.stored import stored_doc, stored_rows
from tests.support.waiting import eventually

TMPFS_BYTES = 8 * 1024 * 1024
RESERVE_BYTES = 1024 * 1024
RESERVE_NAME = "draftsync.reserve"
FILL_CHUNK = 64 * 1024
TRY_AGAIN_LATER = 1013


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of `TMPFS_BYTES` mounted at a fresh directory, unmounted afterwards."""
    with tmpfs.mounted_tmpfs(tmp_path / "disk", TMPFS_BYTES) as mount_point:
        yield mount_point


def fill(path: Path) -> int:
    """Write `path` until the file system is full (bounded); returns the bytes written."""
    written = tmpfs.fill(path, TMPFS_BYTES, FILL_CHUNK)
    # What is left is less than a page: nothing more fits.
    assert os.statvfs(path).f_bavail * os.statvfs(path).f_frsize < 4096
    return written


def stored_title(database: Path, draft_id: str) -> str:
    return str(stored_doc(database, draft_id).get("title", type=Text))


async def closed_with(client: PycrdtClient, timeout: float = 10) -> int | None:
    async with asyncio.timeout(timeout):
        await client.closed.wait()
    return client.close_code


async def refused_write(server: ServerProcess, draft: str, text: str) -> PycrdtClient:
    """A client that joins (works), writes `text` and is closed with 1013, unacknowledged."""
    writer = await connect_synced(server, draft)
    await writer.edit(lambda doc: doc.get("title", type=Text).insert(0, text))
    acknowledged = asyncio.create_task(writer.flush(timeout=10))
    assert await closed_with(writer) == TRY_AGAIN_LATER
    # Its reader has stopped: an acknowledgement would have been read before the close.
    await asyncio.wait({acknowledged}, timeout=1)
    assert not acknowledged.done()
    acknowledged.cancel()
    return writer


async def test_joins_and_reads_work_on_a_full_disk_and_writes_resume_when_space_is_back(
    small_disk: Path, tmp_path: Path
) -> None:
    data = small_disk / "data"
    reserve = data / RESERVE_NAME
    server = ServerProcess(data, "--disk-reserve-bytes", str(RESERVE_BYTES), "--room-grace", "0.3")
    server.log_path = tmp_path / "server.log"  # the log must not share the full disk
    draft = new_id("full")
    filler = small_disk / "filler"
    server.start()
    try:
        assert reserve.stat().st_size == RESERVE_BYTES

        # alice writes and is acknowledged; the process then dies with her text burst open:
        # no journal event, no watermark (deleted, in case the closer stored them first), so
        # loading the draft again must journal the burst, a write, before anyone joins.
        alice = await connect_synced(server, draft)
        await alice.edit(lambda doc: doc.get("title", type=Text).insert(0, "hello"))
        await alice.flush()
        server.kill()
        with contextlib.closing(sqlite3.connect(server.database)) as db:
            db.execute("DELETE FROM events WHERE draft_id = ?", (draft,))
            db.execute("DELETE FROM journal_state WHERE draft_id = ?", (draft,))
            db.commit()
        server.start()

        # A typist who wrote before the disk filled: their next keystroke starts past clock 0.
        typist = await connect_synced(server, draft)
        await typist.edit(lambda doc: doc.get("title", type=Text).insert(5, "!"))
        await typist.edit(lambda doc: doc.get("title", type=Text).__delitem__(slice(5, 6)))
        await typist.flush()

        fill(filler)

        # A new client joins and syncs what is stored; it stays through what follows.
        reader = await connect_synced(server, draft)
        assert reader.text("title") == "hello"

        # REST reads answer.
        async with as_user(server, "alice") as rest:
            read = await rest.get(f"/api/drafts/{draft}")
            assert read.status_code == 200, read.text
            assert read.json()["state"]["texts"]["title"] == "hello"
            listed = await rest.get("/api/drafts")
            assert listed.status_code == 200 and draft in [d["id"] for d in listed.json()["items"]]
            events = await rest.get(f"/api/drafts/{draft}/events")
            assert events.status_code == 200, events.text
            # A REST write is refused with 503 (and the reader is not disturbed by it).
            created = await rest.post("/api/drafts", json={"id": new_id("nope")})
            assert created.status_code == 503, created.text

        # Writes close with 1013 and are not acknowledged; the reader stays.
        first = await refused_write(server, draft, "lost ")
        second = await refused_write(server, draft, "also lost ")
        # The typist's next keystroke is refused the same way: only the typist goes.
        await typist.edit(lambda doc: doc.get("title", type=Text).insert(5, "?"))
        assert await closed_with(typist) == TRY_AGAIN_LATER
        assert not reader.closed.is_set()
        assert reader.text("title") == "hello"
        # A join still works after the refusals.
        late = await connect_synced(server, draft)
        assert late.text("title") == "hello"

        # Space is back: without a restart the next write is stored, and the reserve too.
        filler.unlink()
        writer = await connect_synced(server, draft)
        await writer.edit(lambda doc: doc.get("title", type=Text).insert(5, " world"))
        await writer.flush()
        await reader.wait_for(lambda: reader.text("title") == "hello world")
        assert stored_title(server.database, draft) == "hello world"
        assert reserve.stat().st_size == RESERVE_BYTES

        # The journal of alice's first burst, which the full disk kept from being stored at
        # the join, is stored once there is room (the room's journal owes it until then).
        for client in (alice, first, second, typist, reader, late, writer):
            await client.disconnect()

        async def hello_journaled() -> bool:
            async with as_user(server, "alice") as rest:
                page = (await rest.get(f"/api/drafts/{draft}/events")).json()
            return any(
                e["type"] == "FIELD_UPDATED" and e["version"] == 1 and e["user"] == "alice"
                for e in page["items"]
            )

        await eventually(hello_journaled, timeout=15)
        refused = "SELECT count(*) FROM drafts WHERE id LIKE 'nope-%'"
        assert stored_rows(server.database, refused) == [(0,)]
    finally:
        server.stop()


@pytest.mark.parametrize("reserve_bytes", [RESERVE_BYTES, 0])
async def test_a_write_that_meets_the_full_disk_is_not_stored_and_is_resent_once_space_is_back(
    small_disk: Path, tmp_path: Path, reserve_bytes: int
) -> None:
    """The group commit's own failure: the write closes with 1013, unstored; the failed commit
    resets the draft's room (its reader rejoins at once); once space is freed, the writer's
    reconnect resends the write and it is stored. With `--disk-reserve-bytes 0` the same,
    without a reserve file."""
    data = small_disk / "data"
    reserve = data / RESERVE_NAME
    server = ServerProcess(data, "--disk-reserve-bytes", str(reserve_bytes))
    server.log_path = tmp_path / "server.log"
    draft = new_id("full")
    filler = small_disk / "filler"
    server.start()
    try:
        alice = await connect_synced(server, draft)
        await alice.edit(lambda doc: doc.get("title", type=Text).insert(0, "hello"))
        await alice.flush()
        reader = await connect_synced(server, draft)
        fill(filler)

        def write(doc: Doc) -> None:
            doc.get("title", type=Text).insert(5, " there")
            doc.get("fields", type=Map)["status"] = "PUBLISHED"  # the rules will revert it

        await alice.edit(write)
        assert await closed_with(alice) == TRY_AGAIN_LATER
        assert await closed_with(reader) == TRY_AGAIN_LATER  # the room reset, as any failure
        # No component crashed: the rules' revert was not attempted on the dropped doc.
        async with as_user(server, None) as anonymous:
            assert (await anonymous.get("/healthz")).status_code == 200
        reader = await connect_synced(server, draft)
        assert reader.text("title") == "hello"
        assert stored_title(server.database, draft) == "hello"
        assert reserve.exists() is False

        filler.unlink()
        await alice.connect()  # her sync step 2 carries the write the disk refused
        await asyncio.wait_for(alice.synced.wait(), 10)
        await alice.flush()
        await reader.wait_for(lambda: reader.text("title") == "hello there")
        assert stored_title(server.database, draft) == "hello there"
        assert reserve.exists() is (reserve_bytes > 0)
    finally:
        server.stop()


async def test_a_server_started_on_a_full_disk_serves_reads_and_takes_writes_once_space_is_back(
    small_disk: Path, tmp_path: Path
) -> None:
    """SQLite cannot even read a WAL database without room for its shared-memory index: the
    reserve left by the last run makes that room, and writes wait for space as above."""
    data = small_disk / "data"
    reserve = data / RESERVE_NAME
    server = ServerProcess(data, "--disk-reserve-bytes", str(RESERVE_BYTES))
    server.log_path = tmp_path / "server.log"
    draft = new_id("full")
    filler = small_disk / "filler"
    server.start()
    try:
        alice = await connect_synced(server, draft)
        await alice.edit(lambda doc: doc.get("title", type=Text).insert(0, "hello"))
        await alice.flush()
        await alice.disconnect()
        assert server.terminate() == 0
        assert reserve.stat().st_size == RESERVE_BYTES
        fill(filler)

        server.start()
        reader = await connect_synced(server, draft)
        assert reader.text("title") == "hello"
        async with as_user(server, "alice") as rest:
            read = await rest.get(f"/api/drafts/{draft}")
            assert read.status_code == 200, read.text
        await refused_write(server, draft, "lost ")
        assert not reader.closed.is_set()

        filler.unlink()
        writer = await connect_synced(server, draft)
        await writer.edit(lambda doc: doc.get("title", type=Text).insert(5, "!"))
        await writer.flush()
        assert stored_title(server.database, draft) == "hello!"
        assert reserve.stat().st_size == RESERVE_BYTES
    finally:
        server.stop()


@pytest.mark.parametrize("value", ["-1", "many", "1.5"])
def test_a_bad_disk_reserve_is_refused_with_the_option_named(value: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "server", "serve", "--disk-reserve-bytes", value],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "--disk-reserve-bytes" in done.stderr, done.stderr


async def test_a_text_burst_that_closes_on_a_full_disk_is_journaled_once_space_is_back(
    small_disk: Path, tmp_path: Path
) -> None:
    """alice's burst is committed, then closes while the disk is full: its event cannot be
    stored. Once space is back, her next burst is journaled, and the first one must be too,
    not skipped by the watermark the second one stores (and lost for good, even to a
    recovery after `kill -9`)."""
    data = small_disk / "data"
    server = ServerProcess(data, "--disk-reserve-bytes", str(RESERVE_BYTES), "--room-grace", "30")
    server.log_path = tmp_path / "server.log"
    draft = new_id("full")
    filler = small_disk / "filler"
    server.start()
    try:
        alice = await connect_synced(server, draft)
        await alice.edit(lambda doc: doc.get("title", type=Text).insert(0, "hello"))
        await alice.flush()
        fill(filler)

        async def burst_failed() -> bool:
            return "journal write failed" in server.log()

        await eventually(burst_failed, timeout=15)  # the burst closed after its pause
        filler.unlink()
        await alice.edit(lambda doc: doc.get("title", type=Text).insert(5, " world"))
        await alice.flush()

        def title_events() -> list[tuple[object, ...]]:
            return stored_rows(
                server.database,
                "SELECT version, data FROM events WHERE draft_id = ? AND type = 'FIELD_UPDATED'"
                " ORDER BY id",
                draft,
            )

        async def world_journaled() -> bool:
            return any(version == 2 for version, _ in title_events())

        await eventually(world_journaled, timeout=15)
        await alice.disconnect()
        server.kill()
        server.start()
        again = await connect_synced(server, draft)  # a load recovers what is owed
        assert again.text("title") == "hello world"
        await again.disconnect()
        inserted = [json.loads(str(data))["inserted"] for _, data in title_events()]
        assert sorted(inserted) == [5, 6], title_events()
    finally:
        server.stop()
