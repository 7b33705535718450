from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from bench.services import PostgresCluster, RedisServer, find_bin_dir
from server.store.postgres import PostgresStore
from server.store.sqlite import SqliteStore
from tests.support.postgres import BACKENDS
from tests.support.server_process import ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One real server per test module, data in a fresh temp dir."""
    process = ServerProcess(tmp_path_factory.mktemp("server"), "--room-grace", "0.3")
    process.start()
    yield process
    process.stop()


Start = Callable[..., Awaitable[ServerProcess]]


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Start]:
    """Start servers of this test's own with `args` (each test sets the caps it shows); all
    stopped on the way out. `nofile`: the process's file limit (soft, or (soft, hard))."""
    started: list[ServerProcess] = []

    async def run(*args: str, nofile: int | tuple[int, int] | None = None) -> ServerProcess:
        process = ServerProcess(tmp_path / f"s{len(started)}", *args, nofile=nofile)
        started.append(process)
        await asyncio.to_thread(process.start)
        return process

    yield run
    for process in started:
        process.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL cluster for the session (Debian's `postgresql` package; `make
    test` installs it). Missing binaries fail under CI and skip elsewhere."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        message = "PostgreSQL binaries not found: apt-get install postgresql (make test does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    cluster = PostgresCluster(bin_dir).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One throwaway Redis for the session (Debian's `redis-server`; `make test` installs it)."""
    binary = RedisServer.find()
    if binary is None:
        message = "redis-server not found: apt-get install redis-server (make test does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    server = RedisServer(binary).start()
    yield server
    server.close()


@pytest.fixture(params=BACKENDS)
async def store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[SqliteStore | PostgresStore]:
    """An open store of each backend, in process (a fresh SQLite file; a fresh database in the
    session's PostgreSQL cluster), for tests of the store interface itself."""
    if request.param == "postgresql":
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        opened: SqliteStore | PostgresStore = await PostgresStore.open(cluster.new_database())
    else:
        opened = await SqliteStore.open(tmp_path / "draftsync.db")
    try:
        yield opened
    finally:
        await opened.close()
