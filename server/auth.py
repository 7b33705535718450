"""Signed access tokens (JWT, HS256 through PyJWT) and the server secret they are signed with.

A token of ours may carry draft grants (claim `drafts`, as the app's roles claim does,
server/access.py): renewing an app token that granted roles keeps them in the fresh one.

The secret comes from `DRAFTSYNC_SECRET`, else from `DIR/secret`, generated once on first use so
that tokens printed by `draftsync token` stay valid across restarts of `draftsync serve`.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import jwt

from server.access import Role, grants_from
from server.errors import InvalidToken

__all__ = ["MAX_TTL_SECONDS", "SECRET_ENV", "Claims", "TokenSigner", "load_secret"]

SECRET_ENV = "DRAFTSYNC_SECRET"
_ALGORITHM = "HS256"
_GRANTS_CLAIM = "drafts"
# A renewed token lives as long as the one it replaces, and never longer than this.
MAX_TTL_SECONDS = 30 * 24 * 3600

# Tokens of ours verified lately (a reconnect storm, or one user's tabs, present the same
# tokens again; verifying one, PyJWT's decode and HMAC, was a tenth of a WebSocket connect's
# CPU in `bench relay` N3000). At most this many, the oldest forgotten first.
_VERIFIED_MAX = 1024


@dataclass(frozen=True, slots=True)
class Claims:
    """What a verified token says: who, until when (seconds since the epoch), and the roles
    it grants on drafts by itself (server/access.py)."""

    user: str
    expires_at: float
    issued_at: float | None = None
    grants: Mapping[str, Role] = field(default_factory=dict)

    @property
    def lifetime(self) -> float | None:
        return None if self.issued_at is None else self.expires_at - self.issued_at


def load_secret(data_dir: Path) -> str:
    from_env = os.environ.get(SECRET_ENV)
    if from_env:
        return from_env
    path = data_dir / "secret"
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: two processes starting at once agree on one secret.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as file:
        file.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


class TokenSigner:
    def __init__(self, secret: str) -> None:
        self._secret = secret
        self._verified: dict[str, Claims] = {}

    def issue(
        self,
        user: str,
        *,
        ttl_seconds: int,
        now: float,
        grants: Mapping[str, Role] | None = None,
    ) -> str:
        if not user:
            raise ValueError("user must not be empty")
        claims: dict[str, object] = {"sub": user, "iat": int(now), "exp": int(now) + ttl_seconds}
        if grants:
            claims[_GRANTS_CLAIM] = {draft: role.value for draft, role in grants.items()}
        return jwt.encode(claims, self._secret, algorithm=_ALGORITHM)

    def verify(self, token: str | None) -> str:
        """Return the user the token was issued to; expiry is checked by PyJWT."""
        return self.claims(token).user

    def renew(self, token: str | None, *, now: float) -> tuple[str, Claims]:
        """A fresh token for the same user with the same lifetime (at most MAX_TTL_SECONDS),
        in exchange for one that is still valid: an expired token is refused like any other."""
        return self.reissue(self.claims(token), now=now)

    def reissue(self, old: Claims, *, now: float) -> tuple[str, Claims]:
        """A token of ours standing for verified `old` claims (of ours or the app's): same user,
        grants and lifetime (at most MAX_TTL_SECONDS), from `now`."""
        lifetime = old.lifetime if old.lifetime and old.lifetime > 0 else MAX_TTL_SECONDS
        ttl = int(min(lifetime, MAX_TTL_SECONDS))
        fresh = self.issue(old.user, ttl_seconds=ttl, now=now, grants=old.grants)
        claims = Claims(old.user, expires_at=int(now) + ttl, issued_at=int(now), grants=old.grants)
        return fresh, claims

    def warm_up(self) -> None:
        """Issue and verify a throwaway token, remembering nothing: the first verification in a
        process took ~0.4 ms against ~0.08 ms for the next ones (PyJWT's key checks reach
        `cryptography`'s DER parsers and OpenSSL for the first time; the code paths run cold),
        and it was the first joiner's after every restart (server/sync/warmup.py)."""
        now = time.time()
        self._verify(self.issue("warm-up", ttl_seconds=60, now=now))

    def claims(self, token: str | None) -> Claims:
        """The verified claims; `InvalidToken` with the reason otherwise.

        A token verified before is answered from memory while the clock is before its `exp`:
        with the secret fixed, only time changes a token's verdict, and only toward expiry
        (`nbf` and `iat` pass once and stay passed). At or past `exp` it is verified again,
        so PyJWT's own rule (whole seconds) decides expiry as ever."""
        if not token:
            raise InvalidToken("missing token")
        known = self._verified.get(token)
        if known is not None and time.time() < known.expires_at:
            return known
        claims = self._verify(token)
        verified = self._verified
        verified.pop(token, None)
        if len(verified) >= _VERIFIED_MAX:
            del verified[next(iter(verified))]
        verified[token] = claims
        return claims

    def _verify(self, token: str) -> Claims:
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=[_ALGORITHM], options={"require": ["sub", "exp"]}
            )
        except jwt.ExpiredSignatureError as exc:
            raise InvalidToken("token expired") from exc
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(f"invalid token: {exc}") from exc
        user = claims["sub"]
        if not isinstance(user, str) or not user:
            raise InvalidToken("invalid token: empty subject")
        issued = claims.get("iat")
        try:
            grants = grants_from(claims[_GRANTS_CLAIM]) if _GRANTS_CLAIM in claims else {}
        except ValueError as exc:
            raise InvalidToken(f"invalid token: claim {_GRANTS_CLAIM!r}: {exc}") from None
        return Claims(
            user,
            expires_at=float(claims["exp"]),
            issued_at=float(issued) if isinstance(issued, int | float) else None,
            grants=grants,
        )
