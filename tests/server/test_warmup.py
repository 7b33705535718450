"""The start-up warm-up (server/sync/warmup.py) pays a cold join's one-time costs before the
server listens: it runs at start, on both backends, reads only, and leaves nothing behind that a
client would meet (no token or role remembered, no draft made). Its speed is a benchmark's
business (`bench relay` C1), not a test's."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from pycrdt import Doc, Text

from server.auth import TokenSigner
from server.config import Settings
from server.errors import InvalidToken
from server.identity.tokens import verifier_for
from server.service import Service
from server.store.postgres import PostgresStore
from server.store.records import UpdateRecord
from server.store.sqlite import SqliteStore
from server.sync.connection import Connection
from server.sync.warmup import warm_up
from server.sync.wsprotocol import warm_up_handshake
from tests.support.pycrdt_client import connect_synced
from tests.support.server_process import ServerProcess


async def test_the_warm_up_reads_and_remembers_nothing(
    store: SqliteStore | PostgresStore, tmp_path: Path
) -> None:
    tokens = verifier_for(Settings(data_dir=tmp_path, secret="s" * 40))
    await warm_up(store, tokens)
    await warm_up(store, tokens)  # twice: a restarted lifespan does it again
    assert not tokens.own._verified  # its throwaway token is not among the remembered
    if isinstance(store, SqliteStore):
        assert len(store._roles) == 0
    assert not await store.draft_exists("")
    assert await store.drafts_owned("warm-up") == 0
    assert await store.reachable_drafts("warm-up") == []
    # The store and the signer work as ever after it.
    assert await store.create_draft("d", "alice", now=time.time())
    role, state = await store.read_opening("d", "alice")
    assert role == "owner"
    assert state is not None and (state.snapshot, state.tail) == (None, [])
    token = tokens.issue("alice", ttl_seconds=60, now=time.time())
    assert tokens.claims(token).user == "alice"


def test_a_signer_warms_up_with_its_own_secret_and_keeps_refusing_others() -> None:
    signer = TokenSigner("one secret, long enough for HS256 " * 2)
    signer.warm_up()
    assert not signer._verified
    other = TokenSigner("another secret, long enough too " * 2)
    with pytest.raises(InvalidToken, match="invalid token"):
        signer.claims(other.issue("mallory", ttl_seconds=60, now=time.time()))
    with pytest.raises(InvalidToken, match="token expired"):
        signer.claims(signer.issue("alice", ttl_seconds=1, now=time.time() - 100))
    assert signer.claims(signer.issue("alice", ttl_seconds=60, now=time.time())).user == "alice"


def test_the_handshake_warm_up_makes_a_101_and_sends_nothing() -> None:
    """The handshake's warm-up runs websockets' own accept on a made-up request: the 101 it
    makes is a real one (RFC 6455's sample key and its accept value), without a Date header of
    its own (uvicorn's default headers bring the one), and the same every time."""
    response = warm_up_handshake()
    head, _, rest = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
    assert b"date:" not in head.lower()
    assert rest == b"\x82\x02"  # a binary frame's header, as the first frame's write
    assert warm_up_handshake(1 << 20) == response


class _Nowhere:
    """A socket for a connection that sends nothing anyone reads."""

    async def send_bytes(self, data: bytes) -> None:
        pass

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        pass


async def test_the_room_warm_up_registers_nothing_and_a_preload_stays_usable(
    tmp_path: Path,
) -> None:
    """The registry's warm-up opens and closes a room of no draft: no room is left, no draft
    made, and no room counted as forgotten, so a joiner's preload read before it still opens
    the room (the one-store-call cold join). Proof that it was used: a row written outside
    after the read is not in the room."""
    settings = Settings(data_dir=tmp_path, secret="test")
    store = await SqliteStore.open(settings.database_path)
    service = Service(settings, store)
    service.start()
    try:
        await store.create_draft("d", "alice", now=time.time())
        doc = Doc()
        doc.get("title", type=Text).insert(0, "one")
        first = doc.get_update()
        await store.append_updates([UpdateRecord("d", 1, first, "alice", "s", 1, 0.0)])
        preload = await service.rooms.preload("d", "alice")
        assert preload is not None and preload.state is not None
        outside = sqlite3.connect(settings.database_path)
        with outside:
            state = doc.get_state()
            doc.get("title", type=Text).insert(3, "two")
            outside.execute(
                "INSERT INTO updates (draft_id, version, data, user, session, client_id,"
                " created_at) VALUES ('d', 2, ?, 'x', 's', 1, 0)",
                (doc.get_update(state),),
            )
        outside.close()
        service.rooms.warm_up(first)
        service.rooms.warm_up(first)  # twice: nothing of the first is left to meet
        assert len(service.rooms) == 0 and service.rooms.get("") is None
        assert not await store.draft_exists("")
        conn = Connection(
            _Nowhere(), user="alice", session="s", can_write=True, max_messages=9, max_bytes=1 << 20
        )
        room = await service.rooms.join("d", conn, preload)
        assert room.version == 1  # opened from the preload
        assert str(room.core.doc.get("title", type=Text)) == "one"
    finally:
        await service.shutdown()
        await service.stop()


async def test_the_server_warms_up_before_it_accepts_connections(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, "--log-level", "debug").start()
    try:
        client = await connect_synced(server, "d", "alice")
        await client.disconnect()
        log = server.log()
        assert "warmed up" in log
        assert "parts=token,store,opening,rebuild,handshake,room" in log
        assert log.index("warmed up") < log.index("Application startup complete")
        assert log.index("warmed up") < log.index("connection open draft=d")
    finally:
        server.stop()
