"""Pay a fresh process's one-time costs at start, not in the first joiner's wait.

After a restart, the first client to open a draft waited ~20-60 ms longer than the next one
(measured on a 20,000-update draft whose own load takes ~1-3 ms): anyio imports its asyncio
backend on first use (the first WebSocket's lock; ~15 ms of imports), the store's first
statement parses the schema, and pycrdt's first doc is built. None of it depends on the
draft, so it is done once here, before the server accepts connections.

Then the smaller ones a cold join (`bench relay` C1) still paid: the first token verified took
~0.4 ms against ~0.08 ms for the next, back to back (PyJWT's first HMAC key check reaches
`cryptography`'s parsers and OpenSSL, and its code runs cold: `TokenSigner.warm_up`); the
store's opening read (`Store.read_opening`: SQLite's reader connection parses the schema on its
first statement); and a rebuild from a snapshot and a tail, as a room's load does. Then the
WebSocket handshake's own code (`warm_up_handshake`: the request, websockets' checks, accept key
and 101 response; ~0.2-0.45 ms of the first joiner's time) and a room opened, answering a
joiner's sync step 1, and closed (`RoomRegistry.warm_up`: ~0.05-0.1 ms). (A server
that sat idle for a fraction of a second runs every path several times slower at first, the
CPU's caches taken by other processes: no warm-up helps that; docs/performance-notes.md.)
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

import anyio.lowlevel
from pycrdt import Doc, Text

from crdt.history import rebuild
from crdt.protocol import SyncStep2, encode_message
from server.store.api import Store
from server.sync.wsprotocol import warm_up_handshake

__all__ = ["RoomsWarmUp", "TokenWarmUp", "warm_up"]

logger = logging.getLogger("draftsync.warmup")


class TokenWarmUp(Protocol):
    """What verifies the tokens (`TokenVerifier`): it can verify one of its own once."""

    def warm_up(self) -> None: ...


class RoomsWarmUp(Protocol):
    """What loads the rooms (`RoomRegistry`): it can open and close a room of no draft."""

    def warm_up(self, snapshot: bytes) -> None: ...


async def warm_up(store: Store, tokens: TokenWarmUp, rooms: RoomsWarmUp | None = None) -> None:
    """One trip to each layer a join goes through; no write (a full disk must not stop start)
    and nothing remembered (no token, no role: the memos hold what clients presented)."""
    started = time.perf_counter()
    await anyio.lowlevel.checkpoint()  # imports anyio's backend
    tokens.warm_up()
    await store.draft_exists("")  # the store's connection and its schema
    await store.read_opening("", "")  # a cold room's read (SQLite: its own connection)
    doc: Doc = Doc()
    doc.get("warm-up", type=Text).insert(0, "x")
    update = doc.get_update()
    rebuild(update, [update])
    encode_message(SyncStep2(update))
    parts = "token,store,opening,rebuild,handshake"
    warm_up_handshake()
    if rooms is not None:
        rooms.warm_up(update)
        parts += ",room"
    logger.debug("warmed up ms=%.1f parts=%s", (time.perf_counter() - started) * 1000, parts)
