"""The bench suite runs end to end in --quick mode and writes every field its readers use.

Each bench runs as a subprocess, exactly as a maintainer types it. No timing is asserted (a
shared CI machine would make such a test flaky); the benches check their own replays and fail
with a non-zero exit if a replay ends on the wrong text.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TRACES = REPO.parent / "shared/data/traces"
TIMEOUT = 120

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
}
TARGET = {"target", "measured", "met"}
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
    "bare_us_per_update",
    "room_us_per_update",
    "room_commits",
    "room_mean_batch",
    "verified",
}


def _bench(out: Path, *args: str) -> dict[str, object]:
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
