"""What the bench smoke tests (tests/bench/test_bench_*smoke.py) share: running one bench as a
maintainer types it, with --quick, and the fields every reader of its JSON uses.

The smoke tests are split over several files so that `pytest -n 2 --dist loadfile` (which puts a
whole file on one worker) can spread them over both workers.
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

__all__ = [
    "ENVIRONMENT",
    "RELAY_RATIO",
    "RELAY_ROW",
    "TARGET",
    "TRACES",
    "bench",
    "has",
    "needs_node",
    "needs_services",
    "relay_rows_and_ratios",
    "relayed_everything",
]

REPO = Path(__file__).resolve().parents[2]
TRACES = REPO / "bench" / "data" / "traces"
# A bound on one bench run: a quick run takes 10-70 s on a quiet machine, twice that at load 10.
TIMEOUT = 300

ENVIRONMENT = {"when", "python", "platform", "cpus", "event_loop", "pycrdt", "sqlite"}
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
needs_node = pytest.mark.skipif(
    not node_ready(), reason="no bench/node/node_modules: run `make test` (npm ci there)"
)
# Missing services skip here but not under CI, where the bench's own error then fails the test.
needs_services = pytest.mark.skipif(
    (find_bin_dir() is None or RedisServer.find() is None) and not os.environ.get("CI"),
    reason="no PostgreSQL or redis-server: run `make services`",
)


def bench(out: Path, *args: str) -> dict[str, Any]:
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


def has(fields: set[str], row: object) -> None:
    assert isinstance(row, dict)
    missing = fields - row.keys()
    assert not missing, f"missing fields {sorted(missing)} in {row}"


def relay_rows_and_ratios(
    result: dict[str, Any], servers: list[str], memory_only: set[tuple[str, str]]
) -> None:
    assert result["bench"] == "relay"
    assert result["quick"] is True
    has(ENVIRONMENT, result["environment"])
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
        relayed_everything(row)
    ratios = result["ratios"]
    assert isinstance(ratios, list)
    peers = {(r["scenario"], r["peer"]) for r in ratios}
    assert peers == {(s, "y-websocket-node") for s in scenarios} - memory_only
    for ratio in ratios:
        has(RELAY_RATIO, ratio)


def relayed_everything(row: object) -> None:
    """A relay row with every field, figures, and every edit delivered to every other client."""
    has(RELAY_ROW, row)
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
