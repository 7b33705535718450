"""A NUL character in an event's data must not break the journal reads of its draft.

Events keep their data as JSON text, where a NUL in a string is the escape `\\u0000`. The
reads that look into that text (`{json:...}` tokens: `text_events_since`,
`reachable_conflict_fields`) parse it, and PostgreSQL's JSON parser refuses `\\u0000` when it
converts to `text`: one such event (a client's `fields` value, a conflict candidate) made those
reads fail for the draft forever, so its journal recovery never ran and `GET /api/stats`
answered 503. SQLite reads the same rows; both backends run here.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from pycrdt import Map

from bench.services import PostgresCluster
from crdt.journal import EventType, JournalEvent
from server.store.postgres import PostgresStore
from server.store.sqlite import SqliteStore
from tests.support.pycrdt_client import connect_synced, type_into
from tests.support.rest import as_user
from tests.support.server_process import ServerProcess

NUL_VALUE = "before\x00after"
NUL_FIELD = "odd\x00name"


def _event(kind: EventType, draft: str, version: int, data: dict[str, object]) -> JournalEvent:
    return JournalEvent(kind, draft, version, "alice", "s1", 7, 1.0, data)


async def test_reads_that_look_into_event_data_survive_a_nul_in_it(
    store: SqliteStore | PostgresStore,
) -> None:
    """Each read with a `{json:...}` token, on a draft whose events hold NULs in values, in a
    field name, and a backslash before "u0000" (which must not be taken for a NUL's escape)."""
    draft = f"nul-{uuid.uuid4().hex[:8]}"
    await store.create_draft(draft, "alice", now=1.0)
    text = {"field": "title", "kind": "text", "from_version": 2, "to_version": 3}
    events = [
        _event(
            EventType.FIELD_UPDATED,
            draft,
            1,
            {"field": "category", "kind": "value", "old": None, "new": NUL_VALUE},
        ),
        _event(EventType.FIELD_UPDATED, draft, 3, text),
        _event(
            EventType.CONFLICT_OPENED,
            draft,
            4,
            {"conflict_id": "c1", "field": "goal_amount", "candidates": [{"value": NUL_VALUE}]},
        ),
        _event(
            EventType.CONFLICT_OPENED,
            draft,
            5,
            {"conflict_id": "c2", "field": "goal_amount", "candidates": [{"value": 1}]},
        ),
        # A field name that itself holds a NUL: PostgreSQL's `text` cannot hold one.
        _event(
            EventType.CONFLICT_OPENED,
            draft,
            6,
            {"conflict_id": "c3", "field": NUL_FIELD, "candidates": []},
        ),
        # Escapes that only look like a NUL's: an escaped backslash before `u0000`.
        _event(
            EventType.CONFLICT_OPENED,
            draft,
            7,
            {"conflict_id": "c4", "field": "\\u0000", "candidates": []},
        ),
    ]
    await store.append_events(events)

    assert await store.text_events_since(draft, 1) == [("alice", text)]
    fields = await store.reachable_conflict_fields("alice")
    assert fields.pop("goal_amount") == 2
    assert fields.pop("\\u0000") == 1
    # The NUL-named field is counted; its name cannot be exact on PostgreSQL (U+FFFD there)
    # nor on SQLite (json_extract ends the text at the NUL).
    postgres = isinstance(store, PostgresStore)
    assert fields == ({"odd\ufffdname": 1} if postgres else {"odd": 1})
    # Reads that take the data whole keep the NUL.
    page = await store.events_page(draft, after=0, limit=10)
    assert page[0].data["new"] == NUL_VALUE
    assert page[2].data["candidates"] == [{"value": NUL_VALUE}]
    assert page[4].data["field"] == NUL_FIELD


async def test_a_nul_in_a_field_value_leaves_recovery_and_stats_working_on_postgres(
    tmp_path: Path, postgres: PostgresCluster
) -> None:
    """Through the real server: a pycrdt client writes a NUL into a `fields` value and types
    a title that the kill leaves as an open burst; after the restart, reading the events
    recovers that burst (`text_events_since`), and the stats count a conflict whose candidate
    holds a NUL (`reachable_conflict_fields`)."""
    url = postgres.new_database()
    server = ServerProcess(tmp_path / "data", "--store", url).start()
    draft = f"nul-{uuid.uuid4().hex[:8]}"
    try:
        editor = await connect_synced(server, draft, "alice")
        try:
            await editor.edit(
                lambda doc: doc.get("fields", type=Map).__setitem__("category", NUL_VALUE)
            )
            await editor.edit(type_into("hi"))
            await editor.flush()
            server.kill()  # the title's burst was never closed: recovery must journal it
        finally:
            await editor.disconnect()
        store = await PostgresStore.open(url)
        try:
            conflict = {
                "conflict_id": "c1",
                "field": "goal_amount",
                "candidates": [{"value": NUL_VALUE}],
            }
            await store.append_events([_event(EventType.CONFLICT_OPENED, draft, 1, conflict)])
        finally:
            await store.close()
        server.start()
        async with as_user(server, "alice") as api:
            answer = await api.get(f"/api/drafts/{draft}/events", params={"limit": 100})
            assert answer.status_code == 200, answer.text
            items = answer.json()["items"]
            assert any(e.get("new") == NUL_VALUE for e in items), items
            # The burst the kill left open, recovered before the read (`text_events_since`).
            titles = [(e["kind"], e["inserted"]) for e in items if e.get("field") == "title"]
            assert titles == [("text", 2)], server.log()
            stats = await api.get("/api/stats")
            assert stats.status_code == 200, stats.text
            assert stats.json()["conflictsByField"] == {"goal_amount": 1}
        assert "journal recovery deferred" not in server.log()
    finally:
        server.stop()
