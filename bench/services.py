"""Throwaway PostgreSQL and Redis on loopback, for `bench relay --instances 2` and the tests.

Both come from Debian's packages and live in a temp dir for one run (or one test session): they
hold nothing of value, so PostgreSQL trusts local connections and Redis keeps nothing on disk.
The tests (`tests/conftest.py`) and the bench start them through this one module.

PostgreSQL: initdb and the server refuse to run as root, so (when run as root, as CI does) they
run as the `postgres` user that Debian's package creates, in a temp dir that user owns. The
cluster listens on a free loopback port with its socket in the temp dir. `new_database` gives
each user (test, bench configuration) a fresh database, so nothing leaks between them.

Redis only carries messages between instances (the store is PostgreSQL), so persistence is off;
it stops with SIGTERM. Stopping it drops every subscriber, as a Redis restart would.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.servers import free_port

__all__ = ["PostgresCluster", "RedisServer", "find_bin_dir", "postgres_and_redis"]

log = logging.getLogger(__name__)


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
        log.info("PostgreSQL on 127.0.0.1:%d in %s", self.port, self.root)
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


class RedisServer:
    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="draftsync-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def find() -> str | None:
        return shutil.which("redis-server") or (
            "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
        )

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15) -> RedisServer:
        command = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.dir),
        ]  # fmt: skip
        with (self.dir / "redis.log").open("ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=out)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        log.info("Redis on 127.0.0.1:%d", self.port)
                        return self
            except OSError:
                time.sleep(0.05)
        self.close()
        raise RuntimeError("redis-server did not answer")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def postgres_and_redis() -> Iterator[tuple[PostgresCluster, RedisServer]]:
    """Both services for one bench run, stopped (and their temp dirs removed) however it ends."""
    bin_dir, redis_binary = find_bin_dir(), RedisServer.find()
    if bin_dir is None or redis_binary is None:
        raise RuntimeError(
            "needs PostgreSQL and redis-server: apt-get install postgresql redis-server "
            "(make services)"
        )
    cluster = PostgresCluster(bin_dir)
    try:
        cluster.start()
        redis = RedisServer(redis_binary).start()
        try:
            yield cluster, redis
        finally:
            redis.close()
    finally:
        cluster.stop()
