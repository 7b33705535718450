"""The repository stands alone (issue 26, point 1): a clone in an empty folder, with nothing
beside it, runs the benchmarks' smoke tests that read the editing traces and the bench CLI test
that once failed there: a file that read anything outside the clone would fail them.

The clone is a copy of what git tracks or would track (`tests/support/checkout.py`), so it runs
before a commit too; what git ignores (the traces, were they ignored) is not in it. Node and the
services are not needed by these tests, so nothing beside the copy is linked in.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.checkout import copy_checkout

TIMEOUT = 600  # seconds for the smoke tests inside the clone (about a minute here)
SMOKE = [
    "tests/bench/test_bench_cli.py",
    "tests/bench/test_bench_smoke.py::test_merge_quick",
    "tests/bench/test_bench_smoke.py::test_layers_quick",
]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "DRAFTSYNC"))}


def test_a_clone_with_nothing_beside_it_runs_the_bench_smoke_tests(tmp_path: Path) -> None:
    alone = copy_checkout(tmp_path / "empty" / "draftsync")
    assert [p.name for p in alone.parent.iterdir()] == ["draftsync"]
    where = subprocess.run(
        [sys.executable, "-c", "import bench, crdt, server; print(bench.__file__)"],
        cwd=alone,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(alone), "the clone's own code must run"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *SMOKE],
        cwd=alone,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "skipped" not in done.stdout, done.stdout[-4000:]  # no trace may be missing
