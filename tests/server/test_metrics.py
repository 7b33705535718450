"""`GET /metrics`: Prometheus text format, parsed with prometheus_client's own parser.

Counters must move when stock Yjs clients edit, and no label may carry a draft id or a user
name (the endpoint is unauthenticated; design.md).
"""

from __future__ import annotations

import asyncio

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.node_client import NodeClient
from tests.support.rest import as_user, create_draft, new_id, scrape
from tests.support.server_process import ServerProcess
from tests.support.waiting import eventually

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

EXPECTED_FAMILIES = {
    "draftsync_connections": "gauge",
    "draftsync_connections_closed": "counter",
    "draftsync_rooms_loaded": "gauge",
    "draftsync_updates_received": "counter",
    "draftsync_updates_relayed": "counter",
    "draftsync_updates_stored": "counter",
    "draftsync_updates_dropped": "counter",
    "draftsync_bytes_received": "counter",
    "draftsync_bytes_sent": "counter",
    "draftsync_commit_batch_size": "histogram",
    "draftsync_commit_seconds": "histogram",
    "draftsync_commit_queue": "gauge",
    "draftsync_journal_lag": "gauge",
    "draftsync_http_requests": "counter",
}


async def samples(server: ServerProcess) -> Samples:
    text = await scrape(server)
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_parse_and_name_what_issue_7_lists(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.http_url) as anonymous:
        response = await anonymous.get("/metrics")  # no token needed
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {f.name: f.type for f in text_string_to_metric_families(response.text)}
    for name, kind in EXPECTED_FAMILIES.items():
        assert families.get(name) == kind, name


async def test_counters_move_when_clients_edit_and_labels_name_no_one(
    server: ServerProcess,
) -> None:
    draft_id = new_id("metrics")
    user = "metrics-user-secret-name"
    async with as_user(server, user) as owner:
        await create_draft(owner, id=draft_id)
        before = await samples(server)
        clients = [
            await NodeClient.start(server.ws_url, draft_id, server.token(user)) for _ in range(2)
        ]
        try:
            await asyncio.gather(*(c.call("wait_synced") for c in clients))
            during = await samples(server)
            assert value(during, "draftsync_connections") >= 2
            assert value(during, "draftsync_rooms_loaded") >= 1
            edits = 5
            # One at a time: edits that reach the server together are one run, one stored row.
            for i in range(edits):
                await clients[0].call("insert", field="title", index=0, text=f"w{i} ")

                async def relayed(count: int = i + 1) -> bool:
                    return len((await clients[1].text("title")).split()) == count

                await eventually(relayed)
            assert (await owner.get(f"/api/drafts/{draft_id}")).status_code == 200
            after = await samples(server)
        finally:
            await asyncio.gather(*(c.close() for c in clients))

    def moved(name: str, at_least: float = 1, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels) >= at_least

    assert moved("draftsync_updates_received_total", edits)
    assert moved("draftsync_updates_stored_total", edits)
    assert moved("draftsync_updates_relayed_total", 1)  # merged into fewer frames when queued
    assert moved("draftsync_bytes_received_total", edits * 3)
    assert moved("draftsync_bytes_sent_total", edits * 3)
    assert moved("draftsync_commit_batch_size_count")
    assert moved("draftsync_commit_seconds_count")
    route = "/api/drafts/{draft_id}"
    assert moved("draftsync_http_requests_total", method="GET", route=route, status="200")
    assert value(after, "draftsync_journal_lag") >= 0

    async def closes_counted() -> bool:
        now = await samples(server)
        closed = sum(
            v - value(before, name, **dict(labels))
            for (name, labels), v in now.items()
            if name == "draftsync_connections_closed_total"
        )
        return closed >= 2

    await eventually(closes_counted)

    final = await samples(server)
    for _name, labels in final:
        for _, label_value in labels:
            assert draft_id not in label_value
            assert user not in label_value
