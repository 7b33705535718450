"""Pay a fresh process's one-time costs at start, not in the first joiner's wait.

After a restart, the first client to open a draft waited ~20-60 ms longer than the next one
(measured on a 20,000-update draft whose own load takes ~1-3 ms): anyio imports its asyncio
backend on first use (the first WebSocket's lock; ~15 ms of imports), the store's first
statement parses the schema, and pycrdt's first doc is built. None of it depends on the
draft, so it is done once here, before the server accepts connections.
"""

from __future__ import annotations

import logging
import time

import anyio.lowlevel
from pycrdt import Doc, Text

from crdt.protocol import SyncStep2, encode_message
from server.store.api import Store

__all__ = ["warm_up"]

logger = logging.getLogger("draftsync.warmup")


async def warm_up(store: Store) -> None:
    """One trip to each layer a join goes through; no write (a full disk must not stop start)."""
    started = time.perf_counter()
    await anyio.lowlevel.checkpoint()  # imports anyio's backend
    await store.draft_exists("")  # the store's connection and its schema
    doc: Doc = Doc()
    doc.get("warm-up", type=Text).insert(0, "x")
    encode_message(SyncStep2(doc.get_update()))
    logger.debug("warmed up ms=%.1f", (time.perf_counter() - started) * 1000)
