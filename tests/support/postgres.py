"""Which store backends the storage tests run against, and the serve flags for each.

The PostgreSQL cluster itself (a throwaway one in a temp dir, loopback only) is
`bench.services.PostgresCluster`, shared with `bench relay --instances 2`; `tests/conftest.py`
starts one per session as the `postgres` fixture. Each test asks it for a fresh database, so
migrations and data never leak between tests.
"""

from __future__ import annotations

import pytest

from bench.services import PostgresCluster

__all__ = ["BACKENDS", "store_flags"]


# The store backends that storage tests run against; `store_flags` turns one into serve flags.
BACKENDS = ("sqlite", "postgresql")


def store_flags(request: pytest.FixtureRequest, backend: str) -> list[str]:
    """`draftsync serve` flags for `backend`: PostgreSQL gets a fresh database of the session's
    cluster (the `postgres` fixture), SQLite needs none (the file in --data)."""
    if backend == "postgresql":
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        return ["--store", cluster.new_database()]
    return []
