"""The bench suite runs end to end in --quick mode and writes every field its readers use.

Each bench runs as a subprocess, exactly as a maintainer types it. No timing is asserted (a
shared CI machine would make such a test flaky); the benches check their own replays and fail
with a non-zero exit if a replay ends on the wrong text.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.servers import node_ready
from bench.services import RedisServer, find_bin_dir

REPO = Path(__file__).resolve().parents[2]
TRACES = REPO / "bench" / "data" / "traces"
# A bound on one bench run: a quick run takes 10-70 s on a quiet machine, twice that at load 10.
TIMEOUT = 300

ENVIRONMENT = {"when", "python", "platform", "cpus", "event_loop", "pycrdt", "sqlite"}
THROUGHPUT = {
    "mode",
    "writers",
    "updates",
    "updates_per_s",
    "runs_updates_per_s",
    "commits",
    "mean_batch",
    "mean_commit_ms",
    "note",
}
DURABILITY = {
    "mode",
    "writers",
    "flood_updates",
    "flood_updates_per_s",
    "flood_visible_p50_ms",
    "flood_visible_p99_ms",
    "paced_rate_per_writer",
    "paced_updates",
    "paced_visible_p50_ms",
    "paced_visible_p99_ms",
}
COLD_LOAD = {
    "case",
    "updates",
    "snapshot_version",
    "tail_updates",
    "snapshot_bytes",
    "load_ms",
    "rebuild_ms",
    "total_ms",
    "runs_total_ms",
    "idle_rss_mb",
    "peak_rss_mb",
    "after_rss_mb",
}
TARGET = {"target", "measured", "met"}
RELAY_ROW = {
    "scenario",
    "server",
    "description",
    "rooms",
    "clients_per_room",
    "rate_per_client",
    "edits_per_client",
    "sent",
    "expected_deliveries",
    "delivered",
    "delivered_pct",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "max_ms",
    "write_seconds",
    "server_cpu_s",
    "peak_rss_mb",
    "idle_rss_mb",
    "after_rss_mb",
    "closes",
    "close_codes",
    "convergent",
    "client_processes",
    "error",
    "instances",
    "store",
    "clients_per_instance",
}
RELAY_RATIO = {
    "scenario",
    "peer",
    "p50_ms_ratio",
    "p95_ms_ratio",
    "p99_ms_ratio",
    "server_cpu_s_ratio",
    "peak_rss_mb_ratio",
}
CRASH_ROW = {"server", "runs", "sent", "relayed", "survived", "lost", "survived_pct", "per_run"}
CRASH_RUN = {"sent", "relayed", "survived", "stored", "flood_seconds"}
needs_node = pytest.mark.skipif(
    not node_ready(), reason="no bench/node/node_modules: run `make test` (npm ci there)"
)
# Missing services skip here but not under CI, where the bench's own error then fails the test.
needs_services = pytest.mark.skipif(
    (find_bin_dir() is None or RedisServer.find() is None) and not os.environ.get("CI"),
    reason="no PostgreSQL or redis-server: run `make services`",
)
MERGE_ROW = {
    "trace",
    "kind",
    "txns",
    "txns_in_trace",
    "updates",
    "final_chars",
    "bare_updates_per_s",
    "room_updates_per_s",
    "ratio_room_to_bare",
    "ratio_room_to_bare_cpu",
    "bare_runs_updates_per_s",
    "ratio_room_to_bare_runs_cpu",
    "bare_us_per_update",
    "room_us_per_update",
    "room_commits",
    "room_mean_batch",
    "room_longest_run",
    "frame_by_frame_updates_per_s",
    "ratio_frame_by_frame_to_bare",
    "stored_log_mb",
    "stored_snapshots",
    "stored_snapshot_mb",
    "verified",
}


def _bench(out: Path, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench", *args, "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    name = args[0]
    assert (out / f"{name}.png").stat().st_size > 0
    assert done.stdout.strip(), "no table printed"
    return json.loads((out / f"{name}.json").read_text(encoding="utf-8"))


def _has(fields: set[str], row: object) -> None:
    assert isinstance(row, dict)
    missing = fields - row.keys()
    assert not missing, f"missing fields {sorted(missing)} in {row}"


def test_persistence_quick(tmp_path: Path) -> None:
    result = _bench(tmp_path, "persistence")
    assert result["bench"] == "persistence"
    assert result["quick"] is True
    _has(ENVIRONMENT, result["environment"])
    assert isinstance(result["settings"], dict)
    targets = result["targets"]
    assert isinstance(targets, dict)
    assert set(targets) == {"group_commit_updates_per_s", "cold_load_ms"}
    for target in targets.values():
        _has(TARGET, target)
    for key, fields, names in (
        ("throughput", THROUGHPUT, {"group", "each", "relaxed"}),
        ("durability", DURABILITY, {"durable", "each", "relaxed"}),
        ("cold_load", COLD_LOAD, {"snapshot", "tail", "none"}),
    ):
        rows = result[key]
        assert isinstance(rows, list)
        for row in rows:
            _has(fields, row)
        assert {row.get("mode", row.get("case")) for row in rows} == names


@pytest.mark.skipif(not TRACES.is_dir(), reason=f"no editing traces at {TRACES}")
def test_merge_quick(tmp_path: Path) -> None:
    result = _bench(tmp_path, "merge")
    assert result["bench"] == "merge"
    _has(ENVIRONMENT, result["environment"])
    rows = result["traces"]
    assert isinstance(rows, list) and rows
    for row in rows:
        _has(MERGE_ROW, row)
        assert row["verified"] is True
    assert {row["kind"] for row in rows} == {"sequential", "concurrent"}
    credits = result["credits"]
    assert isinstance(credits, dict)
    assert "CC BY 4.0" in credits["licence"]
    assert len(credits["authors"]) == len(rows)


LAYERS_ROW = {
    "workload",
    "config",
    "semantic_fields",
    "journal",
    "updates",
    "map_writes",
    "updates_per_s",
    "us_per_update",
    "cpu_us_per_update",
    "runs_updates_per_s",
    "min_updates_per_s",
    "max_updates_per_s",
    "mean_batch",
    "verified",
}
LAYERS_TARGET = {"workload", "compared_with", "paired_median_ratio", "cpu_ratio", *TARGET}
HISTORY_ROW = {
    "case",
    "updates",
    "version",
    "snapshot_version",
    "tail_updates",
    "snapshot_bytes",
    "load_ms",
    "rebuild_ms",
    "total_ms",
    "runs_total_ms",
    "verified",
}


@pytest.mark.skipif(not TRACES.is_dir(), reason=f"no editing traces at {TRACES}")
def test_layers_quick(tmp_path: Path) -> None:
    result = _bench(tmp_path, "layers")
    assert result["bench"] == "layers"
    assert result["quick"] is True
    _has(ENVIRONMENT, result["environment"])
    _has({"trace", "txns", "runs", "map_write_every", "configs"}, result["settings"])
    rows = result["rows"]
    assert isinstance(rows, list)
    for row in rows:
        _has(LAYERS_ROW, row)
        assert row["verified"] is True
    configs = {"all on", "semantic off", "journal off", "both off"}
    assert {(r["workload"], r["config"]) for r in rows} == {
        (w, c) for w in ("text", "mix") for c in configs
    }
    assert all(r["map_writes"] > 0 for r in rows if r["workload"] == "mix")
    targets = result["targets"]
    assert isinstance(targets, dict)
    assert set(targets) == {"semantic_text", "semantic_mix", "journal_text"}
    for target in targets.values():
        _has(LAYERS_TARGET, target)
    credits = result["credits"]
    assert isinstance(credits, dict)
    assert "CC BY 4.0" in credits["licence"]


def test_history_quick(tmp_path: Path) -> None:
    result = _bench(tmp_path, "history")
    assert result["bench"] == "history"
    assert result["quick"] is True
    _has(ENVIRONMENT, result["environment"])
    _has(
        {"updates", "runs", "versions", "snapshot_every_updates", "snapshots_kept"},
        result["settings"],
    )
    _has(
        {"what", "version", "total_ms", "worst_tail_version", "worst_tail_total_ms"},
        result["headline"],
    )
    rows = result["rows"]
    assert isinstance(rows, list)
    for row in rows:
        _has(HISTORY_ROW, row)
        assert row["verified"] is True
    settings = result["settings"]
    assert isinstance(settings, dict)
    n = settings["updates"]
    assert {r["version"] for r in rows} >= {n // 2, n, 1_000}
    assert len({r["case"] for r in rows}) == 2
    snapshots = result["snapshots"]
    assert isinstance(snapshots, dict)
    with_snapshots, without = snapshots.values()
    assert with_snapshots and not without
    # the diff endpoint: p50/p99 per pair; the last keystroke is one character
    headline = result["headline"]
    assert isinstance(headline, dict)
    assert headline["diff_p50_ms"] > 0 and headline["diff_p99_ms"] >= headline["diff_p50_ms"]
    diffs = result["diffs"]
    assert isinstance(diffs, list) and len(diffs) >= 3
    for diff in diffs:
        _has({"from", "to", "granularity", "bounded", "p50_ms", "p99_ms", "runs_ms"}, diff)
        assert diff["p99_ms"] >= diff["p50_ms"] > 0
        assert diff["granularity"] in {"char", "word", "line", "whole"}
        assert diff["inserted"] + diff["deleted"] > 0
    last = diffs[-1]
    assert (last["to_current"], last["granularity"], last["inserted"]) == (True, "char", 1)


@needs_node
def test_relay_quick(tmp_path: Path) -> None:
    # The fast servers only (pycrdt-websocket takes seconds per run under load): draftsync and
    # the Node reference server, every quick scenario, real processes and real Yjs clients. The
    # Node server keeps drafts in memory only: it has no cold-load (C1) row.
    servers = ["draftsync", "y-websocket-node"]
    memory_only = {("C1", "y-websocket-node")}
    result = _bench(tmp_path, "relay", "--servers", ",".join(servers))
    _relay_rows_and_ratios(result, servers, memory_only)


@needs_node
def test_relay_join_storm_and_cold_load_quick(tmp_path: Path) -> None:
    # Issue 24: 20 clients join a 1 MB draft at once (J1), and a fresh client opens a 2,000-
    # update draft after each of 2 restarts (C1); every joiner must get the whole draft.
    servers = ["draftsync", "y-websocket-node"]
    memory_only = {("C1", "y-websocket-node")}
    args = ("--servers", ",".join(servers), "--scenario", "J1", "--scenario", "C1")
    result = _bench(tmp_path, "relay", *args)
    assert set(result["settings"]["scenarios"]) == {"J1", "C1"}
    _relay_rows_and_ratios(result, servers, memory_only)
    assert result["capacity"]["servers"] == {}  # C1, a cold load, is no capacity step


def _relay_rows_and_ratios(
    result: dict[str, Any], servers: list[str], memory_only: set[tuple[str, str]]
) -> None:
    assert result["bench"] == "relay"
    assert result["quick"] is True
    _has(ENVIRONMENT, result["environment"])
    settings = result["settings"]
    assert isinstance(settings, dict)
    assert settings["servers"] == servers
    scenarios = settings["scenarios"]
    assert isinstance(scenarios, dict) and scenarios
    rows = result["rows"]
    assert isinstance(rows, list)
    assert {(r["scenario"], r["server"]) for r in rows} == {
        (s, server) for s in scenarios for server in servers
    } - memory_only
    for row in rows:
        _relayed_everything(row)
    ratios = result["ratios"]
    assert isinstance(ratios, list)
    peers = {(r["scenario"], r["peer"]) for r in ratios}
    assert peers == {(s, "y-websocket-node") for s in scenarios} - memory_only
    for ratio in ratios:
        _has(RELAY_RATIO, ratio)


@needs_node
def test_relay_hocuspocus_quick(tmp_path: Path) -> None:
    # Issue 23: Hocuspocus providers against draftsync's /hocuspocus (with a real token) and
    # against @hocuspocus/server with its SQLite extension, in one pass; S1 only, a few seconds.
    servers = ["draftsync-hocuspocus", "hocuspocus-server"]
    result = _bench(tmp_path, "relay", "--servers", ",".join(servers), "--scenario", "S1")
    assert result["settings"]["servers"] == servers
    rows = result["rows"]
    assert [(r["scenario"], r["server"]) for r in rows] == [("S1", server) for server in servers]
    for row in rows:
        _relayed_everything(row)
    # the Hocuspocus server is compared with draftsync's Hocuspocus endpoint, not with /ws
    (ratio,) = result["ratios"]
    _has(RELAY_RATIO, ratio)
    assert (ratio["peer"], ratio["baseline"]) == ("hocuspocus-server", "draftsync-hocuspocus")


CONNECTIONS_ROW = {
    "connections",
    "connect_ms",
    "accept_per_s",
    "sync_p50_ms",
    "sync_p99_ms",
    "connect_cpu_s",
    "rss_before_mb",
    "rss_idle_mb",
    "kb_per_connection",
    "peak_rss_mb",
    "idle_rss_mb",
    "after_rss_mb",
    "fanout_p50_ms",
    "fanout_max_ms",
    "fanout_received",
    "fanout_receivers",
}
CAPACITY_STEP = {
    "scenario",
    "rate",
    "cpu_ms_per_edit",
    "p99_ms",
    "delivered_pct",
    "held",
    "peak_rss_mb",
    "idle_rss_mb",
    "after_rss_mb",
}


@needs_node
def test_relay_capacity_connections_and_fields_quick(tmp_path: Path) -> None:
    # Issue 24: the capacity steps (rooms x 2 clients at 5 edits/s), the connections scenario
    # (N idle connections on one draft, one edit fanned out) and S5 (`fields` sets), draftsync
    # beside the Node reference server, their --quick forms.
    servers = ["draftsync", "y-websocket-node"]
    result = _bench(
        tmp_path,
        "relay",
        "--servers",
        ",".join(servers),
        *("--scenario", "capacity", "--scenario", "connections", "--scenario", "S5"),
    )
    assert (tmp_path / "relay-scaling.png").stat().st_size > 0
    rows = result["rows"]
    kinds = {(r["scenario"], r["kind"]) for r in rows}
    assert kinds == {("C20", "relay"), ("C40", "relay"), ("N200", "connections"), ("S5", "relay")}
    for row in rows:
        if row["kind"] == "relay":
            _relayed_everything(row)
            assert isinstance(row["typing_cpu_s"], float), row
        else:
            assert row["error"] is None, row
            _has(CONNECTIONS_ROW, row)
            assert row["connections"] == 200
            assert row["fanout_received"] == row["fanout_receivers"] == 199
            assert row["kb_per_connection"] is not None
            for key in ("peak_rss_mb", "idle_rss_mb", "after_rss_mb"):  # every scenario's
                assert isinstance(row[key], float) and row[key] > 0, (row["server"], key)
    capacity = result["capacity"]["servers"]
    assert set(capacity) == set(servers)
    for entry in capacity.values():
        assert [step["scenario"] for step in entry["steps"]] == ["C20", "C40"]
        for step in entry["steps"]:
            _has(CAPACITY_STEP, step)
            assert step["cpu_ms_per_edit"] > 0
        assert isinstance(entry["max_rate_held"], float)


def _relayed_everything(row: object) -> None:
    """A relay row with every field, figures, and every edit delivered to every other client."""
    _has(RELAY_ROW, row)
    assert isinstance(row, dict)
    where = f"{row['scenario']} on {row['server']}"
    assert row["error"] is None, where
    assert row["sent"] > 0, where
    assert row["delivered"] == row["expected_deliveries"], where
    assert row["delivered_pct"] == 100.0, where
    assert row["convergent"] is True, where
    figures = ("p50_ms", "p95_ms", "p99_ms", "max_ms", "server_cpu_s", "peak_rss_mb")
    for key in (*figures, "idle_rss_mb", "after_rss_mb"):
        assert isinstance(row[key], int | float) and row[key] >= 0, (where, key)


@needs_node
@needs_services
def test_relay_instances_quick(tmp_path: Path) -> None:
    # Issue 10: one room's 50 clients on one instance, then split over two instances sharing
    # one PostgreSQL and one Redis (started by the bench); SQLite on one instance as reference.
    result = _bench(tmp_path, "relay", "--instances", "2")
    assert result["bench"] == "relay"
    assert result["instances"] == 2
    _has(ENVIRONMENT, result["environment"])
    rows = {row["server"]: row for row in result["rows"]}
    one, two = "draftsync pg+redis x1", "draftsync pg+redis x2"
    assert set(rows) == {"draftsync sqlite x1", one, two}
    assert {row["scenario"] for row in rows.values()} == {"S2"}
    for row in rows.values():
        _relayed_everything(row)
    assert rows[one]["clients_per_instance"] == [50]
    assert rows[two]["clients_per_instance"] == [25, 25]
    assert rows[two]["instances"] == 2
    assert rows[two]["store"] == rows[one]["store"] == "postgresql+redis"
    assert result["settings"]["baseline"] == two
    ratios = {ratio["peer"]: ratio for ratio in result["ratios"]}
    _has(RELAY_RATIO, ratios[one])  # two instances over one
    for key in RELAY_RATIO - {"scenario", "peer"}:
        assert isinstance(ratios[one][key], float) and ratios[one][key] > 0, key


@needs_node
def test_durability_quick(tmp_path: Path) -> None:
    # draftsync's promise: an edit another client received survives kill -9 (design.md).
    result = _bench(tmp_path, "durability", "--servers", "draftsync")
    assert result["bench"] == "durability"
    _has(ENVIRONMENT, result["environment"])
    (row,) = result["rows"]
    _has(CRASH_ROW, row)
    for run in row["per_run"]:
        _has(CRASH_RUN, run)
    assert row["server"] == "draftsync"
    assert row["relayed"] > 0, "the kill came before anything was relayed"
    assert row["lost"] == 0, row
    assert row["survived_pct"] == 100.0
