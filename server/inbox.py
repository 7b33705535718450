"""A connection's incoming ASGI messages, with a look at what has already arrived.

ASGI's `receive` has no "is there more?": a reader can only await the next message. But the
frames of one TCP read all arrive at once (uvicorn parses them into its queue together), and a
client that types faster than the server applies sends exactly such bursts. The room applies a
run of them as one transaction, one version and one stored row instead of one each (`bench
merge`: ~3x the updates/s on automerge-paper), so the reader needs to ask "has the next message
arrived already?" without waiting for it.

`ready()` answers by running one step of `receive()`: a coroutine that has its value at hand
returns it without suspending. One that would wait is kept as it is, suspended on its future,
and `next()` finishes it later, handing that future to the reader's task as if the task had been
awaiting it all along. No message is dropped or read twice either way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Coroutine, Generator
from typing import Any

from starlette.types import Message, Receive

__all__ = ["Inbox"]


class Inbox:
    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._held: Message | None = None  # a message given back by the reader
        self._waiting: Awaitable[Message] | None = None  # a receive() that had to wait

    async def next(self) -> Message:
        """The next message, waiting for it if need be."""
        if self._held is not None:
            message, self._held = self._held, None
            return message
        if self._waiting is not None:
            waiting, self._waiting = self._waiting, None
            return await waiting
        return await self._receive()

    def ready(self) -> Message | None:
        """The next message if it has arrived, else None (without waiting)."""
        if self._held is not None:
            message, self._held = self._held, None
            return message
        if self._waiting is not None:
            return None
        receiving = self._receive()
        try:
            suspended_on = receiving.send(None)  # type: ignore[attr-defined]
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        self._waiting = _Resumed(receiving, suspended_on)
        return None

    def give_back(self, message: Message) -> None:
        """Put back a message `ready()` returned: `next()` returns it first."""
        assert self._held is None, "only one message can be given back"
        self._held = message


class _Resumed:
    """Awaiting this finishes a coroutine that was started outside a task and suspended.

    It yields what the coroutine yielded (the future it waits on) to the awaiting task, which
    resumes it once that future is done; sends and throws (a cancellation) pass through."""

    def __init__(self, coroutine: Coroutine[Any, Any, Message], suspended_on: Any) -> None:
        self._coroutine = coroutine
        self._suspended_on = suspended_on

    def __await__(self) -> Generator[Any, Any, Message]:
        yielded = self._suspended_on
        while True:
            try:
                sent = yield yielded
            except BaseException as error:  # a cancellation: the coroutine must see it
                try:
                    yielded = self._coroutine.throw(error)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
            else:
                try:
                    yielded = self._coroutine.send(sent)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
