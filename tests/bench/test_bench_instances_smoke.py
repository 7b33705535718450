"""The bench suite runs end to end in --quick mode and writes every field its readers use: here
`bench relay --instances 2`, one room over two instances sharing PostgreSQL and Redis.

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
    ENVIRONMENT,
    RELAY_RATIO,
    bench,
    has,
    needs_node,
    needs_services,
    relayed_everything,
)


@needs_node
@needs_services
def test_relay_instances_quick(tmp_path: Path) -> None:
    # Issue 10: one room's 50 clients on one instance, then split over two instances sharing
    # one PostgreSQL and one Redis (started by the bench); SQLite on one instance as reference.
    result = bench(tmp_path, "relay", "--instances", "2")
    assert result["bench"] == "relay"
    assert result["instances"] == 2
    has(ENVIRONMENT, result["environment"])
    rows = {row["server"]: row for row in result["rows"]}
    one, two = "draftsync pg+redis x1", "draftsync pg+redis x2"
    assert set(rows) == {"draftsync sqlite x1", one, two}
    assert {row["scenario"] for row in rows.values()} == {"S2"}
    for row in rows.values():
        relayed_everything(row)
    assert rows[one]["clients_per_instance"] == [50]
    assert rows[two]["clients_per_instance"] == [25, 25]
    assert rows[two]["instances"] == 2
    assert rows[two]["store"] == rows[one]["store"] == "postgresql+redis"
    assert result["settings"]["baseline"] == two
    ratios = {ratio["peer"]: ratio for ratio in result["ratios"]}
    has(RELAY_RATIO, ratios[one])  # two instances over one
    for key in RELAY_RATIO - {"scenario", "peer"}:
        assert isinstance(ratios[one][key], float) and ratios[one][key] > 0, key
