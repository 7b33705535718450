"""Failed sign-ins per client address (server/admission/authfailures.py): an address whose tokens
keep failing is refused before any token work, on both WebSocket endpoints (1013 "too many
failed sign-ins from this address, retry in N s") and on REST (429 with Retry-After), until its
bucket refills; other addresses are served meanwhile. The servers run on loopback, which is not
exempt; another address is the one a proxy at 127.0.0.1 names in X-Forwarded-For (uvicorn
trusts it from there by default)."""

from __future__ import annotations

import contextlib
import logging
import re
import uuid

import httpx
import pytest
from websockets.asyncio.client import connect

from crdt.hocuspocus import SCOPE_READ_WRITE, encode_authenticated, prefix
from server.admission.authfailures import AuthFailures
from server.errors import RateLimited
from tests.server.test_admission import (
    Start,
    hocuspocus_answer,
    hocuspocus_close,
    hocuspocus_url,
    refused_for_now,
    token_frame,
)
from tests.support.app_identity import claims_for, new_key
from tests.support.raw_client import connect_raw
from tests.support.rest import scrape
from tests.support.serve_flags import refused_at_start
from tests.support.server_process import ServerProcess, free_port
from tests.support.waiting import eventually

TRY_AGAIN_LATER = 1013
UNAUTHORIZED = 4401
BAD_TOKEN = "not-a-token-0123456789"
ELSEWHERE = {"X-Forwarded-For": "203.0.113.7"}  # another client, named by a trusted proxy
# Three failures at once, then one every 4 s: a loop of bad connects empties the bucket
# however slow the machine, and a refill comes within the test's patience.
FLAGS = ("--address-auth-failure-burst", "3", "--address-auth-failures-per-second", "0.25")


def new_id() -> str:
    return f"f-{uuid.uuid4().hex[:12]}"


def retry_in(reason: str | None) -> int:
    """N of "too many failed sign-ins from this address, retry in N s"."""
    assert reason is not None
    head = "too many failed sign-ins from this address, retry in "
    assert reason.startswith(head), reason
    return int(reason.removeprefix(head).split(" ", 1)[0])


async def ws_close(
    server: ServerProcess, token: str | None, **options: object
) -> tuple[int | None, str | None]:
    """A y-websocket connect's close (code, reason), or (None, None) when it was admitted (the
    server's sync step 1 came first)."""
    client = await connect_raw(server.ws_url, new_id(), token, **options)
    try:
        await client.wait_for(lambda: bool(client.frames) or client.closed.is_set())
        if client.frames:
            return (None, None)
        return client.close_code, client.close_reason
    finally:
        await client.close()


async def fail_until_refused(server: ServerProcess) -> tuple[int | None, str | None]:
    """Bad-token connects until one is refused for the address; that one's close."""
    for _ in range(20):
        code, reason = await ws_close(server, BAD_TOKEN)
        if code == TRY_AGAIN_LATER:
            return code, reason
        assert code == UNAUTHORIZED, (code, reason)
    raise AssertionError("20 bad tokens in a row were all verified")


