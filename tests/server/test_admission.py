"""Admission control with clear answers (issue 27, point 2): over a cap a new WebSocket is
closed with 1013 and a reason (both endpoints), REST answers 503 or 429 with Retry-After, a user
over their draft quota gets 403 / 4403; what is already open goes on undisturbed. And 1,100
idle or half-open sockets against a server whose file limit is 512 leave `/healthz` answering
and an editor editing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from pycrdt import Doc, Map, Text
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.services import PostgresCluster
from crdt.hocuspocus import (
    MESSAGE_CLOSE,
    SCOPE_READ_WRITE,
    Stateless,
    decode_body,
    encode_authenticated,
    encode_permission_denied,
    encode_token_request,
    prefix,
    read_address,
)
from crdt.lib0 import write_var_string
from crdt.protocol import SyncStep1, encode_message
from server.sync.hocuspocus import MAX_PENDING_DOCUMENTS
from tests.support.hocuspocus_client import HocuspocusClient
from tests.support.pycrdt_client import PycrdtClient, connect_synced
from tests.support.raw_client import connect_raw
from tests.support.rest import as_user, create_draft, scrape
from tests.support.serve_flags import refused_at_start
from tests.support.server_process import ServerProcess
from tests.support.waiting import eventually

TRY_AGAIN_LATER = 1013

Start = Callable[..., Awaitable[ServerProcess]]


def new_id() -> str:
    return f"a-{uuid.uuid4().hex[:12]}"


async def typed(client: PycrdtClient, text: str) -> None:
    """`client` types `text` and waits until it is committed and relayed: it is still served."""
    await client.edit(lambda doc: doc.get("title", type=Text).insert(0, text))
    await client.flush()
    assert not client.closed.is_set()


async def refused(server: ServerProcess, draft: str, user: str) -> tuple[int | None, str | None]:
    client = await connect_raw(server.ws_url, draft, server.token(user))
    return await client.wait_closed()


def hocuspocus_url(server: ServerProcess) -> str:
    return f"ws://127.0.0.1:{server.port}/hocuspocus"


def token_frame(address: str, token: str) -> bytes:
    out = bytearray(prefix(address) + bytes([2, 0]))
    write_var_string(out, token)
    write_var_string(out, "4.8.0")
    return bytes(out)


async def receive(socket: ClientConnection, timeout: float = 10) -> bytes:
    """The next frame that is not a Ping."""
    async with asyncio.timeout(timeout):
        while True:
            frame = await socket.recv()
            assert isinstance(frame, bytes)
            if frame != b"\x09":
                return frame


def refused_for_now(frame: bytes, address: str) -> dict[str, Any]:
    """The `draftsync.refused` notice `frame` is for `address` (a document refused for now,
    whose token the server asks for again after `retryIn` seconds)."""
    framed, offset = read_address(frame)
    message = decode_body(frame, offset)
    assert framed == address and isinstance(message, Stateless), frame
    notice: dict[str, Any] = json.loads(message.payload)
    assert notice["type"] == "draftsync.refused", notice
    return notice


async def asked_again(socket: ClientConnection, address: str, timeout: float = 40) -> None:
    """Wait until the server asks for `address`'s token again (frames of others skipped)."""
    async with asyncio.timeout(timeout):
        while (frame := await receive(socket, timeout)) != prefix(address) + encode_token_request():
            assert not frame.startswith(prefix(address)), frame


async def authenticate(socket: ClientConnection, address: str, token: str) -> None:
    await socket.send(token_frame(address, token))
    assert await receive(socket) == prefix(address) + encode_authenticated(SCOPE_READ_WRITE)


async def hocuspocus_close(socket: ClientConnection) -> tuple[int | None, str | None]:
    async with asyncio.timeout(10):
        with contextlib.suppress(Exception):
            while True:
                await socket.recv()
    received = socket.protocol.close_rcvd
    return (received.code, received.reason) if received else (None, None)


# -- WebSocket caps ---------------------------------------------------------------------------


