"""A PostgreSQL draft's versions lock: the one lock every write of a draft's numbered rows takes.

An advisory lock (key 0 of the draft's hash), held to the transaction's end. The group commit
numbers a draft's versions under it (several instances commit to one draft), the purge of a
deleted draft takes it so no commit stores content after it, and every transaction that adds
rows of a draft to `events` or `webhook_outbox` takes it before its first insert: their ids
come from a sequence at INSERT and transactions commit in any order, so without it a reader
paging a draft with `id > :after` (EVENTS_PAGE, DELIVERIES_PAGE) could pass an id that commits
later and never see it. Under the lock a draft's ids commit in id order. (SQLite has one
writer at a time.) Its own module: the store and its webhook half both take it.
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

__all__ = ["lock_drafts"]

_VERSIONS_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"


async def lock_drafts(db: asyncpg.Connection, draft_ids: Iterable[str]) -> None:
    """Take the drafts' versions locks in `db`'s transaction, in draft order: two
    transactions locking some of the same drafts cannot deadlock."""
    for draft_id in sorted(set(draft_ids)):
        await db.execute(_VERSIONS_LOCK, draft_id)
