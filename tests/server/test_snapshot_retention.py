"""A draft keeps at most `--snapshot-keep` snapshots, spread over its history, and every past
version still rebuilds as it was live (server/store/retention.py)."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
from pycrdt import Doc, Text

from bench.services import RedisServer
from server.store.retention import snapshots_to_drop
from tests.support.postgres import BACKENDS, store_flags
from tests.support.pycrdt_client import connect_synced
from tests.support.rest import as_user, new_id
from tests.support.server_process import ServerProcess
from tests.support.stored_any import snapshot_versions
from tests.support.waiting import eventually


def thinned(versions: list[int], keep: int) -> list[int]:
    """The snapshots left after storing `versions` one at a time, thinning after each."""
    kept: list[int] = []
    for version in versions:
        kept.append(version)
        for dropped in snapshots_to_drop(kept, keep):
            kept.remove(dropped)
    return kept


def test_nothing_is_dropped_while_a_draft_has_no_more_than_keep() -> None:
    assert snapshots_to_drop([], 3) == []
    assert snapshots_to_drop([10, 20, 30], 3) == []


def test_the_newest_stays_and_the_gaps_stay_even() -> None:
    every, count, keep = 1000, 500, 8
    kept = thinned([every * n for n in range(1, count + 1)], keep)
    newest = every * count
    assert len(kept) == keep and kept[-1] == newest
    gaps = [after - before for before, after in pairwise([0, *kept])]
    # Evenly spread: no gap over twice an even share of the history (the smallest gaps are
    # merged first), and none left tiny but the newest one's (the newest always stays).
    assert max(gaps) <= 2 * newest / keep, gaps
    assert min(gaps[:-1]) >= newest / keep / 4, gaps


def test_the_smallest_gap_goes_and_the_oldest_on_a_tie() -> None:
    # Dropping 35 leaves 40 - 30 = 10, less than any other: it goes.
    assert snapshots_to_drop([10, 30, 35, 40, 100], 4) == [35]
    # 10, 20 and 30 would each leave a gap of 20 (version 0 counts as the first): the oldest.
    assert snapshots_to_drop([10, 20, 30, 40, 100], 4) == [10]
    assert sorted(snapshots_to_drop([10, 20, 30, 40], 1)) == [10, 20, 30]


def test_keep_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        snapshots_to_drop([1, 2], 0)


def append(doc: Doc, text: str) -> None:
    title = doc.get("title", type=Text)
    title.insert(len(title), text)


async def live_state(api: httpx.AsyncClient, draft: str) -> tuple[int, dict[str, Any]]:
    body = (await api.get(f"/api/drafts/{draft}")).json()
    return body["version"], body["state"]


@pytest.mark.parametrize("backend", [*BACKENDS, "postgresql+redis"])
async def test_a_long_draft_keeps_few_snapshots_and_rebuilds_every_version(
    tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    """With Redis (as with several instances) snapshots are folded from the store instead of
    taken from the room's doc: both ways thin them."""
    if backend == "postgresql+redis":
        redis: RedisServer = request.getfixturevalue("redis_server")
        flags = [*store_flags(request, "postgresql"), "--redis", redis.url]
    else:
        flags = store_flags(request, backend)
    server = ServerProcess(
        tmp_path / "data", "--snapshot-every", "2", "--snapshot-keep", "3", *flags
    ).start()
    draft = new_id("thin")
    recorded: dict[int, dict[str, Any]] = {}
    try:
        writer = await connect_synced(server, draft)
        async with as_user(server, "alice") as api:
            for i in range(30):  # one version each: the next is typed once this one is stored
                await writer.edit(lambda doc, i=i: append(doc, "ab"[i % 2]))
                await writer.flush()
                version, state = await live_state(api, draft)
                recorded[version] = state
            await writer.disconnect()
            newest = max(recorded)

            async def newest_stored() -> bool:
                return snapshot_versions(server, draft)[-1:] == [newest]

            # 15 snapshots were due; the draft keeps 3, the newest among them.
            await eventually(newest_stored, timeout=10)
            assert len(snapshot_versions(server, draft)) == 3, snapshot_versions(server, draft)
            assert len(recorded) == 30
            for version, state in recorded.items():
                answer = await api.get(f"/api/drafts/{draft}/versions/{version}")
                assert answer.status_code == 200, answer.text
                assert answer.json()["state"] == state, f"version {version}"
        server.terminate()
        server.start()
        reader = await connect_synced(server, draft)
        assert reader.text("title") == "ab" * 15
        await reader.disconnect()
    finally:
        server.stop()
