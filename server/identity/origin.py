"""Cross-site requests on the host's session: what a browser says about where a request comes
from, and the rule that refuses it when only an ambient credential names the caller.

An embedding host's `authenticate` (server/identity/caller.py) typically reads a session cookie,
and a browser sends cookies with requests that a page of *another* site makes: a WebSocket
(not subject to CORS) or a form or `fetch(no-cors)` POST with no body (no preflight). So when
the caller is named by `authenticate` (never when by a token: tokens are not sent by the
browser on their own), a request is refused as cross-site when

* its `Sec-Fetch-Site` is `cross-site`, or
* it has an `Origin` that is not the request's own (its scheme, `ws`/`wss` read as
  `http`/`https`, and its `Host`, default ports ignored),

unless its `Origin` is one of `Settings.allowed_origins` (the host's own front end served from
another origin, or the public origin when a proxy rewrites `Host`). A request with neither
header (curl, a server, an old browser's same-origin GET) passes. HTTP reads (GET, HEAD,
OPTIONS) pass too: the server sends no CORS headers, so another site's page cannot read the
answer. The refusal is `CrossSiteRequest`: 403 on REST, close 4403 on a WebSocket.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

from server.errors import CrossSiteRequest

__all__ = ["READ_METHODS", "allowed_origins", "check_same_site", "origin_of"]

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(scheme: str, netloc: str) -> str | None:
    """`scheme://host[:port]` in one spelling (lower case, no default port), or None when
    the parts are not an origin (`Origin: null`, a path, credentials, a bad port)."""
    scheme = _SCHEMES.get(scheme.lower(), "")
    if not scheme or not netloc or any(c in netloc for c in "/?#@\\ "):
        return None
    try:
        parts = urlsplit(f"{scheme}://{netloc}")
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host:
        return None
    if ":" in host:  # an IPv6 literal, bracketed as in a URL
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _parse_origin(text: str) -> str | None:
    scheme, sep, rest = text.strip().partition("://")
    return origin_of(scheme, rest) if sep else None


def allowed_origins(origins: Iterable[str]) -> frozenset[str]:
    """The allow-list in the spelling `check_same_site` compares; ValueError naming an entry
    that is not an origin (`https://app.example.com`, `http://localhost:3000`)."""
    allowed = set()
    for text in origins:
        origin = _parse_origin(text.strip().rstrip("/"))
        if origin is None:
            raise ValueError(f"allowed_origins takes scheme://host[:port] origins, not {text!r}")
        allowed.add(origin)
    return frozenset(allowed)


def check_same_site(connection: HTTPConnection, allowed: frozenset[str]) -> None:
    """Raise `CrossSiteRequest` when a browser says another site's page sent `connection`
    (module docstring); the caller asks only when the host's session names the user."""
    scope = connection.scope
    if scope["type"] == "http" and scope["method"] in READ_METHODS:
        return
    headers = connection.headers
    origins = headers.getlist("origin")
    if origins and all(_parse_origin(origin) in allowed for origin in origins):
        return
    if any(value.strip().lower() == "cross-site" for value in headers.getlist("sec-fetch-site")):
        raise CrossSiteRequest("cross-site request refused: Sec-Fetch-Site is cross-site")
    if origins:
        own = origin_of(scope.get("scheme", "http"), headers.get("host", ""))
        if own is None or any(_parse_origin(origin) != own for origin in origins):
            raise CrossSiteRequest("cross-site request refused: Origin is not this server's")
