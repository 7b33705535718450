"""Integers written through REST are stored exactly, or refused (422 naming the field).

Yjs holds a number as a float64, or an int64 as a BigInt (pycrdt writes an int as a float64 when
that float equals it, else as an int64). So every int in -2**63 .. 2**63 - 2 is stored exactly;
2**63 - 1 would be written as the float 2**63, and an int beyond 64 bits made pycrdt panic or
was taken as the nearest float: all changed silently before, all a 422 now.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.support.pycrdt_client import PycrdtClient, write_while_apart
from tests.support.rest import as_user, new_id
from tests.support.server_process import ServerProcess
from tests.support.waiting import eventually

CHANGED = [2**64, -(2**63) - 1, 2**63 - 1, 10**400]
EXACT = [3, 2**53 + 1, -(2**53) - 1, 2**63 - 2, -(2**63)]


@pytest.mark.parametrize("number", CHANGED, ids=["2**64", "-2**63-1", "2**63-1", "10**400"])
async def test_an_integer_yjs_cannot_hold_exactly_is_a_422_naming_its_field(
    server: ServerProcess, number: int
) -> None:
    draft = new_id("int")
    async with as_user(server, "alice") as api:
        body = {"id": draft, "fields": {"goal_amount": number}}
        answer = await api.post("/api/drafts", json=body)
        assert answer.status_code == 422, answer.text
        places = [problem["loc"] for problem in answer.json()["errors"]]
        assert places == ["fields.goal_amount"], answer.text
        assert "exactly" in answer.json()["detail"]
        assert (await api.get(f"/api/drafts/{draft}")).status_code == 404


@pytest.mark.parametrize("number", EXACT)
async def test_an_integer_within_what_yjs_holds_is_stored_exactly(
    server: ServerProcess, number: int
) -> None:
    async with as_user(server, "alice") as api:
        answer = await api.post("/api/drafts", json={"fields": {"goal_amount": number}})
        assert answer.status_code == 201, answer.text
        read = (await api.get(f"/api/drafts/{answer.json()['id']}")).json()
    assert read["state"]["fields"]["goal_amount"] == number


async def test_resolving_a_conflict_with_an_integer_past_64_bits_is_a_422(
    server: ServerProcess,
) -> None:
    """A candidate may be the float 2**64 (a Yjs number); the int 2**64 equals it in Python,
    and writing that int made pycrdt panic inside the room's transaction."""
    draft = new_id("int-conflict")
    token = server.token("alice")
    first = await PycrdtClient(server.ws_url, draft, token, client_id=100).connect()
    second = await PycrdtClient(server.ws_url, draft, token, client_id=200).connect()
    try:
        await write_while_apart(first, second, "goal_amount", 1.0, (float(2**64), 2.0))

        async with as_user(server, "alice") as api:

            async def one_conflict() -> bool:
                read = (await api.get(f"/api/drafts/{draft}")).json()
                return len(read["conflicts"]) == 1

            await eventually(one_conflict)
            (conflict_id,) = (await api.get(f"/api/drafts/{draft}")).json()["conflicts"]
            url = f"/api/drafts/{draft}/conflicts/{conflict_id}/resolve"
            huge = await api.post(url, json={"value": 2**64})
            assert huge.status_code == 422, huge.text
            assert [p["loc"] for p in huge.json()["errors"]] == ["value"]
            done = await api.post(url, json={"value": float(2**64)})
            assert done.status_code == 200, done.text
            read = (await api.get(f"/api/drafts/{draft}")).json()
        assert not read["conflicts"] and read["state"]["fields"]["goal_amount"] == float(2**64)
    finally:
        await asyncio.gather(first.disconnect(), second.disconnect())
