"""`Store.users_between`: who wrote a range of versions (a `draft.changed` event's users), read
without the updates themselves, on both backends: the same answer as the log read whole."""

from __future__ import annotations

import time

from server.store.api import Store
from server.store.records import UpdateRecord

USERS = ["carol", "Bob", "alice", "carol", "émile", "alice", "Zed"]


async def test_the_writers_of_a_range_are_those_of_its_updates(store: Store) -> None:
    assert await store.create_draft("d", "alice", now=time.time())
    await store.append_updates(
        [
            UpdateRecord("d", version, b"u%d" % version, user, "s", 1, time.time())
            for version, user in enumerate(USERS, start=1)
        ]
    )
    for after in range(len(USERS) + 1):
        for upto in range(after, len(USERS) + 2):
            logged = await store.updates_with_origin("d", after, upto)
            assert await store.users_between("d", after, upto) == sorted(
                {update.user for update in logged}
            ), (after, upto)
    assert await store.users_between("unknown", 0, 10) == []
