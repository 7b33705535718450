"""Opening a draft is one trip to the SQLite store (issue 24, point 4): its latest load brings
the journal's watermark with the snapshot and the tail, so that a room finds out there is nothing
to recover without a second query. The watermark read with the load is the one
`journal_watermark` reads; a load at a past version (history) reads no watermark."""

from __future__ import annotations

import time
from pathlib import Path

from server.store.records import UpdateRecord
from server.store.sqlite import SqliteStore


def _record(version: int) -> UpdateRecord:
    return UpdateRecord("d", version, f"u{version}".encode(), "alice", "s", 1, time.time())


async def test_the_latest_load_brings_the_journal_watermark_of_the_draft(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "draftsync.db")
    try:
        await store.create_draft("d", "alice", now=time.time())
        empty = await store.load("d")
        assert (empty.snapshot, empty.tail, empty.version) == (None, [], 0)
        assert empty.journal_watermark == await store.journal_watermark("d") == 1  # none yet

        await store.append_updates([_record(v) for v in (1, 2, 3)])
        await store.save_snapshot("d", 2, b"state at 2", now=time.time())
        await store.append_events([], watermark=("d", 3))
        state = await store.load("d")
        assert (state.snapshot, state.snapshot_version) == (b"state at 2", 2)
        assert state.tail == [b"u3"]
        assert state.version == 3
        assert state.journal_watermark == await store.journal_watermark("d") == 3

        await store.append_events([], watermark=("d", 4))  # every change journaled
        assert (await store.load("d")).journal_watermark == 4

        past = await store.load("d", at_version=1)
        assert (past.snapshot, past.tail, past.version) == (None, [b"u1"], 1)
        assert past.journal_watermark is None  # not read: the caller asks the store
    finally:
        await store.close()


async def test_a_draft_with_no_snapshot_or_no_row_loads_with_the_default_watermark(
    tmp_path: Path,
) -> None:
    store = await SqliteStore.open(tmp_path / "draftsync.db")
    try:
        unknown = await store.load("nobody")
        assert (unknown.snapshot, unknown.tail, unknown.journal_watermark) == (None, [], 1)

        await store.create_draft("d", "alice", now=time.time())
        await store.append_updates([_record(v) for v in (1, 2)])
        await store.append_events([], watermark=("d", 2))
        state = await store.load("d")
        assert (state.snapshot, state.snapshot_version, state.tail) == (None, 0, [b"u1", b"u2"])
        assert state.journal_watermark == 2
    finally:
        await store.close()
