"""The repository stands alone (issue 26, point 1): a clone in an empty folder, with nothing
beside it, has every file the bench reads from the repository, and its bench CLI test (the one
that once failed there) passes: a file that read anything outside the clone would fail this.

What the bench reads from the repository: the editing traces in `bench/data/traces/` (through
`bench.traces.DEFAULT_TRACES_DIR`, the default of `bench merge --traces` and `bench layers
--traces`) and the Node harness in `bench/node/` (only with its `node_modules`, which a clone
lacks until `npm ci`: the relay, durability and connections benches are smoke-tested in the main
tree, tests/bench/). So the clone runs, each from its own code:

- `tests/bench/test_bench_cli.py`'s run with progress bars (the test that once failed in a clone):
  a short `bench merge --trace seph-blog1` through the CLI's default traces directory, the
  lightest bench run there is that reads the repository (it imports every bench module, as
  bench.cli does); the hostile rows;
- every trace `bench merge` or `bench layers` can read (all ten, where the `--quick` runs read
  three), read whole from the clone's `DEFAULT_TRACES_DIR`, and the `--traces` default of both
  sub-commands as the clone's own CLI parses it (`EVERY_TRACE`).

The heavy scenarios (`bench merge --quick`, `bench layers --quick`, about 30 s) are not re-run
here: their smoke tests run them in the main tree on the same files and code, and what this test
adds is only that those files are inside the clone, which the runs above show at a fraction of
the cost (and for every trace, where `--quick` reads three). For the same reason the clone no
longer runs a tiny `bench layers` nor the sub-commands' --help (each a bench process of its own,
~10 s in all): layers' replay is the main tree's smoke test's, its default directory is read
here from the parser, and the merge run imports every module the --help runs imported.

The clone is a copy of what git tracks or would track (`tests/support/checkout.py`), so it runs
before a commit too; what git ignores (the traces, were they ignored) is not in it. Node and the
services are not needed by these runs, so nothing beside the copy is linked in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.checkout import copy_checkout

TIMEOUT = 600  # seconds for one step inside the clone (well under a minute here)
CLI = "tests/bench/test_bench_cli.py"
SMOKE = [  # the merge run imports every bench module (bench.cli does)
    f"{CLI}::test_a_run_shows_progress_bars_on_stderr_unless_no_progress",
    f"{CLI}::test_hostile_has_a_row_for_each_of_findings_2_to_5_and_the_many_clients_attacks",
]
# Every trace file the bench can read, from the clone's DEFAULT_TRACES_DIR, whole (its gzip
# checksum read, so a truncated file or a Git LFS pointer fails) and holding a trace's keys:
# `bench.traces.load_trace` parses them in the main tree's smoke tests, seconds of CPU for ten.
# And the directory `bench merge` and `bench layers` read when given no --traces.
EVERY_TRACE = """
import gzip, json
from bench.cli import _build_parser
from bench.layers import TRACE
from bench.merge import TRACE_FILES
from bench.traces import DEFAULT_TRACES_DIR
read = {}
for name in sorted({*TRACE_FILES, TRACE}):
    raw = gzip.decompress((DEFAULT_TRACES_DIR / f"{name}.json.gz").read_bytes())
    assert raw.lstrip().startswith(b"{") and all(
        key in raw for key in (b'"txns"', b'"patches"', b'"endContent"')
    ), name
    read[name] = len(raw)
defaults = {c: str(_build_parser().parse_args([c]).traces) for c in ("merge", "layers")}
print(json.dumps({"dir": str(DEFAULT_TRACES_DIR), "read": read, "defaults": defaults}))
"""


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "DRAFTSYNC"))}


def _run(alone: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, *args],
        cwd=alone,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    return done


def test_a_clone_with_nothing_beside_it_runs_the_bench_smoke_tests(tmp_path: Path) -> None:
    alone = copy_checkout(tmp_path / "empty" / "draftsync")
    assert [p.name for p in alone.parent.iterdir()] == ["draftsync"]
    where = _run(alone, "-c", "import bench, crdt, server; print(bench.__file__)")
    assert Path(where.stdout.strip()).is_relative_to(alone), "the clone's own code must run"

    done = _run(alone, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *SMOKE)
    assert "skipped" not in done.stdout, done.stdout[-4000:]  # no trace may be missing
    assert f"{len(SMOKE)} passed" in done.stdout, done.stdout[-4000:]

    every = json.loads(_run(alone, "-c", EVERY_TRACE).stdout)
    assert Path(every["dir"]).is_relative_to(alone), "the traces must be the clone's own"
    assert len(every["read"]) == 10 and all(every["read"].values()), every
    assert every["defaults"] == {"merge": every["dir"], "layers": every["dir"]}, every
