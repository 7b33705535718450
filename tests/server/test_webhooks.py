"""Webhooks against a real HTTP receiver on loopback: every event type, signed as Standard
Webhooks does (checked with `standardwebhooks`' own `Webhook.verify`), retries listed over
REST, a dead receiver that never slows a room, and `kill -9` between commit and delivery."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pycrdt import Doc, Map, Text

from bench.services import PostgresCluster
from tests.support.outbox_reader import stored_outbox
from tests.support.postgres import BACKENDS, store_flags
from tests.support.pycrdt_client import PycrdtClient, connect_synced
from tests.support.rest import as_user, create_draft, new_id, scrape
from tests.support.server_process import REPO, ServerProcess, start_together
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


def append_title(doc: Doc, text: str) -> None:
    title = doc.get("title", type=Text)
    title.insert(len(title), text)


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
    # Bob connects once he has access (before it, his socket is refused with 4403).
    first = await PycrdtClient(hooked.ws_url, draft, hooked.token("alice"), client_id=100).connect()
    async with as_user(hooked, "alice") as api:
        shared = await api.put(
            f"/api/drafts/{draft}/access", json={"user": "bob", "role": "editor"}
        )
        assert shared.status_code == 200
    (access,) = await arrived(receiver, draft, "access.changed")
    assert access["data"] == {"draftId": draft, "user": "bob", "role": "editor"}
    try:
        await first.disconnect()
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


async def test_text_is_sent_only_when_the_operator_opts_in(tmp_path: Path) -> None:
    receiver = WebhookReceiver().start()
    args = ["--webhook-include-text", "--webhook-debounce", "2"]
    server = hooked_server(tmp_path, receiver.url, *args).start()
    try:
        draft = new_id("text")
        editor = await connect_synced(server, draft, "carol")
        for letter in "Hello":  # five versions, each committed before the next is typed
            await editor.edit(lambda d, x=letter: append_title(d, x))
            await editor.flush()
        await editor.disconnect()
        (created,) = await arrived(receiver, draft, "draft.created")
        assert created["data"]["version"] == 0  # created by connecting

        async def all_announced() -> bool:
            events = of_draft(receiver, draft, "draft.changed")
            return bool(events) and events[-1]["data"]["toVersion"] == 5

        await eventually(all_announced, timeout=20)
        changed = of_draft(receiver, draft, "draft.changed")
        # Debounced: fewer events than versions, their ranges contiguous from 1 to 5.
        ranges = [(e["data"]["fromVersion"], e["data"]["toVersion"]) for e in changed]
        assert len(changed) < 5 and ranges[0][0] == 1
        assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(ranges))
        assert changed[-1]["data"]["texts"]["title"] == "Hello"
        assert changed[-1]["data"]["users"] == ["carol"]
    finally:
        server.stop()
        receiver.stop()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_failed_attempts_are_retried_and_listed_over_rest(
    tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    receiver = WebhookReceiver(fail_first=2).start()
    flags = store_flags(request, backend)
    server = hooked_server(tmp_path, receiver.url, *flags).start()
    try:
        draft = new_id("retry")
        async with as_user(server, "alice") as api:
            await create_draft(api, id=draft)
            await arrived(receiver, draft, "draft.created")
            assert len(receiver.refused) == 2
            # The same event each time: one webhook-id, signed anew per attempt.
            assert {r.headers["webhook-id"] for r in receiver.refused} == {
                receiver.received[-1].headers["webhook-id"]
            }

            async def listed_delivered() -> bool:
                answer = await api.get(f"/api/drafts/{draft}/webhooks")
                assert answer.status_code == 200, answer.text
                page = answer.json()
                return page["items"][0]["status"] == "delivered"

            await eventually(listed_delivered)
            page = (await api.get(f"/api/drafts/{draft}/webhooks")).json()
            (delivery,) = page["items"]
            assert page["next"] is None
            assert delivery["type"] == "draft.created" and delivery["url"] == receiver.url
            assert delivery["attempts"] == 3 and delivery["lastError"] is None
            assert delivery["eventId"] == receiver.received[-1].headers["webhook-id"]
            assert [a["statusCode"] for a in delivery["attemptLog"]] == [500, 500, 204]
            assert delivery["attemptLog"][0]["error"] == "HTTP 500"
            assert delivery["payload"]["data"]["draftId"] == draft

            # Paging, and bad queries.
            second = await api.put(
                f"/api/drafts/{draft}/access", json={"user": "bob", "role": "viewer"}
            )
            assert second.status_code == 200
            first_page = (await api.get(f"/api/drafts/{draft}/webhooks?limit=1")).json()
            assert len(first_page["items"]) == 1 and first_page["next"] == delivery["id"]
            rest = await api.get(f"/api/drafts/{draft}/webhooks?after={first_page['next']}")
            assert [d["type"] for d in rest.json()["items"]] == ["access.changed"]
            for bad in ("limit=0", "limit=201", "after=-1", "limit=x"):
                answer = await api.get(f"/api/drafts/{draft}/webhooks?{bad}")
                assert answer.status_code == 400, bad
        # Owners only: a viewer is refused, a stranger does not learn the draft exists.
        async with as_user(server, "bob") as api:
            assert (await api.get(f"/api/drafts/{draft}/webhooks")).status_code == 403
        async with as_user(server, "mallory") as api:
            assert (await api.get(f"/api/drafts/{draft}/webhooks")).status_code == 404
        async with as_user(server, None) as api:
            assert (await api.get(f"/api/drafts/{draft}/webhooks")).status_code == 401
    finally:
        server.stop()
        receiver.stop()


async def test_a_dead_receiver_fails_after_the_bound_while_rooms_keep_committing(
    tmp_path: Path,
) -> None:
    # A receiver that accepts and never answers: every attempt ends at the timeout.
    receiver = WebhookReceiver(hang=True).start()
    args = ["--webhook-timeout", "0.5", "--webhook-max-attempts", "3"]
    server = hooked_server(tmp_path, receiver.url, *args).start()
    try:
        draft = new_id("dead")
        editor = await connect_synced(server, draft, "alice")
        async with as_user(server, "alice") as api:

            async def status() -> str:
                answer = await api.get(f"/api/drafts/{draft}/webhooks")
                assert answer.status_code == 200, answer.text
                page = answer.json()
                return str(page["items"][0]["status"]) if page["items"] else "none"

            # Writes are committed and acknowledged while deliveries hang, one after another.
            typed = 0
            while await status() != "failed":
                assert typed < 2000, "the delivery never failed"
                await editor.edit(lambda d: d.get("title", type=Text).insert(0, "x"))
                await editor.flush()
                typed += 1
                await asyncio.sleep(0.05)  # under the per-user REST rate (50 a second)
            page = (await api.get(f"/api/drafts/{draft}/webhooks")).json()
            created = page["items"][0]
            assert created["type"] == "draft.created" and created["attempts"] == 3
            assert [a["statusCode"] for a in created["attemptLog"]] == [None, None, None]
            assert all("Timeout" in a["error"] for a in created["attemptLog"])
            assert typed >= 2  # commits went on during the attempts
            version = (await api.get(f"/api/drafts/{draft}")).json()["version"]
            assert version == typed
        await editor.disconnect()
    finally:
        server.stop()
        receiver.stop()


async def test_a_receiver_answering_a_byte_at_a_time_is_cut_off_at_the_timeout(
    tmp_path: Path,
) -> None:
    # Each read gets a byte within 0.1 s, far under httpx's per-read timeout, but the answer
    # never ends: the attempt must still end at --webhook-timeout, and its lease must not run
    # out under it (the same event would then be claimed and sent again, alongside).
    receiver = WebhookReceiver(trickle=True).start()
    args = ["--webhook-timeout", "0.5", "--webhook-max-attempts", "1"]
    server = hooked_server(tmp_path, receiver.url, *args).start()
    try:
        draft = new_id("trickle")
        async with as_user(server, "alice") as api:
            await create_draft(api, id=draft)

            async def failed() -> bool:
                answer = await api.get(f"/api/drafts/{draft}/webhooks")
                assert answer.status_code == 200, answer.text
                items = answer.json()["items"]
                return bool(items) and items[0]["status"] == "failed"

            await eventually(failed, timeout=20)
            (delivery,) = (await api.get(f"/api/drafts/{draft}/webhooks")).json()["items"]
            (attempt,) = delivery["attemptLog"]
            assert attempt["statusCode"] is None and "Timeout" in attempt["error"], attempt
            assert len(receiver.trickled) == 1 and receiver.most_open == 1
    finally:
        server.stop()
        receiver.stop()


async def test_a_receiver_that_hangs_does_not_hold_up_another_receiver_s_events(
    tmp_path: Path,
) -> None:
    # `hung` accepts each request and answers nothing for 30 s (under the timeout): its
    # deliveries hold their slots the whole time. `healthy` answers at once, and must get
    # every event meanwhile, not only those that found a slot before `hung` held them all.
    hung = WebhookReceiver(hang=True).start()
    healthy = WebhookReceiver().start()
    args = ["--webhook", healthy.url, "--webhook-timeout", "60"]
    server = hooked_server(tmp_path, hung.url, *args).start()
    try:
        drafts = [new_id("busy") for _ in range(24)]
        for i, draft in enumerate(drafts):
            async with as_user(server, f"writer{i % 4}") as api:  # under the per-user rate
                await create_draft(api, id=draft)

        async def all_arrived() -> bool:
            got = {p["data"]["draftId"] for p in healthy.events("draft.created")}
            return got >= set(drafts)

        await eventually(all_arrived, timeout=25)  # before `hung` gives up its first request
    finally:
        server.stop()
        hung.stop()
        healthy.stop()


async def test_the_listing_does_not_show_credentials_in_the_operator_s_url(
    tmp_path: Path,
) -> None:
    # Any user who creates a draft owns it and may list its deliveries; the URL's password
    # and query values are the operator's secrets (a receiver's basic auth, a `?token=`).
    receiver = WebhookReceiver().start()
    url = f"http://hooks:pa55word@127.0.0.1:{receiver.port}/hooks?token=t0ken&v=2"
    server = hooked_server(tmp_path, url).start()
    try:
        draft = new_id("creds")
        async with as_user(server, "mallory") as api:
            await create_draft(api, id=draft)
            await arrived(receiver, draft, "draft.created")
            (delivery,) = (await api.get(f"/api/drafts/{draft}/webhooks")).json()["items"]
            assert delivery["status"] == "delivered"
            shown = delivery["url"]
            assert "pa55word" not in shown and "t0ken" not in shown, shown
            host = f"127.0.0.1:{receiver.port}"
            assert shown == f"http://hooks:[redacted]@{host}/hooks?token=[redacted]&v=[redacted]"
    finally:
        server.stop()
        receiver.stop()


async def test_deliveries_to_a_url_no_longer_configured_are_marked_failed(
    tmp_path: Path,
) -> None:
    gone = WebhookReceiver()  # never started: each attempt is refused, and retried
    kept = WebhookReceiver().start()
    draft = new_id("gone")
    server = hooked_server(tmp_path, gone.url, "--webhook-max-attempts", "1000").start()
    try:
        async with as_user(server, "alice") as api:
            await create_draft(api, id=draft)

            async def tried() -> bool:
                items = (await api.get(f"/api/drafts/{draft}/webhooks")).json()["items"]
                return bool(items) and items[0]["attempts"] >= 1

            await eventually(tried)
    finally:
        server.stop()
    server = hooked_server(tmp_path, kept.url).start()  # the same store, another URL
    try:
        async with as_user(server, "alice") as api:

            async def given_up() -> bool:
                items = (await api.get(f"/api/drafts/{draft}/webhooks")).json()["items"]
                return items[0]["status"] == "failed"

            await eventually(given_up)
            (delivery,) = (await api.get(f"/api/drafts/{draft}/webhooks")).json()["items"]
            assert delivery["url"] == gone.url
            assert delivery["lastError"] == "endpoint no longer configured"
            other = new_id("kept")
            await create_draft(api, id=other)
            await arrived(kept, other, "draft.created")
    finally:
        server.stop()
        kept.stop()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_kill_9_between_commit_and_delivery_loses_no_event(
    tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    receiver = WebhookReceiver()  # down: its port refuses connections
    flags = store_flags(request, backend)
    # A debounce longer than the test: the edits are committed, their event not yet derived.
    slow = hooked_server(tmp_path, receiver.url, "--webhook-debounce", "600", *flags).start()
    draft = new_id("crash")
    try:
        async with as_user(slow, "alice") as api:
            await create_draft(api, id=draft, fields={"category": "film"})

            async def attempted() -> bool:
                answer = await api.get(f"/api/drafts/{draft}/webhooks")
                assert answer.status_code == 200, answer.text
                page = answer.json()
                return bool(page["items"]) and page["items"][0]["attempts"] >= 1

            await eventually(attempted)  # draft.created was tried and failed
        editor = await connect_synced(slow, draft, "alice")
        await editor.edit(set_field("current_step", 4))
        await editor.flush()
        await editor.disconnect()
    finally:
        slow.kill()
    receiver.start()
    server = hooked_server(tmp_path, receiver.url, *flags).start()
    try:
        (created,) = await arrived(receiver, draft, "draft.created")
        assert created["data"]["version"] == 1
        (changed,) = await arrived(receiver, draft, "draft.changed")
        assert changed["data"]["fromVersion"] == 2
        assert changed["data"]["fields"]["current_step"] == 4
        async with as_user(server, "alice") as api:
            version = (await api.get(f"/api/drafts/{draft}")).json()["version"]
        assert changed["data"]["toVersion"] == version
    finally:
        server.stop()
        receiver.stop()


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--webhook", "ftp://example.com/x"], {}, "--webhook"),
        (["--webhook", "http:///nohost"], {}, "--webhook"),
        (["--webhook", "http://127.0.0.1:9/h"], {}, "--webhook-secret"),
        (["--webhook", "http://127.0.0.1:9/h", "--webhook-secret", "s3cret"], {}, "whsec_"),
        (["--webhook", "http://127.0.0.1:9/h"], {"DRAFTSYNC_WEBHOOK_SECRET": "whsec_!!"}, "base64"),
        (["--webhook", "http://127.0.0.1:9/h", "--webhook-secret", "whsec_c2hvcnQ="], {}, "16"),
        (["--webhook-debounce", "0"], {}, "--webhook-debounce"),
        (["--webhook-timeout", "nan"], {}, "--webhook-timeout"),
        (["--webhook-max-attempts", "-1"], {}, "--webhook-max-attempts"),
    ],
)
def test_bad_webhook_options_are_refused_in_one_line(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    environment = {k: v for k, v in os.environ.items() if k != "DRAFTSYNC_WEBHOOK_SECRET"}
    done = subprocess.run(
        [sys.executable, "-m", "server", "serve", "--data", str(tmp_path), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**environment, **env},
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr.splitlines()[-1], done.stderr
    assert "s3cret" not in done.stderr and "!!" not in done.stderr  # secrets are never echoed


async def test_two_instances_on_one_postgresql_deliver_each_event_once(
    tmp_path: Path, postgres: PostgresCluster
) -> None:
    receiver = WebhookReceiver().start()
    url = postgres.new_database()
    servers = start_together(
        *(hooked_server(tmp_path / name, receiver.url, "--store", url) for name in "ab")
    )
    drafts = [new_id("pair") for _ in range(6)]
    try:
        for i, draft in enumerate(drafts):
            async with as_user(servers[i % 2], "alice") as api:
                await create_draft(api, id=draft, fields={"current_step": i + 1})
            editor = await connect_synced(servers[(i + 1) % 2], draft, "alice")
            await editor.edit(set_field("category", f"c{i}"))
            await editor.flush()
            await editor.disconnect()
        for draft in drafts:
            await arrived(receiver, draft, "draft.created")
            await arrived(receiver, draft, "draft.changed")
        for server in servers:  # what the other instance might still send arrives first
            server.stop()
        ids = [r.headers["webhook-id"] for r in receiver.received]
        assert len(ids) == len(set(ids)), "an event was delivered twice"
        for draft in drafts:
            assert len(of_draft(receiver, draft, "draft.created")) == 1
            ranges = [
                (e["data"]["fromVersion"], e["data"]["toVersion"])
                for e in of_draft(receiver, draft, "draft.changed")
            ]
            assert ranges == [(2, 2)], ranges  # announced once, by one instance
    finally:
        for server in servers:
            server.stop()
        receiver.stop()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_finished_deliveries_are_removed_after_the_window_pending_ones_stay(
    tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    up = WebhookReceiver().start()
    down = WebhookReceiver()  # never started: its port refuses, its delivery stays pending
    flags = store_flags(request, backend)
    postgres = request.getfixturevalue("postgres") if backend == "postgresql" else None
    database = flags[1] if flags else tmp_path / "draftsync.db"
    # Retried about every second, with attempts that never run out.
    forever = ["--webhook-retry-base", "1", "--webhook-retry-max", "1"]
    forever += ["--webhook-max-attempts", "1000000", "--webhook", down.url, *flags]
    server = hooked_server(tmp_path, up.url, *forever).start()
    draft = new_id("keep")

    async def listed(api: httpx.AsyncClient) -> list[dict[str, Any]]:
        answer = await api.get(f"/api/drafts/{draft}/webhooks")
        assert answer.status_code == 200, answer.text
        return list(answer.json()["items"])

    async def retention_passes() -> float:
        families = text_string_to_metric_families(await scrape(server))
        return sum(
            sample.value
            for family in families
            for sample in family.samples
            if sample.name == "draftsync_webhook_retention_passes_total"
        )

    async def a_pass_ran() -> bool:
        return await retention_passes() >= 1

    try:
        async with as_user(server, "alice") as api:
            await create_draft(api, id=draft)
            await arrived(up, draft, "draft.created")

            async def both_tried() -> bool:
                items = await listed(api)
                statuses = [d["status"] for d in items]
                # Two attempts of the pending one: it is more than a second old.
                return statuses == ["delivered", "pending"] and items[1]["attempts"] >= 2

            await eventually(both_tried, timeout=20)
        server.stop()

        # The default window (7 days): a retention pass runs after both finished; both stay.
        server.start()
        await eventually(a_pass_ran)
        async with as_user(server, "alice") as api:
            assert [d["status"] for d in await listed(api)] == ["delivered", "pending"]
        rows, orphans = stored_outbox(database, postgres)
        assert [row[1:3] for row in rows] == [(up.url, "delivered"), (down.url, "pending")]
        assert rows[0][3] == 1 and orphans == 0, rows
        server.stop()

        # A window of one second: the delivered row and its attempt go, from the listing and
        # from the store; the pending one, created long before the window, stays and retries.
        server.args += ["--webhook-keep-seconds", "1"]
        server.start()
        async with as_user(server, "alice") as api:

            async def only_pending_left() -> bool:
                return [d["status"] for d in await listed(api)] == ["pending"]

            await eventually(only_pending_left, timeout=20)
            (pending,) = await listed(api)
            assert pending["url"] == down.url and pending["type"] == "draft.created"
            tried = pending["attempts"]

            async def retried_since() -> bool:
                return bool((await listed(api))[0]["attempts"] > tried)

            await eventually(retried_since, timeout=20)
        rows, orphans = stored_outbox(database, postgres)
        assert [row[1:3] for row in rows] == [(down.url, "pending")], rows
        assert rows[0][3] > tried and orphans == 0, (rows, orphans)
    finally:
        server.stop()
        up.stop()
