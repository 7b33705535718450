"""A draft opened from a Python program: a pycrdt `Doc` kept in sync with the server.

Why not pycrdt's own `Provider`: it sends local changes from a background task and says itself
that a send "does not confirm receipt or persistence". A bot or an import job needs to know when
its edit is on disk. draftsync answers that with its write acknowledgement (design.md, message
102): a client sends 102 with a payload of its choosing after its updates, and the server echoes
it once every update the connection sent before it is committed and relayed. This client puts
local updates and the 102 on one ordered queue, so `durable()` covers every edit made before it.

    async with DraftClient("ws://127.0.0.1:8000/ws", "my-draft", token) as draft:
        draft.doc.get("title", type=Text).insert(0, "Hello")
        await draft.durable()

Edit `draft.doc` as any pycrdt document (the text fields are root `Text`s, the semantic fields
the root `Map` "fields"); each local transaction is sent as one update. It speaks the y-websocket
protocol with pycrdt's helpers; awareness is not sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from types import TracebackType
from urllib.parse import quote, urlencode

import websockets
from pycrdt import (
    Doc,
    Subscription,
    TransactionEvent,
    YMessageType,
    YSyncMessageType,
    create_sync_message,
    create_update_message,
    handle_sync_message,
)

__all__ = ["WRITE_ACK", "DraftClient", "DraftClosed"]

WRITE_ACK = 102  # design.md: echoed once every earlier update of the connection is committed


class DraftClosed(Exception):
    """The server closed the connection (or it was lost): `code` and `reason` say why, with the
    close codes of README "Connecting" (4401 bad token, 4403 no access, 1013 try again...)."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"draft connection closed: code={code} reason={reason!r}")
        self.code = code
        self.reason = reason


class DraftClient:
    """One draft over one WebSocket; use with `async with`, which returns once the document
    holds everything the server had (the server's sync step 2)."""

    def __init__(
        self, url: str, draft_id: str, token: str, *, doc: Doc | None = None, timeout: float = 30
    ) -> None:
        """`timeout`: seconds `connect()` waits for the initial sync and `durable()` for its
        acknowledgement, before TimeoutError (a program must never wait forever)."""
        self.timeout = timeout
        self.url = f"{url.rstrip('/')}/{quote(draft_id, safe='')}?{urlencode({'token': token})}"
        self.doc = doc if doc is not None else Doc()
        self.closed: DraftClosed | None = None
        self._socket: websockets.ClientConnection | None = None
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._acks: dict[bytes, asyncio.Future[None]] = {}
        self._synced: asyncio.Future[None] | None = None
        self._applying_remote = False
        self._subscription: Subscription | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> DraftClient:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the socket and wait for the initial sync; DraftClosed if the server refuses."""
        loop = asyncio.get_running_loop()
        self._synced = loop.create_future()
        self._socket = await websockets.connect(self.url, max_size=None, open_timeout=self.timeout)
        self._subscription = self.doc.observe(self._local_change)
        self._outbox.put_nowait(create_sync_message(self.doc))
        self._tasks = [
            asyncio.create_task(self._write(self._socket)),
            asyncio.create_task(self._read(self._socket)),
        ]
        try:
            async with asyncio.timeout(self.timeout):
                await self._synced
        except BaseException:
            await self.close()
            raise

    async def durable(self) -> None:
        """Return once the server has committed (and relayed) every edit made before this call;
        DraftClosed if the connection ends first. Then the edits are not known to be stored:
        open a new client with `doc=` this one's doc (its sync sends the server whatever it
        lacks; what it has is stored once) and call `durable()` there."""
        if self.closed is not None:
            raise self.closed
        nonce = os.urandom(8)
        waiter = self._acks[nonce] = asyncio.get_running_loop().create_future()
        self._outbox.put_nowait(bytes([WRITE_ACK, len(nonce)]) + nonce)
        try:
            async with asyncio.timeout(self.timeout):
                await waiter
        finally:
            self._acks.pop(nonce, None)

    async def close(self) -> None:
        """Close the socket after sending what is queued (not waiting for an ack)."""
        if self._subscription is not None:
            self.doc.unobserve(self._subscription)
            self._subscription = None
        if self._socket is not None and self.closed is None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await self._outbox.join()
            await self._socket.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                await task
        self._finish(DraftClosed(1000, "closed by the client"))

    def _local_change(self, event: TransactionEvent) -> None:
        if not self._applying_remote:  # what the server sent is not sent back
            self._outbox.put_nowait(create_update_message(event.update))

    async def _write(self, socket: websockets.ClientConnection) -> None:
        while True:
            message = await self._outbox.get()
            try:
                await socket.send(message)
            except websockets.ConnectionClosed:
                while not self._outbox.empty():  # nothing more can go: let close() go on
                    self._outbox.get_nowait()
                    self._outbox.task_done()
                return
            finally:
                self._outbox.task_done()

    async def _read(self, socket: websockets.ClientConnection) -> None:
        try:
            async for message in socket:
                if not isinstance(message, bytes) or not message:
                    continue
                if message[0] == WRITE_ACK:  # 102, then a varUint8Array (one length byte here)
                    waiter = self._acks.pop(message[2:], None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(None)
                elif message[0] == YMessageType.SYNC:
                    self._applying_remote = True
                    try:
                        reply = handle_sync_message(message[1:], self.doc)
                    finally:
                        self._applying_remote = False
                    if reply is not None:
                        self._outbox.put_nowait(reply)
                    step2 = message[1] == YSyncMessageType.SYNC_STEP2
                    if step2 and self._synced is not None and not self._synced.done():
                        self._synced.set_result(None)
        except websockets.ConnectionClosed:
            pass
        received = socket.protocol.close_rcvd
        self._finish(
            DraftClosed(received.code if received else None, received.reason if received else "")
        )

    def _finish(self, closed: DraftClosed) -> None:
        if self.closed is None:
            self.closed = closed
        waiters = [*self._acks.values(), *([self._synced] if self._synced else [])]
        self._acks.clear()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(self.closed)
