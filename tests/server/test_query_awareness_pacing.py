"""A client cannot turn QueryAwareness into a flood (server/sync/querypacing.py).

Each query is answered with the room's whole awareness table: four bytes asked, the table
sent (~14 KB here, ~143 KB at 1,500 cursors). A connection is answered at once after a quiet
interval, and the queries that follow within it get one answer, made when the interval ends.
The server runs in this process (tests/support/in_process_server.py) so that the test can
compare the answers with the table the room holds; the clients are frame-level WebSocket
clients on loopback. Answers are counted, never timed: the bound allows one answer an
interval of the time the flood took.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

from crdt.awareness import AwarenessEntry, decode_awareness_update, encode_awareness_update
from crdt.protocol import Awareness, QueryAwareness, encode_message
from server.auth import TokenSigner
from server.sync.querypacing import QUERY_INTERVAL, QueryPacer
from tests.support.in_process_server import serving_in_process, synced_client, until
from tests.support.raw_client import RawClient
from tests.support.server_process import SECRET

CURSORS = 300  # states one crowd connection holds (its limits raised for it)
QUERIES = 200  # what the hostile client sends, in two halves
TIMEOUT = 20


def _awareness(entries: list[tuple[int, int, Any]]) -> bytes:
    update = encode_awareness_update(
        AwarenessEntry(client_id, clock, json.dumps(state)) for client_id, clock, state in entries
    )
    return encode_message(Awareness(update))


def _tables(client: RawClient) -> list[tuple[int, dict[int, Any]]]:
    """The whole tables `client` got (the join's and the answers): index and states."""
    found = []
    for index, message in enumerate(client.messages):
        if isinstance(message, Awareness):
            entries = decode_awareness_update(message.update)
            if len(entries) >= CURSORS:
                found.append((index, {e.client_id: json.loads(e.state_json) for e in entries}))
    return found


async def test_a_flood_of_queries_gets_one_answer_an_interval_the_last_one_current(
    tmp_path: Path,
) -> None:
    token = TokenSigner(SECRET).issue("alice", ttl_seconds=3600, now=time.time())
    draft = f"aw-{uuid.uuid4().hex[:8]}"
    async with serving_in_process(
        tmp_path, awareness_max_states=CURSORS, awareness_max_bytes=256 * 1024
    ) as served:
        crowd = await synced_client(served.ws_url, draft, token)
        cursors = [(n, 1, {"user": {"name": f"user {n}"}, "cursor": n}) for n in range(CURSORS)]
        await crowd.send(_awareness(cursors))
        room = served.service.rooms.get(draft)
        assert room is not None
        await until(lambda: len(room.presence) == CURSORS, "the crowd's cursors are held")
        hostile = await synced_client(served.ws_url, draft, token)
        await hostile.wait_for(lambda: len(_tables(hostile)) == 1, timeout=TIMEOUT)  # joined
        joined_at = len(hostile.messages)
        joined_bytes = sum(len(frame) for frame in hostile.frames)
        started = time.monotonic()

        query = encode_message(QueryAwareness())
        hostile.send_together([query] * (QUERIES // 2))
        # A cursor moves while the flood's answer may be pending: the answer must show it.
        await crowd.send(_awareness([(0, 2, {"user": {"name": "user 0"}, "cursor": "moved"})]))
        await hostile.next_message(
            Awareness,
            after=joined_at,
            where=lambda m: any(e.client_id == 0 and e.clock == 2 for e in _entries(m)),
            timeout=TIMEOUT,
        )
        hostile.send_together([query] * (QUERIES // 2))
        # Another connection's first query is its own: answered, whatever the flood's pacing.
        honest = await synced_client(served.ws_url, draft, token)
        await honest.wait_for(lambda: len(_tables(honest)) == 1, timeout=TIMEOUT)
        await honest.send(query)
        await honest.wait_for(lambda: len(_tables(honest)) == 2, timeout=TIMEOUT)

        def answered_current() -> bool:
            answers = _tables(hostile)[1:]
            return bool(answers) and answers[-1][1][0]["cursor"] == "moved"

        await hostile.wait_for(answered_current, timeout=TIMEOUT)
        elapsed = time.monotonic() - started
        answers = _tables(hostile)[1:]
        sent = sum(len(frame) for frame in hostile.frames) - joined_bytes
        print(f"{QUERIES} queries: {len(answers)} answers, {sent} bytes in {elapsed:.2f} s")
        assert hostile.close_code is None
        assert len(answers) <= 2 + elapsed / QUERY_INTERVAL, (len(answers), elapsed)
        full = room.presence.full_update()
        assert full is not None
        held = {e.client_id: json.loads(e.state_json) for e in decode_awareness_update(full)}
        assert answers[-1][1] == held  # the last answer is the table as the room holds it
        for client in (crowd, hostile, honest):
            await client.close()


def _entries(message: Awareness) -> list[AwarenessEntry]:
    return decode_awareness_update(message.update)


async def test_a_connection_that_leaves_with_an_answer_due_leaves_no_timer(
    tmp_path: Path,
) -> None:
    token = TokenSigner(SECRET).issue("alice", ttl_seconds=3600, now=time.time())
    draft = f"aw-{uuid.uuid4().hex[:8]}"
    async with serving_in_process(tmp_path) as served:
        crowd = await synced_client(served.ws_url, draft, token)
        await crowd.send(_awareness([(1, 1, {"cursor": 1})]))
        hostile = await synced_client(served.ws_url, draft, token)
        room = served.service.rooms.get(draft)
        assert room is not None
        hostile.send_together([encode_message(QueryAwareness())] * 20)
        await until(lambda: any(q.pending for q in room._queries.values()), "an answer is due")
        (queries,) = room._queries.values()
        await hostile.close()
        await until(lambda: len(room.connections) == 1, "the hostile client left")
        assert not room._queries and not queries.pending  # its timer cancelled, not leaked
        await crowd.close()


async def test_the_pacer_answers_at_once_then_once_at_the_intervals_end() -> None:
    answered: list[float] = []
    done = asyncio.Event()
    loop = asyncio.get_running_loop()

    def answer() -> None:
        answered.append(loop.time())
        done.set()

    pacer = QueryPacer(answer, interval=0.05)
    pacer.ask()
    assert len(answered) == 1 and not pacer.pending  # a lone query is not delayed
    done.clear()
    for _ in range(100):
        pacer.ask()
    assert len(answered) == 1 and pacer.pending
    await asyncio.wait_for(done.wait(), 5)
    assert len(answered) == 2 and not pacer.pending
    pacer.ask()
    pacer.ask()
    assert pacer.pending
    timer = pacer._timer
    pacer.cancel()
    assert not pacer.pending and timer is not None and timer.cancelled()
    assert len(answered) == 2
