"""The bench suite runs end to end in --quick mode and writes every field its readers use: here
the in-process benches (persistence, merge, layers, history) and durability.

Each bench runs as a subprocess, exactly as a maintainer types it. No timing is asserted (a
shared CI machine would make such a test flaky); the benches check their own replays and fail
with a non-zero exit if a replay ends on the wrong text. The smoke tests are spread over
test_bench_smoke.py, test_bench_relay_smoke.py, test_bench_scale_smoke.py and
test_bench_instances_smoke.py so that both workers of `pytest -n 2 --dist loadfile` (a whole
file on one worker) share them; what they share is in tests/support/bench_smoke.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.bench_smoke import ENVIRONMENT, TARGET, TRACES, bench, has, needs_node

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
CRASH_ROW = {"server", "runs", "sent", "relayed", "survived", "lost", "survived_pct", "per_run"}
CRASH_RUN = {"sent", "relayed", "survived", "stored", "flood_seconds"}
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


def test_persistence_quick(tmp_path: Path) -> None:
    result = bench(tmp_path, "persistence")
    assert result["bench"] == "persistence"
    assert result["quick"] is True
    has(ENVIRONMENT, result["environment"])
    assert isinstance(result["settings"], dict)
    targets = result["targets"]
    assert isinstance(targets, dict)
    assert set(targets) == {"group_commit_updates_per_s", "cold_load_ms"}
    for target in targets.values():
        has(TARGET, target)
    for key, fields, names in (
        ("throughput", THROUGHPUT, {"group", "each", "relaxed"}),
        ("durability", DURABILITY, {"durable", "each", "relaxed"}),
        ("cold_load", COLD_LOAD, {"snapshot", "tail", "none"}),
    ):
        rows = result[key]
        assert isinstance(rows, list)
        for row in rows:
            has(fields, row)
        assert {row.get("mode", row.get("case")) for row in rows} == names


@pytest.mark.skipif(not TRACES.is_dir(), reason=f"no editing traces at {TRACES}")
def test_merge_quick(tmp_path: Path) -> None:
    result = bench(tmp_path, "merge")
    assert result["bench"] == "merge"
    has(ENVIRONMENT, result["environment"])
    rows = result["traces"]
    assert isinstance(rows, list) and rows
    for row in rows:
        has(MERGE_ROW, row)
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
    result = bench(tmp_path, "layers")
    assert result["bench"] == "layers"
    assert result["quick"] is True
    has(ENVIRONMENT, result["environment"])
    has({"trace", "txns", "runs", "map_write_every", "configs"}, result["settings"])
    rows = result["rows"]
    assert isinstance(rows, list)
    for row in rows:
        has(LAYERS_ROW, row)
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
        has(LAYERS_TARGET, target)
    credits = result["credits"]
    assert isinstance(credits, dict)
    assert "CC BY 4.0" in credits["licence"]


def test_history_quick(tmp_path: Path) -> None:
    result = bench(tmp_path, "history")
    assert result["bench"] == "history"
    assert result["quick"] is True
    has(ENVIRONMENT, result["environment"])
    has(
        {"updates", "runs", "versions", "snapshot_every_updates", "snapshots_kept"},
        result["settings"],
    )
    has(
        {"what", "version", "total_ms", "worst_tail_version", "worst_tail_total_ms"},
        result["headline"],
    )
    rows = result["rows"]
    assert isinstance(rows, list)
    for row in rows:
        has(HISTORY_ROW, row)
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
        has({"from", "to", "granularity", "bounded", "p50_ms", "p99_ms", "runs_ms"}, diff)
        assert diff["p99_ms"] >= diff["p50_ms"] > 0
        assert diff["granularity"] in {"char", "word", "line", "whole"}
        assert diff["inserted"] + diff["deleted"] > 0
    last = diffs[-1]
    assert (last["to_current"], last["granularity"], last["inserted"]) == (True, "char", 1)


@needs_node
def test_durability_quick(tmp_path: Path) -> None:
    # draftsync's promise: an edit another client received survives kill -9 (design.md).
    result = bench(tmp_path, "durability", "--servers", "draftsync")
    assert result["bench"] == "durability"
    has(ENVIRONMENT, result["environment"])
    (row,) = result["rows"]
    has(CRASH_ROW, row)
    for run in row["per_run"]:
        has(CRASH_RUN, run)
    assert row["server"] == "draftsync"
    assert row["relayed"] > 0, "the kill came before anything was relayed"
    assert row["lost"] == 0, row
    assert row["survived_pct"] == 100.0
