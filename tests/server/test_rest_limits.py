"""The REST body limits (`--max-body-elements`, `--max-body-fields`): documented in
`serve --help` with their defaults, refused below one, and honoured as configured."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.rest import as_user
from tests.support.server_process import REPO, ServerProcess


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "server", "serve", *argv]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)


def test_serve_help_names_the_limits_and_their_defaults() -> None:
    done = _run("--help")
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "--max-body-elements N" in text and "(10000)" in text
    assert "--max-body-fields N" in text and "(1000)" in text


@pytest.mark.parametrize("option", ["--max-body-elements", "--max-body-fields"])
def test_a_limit_below_one_is_refused_with_the_option_named(option: str) -> None:
    done = _run(option, "0")
    assert done.returncode == 2, done.stderr
    assert option in done.stderr, done.stderr


async def test_the_configured_limits_hold(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, "--max-body-elements", "3", "--max-body-fields", "2")
    server.start()
    try:
        async with as_user(server, "alice") as api:
            answer = await api.post("/api/drafts", json={"fields": {"tags": ["a", "b", "c"]}})
            assert answer.status_code == 201, answer.text
            answer = await api.post("/api/drafts", json={"fields": {"tags": list("abcd")}})
            assert answer.status_code == 422
            assert "`tags` has 4 elements: at most 3" in answer.json()["detail"]
            answer = await api.post("/api/drafts", json={"fields": {"a": 1, "b": 2, "c": 3}})
            assert answer.status_code == 422
            assert "`fields` has 3 keys: at most 2" in answer.json()["detail"]
            # An int past 64 bits made pycrdt panic (a PanicException escapes `except
            # Exception`): it is refused, as Yjs cannot hold it exactly (test_rest_integers).
            for number in (2**64, 10**400):
                answer = await api.post("/api/drafts", json={"fields": {"n": number}})
                assert answer.status_code == 422, answer.text
    finally:
        server.stop()
