"""Options that take a count refuse a count that cannot work, with a message naming the option,
before anything starts."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.server_process import REPO


@pytest.mark.parametrize(
    "argv",
    [
        ["server", "serve", "--snapshot-keep", "0"],
        ["server", "serve", "--snapshot-keep", "many"],
        ["bench", "merge", "--snapshot-keep", "0"],
    ],
)
def test_a_snapshot_keep_below_one_is_refused_with_the_option_named(argv: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", *argv], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert "--snapshot-keep" in done.stderr, done.stderr