async def test_per_user_cap_closes_the_new_connection_with_1013_and_keeps_the_others(
    start: Start,
) -> None:
    server = await start("--max-connections-per-user", "2")
    first = await connect_synced(server, new_id(), "alice")
    second = await connect_synced(server, new_id(), "alice")
    try:
        code, reason = await refused(server, new_id(), "alice")
        assert code == TRY_AGAIN_LATER
        assert reason is not None and "user" in reason and "try again later" in reason
        await typed(first, "one")  # undisturbed
        await typed(second, "two")
        bob = await connect_synced(server, new_id(), "bob")  # another user: his own count
        await bob.disconnect()
    finally:
        await second.disconnect()

    # A place given back is taken again.
    async def admitted() -> bool:
        client = await connect_raw(server.ws_url, new_id(), server.token("alice"))
        with contextlib.suppress(TimeoutError):
            await client.wait_closed(timeout=0.5)
        open_ = not client.closed.is_set()
        await client.close()
        return open_

    await eventually(admitted)
    await first.disconnect()
    assert 'draftsync_admission_refused_total{cap="user"} 1.0' in await scrape(server)


async def test_per_draft_cap_closes_the_new_connection_with_1013(start: Start) -> None:
    server = await start("--max-connections-per-draft", "2")
    draft = new_id()
    first = await connect_synced(server, draft, "alice")
    second = await connect_synced(server, draft, "alice")
    try:
        code, reason = await refused(server, draft, "alice")
        assert code == TRY_AGAIN_LATER
        assert reason is not None and "draft" in reason and "try again later" in reason
        await typed(first, "one")
        await second.wait_for(lambda: "one" in str(second.doc.get("title", type=Text)))
        elsewhere = await connect_synced(server, new_id(), "alice")  # another draft: admitted
        await elsewhere.disconnect()
    finally:
        await first.disconnect()
        await second.disconnect()


async def test_server_cap_refuses_both_endpoints_with_1013(start: Start) -> None:
    server = await start("--max-connections", "2")
    first = await connect_synced(server, new_id(), "alice")
    second = await connect_synced(server, new_id(), "bob")
    try:
        code, reason = await refused(server, new_id(), "carol")
        assert code == TRY_AGAIN_LATER
        assert reason is not None and "server" in reason and "try again later" in reason
        async with connect(hocuspocus_url(server), proxy=None) as socket:
            code, reason = await hocuspocus_close(socket)
        assert code == TRY_AGAIN_LATER and reason is not None and "try again later" in reason
        await typed(first, "one")
        await typed(second, "two")
        async with as_user(server, "carol") as carol:  # REST is not a WebSocket: served
            assert (await carol.get("/api/drafts")).status_code == 200
    finally:
        await first.disconnect()
        await second.disconnect()


async def test_unauthenticated_cap_counts_sockets_until_their_token_is_accepted(
    start: Start,
) -> None:
    server = await start("--max-unauthenticated", "1")
    async with connect(hocuspocus_url(server), proxy=None) as waiting:
        # The Hocuspocus socket has sent no Auth: it holds the only unauthenticated place.
        async with connect(hocuspocus_url(server), proxy=None) as second:
            code, reason = await hocuspocus_close(second)
        assert code == TRY_AGAIN_LATER
        assert reason is not None and "unauthenticated" in reason
        # A y-websocket client's token is in its URL: authenticated on arrival, admitted.
        editor = await connect_synced(server, new_id(), "bob")
        await typed(editor, "in")
        await editor.disconnect()

        await authenticate(waiting, new_id(), server.token("alice"))  # now trusted
        async with connect(hocuspocus_url(server), proxy=None) as third:
            await authenticate(third, new_id(), server.token("carol"))  # its place is free
    text = await scrape(server)
    assert 'draftsync_admission_refused_total{cap="unauthenticated"} 1.0' in text
    assert "draftsync_websockets_unauthenticated 0.0" in text


