"""Options that take a count refuse a count that cannot work, with a message naming the option,
before anything starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.server_process import REPO, ServerProcess


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


@pytest.mark.parametrize(
    ("value", "told"),
    [(None, False), ("0", False), ("1", True), ("full", True), ("", True), ("debug-7f3e", True)],
)
def test_serve_says_at_start_that_it_turned_rust_backtraces_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str | None, told: bool
) -> None:
    """An operator who set RUST_BACKTRACE to debug a panic learns that serve turned it off
    (server/cli.py `_no_rust_backtraces`): one INFO line, without the value; none when it was
    unset or 0. An empty value counts as set: Rust turns backtraces on for anything but 0."""
    monkeypatch.delenv("RUST_BACKTRACE", raising=False)
    env = {} if value is None else {"RUST_BACKTRACE": value}
    server = ServerProcess(tmp_path / "data", env=env).start()
    try:
        log = server.log()
    finally:
        server.stop()
    lines = [line for line in log.splitlines() if "RUST_BACKTRACE" in line]
    assert len(lines) == (1 if told else 0), log
    if told:
        assert " INFO draftsync RUST_BACKTRACE turned off" in lines[0], lines
        assert "debug-7f3e" not in log
