"""`TokenVerifier`: draftsync's own HS256 tokens and, when configured, the app's JWTs, behind
the interface of `TokenSigner` (`issue`, `verify`, `claims`, `renew`) that the rest of the
server calls as `service.signer`.

Which verifier reads a token is decided from its unverified header and payload: ours are HS256
and carry neither `kid` nor `iss`; every other token is the app's, so an HS256 token that
claims the app's issuer (the classic confusion attack: HS256 "signed" with the public key) is
refused by the app's verifier as "algorithm 'HS256' is not allowed", and `none` likewise.

`claims()` never does I/O (keys already at hand). `authenticate()` first lets the app's key
source fetch a key id it has not seen (a JWKS rotation), then verifies: the endpoints call it.
"""

from __future__ import annotations

from typing import Any

import jwt

from server.auth import Claims, TokenSigner
from server.config import Settings
from server.errors import InvalidToken
from server.identity.app_tokens import AppTokenPolicy, AppTokenVerifier
from server.identity.jwks import JwksKeys
from server.identity.keys import KeySource, StaticKey, load_public_key

__all__ = ["TokenVerifier", "verifier_for"]


def verifier_for(settings: Settings) -> TokenVerifier:
    """Ours, plus the app's when `settings` name its key (ValueError if the key file is bad)."""
    keys: KeySource | None = None
    if settings.jwt_public_key is not None:
        keys = StaticKey(load_public_key(settings.jwt_public_key))
    elif settings.jwks_url is not None:
        keys = JwksKeys(
            settings.jwks_url,
            max_age=settings.jwks_max_age_seconds,
            cooldown=settings.jwks_cooldown_seconds,
        )
    app = None
    if keys is not None:
        policy = AppTokenPolicy(
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            user_claim=settings.jwt_user_claim,
            roles_claim=settings.jwt_roles_claim,
        )
        app = AppTokenVerifier(keys, policy)
    return TokenVerifier(TokenSigner(settings.secret), app)


class TokenVerifier:
    def __init__(self, signer: TokenSigner, app: AppTokenVerifier | None = None) -> None:
        self.own = signer
        self.app = app

    def issue(self, user: str, *, ttl_seconds: int, now: float) -> str:
        return self.own.issue(user, ttl_seconds=ttl_seconds, now=now)

    def verify(self, token: str | None) -> str:
        return self.claims(token).user

    def claims(self, token: str | None) -> Claims:
        """The verified claims, with the keys at hand; `InvalidToken` with the reason."""
        if not token:
            raise InvalidToken("missing token")
        header = self._app_header(token)
        if header is None:
            return self.own.claims(token)
        assert self.app is not None
        return self.app.claims(token, header)

    async def authenticate(self, token: str | None) -> Claims:
        """`claims`, after fetching the app's keys if the token names a key id not seen yet."""
        if token and self.app is not None:
            header = self._app_header(token)
            if header is not None:
                kid = header.get("kid")
                await self.app.keys.refresh(kid if isinstance(kid, str) else None)
        return self.claims(token)

    def renew(self, token: str | None, *, now: float) -> tuple[str, Claims]:
        """A token of ours for the same user, grants and lifetime, for a valid one (ours or
        the app's): the editor renews what it was opened with, whoever signed it."""
        return self.own.reissue(self.claims(token), now=now)

    def warm_up(self) -> None:
        """Our tokens' first verification, paid at start (`TokenSigner.warm_up`). The app's
        keys verify tokens signed elsewhere, which the server cannot make: not warmed."""
        self.own.warm_up()

    async def start(self) -> None:
        """Fetch the app's JWKS once at start (a JWKS that is down is retried on use)."""
        if self.app is not None:
            await self.app.keys.prefetch()

    def _app_header(self, token: str) -> dict[str, Any] | None:
        """The token's header when the app's verifier is to read it, else None (ours)."""
        if self.app is None:
            return None
        try:
            header = jwt.get_unverified_header(token)
            payload = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(f"invalid token: {exc}") from exc
        if header.get("alg") == "HS256" and "kid" not in header and "iss" not in payload:
            return None
        return header