async def test_bad_token_connects_beyond_the_burst_get_1013_and_a_good_one_only_until_refill(
    start: Start,
) -> None:
    """Past the burst of failures an address is refused with 1013 before its token is read:
    a good token from it is refused too, but only while its bucket is empty; once a token is
    back, it connects. Another address (behind a trusted proxy) is served all along. The log
    warns (not once per refusal) and never holds a token."""
    server = await start(*FLAGS)
    code, reason = await fail_until_refused(server)
    assert 1 <= retry_in(reason) <= 4
    good = server.token("alice")
    refused_good = None
    for _ in range(10):  # the bucket may refill between two connects on a slow machine
        code, reason = await ws_close(server, good)
        if code == TRY_AGAIN_LATER:
            refused_good = reason
            break
        assert code is None, (code, reason)  # admitted: a token was back; empty it again
        await fail_until_refused(server)
    assert refused_good is not None, "a good token was never refused from an emptied address"
    assert 1 <= retry_in(refused_good) <= 4
    # Another address is not affected, bad token included (its own bucket).
    assert (await ws_close(server, good, additional_headers=ELSEWHERE)) == (None, None)
    assert (await ws_close(server, BAD_TOKEN, additional_headers=ELSEWHERE))[0] == UNAUTHORIZED

    async def admitted_again() -> bool:
        return (await ws_close(server, good)) == (None, None)

    await eventually(admitted_again, timeout=30, interval=0.5)
    text = await scrape(server)
    assert re.search(r'draftsync_admission_refused_total\{cap="auth-failures"\} [1-9]', text)
    refusals = int(float(re.findall(r'refused_total\{cap="auth-failures"\} (\S+)', text)[0]))
    assert refusals >= 2  # the bad token's and the good one's at least
    log = server.log()
    warnings = re.findall(r"WARNING .*sign-ins refused address=127\.0\.0\.1", log)
    assert 1 <= len(warnings) < refusals, log  # not a line per refusal (once a minute)
    assert good not in log and BAD_TOKEN not in log


async def test_a_hocuspocus_socket_from_an_address_that_keeps_failing_is_closed_1013(
    start: Start,
) -> None:
    """Failed Auths on one socket spend the address's bucket; once empty, a busy socket's next
    document is refused for now (its open one still served), and a new socket is closed with
    1013 before any token is read, a good one too, until the refill."""
    server = await start(*FLAGS)
    good = server.token("alice")
    authenticated = encode_authenticated(SCOPE_READ_WRITE)
    async with connect(hocuspocus_url(server), proxy=None) as busy:
        first = new_id()
        await busy.send(token_frame(first, good))
        assert await hocuspocus_answer(busy, first) == prefix(first) + authenticated
        notice = None
        for _ in range(20):  # bad tokens on the busy socket until the address is refused
            address = new_id()
            await busy.send(token_frame(address, BAD_TOKEN))
            answer = await hocuspocus_answer(busy, address)
            assert answer is not None, "the busy socket was closed"
            if b"draftsync.refused" in answer:
                notice = refused_for_now(answer, address)
                break
            assert b"invalid token" in answer, answer  # PermissionDenied with the reason
        assert notice is not None, "20 bad tokens in a row were all verified"
        assert notice["code"] == TRY_AGAIN_LATER and 1 <= retry_in(notice["reason"]) <= 4

        # A new socket, a good token: closed with 1013 while the bucket is empty (it may
        # refill between two tries on a slow machine: then one more failure empties it).
        closed = None
        for _ in range(10):
            async with connect(hocuspocus_url(server), proxy=None) as other:
                address = new_id()
                with contextlib.suppress(Exception):
                    await other.send(token_frame(address, good))
                answer = await hocuspocus_answer(other, address)
                if answer is None:
                    closed = await hocuspocus_close(other)
                    break
                assert answer == prefix(address) + authenticated, answer
                for _ in range(2):  # a token was back: spend it again, answered each
                    address = new_id()
                    await other.send(token_frame(address, BAD_TOKEN))
                    assert await hocuspocus_answer(other, address) is not None
        assert closed is not None, "a good token was never refused from an emptied address"
        code, reason = closed
        assert code == TRY_AGAIN_LATER and 1 <= retry_in(reason) <= 4

        async def admitted_again() -> bool:
            async with connect(hocuspocus_url(server), proxy=None) as again:
                address = new_id()
                with contextlib.suppress(Exception):
                    await again.send(token_frame(address, good))
                return await hocuspocus_answer(again, address) == prefix(address) + authenticated

        await eventually(admitted_again, timeout=30, interval=0.5)


