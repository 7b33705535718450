"""The cross-site rule (server/identity/origin.py) on its own, request by request: what counts
as the request's own origin, which methods are reads, and the allow-list. The endpoints that
use it are tested under a real server in tests/server/test_embedding.py."""

from __future__ import annotations

import pytest
from starlette.requests import HTTPConnection

from server.errors import CrossSiteRequest
from server.identity.origin import allowed_origins, check_same_site, origin_of


def _connection(
    kind: str = "http", method: str = "POST", scheme: str = "http", **headers: str
) -> HTTPConnection:
    scope = {
        "type": kind,
        "scheme": scheme,
        "path": "/api/drafts",
        "headers": [(k.replace("_", "-").lower().encode(), v.encode()) for k, v in headers.items()],
    }
    if kind == "http":
        scope["method"] = method
    return HTTPConnection(scope)


def _passes(connection: HTTPConnection, allowed: frozenset[str] = frozenset()) -> bool:
    try:
        check_same_site(connection, allowed)
    except CrossSiteRequest:
        return False
    return True


@pytest.mark.parametrize(
    ("scheme", "netloc", "origin"),
    [
        ("http", "Example.COM", "http://example.com"),
        ("https", "example.com:443", "https://example.com"),
        ("http", "example.com:80", "http://example.com"),
        ("wss", "example.com:8443", "https://example.com:8443"),
        ("ws", "[::1]:8000", "http://[::1]:8000"),
        ("http", "", None),
        ("ftp", "example.com", None),
        ("http", "example.com/path", None),
        ("http", "user@example.com", None),
        ("http", "example.com:99999", None),
    ],
)
def test_an_origin_has_one_spelling(scheme: str, netloc: str, origin: str | None) -> None:
    assert origin_of(scheme, netloc) == origin


def test_the_requests_own_origin_passes_and_another_does_not() -> None:
    own = {"host": "draftsync.example:8000"}
    assert _passes(_connection(origin="http://draftsync.example:8000", **own))
    assert _passes(
        _connection("websocket", scheme="ws", origin="http://draftsync.example:8000", **own)
    )
    assert not _passes(_connection(origin="https://draftsync.example:8000", **own))  # scheme
    assert not _passes(_connection(origin="http://draftsync.example", **own))  # port
    assert not _passes(_connection(origin="https://evil.example", **own))
    assert not _passes(_connection(origin="null", **own))  # a sandboxed frame, a data: URL
    assert not _passes(_connection("websocket", scheme="ws", origin="https://evil.example", **own))


def test_sec_fetch_site_cross_site_is_refused_and_no_header_passes() -> None:
    assert not _passes(_connection(host="a.example", sec_fetch_site="cross-site"))
    assert _passes(_connection(host="a.example", sec_fetch_site="same-origin"))
    assert _passes(_connection(host="a.example"))  # curl, a server: no browser to trick
    assert _passes(_connection("websocket", scheme="ws", host="a.example"))


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_reads_are_not_checked(method: str) -> None:
    connection = _connection(method=method, host="a.example", origin="https://evil.example")
    assert _passes(connection)


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "PROPFIND"])
def test_every_other_method_is_checked(method: str) -> None:
    connection = _connection(method=method, host="a.example", origin="https://evil.example")
    assert not _passes(connection)


def test_an_allowed_origin_passes_even_cross_site() -> None:
    allowed = allowed_origins(["https://app.example/", " http://localhost:3000 "])
    assert allowed == {"https://app.example", "http://localhost:3000"}
    headers = {"host": "api.example", "sec_fetch_site": "cross-site"}
    assert _passes(_connection(origin="https://app.example:443", **headers), allowed)
    assert _passes(_connection(origin="http://localhost:3000", **headers), allowed)
    assert not _passes(_connection(origin="https://evil.example", **headers), allowed)
    assert not _passes(_connection(**headers), allowed)  # no Origin to match


@pytest.mark.parametrize("bad", ["app.example", "https://app.example/path", "*", "null", ""])
def test_an_allow_list_entry_that_is_not_an_origin_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="scheme://host"):
        allowed_origins([bad])
