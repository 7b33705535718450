"""A Python editor: a pycrdt `Doc` over a plain WebSocket client (the `websockets` library).

It speaks y-protocols with pycrdt's own helpers (`create_sync_message`, `handle_sync_message`),
not with draftsync's `crdt.protocol`, so it is an independent second implementation.
Local edits go through `edit()`, which sends exactly the update the edit produced.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import websockets
from pycrdt import (
    Doc,
    Map,
    Text,
    YMessageType,
    YSyncMessageType,
    create_sync_message,
    create_update_message,
    handle_sync_message,
)

if TYPE_CHECKING:
    from tests.support.server_process import ServerProcess

__all__ = ["PycrdtClient", "connect_synced", "type_into", "write_while_apart"]

WRITE_ACK = 102


class PycrdtClient:
    def __init__(
        self,
        ws_url: str,
        room: str,
        token: str | None,
        *,
        client_id: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """`token` None: no `?token=` (the caller is known otherwise, e.g. by a cookie in
        `headers`, which are sent with the upgrade request)."""
        self.url = f"{ws_url}/{room}" if token is None else f"{ws_url}/{room}?token={token}"
        self._headers = headers
        self.doc: Doc = Doc(client_id=client_id)
        self.synced = asyncio.Event()
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._changed = asyncio.Condition()
        self._socket: websockets.ClientConnection | None = None
        self._acks: dict[bytes, asyncio.Event] = {}
        self._reader: asyncio.Task[None] | None = None

    async def connect(self) -> PycrdtClient:
        self.synced.clear()
        self.closed.clear()
        self._socket = await websockets.connect(
            self.url, max_size=None, additional_headers=self._headers
        )
        self._reader = asyncio.create_task(self._read())
        # A server that refuses the join may close before this is sent (the 101 comes first):
        # the reader records the close code, as for a close at any later moment.
        with contextlib.suppress(websockets.ConnectionClosed):
            await self._socket.send(create_sync_message(self.doc))
        return self

    async def disconnect(self) -> None:
        if self._socket is not None:
            await self._socket.close()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await self._reader

    def text(self, field: str) -> str:
        return str(self.doc.get(field, type=Text))

    def fields(self) -> dict[str, Any]:
        return self.doc.get("fields", type=Map).to_py() or {}

    async def edit(self, change: Callable[[Doc], None]) -> None:
        """Make a local change and send its update (if connected)."""
        before = self.doc.get_state()
        change(self.doc)
        update = self.doc.get_update(before)
        if self._socket is not None and not self.closed.is_set():
            await self._socket.send(create_update_message(update))

    async def flush(self, timeout: float = 30) -> None:
        """Wait until the server has committed and relayed everything sent so far.

        Uses draftsync's opt-in write acknowledgement (message 102), framed by hand here.
        """
        assert self._socket is not None
        token = os.urandom(8)
        done = self._acks[token] = asyncio.Event()
        await self._socket.send(bytes([WRITE_ACK, len(token)]) + token)
        async with asyncio.timeout(timeout):
            await done.wait()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10) -> None:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(predicate)

    async def _read(self) -> None:
        assert self._socket is not None
        try:
            async for message in self._socket:
                assert isinstance(message, bytes)
                if message[0] == WRITE_ACK:  # 102 < 128: one byte, then varUint8Array
                    self._acks.pop(message[2:], asyncio.Event()).set()
                elif message[0] == YMessageType.SYNC:
                    reply = handle_sync_message(message[1:], self.doc)
                    if reply is not None:
                        await self._socket.send(reply)
                    if message[1] == YSyncMessageType.SYNC_STEP2:
                        self.synced.set()
                async with self._changed:
                    self._changed.notify_all()
        except websockets.ConnectionClosed:
            pass
        finally:
            rcvd = self._socket.protocol.close_rcvd
            self.close_code = rcvd.code if rcvd else None
            self.close_reason = rcvd.reason if rcvd else None
            self.closed.set()
            async with self._changed:
                self._changed.notify_all()


async def connect_synced(
    server: ServerProcess, draft: str, user: str = "alice", *, timeout: float = 10
) -> PycrdtClient:
    """`user`'s editor on `draft`, once the server's sync step 2 is in: its doc holds all
    the draft had when it joined, so what a test reads next is the server's doing."""
    client = await PycrdtClient(server.ws_url, draft, server.token(user)).connect()
    await asyncio.wait_for(client.synced.wait(), timeout)
    return client


def type_into(title: str) -> Callable[[Doc], None]:
    """An edit for `PycrdtClient.edit`: `title` appended to the draft's title."""

    def change(doc: Doc) -> None:
        text = doc.get("title", type=Text)
        text.insert(len(text), title)

    return change


async def write_while_apart(
    first: PycrdtClient,
    second: PycrdtClient,
    key: str,
    agreed: object,
    values: tuple[object, object],
) -> None:
    """Two connected editors agree on `fields[key] = agreed`, go offline, each writes its
    own of `values`, then reconnect and flush: concurrent writes to one key, as the rules see
    them (a `manual` field opens a conflict)."""

    def setting(value: object) -> Callable[[Doc], None]:
        return lambda doc: doc.get("fields", type=Map).__setitem__(key, value)

    await first.edit(setting(agreed))
    await first.flush()
    await second.wait_for(lambda: second.fields().get(key) == agreed)
    await first.disconnect()
    await second.disconnect()
    await first.edit(setting(values[0]))
    await second.edit(setting(values[1]))
    await first.connect()
    await first.flush()
    await second.connect()
    await second.flush()
