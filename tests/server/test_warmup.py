"""The start-up warm-up (server/sync/warmup.py) pays a cold join's one-time costs before the
server listens: it runs at start, on both backends, reads only, and leaves nothing behind that a
client would meet (no token or role remembered, no draft made). Its speed is a benchmark's
business (`bench relay` C1), not a test's."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from server.auth import TokenSigner
from server.config import Settings
from server.errors import InvalidToken
from server.identity.tokens import verifier_for
from server.store.postgres import PostgresStore
from server.store.sqlite import SqliteStore
from server.sync.warmup import warm_up
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


async def test_the_server_warms_up_before_it_accepts_connections(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, "--log-level", "debug").start()
    try:
        client = await connect_synced(server, "d", "alice")
        await client.disconnect()
        log = server.log()
        assert "warmed up" in log
        assert log.index("warmed up") < log.index("Application startup complete")
        assert log.index("warmed up") < log.index("connection open draft=d")
    finally:
        server.stop()
