"""`draftsync bench`: each sub-command explains itself, and long runs show progress bars on
stderr unless told not to (issue 8, point 4)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.hostile import attacks
from tests.support.server_process import REPO

COMMANDS = (
    "persistence",
    "merge",
    "relay",
    "durability",
    "layers",
    "history",
    "hostile",
    "fuzz",
)


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_each_sub_command_has_help_with_quick_and_out(command: str) -> None:
    done = _bench(command, "--help")
    assert done.returncode == 0, done.stderr
    assert f"bench {command}" in done.stdout
    for option in ("--quick", "--out", "--no-progress"):
        assert option in done.stdout, (command, option)


def test_a_run_shows_progress_bars_on_stderr_unless_no_progress(tmp_path: Path) -> None:
    quick = ["merge", "--quick", "--trace", "seph-blog1", "--limit", "500"]
    shown = _bench(*quick, "--out", str(tmp_path / "shown"))
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "room seph-blog1 (flood)" in shown.stderr and "it/s" in shown.stderr
    quiet = _bench(*quick, "--out", str(tmp_path / "quiet"), "--no-progress")
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert "it/s" not in quiet.stderr


def test_hostile_has_a_row_for_each_of_findings_2_to_5_and_the_many_clients_attacks() -> None:
    rows = {attack.name: attack for attack in attacks()}
    findings = {name.split()[0] for name in rows if name.startswith("finding-")}
    assert findings == {f"finding-{n}" for n in range(2, 6)}
    assert {"many clients", "client chain", "held-back", "held-items"} <= set(rows)
    held_items = rows["held-items"]
    assert held_items.acknowledged and held_items.update is not None
    assert len(set(held_items.update())) == 40  # each held apart: distinct clients
    held_back = rows["held-back"]
    assert held_back.on_bystanders_draft and held_back.update is not None
    frames = held_back.update()
    assert isinstance(frames, list) and len(set(frames)) == 40  # distinct: yrs merges repeats
    refused, at_limit = rows["finding-3 refused"].bodies, rows["finding-3 at limit"].bodies
    assert refused is not None and at_limit is not None
    assert [len(body["fields"]["tags"]) for body in refused() + at_limit()] == [100_000, 10_000]
    assert rows["finding-3 restore"].restore_draft
    assert rows["finding-4"].fresh_draft  # accepted: each attack on a draft of its own


def test_hostile_refuses_an_unknown_attack_by_name_before_starting_anything() -> None:
    done = _bench("hostile", "--quick", "--attack", "no-such-attack")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "--attack" in done.stderr and "held-back" in done.stderr