async def test_hocuspocus_document_over_a_cap_is_refused_alone_on_a_busy_socket(
    start: Start,
) -> None:
    server = await start("--max-connections-per-user", "1")
    token = server.token("alice")
    first, second = new_id(), new_id()
    async with connect(hocuspocus_url(server), proxy=None) as socket:
        await authenticate(socket, first, token)
        await socket.send(token_frame(second, token))
        # Refused for now, not as a failed authentication: told why, and asked again later.
        notice = refused_for_now(await receive(socket), second)
        assert notice["code"] == TRY_AGAIN_LATER and "try again later" in notice["reason"]
        assert notice["retryIn"] == 2.0
        # The socket and its first document go on: a second socket whose only document is
        # refused is closed with 1013 instead, so that its provider reconnects later.
        async with connect(hocuspocus_url(server), proxy=None) as other:
            await other.send(token_frame(new_id(), token))
            code, reason = await hocuspocus_close(other)
        assert code == TRY_AGAIN_LATER and reason is not None and "user" in reason
        await socket.send(prefix(first) + encode_message(SyncStep1(b"\x00")))
        frame = await receive(socket)
        asked = frame == prefix(second) + encode_token_request()  # its pause may be over
        if asked:
            frame = await receive(socket)
        assert frame.startswith(prefix(first))  # its document still served
        # The first document closes, so the cap has room: the second is asked for its token
        # again, and opened.
        await socket.send(prefix(first) + bytes([MESSAGE_CLOSE]))
        if not asked:
            await asked_again(socket, second)
        await authenticate(socket, second, token)


# -- the rate of opening drafts ----------------------------------------------------------------


async def test_documents_refused_for_now_on_one_socket_are_bounded(start: Start) -> None:
    """Each document refused for now waits for the server to ask its token again: at most
    MAX_PENDING_DOCUMENTS of them per socket. Past that a refusal is for good
    (PermissionDenied, as before), so a socket cannot make the server keep unbounded asks."""
    server = await start("--max-connections-per-user", "1", "--user-connect-burst", "1000")
    token = server.token("alice")
    async with connect(hocuspocus_url(server), proxy=None) as socket:
        await authenticate(socket, new_id(), token)
        answers: list[bytes] = []
        for _ in range(MAX_PENDING_DOCUMENTS + 1):
            address = new_id()
            await socket.send(token_frame(address, token))
            answers.append(await receive(socket))
        for answer in answers[:-1]:
            framed, _ = read_address(answer)
            assert refused_for_now(answer, framed)["code"] == TRY_AGAIN_LATER
        framed, offset = read_address(answers[-1])
        assert answers[-1][offset:].startswith(encode_permission_denied("")[:2]), answers[-1]
        assert b"try again later" in answers[-1]


