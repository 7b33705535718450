"""A throwaway PostgreSQL cluster for the tests: Debian's binaries, a temp dir, loopback only.

initdb and the server refuse to run as root, so (when the tests run as root, as CI does) they
run as the `postgres` user that Debian's package creates, in a temp dir that user owns. The
cluster listens on a free loopback port with its socket in the temp dir and trusts local
connections: it exists for one test session and holds nothing of value.

Each test asks for a fresh database (`new_database`), so migrations and data never leak between
tests. `query` reads what the store really holds, through psql, as `stored.py` does for SQLite.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from tests.support.server_process import free_port

__all__ = ["BACKENDS", "PostgresCluster", "find_bin_dir", "store_flags"]


def find_bin_dir() -> Path | None:
    """Debian keeps the server binaries in /usr/lib/postgresql/<major>/bin (newest wins)."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if candidates:
        return Path(candidates[0]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


class PostgresCluster:
    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="draftsync-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0
        self.user = "postgres" if self._as_postgres else os.environ.get("USER", "postgres")

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(a) for a in args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, check=check, capture_output=True, text=True, timeout=120)

    def start(self) -> PostgresCluster:
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(
            self.bin_dir / "initdb",
            "-D", str(self.data), "-U", self.user, "--auth=trust",
            "--encoding=UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        options = f"-k {self.root} -c listen_addresses=127.0.0.1 -p {self.port} -c fsync=on"
        self._run(
            self.bin_dir / "pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"),
            "-o", options, "-w", "-t", "60", "start",
        )  # fmt: skip
        return self

    def stop(self) -> None:
        self._run(self.bin_dir / "pg_ctl", "-D", str(self.data), "-m", "immediate", "stop",
                  check=False)  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def psql(self, database: str, sql: str) -> str:
        result = subprocess.run(
            [str(self.bin_dir / "psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1",
             "-d", self.url(database), "-c", sql],
            check=True, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        return result.stdout

    def new_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        deadline = time.monotonic() + 30
        while True:
            try:
                self.psql("postgres", f"CREATE DATABASE {name}")
                break
            except subprocess.CalledProcessError:  # template1 busy with a concurrent CREATE
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        return self.url(name)

    def query(self, url: str, sql: str) -> list[list[str]]:
        """Rows of `sql` (each field as psql prints it, bytea as \\x hex)."""
        database = url.rsplit("/", 1)[1]
        out = self.psql(database, sql)
        return [line.split("|") for line in out.splitlines() if line]


# The store backends that storage tests run against; `store_flags` turns one into serve flags.
BACKENDS = ("sqlite", "postgresql")


def store_flags(request: pytest.FixtureRequest, backend: str) -> list[str]:
    """`draftsync serve` flags for `backend`: PostgreSQL gets a fresh database of the session's
    cluster (the `postgres` fixture), SQLite needs none (the file in --data)."""
    if backend == "postgresql":
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        return ["--store", cluster.new_database()]
    return []
