"""Token renewal (`POST /api/token/renew`): the editor trades a valid token for a fresh one of the
same user before it expires; an expired or forged token, or a draft the user can no longer
reach, is refused."""

from __future__ import annotations

import time

import httpx
import jwt

from tests.support.rest import as_user, create_draft, new_id
from tests.support.server_process import SECRET, ServerProcess


def _claims(token: str) -> dict[str, object]:
    return jwt.decode(token, SECRET, algorithms=["HS256"])


async def test_a_valid_token_is_renewed_for_the_same_user_and_lifetime(
    server: ServerProcess,
) -> None:
    user = new_id("renew")
    old = server.token(user, ttl=600, now=time.time() - 300)
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as client:
        response = await client.post("/api/token/renew", headers={"Authorization": f"Bearer {old}"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["user"] == user
        fresh = _claims(body["token"])
        assert fresh["sub"] == user
        assert fresh["exp"] - fresh["iat"] == 600
        assert fresh["exp"] > _claims(old)["exp"]
        assert 590 <= body["expiresIn"] <= 600
        # The fresh token works where the old one did.
        listed = await client.get(
            "/api/drafts", headers={"Authorization": f"Bearer {body['token']}"}
        )
        assert listed.status_code == 200


async def test_expired_missing_and_forged_tokens_are_refused(server: ServerProcess) -> None:
    expired = server.token("late", ttl=5, now=time.time() - 60)
    forged = jwt.encode(
        {"sub": "eve", "exp": int(time.time()) + 60},
        "not-the-secret-but-long-enough-for-hs256-0123456789",
    )
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as client:
        for headers, reason in (
            ({"Authorization": f"Bearer {expired}"}, "token expired"),
            ({}, "missing token"),
            ({"Authorization": f"Bearer {forged}"}, "invalid token"),
        ):
            response = await client.post("/api/token/renew", headers=headers)
            assert response.status_code == 401
            assert reason in response.json()["detail"]


async def test_renewal_for_a_draft_is_refused_once_access_is_revoked(
    server: ServerProcess,
) -> None:
    owner, guest = new_id("owner"), new_id("guest")
    async with as_user(server, owner) as owner_client, as_user(server, guest) as guest_client:
        draft = await create_draft(owner_client, title="Shared")
        await owner_client.put(
            f"/api/drafts/{draft['id']}/access", json={"user": guest, "role": "editor"}
        )
        body = {"draftId": draft["id"]}
        assert (await guest_client.post("/api/token/renew", json=body)).status_code == 200
        await owner_client.put(
            f"/api/drafts/{draft['id']}/access", json={"user": guest, "role": "none"}
        )
        refused = await guest_client.post("/api/token/renew", json=body)
        assert refused.status_code == 404
        bad = await guest_client.post("/api/token/renew", json={"draftId": 7})
        assert bad.status_code == 422
