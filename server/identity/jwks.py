"""The app's keys from a JWKS URL (`--jwks-url`), rotated without a restart.

PyJWT's `PyJWKClient` keeps the set (refetched when older than `max_age`) and refetches at
once for a key id it does not know, at most once per `cooldown` (so a flood of made-up key ids
costs one fetch per cooldown, not one per token). It fetches with urllib, which blocks: every
call that may fetch runs in a worker thread (`asyncio.to_thread`), one at a time (an
`asyncio.Lock`, so waiting tokens hold no thread), and a token whose key is already known and
fresh is checked on the event loop without any hop. The sync `known()` answers from the last
set seen, so code that re-reads a token's claims (its expiry) needs no I/O.
"""

from __future__ import annotations

import asyncio
import logging
import time

from jwt import PyJWK, PyJWKClient, PyJWKSet
from jwt.exceptions import PyJWKClientConnectionError, PyJWKClientError, PyJWTError

from server.errors import InvalidToken, KeysUnreachable
from server.identity.keys import ALGORITHMS, SigningKey

__all__ = ["FETCH_TIMEOUT_SECONDS", "JwksKeys"]

logger = logging.getLogger("draftsync.jwks")

FETCH_TIMEOUT_SECONDS = 10.0


class JwksKeys:
    def __init__(self, url: str, *, max_age: float, cooldown: float) -> None:
        self._client = PyJWKClient(
            url,
            cache_jwk_set=True,
            lifespan=max_age,
            cooldown_duration=cooldown,
            timeout=FETCH_TIMEOUT_SECONDS,
        )
        self._max_age = max_age
        self._cooldown = cooldown
        # After a failed fetch, no other before this (monotonic): a JWKS that is down or slow
        # must not make every token wait for its own timeout.
        self._retry_after = -float("inf")
        self._known: dict[str, SigningKey] = {}
        self._seen_at = -float("inf")  # monotonic time `_known` was last taken from the client
        self._unreachable = False
        self._lock = asyncio.Lock()

    def known(self, kid: str | None) -> SigningKey:
        if not kid:
            raise InvalidToken("invalid token: no key id (kid) in its header")
        key = self._known.get(kid)
        if key is None:
            if self._unreachable:
                raise KeysUnreachable(
                    "invalid token: unknown key id (the app's JWKS is unreachable)"
                )
            raise InvalidToken("invalid token: unknown key id")
        return key

    async def refresh(self, kid: str | None) -> None:
        if not kid:
            return
        fresh = time.monotonic() - self._seen_at < self._max_age
        if (fresh and kid in self._known) or time.monotonic() < self._retry_after:
            return
        async with self._lock:
            await asyncio.to_thread(self._look_up, kid)

    async def prefetch(self) -> None:
        """The first fetch, at start; a JWKS that is down is logged, and tried again later."""
        async with self._lock:
            await asyncio.to_thread(self._look_up, None)

    def _look_up(self, kid: str | None) -> None:
        """In a worker thread: let the client fetch if it should, then keep what it holds."""
        try:
            if kid is None:
                self._client.get_jwk_set()
            else:
                self._client.get_signing_key(kid)
            self._unreachable = False
        except PyJWKClientConnectionError as exc:
            self._unreachable = True
            self._retry_after = time.monotonic() + self._cooldown
            logger.warning("jwks fetch failed url=%s error=%s", self._client.uri, exc)
        except PyJWKClientError:
            pass  # an unknown kid (`known` says so), or a set without signing keys
        except PyJWTError as exc:  # a malformed set: keep the keys we had
            self._retry_after = time.monotonic() + self._cooldown
            logger.warning("jwks unusable url=%s error=%s", self._client.uri, exc)
        cache = self._client.jwk_set_cache
        held = cache.get() if cache is not None else None
        if isinstance(held, PyJWKSet):
            self._known = _signing_keys(held)
            self._seen_at = time.monotonic()


def _signing_keys(keys: PyJWKSet) -> dict[str, SigningKey]:
    """The keys of the set that sign with an algorithm we accept; others are ignored."""
    found: dict[str, SigningKey] = {}
    for jwk in keys.keys:
        if not _usable(jwk):
            continue
        assert jwk.key_id is not None
        found[jwk.key_id] = SigningKey(jwk.key, jwk.algorithm_name)
    return found


def _usable(jwk: PyJWK) -> bool:
    return (
        bool(jwk.key_id)
        and jwk.public_key_use in ("sig", None)
        and jwk.algorithm_name in ALGORITHMS
    )