async def opened(server: ServerProcess, user: str) -> PycrdtClient:
    """`user`'s editor on a new draft once synced (admitted) or closed (refused)."""
    client = await PycrdtClient(server.ws_url, new_id(), server.token(user)).connect()
    waits = [asyncio.ensure_future(e.wait()) for e in (client.synced, client.closed)]
    done, pending = await asyncio.wait(waits, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    for waiting in pending:
        waiting.cancel()
    assert done, "neither synced nor closed"
    return client


def retry_in(reason: str) -> int:
    """N of the reason "opening drafts too fast, retry in N s ..."."""
    assert reason.startswith("opening drafts too fast, retry in "), reason
    return int(reason.removeprefix("opening drafts too fast, retry in ").split(" ", 1)[0])


async def test_a_user_opening_drafts_too_fast_gets_1013_until_the_refill(start: Start) -> None:
    # 3 at once, then one every 4 s: a loop of connects meets the rate however slow the machine.
    server = await start("--user-connect-burst", "3", "--user-connects-per-second", "0.25")
    admitted: list[PycrdtClient] = []
    try:
        refused_one = None
        for _ in range(20):
            client = await opened(server, "alice")
            if client.closed.is_set():
                refused_one = client
                break
            admitted.append(client)
        assert refused_one is not None, "20 connects in a row were all admitted"
        assert len(admitted) >= 3  # the burst
        assert refused_one.close_code == TRY_AGAIN_LATER
        assert refused_one.close_reason is not None
        assert 1 <= retry_in(refused_one.close_reason) <= 4
        # Another user is served meanwhile, and alice's open drafts are not touched.
        bob = await connect_synced(server, new_id(), "bob")
        await typed(bob, "bob's")
        await bob.disconnect()
        for client in admitted:
            await typed(client, "still open")

        # Once a token is back, alice is admitted again (a refused connect spends none).
        async def admitted_again() -> bool:
            client = await opened(server, "alice")
            await client.disconnect()
            return client.synced.is_set()

        await eventually(admitted_again, timeout=30, interval=0.2)
    finally:
        for client in admitted:
            await client.disconnect()
    text = await scrape(server)
    assert re.search(r'draftsync_admission_refused_total\{cap="connect-rate"\} [1-9]', text)


async def hocuspocus_answer(socket: ClientConnection, address: str) -> bytes | None:
    """The server's answer to `address`'s Auth on `socket`: its frame, or None if it closed
    the socket instead."""
    with contextlib.suppress(ConnectionClosed):
        while True:
            frame = await receive(socket)
            if frame.startswith(prefix(address)):
                return frame
    return None


async def test_hocuspocus_documents_opened_too_fast_are_refused_like_over_a_cap(
    start: Start,
) -> None:
    server = await start("--user-connect-burst", "3", "--user-connects-per-second", "0.25")
    token = server.token("alice")
    authenticated = encode_authenticated(SCOPE_READ_WRITE)
    async with connect(hocuspocus_url(server), proxy=None) as socket:
        first = new_id()
        await authenticate(socket, first, token)
        denied = None
        for _ in range(20):  # more documents on the same socket, until one is refused
            address = new_id()
            await socket.send(token_frame(address, token))
            answer = await hocuspocus_answer(socket, address)
            assert answer is not None, "the busy socket was closed"
            if answer != prefix(address) + authenticated:
                denied = answer
                break
        assert denied is not None, "20 documents in a row were all authorised"
        notice = refused_for_now(denied, address)
        assert notice["code"] == TRY_AGAIN_LATER
        assert notice["reason"].startswith("opening drafts too fast, retry in ")
        assert notice["retryIn"] == retry_in(notice["reason"])  # asked again when a token is back
        # A socket whose only document is refused is closed with 1013 instead, so that its
        # provider reconnects later (a token may have come back meanwhile: then the next).
        closed: tuple[int | None, str | None] | None = None
        for _ in range(20):
            async with connect(hocuspocus_url(server), proxy=None) as other:
                address = new_id()
                await other.send(token_frame(address, token))
                if await hocuspocus_answer(other, address) is None:
                    received = other.protocol.close_rcvd
                    closed = (received.code, received.reason) if received else (None, None)
                    break
        assert closed is not None, "20 sockets in a row were all authorised"
        code, reason = closed
        assert code == TRY_AGAIN_LATER and reason is not None and 1 <= retry_in(reason) <= 4
        await socket.send(prefix(first) + encode_message(SyncStep1(b"\x00")))
        assert (await receive(socket)).startswith(prefix(first))  # its document still served

        # Once a token is back, a document is authorised again, on the busy socket too.
        async def admitted_again() -> bool:
            address = new_id()
            await socket.send(token_frame(address, token))
            return await hocuspocus_answer(socket, address) == prefix(address) + authenticated

        await eventually(admitted_again, timeout=30, interval=0.2)
        async with connect(hocuspocus_url(server), proxy=None) as bob:
            await authenticate(bob, new_id(), server.token("bob"))  # his own bucket


async def test_a_hocuspocus_document_reopened_after_a_reload_is_not_counted(
    start: Start,
) -> None:
    """The server closes and reopens a document whose room reloads (a refused update): its
    doing, not the provider's, so the reopen is authorised however fast alice opened drafts."""
    server = await start("--user-connect-burst", "2", "--user-connects-per-second", "0.001")
    draft = new_id()
    token = server.token("alice")
    hp = await HocuspocusClient.launch(hocuspocus_url(server), shared=True)
    try:
        await hp.open("a", draft, token)  # alice's first join
        await hp.call("wait_synced", doc="a")
        await hp.wait_doc_event("a", "authenticated")
        mallory = await connect_synced(server, draft, "alice")  # her second: the bucket is empty

        def nest(doc: Doc) -> None:  # a shared type in `fields`: refused once pycrdt applied it
            doc.get("fields", type=Map)["k"] = Map({"inner": 1})

        await mallory.edit(nest)
        await asyncio.wait_for(mallory.closed.wait(), 10)
        assert mallory.close_code == 4400
        closed = await hp.wait_doc_event("a", "close")
        assert "reloading" in closed["reason"], closed
        assert (await hp.wait_doc_event("a", "authenticated"))["scope"] == "read-write"
        await hp.call("insert", doc="a", field="title", index=0, text="after")
        await hp.call("wait_saved", doc="a")
        code, reason = await refused(server, new_id(), "alice")  # a new draft: still counted
        assert code == TRY_AGAIN_LATER and reason is not None and retry_in(reason) >= 1
    finally:
        await hp.close()


# -- REST -------------------------------------------------------------------------------------


async def test_requests_under_way_over_the_cap_are_answered_503_with_retry_after(
    start: Start,
) -> None:
    server = await start("--max-requests", "1")
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        # A create whose body is still coming: admitted, under way until its body ends.
        body = b'{"title": "held"}'
        writer.write(
            b"POST /api/drafts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + b"Authorization: Bearer "
            + server.token("alice").encode()
            + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        await writer.drain()
        async with as_user(server, "bob") as bob:

            async def answered_503() -> bool:
                response = await bob.get("/api/drafts")
                if response.status_code != 503:
                    return False
                assert response.headers["retry-after"].isdigit()
                assert response.json()["error"] == "unavailable"
                assert "try again later" in response.json()["detail"]
                return True

            await eventually(answered_503)
            async with httpx.AsyncClient(timeout=10) as anonymous:
                assert (await anonymous.get(f"{server.http_url}/healthz")).status_code == 200
                assert (await anonymous.get(f"{server.http_url}/metrics")).status_code == 200
            writer.write(body)  # the held request ends, undisturbed
            status = await asyncio.wait_for(reader.readline(), 10)
            assert status.startswith(b"HTTP/1.1 201 "), status
            assert (await bob.get("/api/drafts")).status_code == 200
    finally:
        writer.close()


async def test_a_users_requests_over_their_rate_are_answered_429_with_retry_after(
    start: Start,
) -> None:
    # 3 at once, then one every 10 s: the fourth in a row is over, however slow the machine.
    server = await start("--user-requests-per-second", "0.1", "--user-request-burst", "3")
    async with as_user(server, "alice") as alice, as_user(server, "bob") as bob:
        for _ in range(3):
            assert (await alice.get("/api/drafts")).status_code == 200
        response = await alice.get("/api/drafts")
        assert response.status_code == 429
        assert 1 <= int(response.headers["retry-after"]) <= 10
        assert response.json()["error"] == "rate_limited"
        assert (await bob.get("/api/drafts")).status_code == 200  # each user has a bucket
        async with as_user(server, None) as anonymous:  # no token: 401, never counted
            assert (await anonymous.get("/api/drafts")).status_code == 401
    assert 'draftsync_admission_refused_total{cap="rate"} 1.0' in await scrape(server)


async def test_a_user_over_their_draft_quota_gets_403_and_4403_until_one_is_deleted(
    start: Start,
) -> None:
    server = await start("--max-drafts-per-user", "2")
    async with as_user(server, "alice") as alice, as_user(server, "bob") as bob:
        first = await create_draft(alice, title="one")
        editor = await connect_synced(server, new_id(), "alice")  # the second, by connecting
        try:
            response = await alice.post("/api/drafts", json={"title": "three"})
            assert response.status_code == 403
            assert "draft quota" in response.json()["detail"]
            code, reason = await refused(server, new_id(), "alice")
            assert code == 4403 and reason is not None and "draft quota" in reason
            # Her drafts still open, and others create theirs.
            again = await connect_synced(server, first["id"], "alice")
            await typed(again, "still mine")
            await again.disconnect()
            await typed(editor, "undisturbed")
            await create_draft(bob, title="bob's")
            # Deleting one gives a place back.
            assert (await alice.delete(f"/api/drafts/{first['id']}")).status_code == 204
            await create_draft(alice, title="three")
        finally:
            await editor.disconnect()


async def test_the_draft_quota_holds_on_postgresql(start: Start, postgres: PostgresCluster) -> None:
    server = await start("--store", postgres.new_database(), "--max-drafts-per-user", "1")
    async with as_user(server, "alice") as alice:
        first = await create_draft(alice, title="one")
        response = await alice.post("/api/drafts", json={"title": "two"})
        assert response.status_code == 403 and "draft quota" in response.json()["detail"]
        code, _ = await refused(server, new_id(), "alice")
        assert code == 4403
        assert (await alice.delete(f"/api/drafts/{first['id']}")).status_code == 204
        await create_draft(alice, title="two")


# -- the file limit ---------------------------------------------------------------------------


async def test_the_soft_file_limit_is_raised_to_the_hard_one_and_part_kept_in_reserve(
    start: Start,
) -> None:
    server = await start("--reserved-fds", "100", "--max-connections", "5000", nofile=(256, 1024))
    log = server.log()
    assert "file limit 1024: at most 924 sockets" in log, log[-2000:]
    # The caps follow the file limit down: WebSockets 3/4, the others 1/8 each.
    assert "--max-connections lowered from 5000 to 693" in log, log[-2000:]
    assert "--max-unauthenticated lowered from 512 to 115" in log, log[-2000:]
    assert "--max-requests lowered from 256 to 115" in log, log[-2000:]


async def test_1100_idle_and_half_open_sockets_leave_healthz_and_an_editor_working(
    start: Start,
) -> None:
    """The file limit is 512, soft and hard (the server cannot raise it); 1,100 sockets that
    never finish a request arrive while alice types. The oldest of them make room for newer
    sockets and the rest time out; nobody else notices."""
    server = await start("--handshake-timeout", "1", nofile=512)
    draft = new_id()
    alice = await connect_synced(server, draft, "alice")
    attack: list[asyncio.StreamWriter] = []
    readers: list[asyncio.StreamReader] = []
    typing_done = asyncio.Event()
    typed_count = 0

    async def keep_typing() -> None:
        nonlocal typed_count
        for index in range(400):
            await typed(alice, f"{index} ")
            typed_count += 1
            if typing_done.is_set():
                return

    typist = asyncio.create_task(keep_typing())
    try:
        for index in range(1100):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            if index % 2:
                writer.write(b"GET /api/drafts HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            attack.append(writer)
            readers.append(reader)
        # All 1,100 asked for: the server answers others and alice's edits go on.
        async with httpx.AsyncClient(timeout=10) as client:
            assert (await client.get(f"{server.http_url}/healthz")).status_code == 200
            async with as_user(server, "carol") as carol:
                assert (await carol.get("/api/drafts")).status_code == 200
        newcomer = await connect_synced(server, draft, "alice")
        await newcomer.wait_for(lambda: "0 " in str(newcomer.doc.get("title", type=Text)))
        await newcomer.disconnect()
        typing_done.set()
        await asyncio.wait_for(typist, 60)
        assert typed_count >= 1 and not alice.closed.is_set()

        async def all_closed() -> bool:
            return all(reader.at_eof() or reader.exception() is not None for reader in readers)

        async def drain() -> None:
            for reader in readers:
                with contextlib.suppress(ConnectionError):
                    await reader.read(4096)

        await asyncio.wait_for(drain(), 30)  # each returns at its EOF: every one was closed
        await eventually(all_closed)
    finally:
        typing_done.set()
        typist.cancel()
        for writer in attack:
            writer.close()
        await alice.disconnect()
    text = await scrape(server)
    assert 'draftsync_sockets_closed_early_total{reason="evicted"}' in text
    assert server.process is not None and server.process.poll() is None
    log = server.log()
    assert "Too many open files" not in log and "EMFILE" not in log, log[-3000:]


async def test_unauthenticated_websockets_cannot_take_the_sockets_healthz_needs(
    start: Start,
) -> None:
    """Sockets that never authenticate are not closed to make room (they are WebSockets, held
    up to a minute by Hocuspocus's auth deadline), so their cap is a share of the budget."""
    server = await start(nofile=512)  # 384 sockets: 48 may be unauthenticated WebSockets
    sockets: list[ClientConnection] = []
    try:
        for _ in range(100):
            sockets.append(await connect(hocuspocus_url(server), proxy=None))
        closed = [await hocuspocus_close(s) for s in sockets[48:]]
        assert {code for code, _ in closed} == {TRY_AGAIN_LATER}
        async with httpx.AsyncClient(timeout=10) as client:
            assert (await client.get(f"{server.http_url}/healthz")).status_code == 200
        editor = await connect_synced(server, new_id(), "alice")
        await typed(editor, "in")
        await editor.disconnect()
    finally:
        for socket in sockets:
            await socket.close()


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "option,value",
    [
        ("--max-connections", "0"),
        ("--max-unauthenticated", "-1"),
        ("--max-connections-per-user", "x"),
        ("--max-connections-per-draft", "0"),
        ("--max-requests", "0"),
        ("--user-requests-per-second", "0"),
        ("--user-request-burst", "1.5"),
        ("--user-connects-per-second", "0"),
        ("--user-connect-burst", "0"),
        ("--max-drafts-per-user", "0"),
        ("--max-rebuilds", "0"),
        ("--max-rebuilds-per-user", "-2"),
    ],
)
def test_a_cap_that_cannot_work_is_refused_at_start(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    refused_at_start(capsys, option, value)


@pytest.mark.parametrize(
    "option,value,why",
    [
        ("--user-connects-per-second", "-2", "must be a positive number, got -2"),
        ("--user-connects-per-second", "nan", "must be a positive number, got nan"),
        ("--user-connects-per-second", "fast", "must be a number, got 'fast'"),
        ("--user-connect-burst", "2.5", "must be a positive integer, got '2.5'"),
    ],
)
def test_a_bad_connect_rate_is_refused_at_start_saying_why(
    option: str, value: str, why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert why in refused_at_start(capsys, option, value)


async def _create_at_once(server: ServerProcess, user: str, count: int) -> int:
    """`count` creations by `user` at the same moment, half over REST and half by joining a
    new draft id over a socket; the number that created a draft."""

    async def over_rest(client: httpx.AsyncClient) -> bool:
        response = await client.post("/api/drafts", json={"title": "racing"})
        assert response.status_code in (201, 403), response.text
        return response.status_code == 201

    async def by_joining() -> bool:
        """Synced (created), or closed with 4403 (the quota): whichever comes first."""
        editor = await PycrdtClient(server.ws_url, new_id(), server.token(user)).connect()
        try:
            waits = [asyncio.ensure_future(e.wait()) for e in (editor.synced, editor.closed)]
            await asyncio.wait(waits, timeout=10, return_when=asyncio.FIRST_COMPLETED)
            for wait in waits:
                wait.cancel()
            assert editor.synced.is_set() or editor.close_code == 4403, editor.close_code
            return editor.synced.is_set()
        finally:
            await editor.disconnect()

    async with as_user(server, user) as client:
        results = await asyncio.gather(
            *(over_rest(client) for _ in range(count // 2)),
            *(by_joining() for _ in range(count - count // 2)),
        )
        listed = (await client.get("/api/drafts")).json()["items"]
    owned = [item for item in listed if item["role"] == "owner"]
    assert len(owned) == sum(results)
    return len(owned)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_creations_racing_in_never_pass_the_draft_quota(
    start: Start, backend: str, request: pytest.FixtureRequest
) -> None:
    """Twelve creations at once (REST and sockets) by a user allowed three: exactly three
    drafts, on one instance and, with PostgreSQL, whatever the number of connections."""
    store: tuple[str, ...] = ()
    if backend == "postgresql":
        postgres: PostgresCluster = request.getfixturevalue("postgres")
        store = ("--store", postgres.new_database())
    server = await start(*store, "--max-drafts-per-user", "3")
    assert await _create_at_once(server, "alice", 12) == 3
