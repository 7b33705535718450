"""What the tests of several instances on one PostgreSQL and one Redis share
(tests/server/test_instances.py and test_instances_rules.py, split in two so that both workers
of `pytest -n 2 --dist loadfile` share them): the pair of instances and the figures read.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.services import PostgresCluster, RedisServer
from tests.support.node_client import NodeClient
from tests.support.redis_proxy import RedisProxy
from tests.support.rest import scrape
from tests.support.server_process import ServerProcess, start_together

__all__ = [
    "a_behind",
    "advisory_waiters",
    "fanout_figures",
    "new_draft",
    "pair",
    "shared_pair",
    "title_is",
]


@pytest.fixture
def pair(
    tmp_path: Path, postgres: PostgresCluster, redis_server: RedisServer
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Instances A and B on a new database and the session's Redis, started together."""
    store = postgres.new_database()
    flags = ["--store", store, "--redis", redis_server.url, "--room-grace", "0.3"]
    a, b = start_together(
        ServerProcess(tmp_path / "a", *flags), ServerProcess(tmp_path / "b", *flags)
    )
    yield a, b
    a.stop()
    b.stop()


@pytest.fixture(scope="module")
def shared_pair(
    tmp_path_factory: pytest.TempPathFactory, postgres: PostgresCluster, redis_server: RedisServer
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """`pair`, shared by the tests of a module that neither stop, kill nor slow an instance or
    Redis, read no cumulative figure or whole log, and touch only drafts of their own: two
    server starts saved a test (each is seconds of imports on a loaded machine). Not for a
    module with a test that counts Redis receivers (a PUBLISH answers 2) or reads what every
    instance hears: these two instances, alive through the module, are subscribers too."""
    flags = ["--store", postgres.new_database(), "--redis", redis_server.url, "--room-grace", "0.3"]
    root = tmp_path_factory.mktemp("instances")
    a, b = start_together(ServerProcess(root / "a", *flags), ServerProcess(root / "b", *flags))
    yield a, b
    a.stop()
    b.stop()


def new_draft() -> str:
    return f"m-{uuid.uuid4().hex[:10]}"


async def title_is(client: NodeClient, text: str) -> bool:
    """The client's `title` field holds `text`."""
    result: Any = await client.text("title")
    return bool(result == text)


async def advisory_waiters(lock: asyncpg.Connection, count: int) -> bool:
    """At least `count` sessions wait for an advisory lock in the database of `lock` (a test's
    connection holding a draft's versions lock: commits and purges wait behind it)."""
    waiting = await lock.fetchval(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    return int(waiting) >= count


async def fanout_figures(server: ServerProcess) -> dict[str, float]:
    """What the fan-out tells of what it heard: rooms with a gap open, updates held past one,
    and versions dropped because the store did not have them."""
    wanted = {
        "draftsync_fanout_gaps": "gaps",
        "draftsync_fanout_held": "held",
        "draftsync_fanout_unconfirmed_total": "unconfirmed",
    }
    figures: dict[str, float] = {}
    for family in text_string_to_metric_families(await scrape(server)):
        for sample in family.samples:
            if sample.name in wanted:
                figures[wanted[sample.name]] = sample.value
    return figures


@contextlib.asynccontextmanager
async def a_behind(
    proxy: RedisProxy, tmp_path: Path, postgres: PostgresCluster, redis_server: RedisServer
) -> AsyncIterator[tuple[ServerProcess, ServerProcess]]:
    """Two instances on a new database: A reaches Redis through `proxy`, B directly."""
    flags = ["--store", postgres.new_database(), "--room-grace", "0.3"]
    a = ServerProcess(tmp_path / "a", *flags, "--redis", proxy.url)
    b = ServerProcess(tmp_path / "b", *flags, "--redis", redis_server.url)
    # Started off the loop: it runs the proxy, which A reaches Redis through at start.
    await asyncio.to_thread(start_together, a, b)
    try:
        yield a, b
    finally:
        b.stop()
        a.stop()