async def test_rest_with_bad_tokens_from_an_address_gets_429_after_the_burst(
    start: Start,
) -> None:
    # Three failures at once, then one every 10 s: the fourth in a row is over.
    server = await start(
        "--address-auth-failure-burst", "3", "--address-auth-failures-per-second", "0.1"
    )
    bad = {"Authorization": f"Bearer {BAD_TOKEN}"}
    good = {"Authorization": f"Bearer {server.token('alice')}"}
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as client:
        for _ in range(3):
            assert (await client.get("/api/drafts", headers=bad)).status_code == 401
        response = await client.get("/api/drafts", headers=bad)
        assert response.status_code == 429, response.text
        assert 1 <= int(response.headers["retry-after"]) <= 10
        assert response.json()["error"] == "rate_limited"
        assert retry_in(response.json()["detail"]) == int(response.headers["retry-after"])
        # While the bucket is empty, a good token from the address waits too; the schema
        # (the editor's first request) says the same.
        assert (await client.get("/api/drafts", headers=good)).status_code == 429
        schema = await client.get("/api/schema", headers=good)
        assert schema.status_code == 429 and schema.headers["retry-after"].isdigit()
        # Another address has its own bucket; health and metrics need no sign-in.
        elsewhere = {**bad, **ELSEWHERE}
        assert (await client.get("/api/drafts", headers=elsewhere)).status_code == 401
        assert (await client.get("/healthz")).status_code == 200
    assert re.search(
        r'draftsync_admission_refused_total\{cap="auth-failures"\} [1-9]', await scrape(server)
    )


async def test_tokens_refused_because_the_apps_jwks_is_down_spend_no_failures(
    start: Start,
) -> None:
    """The app's JWKS cannot be reached (nothing listens on its port): a token naming a key is
    refused (401, saying so), but that is the outage's doing, not the caller's, so however many
    come, the address is never throttled for them; a token that is simply bad still counts."""
    server = await start(
        "--jwks-url", f"http://127.0.0.1:{free_port()}/jwks.json",
        "--jwks-cooldown", "600",
        "--address-auth-failure-burst", "2", "--address-auth-failures-per-second", "0.01",
    )  # fmt: skip
    key = new_key("RS256", "app-1")
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as client:
        for _ in range(6):
            token = key.sign(claims_for("alice"), kid=uuid.uuid4().hex)
            response = await client.get("/api/drafts", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 401, response.text
            assert "JWKS is unreachable" in response.json()["detail"]
        bad = {"Authorization": f"Bearer {BAD_TOKEN}"}
        assert [(await client.get("/api/drafts", headers=bad)).status_code for _ in range(3)] == [
            401,
            401,
            429,
        ]


@pytest.mark.parametrize(
    "option,value,why",
    [
        ("--address-auth-failures-per-second", "0", "must be a positive number, got 0"),
        ("--address-auth-failures-per-second", "nan", "must be a positive number, got nan"),
        ("--address-auth-failures-per-second", "lots", "must be a number, got 'lots'"),
        ("--address-auth-failure-burst", "0", "must be a positive integer"),
        ("--address-auth-failure-burst", "2.5", "must be a positive integer, got '2.5'"),
    ],
)
def test_a_bad_auth_failure_limit_is_refused_at_start_saying_why(
    option: str, value: str, why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert why in refused_at_start(capsys, option, value)


def test_refusals_are_warned_of_once_a_minute_at_most(caplog: pytest.LogCaptureFixture) -> None:
    """A looping address would flood the log: one warning a minute, with the count since."""
    failures = AuthFailures(rate=0.001, burst=1)  # one failure, then a token in 1,000 s
    failures.check("198.51.100.1", now=0.0)  # a full bucket: nothing refused, nothing spent
    failures.failed("198.51.100.1", now=0.0)
    with caplog.at_level(logging.WARNING, logger="draftsync.admission"):
        for now in (1.0, 10.0, 60.0, 61.0):
            with pytest.raises(RateLimited) as refused:
                failures.check("198.51.100.1", now=now)
            assert 1 <= refused.value.retry_after <= 1000
    failures.check("198.51.100.2", now=61.0)  # another address: its own bucket
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 2, warnings
    assert "address=198.51.100.1" in warnings[0] and "1 refused since" in warnings[0]
    assert "3 refused since" in warnings[1]
