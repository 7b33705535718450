"""Private files (issue 27, point 4): the server creates its data directory 0700 and the
database, WAL and SHM 0600 (umask 077 at start); a directory or database left readable by
others is kept as it is, with a warning naming it and its mode in the log."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

from pycrdt import Text

from tests.support.pycrdt_client import connect_synced
from tests.support.server_process import REPO, ServerProcess


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def write_something(server: ServerProcess) -> None:
    client = await connect_synced(server, f"priv-{uuid.uuid4().hex[:8]}")
    try:
        await client.edit(lambda doc: doc.get("title", type=Text).insert(0, "secret plans"))
        await client.flush()
    finally:
        await client.disconnect()


async def test_a_fresh_data_directory_and_its_database_are_private(tmp_path: Path) -> None:
    data = tmp_path / "fresh" / "data"
    server = ServerProcess(tmp_path / "process", "--data", str(data))
    server.start()
    try:
        await write_something(server)
        files = {path.name: mode(path) for path in data.iterdir()}
        assert {"draftsync.db", "draftsync.db-wal", "draftsync.db-shm"} <= files.keys()
        assert mode(data) == 0o700 and mode(data.parent) == 0o700
        assert files == {name: 0o600 for name in files}, files
    finally:
        server.stop()
    assert "has mode" not in server.log()


async def test_looser_modes_already_there_are_kept_and_warned_about(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o755)
    database = data / "draftsync.db"
    database.touch()
    database.chmod(0o644)  # an empty file is a new SQLite database
    server = ServerProcess(tmp_path / "process", "--data", str(data))
    server.start()
    try:
        await write_something(server)
    finally:
        server.stop()
    log = server.log()
    assert f"{data} has mode 0755: other local users may read the drafts; chmod 0700 it" in log
    assert f"{database} has mode 0644" in log and "chmod 0600 it" in log
    assert (mode(data), mode(database)) == (0o755, 0o644)


def test_draftsync_token_creates_a_private_data_directory_and_secret(tmp_path: Path) -> None:
    data = tmp_path / "tokens"
    env = {key: value for key, value in os.environ.items() if key != "DRAFTSYNC_SECRET"}
    done = subprocess.run(
        [sys.executable, "-m", "server", "token", "alice", "--data", str(data)],
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=30,
        check=True,
    )
    assert done.stdout.strip()
    assert (mode(data), mode(data / "secret")) == (0o700, 0o600)
