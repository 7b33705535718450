"""What a connect reads is what it read before the connect path was made lighter (issue 24
point 2): the socket's addresses from the transport (`socket_addresses`) are those uvicorn's
helpers read through a socket object, the token is read from the query string as Starlette
reads it, the lighter flow control waits and wakes as uvicorn's, and a stored role is the
same `Role`. Real transports on loopback, under uvloop and asyncio's own loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable

import pytest
import uvloop
from starlette.datastructures import QueryParams
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.utils import get_local_addr, get_remote_addr

from server.access import Role, strongest
from server.admission.sockets import LeanFlowControl, socket_addresses
from server.sync.endpoint import _query_value

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "uvloop": uvloop.new_event_loop,
    "asyncio": asyncio.new_event_loop,
}


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


class _Accepted(asyncio.Protocol):
    def __init__(self, accepted: asyncio.Future[asyncio.Transport]) -> None:
        self.accepted = accepted

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self.accepted.done():
            self.accepted.set_result(transport)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def _accepted_transport(host: str) -> AsyncIterator[asyncio.Transport]:
    """The server side of one real loopback connection."""
    loop = asyncio.get_running_loop()
    accepted: asyncio.Future[asyncio.Transport] = loop.create_future()
    server = await loop.create_server(lambda: _Accepted(accepted), host, 0)
    port = server.sockets[0].getsockname()[1]
    client, _ = await loop.create_connection(asyncio.Protocol, host, port)
    try:
        async with asyncio.timeout(10):
            yield await accepted
    finally:
        client.close()
        (await accepted).close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_socket_addresses_are_the_ones_uvicorns_helpers_read(loop_name: str, host: str) -> None:
    if host == "::1" and not _has_ipv6():
        pytest.skip("no IPv6 loopback here")

    async def compare() -> None:
        async with _accepted_transport(host) as transport:
            expected = (get_local_addr(transport), get_remote_addr(transport))
            assert expected[0] is not None and expected[1] is not None
            assert socket_addresses(transport) == expected
            # Asked twice (uvloop converts its stored address each time): the same again.
            assert socket_addresses(transport) == expected

    loop = LOOPS[loop_name]()
    try:
        loop.run_until_complete(compare())
    finally:
        loop.close()


def test_socket_addresses_fall_back_to_uvicorns_helpers_without_stored_ones() -> None:
    class Bare(asyncio.Transport):
        """A transport that knows no address at all (uvicorn's helpers answer None)."""

    assert socket_addresses(Bare()) == (None, None)


async def test_lean_flow_control_waits_and_wakes_as_uvicorns() -> None:
    async with _accepted_transport("127.0.0.1") as transport:
        for flow in (FlowControl(transport), LeanFlowControl(transport)):
            await asyncio.wait_for(flow.drain(), 10)  # writable from the start
            flow.pause_writing()
            waiting = asyncio.ensure_future(flow.drain())
            await asyncio.sleep(0)
            assert not waiting.done()
            flow.resume_writing()
            await asyncio.wait_for(waiting, 10)
            flow.pause_reading()
            assert flow.read_paused and transport.is_reading() is False
            flow.resume_reading()
            assert not flow.read_paused and transport.is_reading()


QUERIES = [
    "",
    "token=abc.def-ghi_jkl",
    "token=a&token=b",
    "token=",
    "token",
    "x=1&token=t&y",
    "&&token=t&&",
    "=v&token==x=y",
    "tok=1&token_=2&xtoken=3",
    "token=caf\u00e9\u00ff",
    "token=a%20b",
    "token=a+b",
    "tok%65n=z",
    "token=%zz&token=%41",
    "token=a;token=b",
    "TOKEN=upper",
    "token=a&token",
]


@pytest.mark.parametrize("query", QUERIES)
def test_the_token_is_read_from_the_query_string_as_starlette_reads_it(query: str) -> None:
    scope = {"query_string": query.encode("latin-1")}
    for name in ("token", "x", "y", "", "tok"):
        assert _query_value(scope, name) == QueryParams(query).get(name), (query, name)


def test_a_stored_role_resolves_to_the_same_role_and_grants_only_add() -> None:
    for role in Role:
        assert strongest(role, None) is role
        assert strongest(None, role) is role
        assert strongest(role) is role
    assert strongest(None, None) is None
    assert strongest() is None
    assert strongest(Role.VIEWER, Role.EDITOR) is Role.EDITOR
    assert strongest(Role.OWNER, Role.VIEWER) is Role.OWNER
    assert strongest(Role.EDITOR, None, Role.OWNER) is Role.OWNER
