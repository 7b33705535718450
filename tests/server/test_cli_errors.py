"""Every bad argument to `draftsync` is one line on stderr naming what is wrong, exit status 2,
and no traceback; usage and help name the command as `draftsync ...` (bench included)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.server_process import REPO


def _draftsync(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        cwd=REPO,  # this checkout's `server`, whichever the venv has installed
        capture_output=True,
        text=True,
        timeout=60,
    )


BAD: list[tuple[list[str], str]] = [
    (["token", ""], "USER"),
    (["token", "alice", "--ttl", "0"], "--ttl"),
    (["token", "alice", "--ttl", "soon"], "--ttl"),
    (["token", "alice", "--data", "{file}"], "--data"),
    (["serve", "--port", "99999"], "--port"),
    (["serve", "--port", "0"], "--port"),
    (["serve", "--log-level", "loud"], "--log-level"),
    (["serve", "--room-grace", "-1"], "--room-grace"),
    (["serve", "--room-grace", "nan"], "--room-grace"),
    (["serve", "--data", "{file}"], "--data"),
    (["serve", "--schema", "{missing}"], "schema"),
    (["serve", "--store", "mysql://db"], "--store"),
    (["serve", "--redis", "redis://localhost"], "--redis"),
    (["serve", "--webhook-keep-seconds", "-1"], "--webhook-keep-seconds"),
    (["serve", "--webhook-keep-seconds", "0"], "--webhook-keep-seconds"),
    (["serve", "--webhook-keep-seconds", "a week"], "--webhook-keep-seconds"),
    (["serve", "--webhook-keep-seconds", "inf"], "--webhook-keep-seconds"),
    (["serve", "--fanout-outbox-messages", "0"], "--fanout-outbox-messages"),
    (["serve", "--fanout-outbox-messages", "many"], "--fanout-outbox-messages"),
    (["serve", "--fanout-outbox-bytes", "-1"], "--fanout-outbox-bytes"),
    (["serve", "--no-such-flag"], "--no-such-flag"),
    (["serve", "extra"], "draftsync serve: error: unrecognized arguments: extra"),
    (["token", "alice", "bob"], "draftsync token: error: unrecognized arguments: bob"),
    (["launch"], "launch"),
    ([], "COMMAND"),
    (["bench"], "COMMAND"),
    (["bench", "merge", "--traces", "{missing}"], "--traces"),
    (["bench", "merge", "--out", "{file}"], "--out"),
    (["bench", "merge", "--limit", "0"], "--limit"),
    (["bench", "durability", "--kill-after", "-2"], "--kill-after"),
    (["bench", "fuzz", "--max-seconds", "inf"], "--max-seconds"),
    (["bench", "relay", "--servers", "nginx"], "--servers"),
]


@pytest.mark.parametrize(("argv", "named"), BAD, ids=[" ".join(argv) or "none" for argv, _ in BAD])
def test_a_bad_argument_is_one_line_and_exit_2(tmp_path: Path, argv: list[str], named: str) -> None:
    file = tmp_path / "a-file"
    file.write_text("not a directory")
    paths = {"file": str(file), "missing": str(tmp_path / "missing")}
    done = _draftsync(*(arg.format(**paths) for arg in argv))
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.endswith("\n"), done.stderr
    assert done.stderr.startswith("draftsync"), done.stderr
    assert named in done.stderr and "Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("argv", "usage"),
    [
        (["--help"], "usage: draftsync "),
        (["serve", "--help"], "usage: draftsync serve "),
        (["token", "--help"], "usage: draftsync token "),
        (["bench", "--help"], "usage: draftsync bench "),
        (["bench", "merge", "--help"], "usage: draftsync bench merge "),
    ],
)
def test_help_names_the_draftsync_command(argv: list[str], usage: str) -> None:
    done = _draftsync(*argv)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(usage), done.stdout[:200]
    assert "python -m" not in done.stdout


def test_a_good_token_command_still_prints_a_token(tmp_path: Path) -> None:
    done = _draftsync("token", "alice", "--data", str(tmp_path / "data"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(".") == 2 and done.stderr == ""
