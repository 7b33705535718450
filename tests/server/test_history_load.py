"""What one user's history requests can cost everyone else: past versions, diffs and restores.

Each rebuilds a version (the nearest snapshot plus the log after it), reads or compares it and
encodes its answer, on a worker thread (`server.http.history.in_worker`); at most
`--max-rebuilds` run at once server-wide (over it: 503) and `--max-rebuilds-per-user` for one
user (over it: 429), both with Retry-After (server/admission/rebuilds.py).

The rebuilds are held open at the `rebuild` hold point (server/faults.py: the worker threads
wait there once their answer is made), so the test needs no timing: while they are held, a
rebuild over a cap is refused, and another draft's clients relay as ever, which they could not
if the work held the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from pycrdt import Doc, Text

from crdt.protocol import Update, encode_message
from server import faults
from server.admission.rebuilds import RebuildSlots
from server.auth import TokenSigner
from server.errors import CapReached, RateLimited
from tests.support.in_process_server import serving_in_process, synced_client, until
from tests.support.server_process import SECRET

WAIT = 20.0  # seconds any one answer may take before the test fails


def _token(user: str) -> str:
    return TokenSigner(SECRET).issue(user, ttl_seconds=3600, now=time.time())


def _api(ws_url: str, user: str) -> httpx.AsyncClient:
    port = ws_url.split(":")[2].split("/")[0]
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {_token(user)}"},
        timeout=WAIT,
    )


async def _own_draft(api: httpx.AsyncClient) -> str:
    answer = await api.post("/api/drafts", json={"title": "a version worth keeping"})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


@contextlib.asynccontextmanager
async def _released() -> AsyncIterator[None]:
    """Let held rebuilds go on the way out, before the server stops (it waits for them)."""
    try:
        yield
    finally:
        faults.release("rebuild")


def _typed(text: str) -> bytes:
    doc: Doc = Doc()
    doc.get("title", type=Text).insert(0, text)
    return doc.get_update()


async def test_held_rebuilds_cap_the_next_ones_and_other_drafts_keep_relaying(
    tmp_path: Path,
) -> None:
    """Alice holds her two rebuilds and Bob his two (the server's four): Alice's third is 429,
    Carol's first 503, each with Retry-After; meanwhile another draft's edit is relayed.
    Once let go, the held ones answer 200 and Carol's retry is served."""
    calm = f"calm-{uuid.uuid4().hex[:8]}"
    held: list[asyncio.Task[httpx.Response]] = []
    faults.hold("rebuild")
    try:
        async with serving_in_process(tmp_path, max_rebuilds=4, max_rebuilds_per_user=2) as served:
            alice, bob, carol = (_api(served.ws_url, u) for u in ("alice", "bob", "carol"))
            async with alice, bob, carol, _released():
                drafts = {api: await _own_draft(api) for api in (alice, bob, carol)}
                a, b, c = drafts[alice], drafts[bob], drafts[carol]
                held = [
                    asyncio.create_task(alice.get(f"/api/drafts/{a}/versions/1")),
                    asyncio.create_task(alice.get(f"/api/drafts/{a}/diff?from=0")),
                    asyncio.create_task(bob.post(f"/api/drafts/{b}/restore", json={"version": 0})),
                    asyncio.create_task(bob.get(f"/api/drafts/{b}/versions/0")),
                ]
                await until(lambda: faults.paused("rebuild") == 4, "four rebuilds are held")

                over_user = await asyncio.wait_for(alice.get(f"/api/drafts/{a}/versions/1"), WAIT)
                assert over_user.status_code == 429, over_user.text
                assert over_user.headers["retry-after"] == "1"
                assert "versions rebuilt at once" in over_user.json()["detail"]
                over_server = await asyncio.wait_for(
                    carol.get(f"/api/drafts/{c}/diff?from=0"), WAIT
                )
                assert over_server.status_code == 503, over_server.text
                assert over_server.headers["retry-after"] == "1"

                # Another draft's edit is relayed while the four are under way.
                writer = await synced_client(served.ws_url, calm, _token("dana"))
                reader = await synced_client(served.ws_url, calm, _token("dana"))
                await writer.send(encode_message(Update(_typed("still here"))))
                await reader.next_message(Update, timeout=WAIT)
                assert faults.paused("rebuild") == 4  # and they were held all along

                faults.release("rebuild")
                answers = await asyncio.wait_for(asyncio.gather(*held), WAIT)
                assert [answer.status_code for answer in answers] == [200] * 4, [
                    answer.text for answer in answers
                ]
                version = answers[0].json()
                assert version["state"]["texts"]["title"] == "a version worth keeping"
                retried = await carol.get(f"/api/drafts/{c}/diff?from=0")
                assert retried.status_code == 200, retried.text
                assert served.service.rebuilds.running == 0
                for client in (writer, reader):
                    await client.close()
    finally:
        faults.release("rebuild")
        for task in held:
            task.cancel()


def test_a_slot_is_given_back_when_its_rebuild_fails() -> None:
    slots = RebuildSlots(max_running=2, max_per_user=1)
    for _ in range(3):
        try:
            with slots.slot("alice"):
                raise ValueError("the rebuild failed")
        except ValueError:
            pass
    with slots.slot("alice"), slots.slot("bob"):
        assert slots.running == 2
        for user, refused in (("alice", RateLimited), ("carol", CapReached)):
            try:
                with slots.slot(user):
                    raise AssertionError("over a cap, yet admitted")
            except CapReached as error:
                assert type(error) is refused
    assert slots.running == 0
