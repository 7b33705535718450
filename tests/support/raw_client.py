"""A frame-level y-protocols client: sends any bytes it is given, records every frame it gets.

Where `PycrdtClient` behaves like an editor, this one lets a test send what no editor would
(truncated frames, text frames, unknown types, oversized messages) and see exactly what the
server answers, in order, down to the close code and reason. Frames the server sends are decoded
with `crdt.protocol`; the raw bytes are kept too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

import websockets
from websockets.asyncio.client import ClientConnection

from crdt.protocol import Message, decode_message

__all__ = ["RawClient", "connect_raw"]

M = TypeVar("M", bound=Message)


class RawClient:
    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.frames: list[bytes | str] = []
        self.messages: list[Message] = []
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason: str | None = None
        # Why the reader stopped: websockets' `ConnectionClosed` (its text says which close
        # frames went each way, "no close frame received" included), or what this client could
        # not read; None while open.
        self.ended: BaseException | None = None
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    async def send(self, data: bytes | str) -> None:
        """Send one frame; a send to a connection the server already closed is dropped."""
        with contextlib.suppress(websockets.ConnectionClosed):
            await self.socket.send(data)

    def send_together(self, frames: list[bytes]) -> None:
        """Send binary frames in one TCP write, so that the server reads them at once (what a
        client that types faster than the server applies looks like on the wire)."""
        for frame in frames:
            self.socket.protocol.send_binary(frame)
        self.socket.transport.write(b"".join(self.socket.protocol.data_to_send()))

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10) -> None:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(predicate)

    async def next_message(
        self,
        kind: type[M],
        *,
        after: int = 0,
        where: Callable[[M], bool] = lambda _: True,
        timeout: float = 10,
    ) -> tuple[int, M]:
        """The first message of `kind` at index >= `after` that satisfies `where`, and its index."""
        found: list[tuple[int, M]] = []

        def look() -> bool:
            for index in range(after, len(self.messages)):
                message = self.messages[index]
                if isinstance(message, kind) and where(message):
                    found.append((index, message))
                    return True
            return False

        await self.wait_for(look, timeout)
        return found[0]

    async def wait_closed(self, timeout: float = 10) -> tuple[int | None, str | None]:
        """The close code and reason the server sent, once the connection is closed."""
        async with asyncio.timeout(timeout):
            await self.closed.wait()
        return self.close_code, self.close_reason

    async def close(self) -> None:
        await self.socket.close()
        with contextlib.suppress(Exception):
            await self._reader

    async def _read(self) -> None:
        try:
            async for frame in self.socket:
                self.frames.append(frame)
                if isinstance(frame, bytes):
                    self.messages.append(decode_message(frame))
                async with self._changed:
                    self._changed.notify_all()
        except websockets.ConnectionClosed as closed:
            self.ended = closed
        except Exception as error:
            self.ended = error
            raise
        finally:
            received = self.socket.protocol.close_rcvd
            self.close_code = received.code if received else None
            self.close_reason = received.reason if received else None
            self.closed.set()
            async with self._changed:
                self._changed.notify_all()


async def connect_raw(ws_url: str, draft: str, token: str | None, **options: Any) -> RawClient:
    """Open `ws_url/draft?token=…` (no token parameter when `token` is None)."""
    query = "" if token is None else f"?token={token}"
    socket = await websockets.connect(
        f"{ws_url}/{draft}{query}", max_size=None, proxy=None, **options
    )
    return RawClient(socket)
