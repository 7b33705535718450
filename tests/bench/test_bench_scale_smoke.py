"""The bench suite runs end to end in --quick mode and writes every field its readers use: here
the relay's capacity steps, connections and S5 (`fields` sets).

Each bench runs as a subprocess, exactly as a maintainer types it. No timing is asserted (a
shared CI machine would make such a test flaky); the benches check their own replays and fail
with a non-zero exit if a replay ends on the wrong text. The smoke tests are spread over
test_bench_smoke.py, test_bench_relay_smoke.py, test_bench_scale_smoke.py and
test_bench_instances_smoke.py so that both workers of `pytest -n 2 --dist loadfile` (a whole
file on one worker) share them; what they share is in tests/support/bench_smoke.py.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.bench_smoke import (
    bench,
    has,
    needs_node,
    relayed_everything,
)

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
    result = bench(
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
            relayed_everything(row)
            assert isinstance(row["typing_cpu_s"], float), row
        else:
            assert row["error"] is None, row
            has(CONNECTIONS_ROW, row)
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
            has(CAPACITY_STEP, step)
            assert step["cpu_ms_per_edit"] > 0
        assert isinstance(entry["max_rate_held"], float)
