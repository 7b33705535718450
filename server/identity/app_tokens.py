"""JWTs signed by the app's own identity provider, verified with its public key(s).

What a token must hold: a signature by one of the app's keys with that key's algorithm
(server/identity/keys.py), `exp`, the issuer and audience when they are configured, and the
user in `user_claim` (`sub` by default). With `roles_claim` set, that claim may grant draft
roles directly, `{"DRAFT_ID": "owner" | "editor" | "viewer", ...}` (as y-sweet's document
tokens do); how a grant combines with stored roles is `server.access.strongest`. Each refusal
is an `InvalidToken` whose text says why (the close reason of 4401, the detail of 401).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jwt

from server.access import grants_from
from server.auth import Claims
from server.errors import InvalidToken
from server.identity.keys import ALGORITHMS, KeySource

__all__ = ["LEEWAY_SECONDS", "MAX_USER_CHARS", "AppTokenPolicy", "AppTokenVerifier"]

# Clocks of the app and of this server may disagree by this much (exp, iat, nbf).
LEEWAY_SECONDS = 30
# The longest user name a token may carry: what `PUT /api/drafts/{id}/access` accepts.
MAX_USER_CHARS = 256


@dataclass(frozen=True, slots=True)
class AppTokenPolicy:
    issuer: str | None = None
    audience: str | None = None
    user_claim: str = "sub"
    roles_claim: str | None = None


class AppTokenVerifier:
    def __init__(self, keys: KeySource, policy: AppTokenPolicy) -> None:
        self.keys = keys
        self.policy = policy

    def claims(self, token: str, header: dict[str, Any]) -> Claims:
        """The verified claims of `token` (its unverified `header` given), with the keys at hand."""
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise InvalidToken(f"invalid token: algorithm {str(algorithm)[:16]!r} is not allowed")
        kid = header.get("kid")
        key = self.keys.known(kid if isinstance(kid, str) else None)
        if algorithm != key.algorithm:
            raise InvalidToken(
                f"invalid token: algorithm {algorithm} does not match the key ({key.algorithm})"
            )
        policy = self.policy
        required = ["exp"]
        required += ["iss"] if policy.issuer else []
        required += ["aud"] if policy.audience else []
        try:
            payload = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],
                issuer=policy.issuer,
                audience=policy.audience,
                leeway=LEEWAY_SECONDS,
                options={"require": required},
            )
        except jwt.ExpiredSignatureError as exc:
            raise InvalidToken("token expired") from exc
        except jwt.InvalidIssuerError as exc:
            raise InvalidToken("invalid token: wrong issuer") from exc
        except jwt.InvalidAudienceError as exc:
            raise InvalidToken("invalid token: wrong audience") from exc
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(f"invalid token: {exc}") from exc
        return self._claims_of(payload)

    def _claims_of(self, payload: dict[str, Any]) -> Claims:
        name = self.policy.user_claim
        user = payload.get(name)
        if not isinstance(user, str) or not 0 < len(user) <= MAX_USER_CHARS:
            raise InvalidToken(
                f"invalid token: claim {name!r} must name the user (1-{MAX_USER_CHARS} characters)"
            )
        grants = {}
        if self.policy.roles_claim is not None and self.policy.roles_claim in payload:
            try:
                grants = grants_from(payload[self.policy.roles_claim])
            except ValueError as exc:
                raise InvalidToken(
                    f"invalid token: claim {self.policy.roles_claim!r}: {exc}"
                ) from None
        issued = payload.get("iat")
        return Claims(
            user,
            expires_at=float(payload["exp"]),
            issued_at=float(issued) if isinstance(issued, int | float) else None,
            grants=grants,
        )
