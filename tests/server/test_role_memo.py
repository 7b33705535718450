"""The SQLite store answers roles it read lately from memory (server/store/role_memo.py), and
stays exact: a role change, a removal or a deletion is what the very next read returns, also
when reads and changes are under way at the same moment (issue 24 point 2)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from server.store.role_memo import RoleMemo
from server.store.sqlite import SqliteStore


async def test_each_change_is_what_the_next_read_returns(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "draftsync.db")
    try:
        assert await store.create_draft("d", "alice", now=1.0)
        assert await store.create_draft("other", "alice", now=1.0)
        assert await store.role_of("d", "bob") is None
        assert await store.set_role("d", "bob", "editor")
        assert await store.set_role("other", "bob", "viewer")
        for role in ("editor", "viewer", "owner", None, "viewer", "editor"):
            if role is None:
                assert await store.set_role("d", "bob", None)
            else:
                assert await store.set_role("d", "bob", role)
            assert await store.role_of("d", "bob") == role
            assert await store.role_of("d", "bob") == role  # and again, from memory
        # A change refused (the last owner cannot leave) leaves the role as it was.
        assert await store.set_role("d", "bob", None)
        assert not await store.set_role("d", "alice", None)
        assert await store.role_of("d", "alice") == "owner"
        # Deleting forgets every role on that draft, and no other draft's.
        assert await store.set_role("d", "bob", "editor")
        assert await store.role_of("d", "bob") == "editor"
        assert await store.tombstone("d", now=2.0)
        assert await store.role_of("d", "bob") is None
        assert await store.role_of("d", "alice") is None
        assert await store.role_of("other", "bob") == "viewer"
        assert await store.role_of("other", "alice") == "owner"
        # A tombstoned draft gets no new access (it has no owner: refused), remembered or not.
        assert not await store.set_role("d", "bob", "editor")
        assert await store.role_of("d", "bob") is None
    finally:
        await store.close()


async def test_reads_racing_changes_never_return_a_role_older_than_the_last_change(
    tmp_path: Path,
) -> None:
    """Readers run beside a writer that changes bob's role 200 times; every read that starts
    after a change has returned sees that change or a later one."""
    store = await SqliteStore.open(tmp_path / "draftsync.db")
    try:
        assert await store.create_draft("d", "alice", now=1.0)
        rng = random.Random(24)
        roles = ("viewer", "editor", "owner", None)
        done: list[str | None] = []  # the roles set so far, in order
        stale: list[tuple[int, str | None]] = []

        async def writer() -> None:
            for _ in range(200):
                role = rng.choice(roles)
                assert await store.set_role("d", "bob", role)
                done.append(role)
                await asyncio.sleep(0)

        async def reader() -> None:
            for _ in range(400):
                changes = len(done)
                role = await store.role_of("d", "bob")
                # Set since this read began (or the last one before it), never earlier.
                allowed = set(done[changes - 1 :]) if changes else {None}
                if role not in allowed:
                    stale.append((changes, role))
                await asyncio.sleep(0)

        async with asyncio.timeout(60):
            await asyncio.gather(writer(), *(reader() for _ in range(4)))
        assert stale == []
        assert await store.role_of("d", "bob") == done[-1]
    finally:
        await store.close()


def test_the_memo_is_bounded_and_forgets_by_user_and_by_draft() -> None:
    memo = RoleMemo(limit=3)
    memo.remember("a", "u1", "owner")
    memo.remember("a", "u2", "editor")
    memo.remember("b", "u1", "viewer")
    memo.remember("a", "u2", "viewer")  # a change of a remembered pair takes no more room
    assert len(memo) == 3
    memo.remember("c", "u1", "owner")  # past the limit: the oldest goes
    assert memo.get("a", "u1") is None
    assert (memo.get("a", "u2"), memo.get("b", "u1"), memo.get("c", "u1")) == (
        "viewer",
        "viewer",
        "owner",
    )
    memo.forget("b", "u1")
    assert memo.get("b", "u1") is None
    memo.remember("c", "u2", "editor")
    memo.forget_draft("c")
    assert (memo.get("c", "u1"), memo.get("c", "u2"), memo.get("a", "u2")) == (
        None,
        None,
        "viewer",
    )


@pytest.mark.parametrize("limit", [1, 2])
def test_a_tiny_memo_still_answers_the_last_read(limit: int) -> None:
    memo = RoleMemo(limit=limit)
    for index in range(10):
        memo.remember("d", f"u{index}", "editor")
        assert memo.get("d", f"u{index}") == "editor"
        assert len(memo) <= limit
