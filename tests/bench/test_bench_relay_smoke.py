"""The bench suite runs end to end in --quick mode and writes every field its readers use: here
the relay scenarios S1, S2, S4r, J1 and C1, and the Hocuspocus pair.

Each bench runs as a subprocess, exactly as a maintainer types it. No timing is asserted (a
shared CI machine would make such a test flaky); the benches check their own replays and fail
with a non-zero exit if a replay ends on the wrong text. The smoke tests are spread over
test_bench_smoke.py, test_bench_relay_smoke.py, test_bench_scale_smoke.py and
test_bench_instances_smoke.py so that both workers of `pytest -n 2 --dist loadfile` (a whole
file on one worker) share them; what they share is in tests/support/bench_smoke.py.
"""

from __future__ import annotations

from pathlib import Path

from server.sync.replies import LARGE_REPLY_BYTES
from tests.support.bench_smoke import (
    RELAY_RATIO,
    bench,
    has,
    needs_node,
    relay_rows_and_ratios,
    relayed_everything,
)


@needs_node
def test_relay_quick(tmp_path: Path) -> None:
    # The fast servers only (pycrdt-websocket takes seconds per run under load): draftsync and
    # the Node reference server, every quick scenario, real processes and real Yjs clients. The
    # Node server keeps drafts in memory only: it has no cold-load (C1) row.
    servers = ["draftsync", "y-websocket-node"]
    memory_only = {("C1", "y-websocket-node")}
    result = bench(tmp_path, "relay", "--servers", ",".join(servers))
    relay_rows_and_ratios(result, servers, memory_only)


@needs_node
def test_relay_join_storm_and_cold_load_quick(tmp_path: Path) -> None:
    # Issue 24: 20 clients join a 0.4 MB draft at once (J1), and a fresh client opens a 2,000-
    # update draft after each of 2 restarts (C1); every joiner must get the whole draft.
    servers = ["draftsync", "y-websocket-node"]
    memory_only = {("C1", "y-websocket-node")}
    args = ("--servers", ",".join(servers), "--scenario", "J1", "--scenario", "C1")
    result = bench(tmp_path, "relay", *args)
    assert set(result["settings"]["scenarios"]) == {"J1", "C1"}
    relay_rows_and_ratios(result, servers, memory_only)
    assert result["capacity"]["servers"] == {}  # C1, a cold load, is no capacity step
    for row in result["rows"]:  # the quick J1 still takes the paced path of a large reply
        if row["scenario"] == "J1":
            assert row["draft_bytes"] > LARGE_REPLY_BYTES, row


@needs_node
def test_relay_hocuspocus_quick(tmp_path: Path) -> None:
    # Issue 23: Hocuspocus providers against draftsync's /hocuspocus (with a real token) and
    # against @hocuspocus/server with its SQLite extension, in one pass; S1 only, a few seconds.
    servers = ["draftsync-hocuspocus", "hocuspocus-server"]
    result = bench(tmp_path, "relay", "--servers", ",".join(servers), "--scenario", "S1")
    assert result["settings"]["servers"] == servers
    rows = result["rows"]
    assert [(r["scenario"], r["server"]) for r in rows] == [("S1", server) for server in servers]
    for row in rows:
        relayed_everything(row)
    # the Hocuspocus server is compared with draftsync's Hocuspocus endpoint, not with /ws
    (ratio,) = result["ratios"]
    has(RELAY_RATIO, ratio)
    assert (ratio["peer"], ratio["baseline"]) == ("hocuspocus-server", "draftsync-hocuspocus")
