"""The app's own JWTs: verified with its keys (a JWKS on loopback, rotated live, or a PEM file),
refused with the reason on REST (401), y-websocket (4401) and Hocuspocus (authenticationFailed),
and a roles claim that grants a draft by itself."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import websockets

from crdt.hocuspocus import AUTH_AUTHENTICATED, AUTH_PERMISSION_DENIED, MESSAGE_AUTH, prefix
from crdt.lib0 import Reader, write_var_string
from crdt.protocol import SyncStep1, SyncStep2, encode_message
from tests.support.app_identity import (
    AUDIENCE,
    ISSUER,
    AppKey,
    JwksServer,
    app_claims,
    app_server_process,
    claims_for,
    hs256_signed_with,
    new_key,
)
from tests.support.raw_client import connect_raw
from tests.support.rest import create_draft, new_id
from tests.support.server_process import REPO, SECRET, ServerProcess
from tests.support.waiting import eventually


@pytest.fixture(scope="module")
def keys() -> dict[str, AppKey]:
    return {
        "RS256": new_key("RS256", "rsa-1"),
        "ES256": new_key("ES256", "ec-1"),
        "EdDSA": new_key("EdDSA", "ed-1"),
    }


@pytest.fixture(scope="module")
def jwks(keys: dict[str, AppKey]) -> Iterator[JwksServer]:
    with JwksServer(list(keys.values())) as server:
        yield server


@pytest.fixture(scope="module")
def app_server(
    tmp_path_factory: pytest.TempPathFactory, jwks: JwksServer
) -> Iterator[ServerProcess]:
    process = app_server_process(tmp_path_factory.mktemp("app-tokens"), jwks)
    process.start()
    yield process
    process.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def rest(server: ServerProcess, method: str, path: str, token: str, **kw: Any) -> Any:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as client:
        return await client.request(method, path, headers=bearer(token), **kw)


async def ws_refusal(server: ServerProcess, token: str) -> tuple[int | None, str | None]:
    client = await connect_raw(server.ws_url, new_id("refused"), token)
    return await client.wait_closed()


async def ws_opens(server: ServerProcess, draft: str, token: str) -> None:
    client = await connect_raw(server.ws_url, draft, token)
    try:
        await client.next_message(SyncStep1)
    finally:
        await client.close()


async def hocuspocus_auth(server: ServerProcess, name: str, token: str) -> tuple[int, str]:
    """Send one Token message for document `name`; the answer: (AUTH_AUTHENTICATED, scope) or
    (AUTH_PERMISSION_DENIED, reason)."""
    url = f"ws://127.0.0.1:{server.port}/hocuspocus"
    frame = bytearray(prefix(name) + bytes([MESSAGE_AUTH, 0]))
    write_var_string(frame, token)
    async with websockets.connect(url, proxy=None) as socket:
        await socket.send(bytes(frame))
        async with asyncio.timeout(10):
            while True:
                data = await socket.recv()
                assert isinstance(data, bytes)
                reader = Reader(data)
                if reader.read_var_string() != name or reader.read_var_uint() != MESSAGE_AUTH:
                    continue
                return reader.read_var_uint(), reader.read_var_string()


async def test_tokens_signed_with_rsa_ec_and_ed25519_keys_open_rest_and_websockets(
    app_server: ServerProcess, keys: dict[str, AppKey]
) -> None:
    for algorithm, key in keys.items():
        user = new_id(f"app-{algorithm.lower()}")
        token = key.sign(app_claims(user))
        listed = await rest(app_server, "GET", "/api/drafts", token)
        assert listed.status_code == 200, (algorithm, listed.text)
        async with httpx.AsyncClient(
            base_url=app_server.http_url, headers=bearer(token), timeout=10
        ) as client:
            draft = await create_draft(client)
        assert draft["role"] == "owner"
        await ws_opens(app_server, draft["id"], token)
        scope = await hocuspocus_auth(app_server, draft["id"], token)
        assert scope == (AUTH_AUTHENTICATED, "read-write")
    # draftsync's own tokens work beside them.
    own = await rest(app_server, "GET", "/api/drafts", app_server.token("alice"))
    assert own.status_code == 200


def _refusals(keys: dict[str, AppKey]) -> list[tuple[str, str, str]]:
    """(case, token, the reason it must be refused with)."""
    rsa, ec = keys["RS256"], keys["ES256"]
    pem = rsa.public_pem()
    now = int(time.time())
    impostor = new_key("RS256", "rsa-1")  # the same kid, another key
    return [
        ("wrong issuer", rsa.sign(app_claims("u", iss="https://evil.example")), "wrong issuer"),
        ("no issuer", rsa.sign(claims_for("u", aud=AUDIENCE)), 'missing the "iss" claim'),
        ("wrong audience", rsa.sign(app_claims("u", aud="another-service")), "wrong audience"),
        ("no audience", rsa.sign(claims_for("u", iss=ISSUER)), 'missing the "aud" claim'),
        (
            "expired",
            rsa.sign(app_claims("u", iat=now - 7200, exp=now - 3600)),
            "token expired",
        ),
        (
            "alg none",
            jwt.encode(app_claims("u"), None, algorithm="none", headers={"kid": "rsa-1"}),
            "algorithm 'none' is not allowed",
        ),
        (
            "HS256 signed with the public key",
            hs256_signed_with(pem, app_claims("u"), kid="rsa-1"),
            "algorithm 'HS256' is not allowed",
        ),
        (
            "algorithm other than the key's",
            rsa.sign(app_claims("u"), kid="ec-1"),
            "algorithm RS256 does not match the key (ES256)",
        ),
        ("unknown key id", ec.sign(app_claims("u"), kid="no-such-key"), "unknown key id"),
        ("no key id", ec.sign(app_claims("u"), kid=None), "no key id"),
        ("forged signature", impostor.sign(app_claims("u")), "Signature verification failed"),
        ("no user", rsa.sign({**app_claims("u"), "sub": ""}), "claim 'sub' must name the user"),
        ("long user", rsa.sign(app_claims("u" * 257)), "claim 'sub' must name the user"),
        (
            "malformed grants",
            rsa.sign(app_claims("u", drafts={"d": "admin"})),
            "claim 'drafts': roles must be owner, editor or viewer",
        ),
        ("not a JWT", "not.a.jwt", "invalid token"),
    ]


async def test_each_refusal_names_its_reason_on_rest_websocket_and_hocuspocus(
    app_server: ServerProcess, keys: dict[str, AppKey]
) -> None:
    refusals = _refusals(keys)
    for case, token, reason in refusals:
        response = await rest(app_server, "GET", "/api/drafts", token)
        assert response.status_code == 401, case
        assert reason in response.json()["detail"], (case, response.json())
        assert response.headers["www-authenticate"] == "Bearer"
        code, close_reason = await ws_refusal(app_server, token)
        assert code == 4401, case
        assert close_reason is not None and reason in close_reason, (case, close_reason)
        kind, text = await hocuspocus_auth(app_server, new_id("hp"), token)
        assert kind == AUTH_PERMISSION_DENIED, case
        assert reason in text, (case, text)
    log = app_server.log()
    signatures = [token.split(".")[-1] for _, token, _ in refusals]
    assert not [s for s in signatures if s and s in log]  # no token in the log


async def test_the_roles_claim_grants_a_draft_for_that_token_on_top_of_stored_roles(
    app_server: ServerProcess, keys: dict[str, AppKey]
) -> None:
    rsa = keys["RS256"]
    alice = app_server.token("alice")
    async with httpx.AsyncClient(
        base_url=app_server.http_url, headers=bearer(alice), timeout=10
    ) as client:
        draft = (await create_draft(client))["id"]
    bob = new_id("bob")

    # No access row and no grant: not found / 4403, as for any user.
    plain = rsa.sign(app_claims(bob))
    assert (await rest(app_server, "GET", f"/api/drafts/{draft}", plain)).status_code == 404
    denied = await connect_raw(app_server.ws_url, draft, plain)
    assert (await denied.wait_closed())[0] == 4403

    # A viewer grant: readable, read-only, not an owner.
    viewer = rsa.sign(app_claims(bob, drafts={draft: "viewer"}))
    got = await rest(app_server, "GET", f"/api/drafts/{draft}", viewer)
    assert got.status_code == 200, got.text
    assert got.json()["role"] == "viewer"
    assert await hocuspocus_auth(app_server, draft, viewer) == (AUTH_AUTHENTICATED, "readonly")
    share = await rest(
        app_server,
        "PUT",
        f"/api/drafts/{draft}/access",
        viewer,
        json={"user": "x", "role": "viewer"},
    )
    assert share.status_code == 403

    # An editor grant over a stored viewer row: the stronger applies.
    stored = await rest(
        app_server,
        "PUT",
        f"/api/drafts/{draft}/access",
        alice,
        json={"user": bob, "role": "viewer"},
    )
    assert stored.status_code == 200, stored.text
    editor = rsa.sign(app_claims(bob, drafts={draft: "editor"}))
    assert await hocuspocus_auth(app_server, draft, editor) == (AUTH_AUTHENTICATED, "read-write")
    assert await hocuspocus_auth(app_server, draft, plain) == (AUTH_AUTHENTICATED, "readonly")

    # Removing the stored row live: the granted connection stays open (and answers), the
    # other one of the same user is closed 4403.
    granted_conn = await connect_raw(app_server.ws_url, draft, editor)
    plain_conn = await connect_raw(app_server.ws_url, draft, plain)
    await granted_conn.next_message(SyncStep1)
    await plain_conn.next_message(SyncStep1)
    removed = await rest(
        app_server, "PUT", f"/api/drafts/{draft}/access", alice, json={"user": bob, "role": "none"}
    )
    assert removed.status_code == 200, removed.text
    assert (await plain_conn.wait_closed())[0] == 4403
    seen = len(granted_conn.messages)
    await granted_conn.send(encode_message(SyncStep1(b"\x00")))
    await granted_conn.next_message(SyncStep2, after=seen)
    assert not granted_conn.closed.is_set()
    await granted_conn.close()

    # Renewal trades the app token for one of ours that keeps the grant.
    renewed = await rest(app_server, "POST", "/api/token/renew", viewer)
    assert renewed.status_code == 200, renewed.text
    ours = renewed.json()["token"]
    assert jwt.decode(ours, SECRET, algorithms=["HS256"])["drafts"] == {draft: "viewer"}
    assert (await rest(app_server, "GET", f"/api/drafts/{draft}", ours)).status_code == 200

    # A grant does not bring back a deleted draft.
    assert (await rest(app_server, "DELETE", f"/api/drafts/{draft}", alice)).status_code == 204
    assert (await rest(app_server, "GET", f"/api/drafts/{draft}", viewer)).status_code == 404
    gone = await connect_raw(app_server.ws_url, draft, viewer)
    assert (await gone.wait_closed())[0] == 4404


async def test_a_rotated_jwks_is_picked_up_without_a_restart(tmp_path: Path) -> None:
    old, new = new_key("ES256", "2026-old"), new_key("EdDSA", "2026-new")
    with JwksServer([old]) as jwks:
        server = ServerProcess(tmp_path, "--jwks-url", jwks.url, "--jwks-cooldown", "0.2")
        server.start()
        try:
            pid = server.process.pid if server.process else None
            assert (
                await rest(server, "GET", "/api/drafts", old.sign(claims_for("u")))
            ).status_code == 200
            jwks.keys = [new]  # the app rotates: new key in, old key out

            async def accepted() -> bool:
                new_token = new.sign(claims_for("u"))
                response = await rest(server, "GET", "/api/drafts", new_token)
                assert response.status_code in (200, 401), response.text
                return response.status_code == 200

            await eventually(accepted, timeout=20)  # bounded; the cooldown is 0.2 s
            refused = await rest(server, "GET", "/api/drafts", old.sign(claims_for("u")))
            assert refused.status_code == 401
            assert "unknown key id" in refused.json()["detail"]
            code, reason = await ws_refusal(server, old.sign(claims_for("u")))
            assert (code, reason) == (4401, "invalid token: unknown key id")
            assert server.process is not None and server.process.pid == pid
        finally:
            server.stop()


async def test_made_up_key_ids_cost_no_fetch_within_the_cooldown(tmp_path: Path) -> None:
    key = new_key("RS256", "only")
    with JwksServer([key]) as jwks:
        server = ServerProcess(tmp_path, "--jwks-url", jwks.url, "--jwks-cooldown", "600")
        server.start()
        try:
            assert jwks.fetches == 1  # at start
            for _ in range(30):
                token = key.sign(claims_for("u"), kid=uuid.uuid4().hex)
                response = await rest(server, "GET", "/api/drafts", token)
                assert response.status_code == 401
            assert jwks.fetches == 1
            good = await rest(server, "GET", "/api/drafts", key.sign(claims_for("u")))
            assert good.status_code == 200
        finally:
            server.stop()


async def test_a_public_key_file_verifies_without_key_ids(tmp_path: Path) -> None:
    key = new_key("ES256", "unused")
    pem = key.write_public_pem(tmp_path / "app.pem")
    server = ServerProcess(
        tmp_path / "data", "--jwt-public-key", str(pem), "--jwt-user-claim", "email"
    )
    server.start()
    try:
        user = "carol@example.com"
        token = key.sign({**claims_for("ignored"), "email": user}, kid=None)
        listed = await rest(server, "GET", "/api/drafts", token)
        assert listed.status_code == 200, listed.text
        async with httpx.AsyncClient(base_url=server.http_url, headers=bearer(token)) as client:
            draft = await create_draft(client)
        renewed = await rest(server, "POST", "/api/token/renew", token)
        assert jwt.decode(renewed.json()["token"], SECRET, algorithms=["HS256"])["sub"] == user
        listed = await rest(server, "GET", "/api/drafts", token)
        assert [(d["id"], d["owner"]) for d in listed.json()["items"]] == [(draft["id"], user)]
        other = new_key("RS256", "x").sign({**claims_for("u"), "email": user}, kid=None)
        for token, reason in (
            (other, "algorithm RS256 does not match the key (ES256)"),
            (key.sign(claims_for("u"), kid=None), "claim 'email' must name the user"),
            # The confusion attack without issuer or kid looks like one of ours: refused there.
            (
                hs256_signed_with(pem.read_bytes(), {**claims_for("u"), "email": user}),
                "invalid token",
            ),
        ):
            response = await rest(server, "GET", "/api/drafts", token)
            assert response.status_code == 401
            assert reason in response.json()["detail"]
            assert await ws_refusal(server, token) == (4401, response.json()["detail"])
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--jwt-issuer", "x"], "--jwt-issuer needs --jwt-public-key or --jwks-url"),
        (["--jwt-roles-claim", "drafts"], "--jwt-roles-claim needs"),
        (["--jwt-public-key", "/no/such.pem"], "cannot read /no/such.pem"),
        (["--jwt-public-key", "README.md"], "README.md is not a PEM public key"),
        (["--jwks-url", "file:///etc/passwd"], "--jwks-url takes an http(s):// URL"),
        (["--jwks-url", "http://x", "--jwt-public-key", "a.pem"], "not allowed with argument"),
        (["--jwks-cooldown", "-1"], "must be a positive number of seconds"),
        (["--jwks-max-age", "nan"], "must be a positive number of seconds"),
    ],
)
def test_bad_identity_flags_are_one_line_errors(
    tmp_path: Path, args: list[str], message: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "server", "serve", "--data", str(tmp_path), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
