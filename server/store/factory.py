"""Open the store the settings name: SQLite in the data directory (the default) or PostgreSQL.

Why here and not in app.py: the backend choice is one decision (`--store` / DRAFTSYNC_STORE),
and the app, the bench harness and tests should all make it the same way.
"""

from __future__ import annotations

from typing import cast

from server.config import Settings
from server.store.api import Store
from server.store.sqlite import SqliteStore

__all__ = ["is_postgres_url", "open_store"]

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(url: str | None) -> bool:
    return url is not None and url.startswith(_POSTGRES_SCHEMES)


async def open_store(settings: Settings) -> Store:
    """The store for `settings`. Typed as `Store` because the server's modules name that class;
    `PostgresStore` provides the same methods (`server.store.api.Store`)."""
    store: Store
    if is_postgres_url(settings.store_url):
        # Imported here: asyncpg is only needed by deployments that use PostgreSQL.
        from server.store.postgres import PostgresStore

        assert settings.store_url is not None
        store = cast(Store, await PostgresStore.open(settings.store_url))
    else:
        store = await SqliteStore.open(
            settings.database_path,
            fsync=settings.fsync,
            reserve_bytes=settings.disk_reserve_bytes,
        )
    if settings.webhooks is not None:  # the outbox is written from now on
        store.webhook_urls = settings.webhooks.urls
    return store
