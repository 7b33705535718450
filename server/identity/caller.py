"""Who is calling: a token (the `Authorization: Bearer` header, `?token=`, or a Hocuspocus
Token message) or, without one, the embedding host's `authenticate` callable.

`create_app(settings, authenticate=...)` takes a callable that turns a request (an HTTP request
or a WebSocket connection: a Starlette `HTTPConnection`, cookies and headers included) into a
user name, or None when nobody is signed in; it may be async. A token, when one is given, is
checked and its verdict is final (a bad token is refused, never retried as the session): a
client that sends one means it. Without a token the host is asked; None is a 401 / 4401.
A user named by the host has no expiry and no grants: the host's session governs. Since the
host's session is usually a cookie, which a browser sends with requests that other sites' pages
make, a request it names is refused when it is cross-site (server/identity/origin.py).

Every endpoint asks here, so this is where failed sign-ins are counted per client address and
an address that failed too often is refused before its token is read
(server/admission/authfailures.py).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Awaitable, Callable, Iterable

from starlette.requests import HTTPConnection

from server.admission.authfailures import AuthFailures, client_address
from server.auth import Claims
from server.errors import InvalidToken, KeysUnreachable
from server.identity.origin import allowed_origins, check_same_site
from server.identity.tokens import TokenVerifier

__all__ = ["Authenticate", "Callers"]

Authenticate = Callable[[HTTPConnection], "str | Awaitable[str | None] | None"]


class Callers:
    """What the endpoints ask (`service.callers.identify`) to learn who is calling."""

    def __init__(
        self,
        signer: TokenVerifier,
        authenticate: Authenticate | None = None,
        origins: Iterable[str] = (),
        failures: AuthFailures | None = None,
    ) -> None:
        """`origins`: `Settings.allowed_origins` (ValueError for one that is not an origin);
        `failures`: failed sign-ins per address (None: not counted, never refused)."""
        self.signer = signer
        self.authenticate = authenticate
        self.allowed_origins = allowed_origins(origins)
        self.failures = failures

    async def identify(
        self, connection: HTTPConnection, token: str | None, *, address: str | None = None
    ) -> Claims:
        """The caller's verified claims; `InvalidToken` with the reason otherwise, and
        `CrossSiteRequest` for a cross-site request the host's session names.

        `address`: the client's (default: the connection's scope). An address with too many
        failed sign-ins is refused with `RateLimited` before the token is looked at; an
        `InvalidToken` spends one of its failures (a cross-site refusal does not: the session
        was good; nor does a key the app's JWKS could not be asked for: its outage)."""
        failures = self.failures
        if failures is None:
            return await self._identify(connection, token)
        if address is None:
            address = client_address(connection.scope)
        failures.check(address)
        try:
            return await self._identify(connection, token)
        except KeysUnreachable:
            raise  # the app's JWKS is down: nothing proves this caller wrong
        except InvalidToken:
            failures.failed(address)
            raise

    async def _identify(self, connection: HTTPConnection, token: str | None) -> Claims:
        if token or self.authenticate is None:
            return await self.signer.authenticate(token)
        named = self.authenticate(connection)
        user = await named if inspect.isawaitable(named) else named
        if user is None:
            raise InvalidToken("missing token, and no user signed in to the app")
        if not isinstance(user, str) or not user:
            raise TypeError(f"authenticate must return a user name or None, not {type(user)}")
        check_same_site(connection, self.allowed_origins)
        return Claims(user, expires_at=math.inf)
