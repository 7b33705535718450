"""A connection's incoming ASGI messages, with a look at what has already arrived.

ASGI's `receive` has no "is there more?": a reader can only await the next message. But the
frames of one TCP read all arrive at once (uvicorn parses them into its queue together), and a
client that types faster than the server applies sends exactly such bursts. The room applies a
run of them as one transaction, one version and one stored row instead of one each (`bench
merge`: ~3x the updates/s on automerge-paper), so the reader needs to ask "has the next message
arrived already?" without waiting for it.

`ready()` answers by running one step of `receive()` (`server/sync/resume.py`): a coroutine that has
its value at hand returns it without suspending. One that would wait is kept as it is, suspended
on its future, and `next()` finishes it later, handing that future to the reader's task as if
the task had been awaiting it all along. No message is dropped or read twice either way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Generator
from typing import Any

from starlette.types import Message, Receive

from server.sync.resume import Started

__all__ = ["Inbox"]


class Inbox:
    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._held: Message | None = None  # a message given back by the reader
        self._waiting: Awaitable[Message] | None = None  # a receive() that had to wait

    def next(self) -> Awaitable[Message]:
        """The next message, waiting for it if need be. A plain method returning what to
        await (the protocol's `receive()` itself, mostly), not a coroutine: an idle
        connection's reader waits in it, and a coroutine frame more is 200 bytes of each."""
        if self._held is not None:
            message, self._held = self._held, None
            return _Ready(message)
        if self._waiting is not None:
            waiting, self._waiting = self._waiting, None
            return waiting
        return self._receive()

    def ready(self) -> Message | None:
        """The next message if it has arrived, else None (without waiting)."""
        if self._held is not None:
            message, self._held = self._held, None
            return message
        if self._waiting is not None:
            return None
        # draftsync's own protocol answers without starting a `receive()` (its coroutine, a
        # future and a `Started` per look: server/sync/wsprotocol.py `receive_nowait`); any
        # other ASGI server's `receive` is asked by running its first step. Looked up per
        # look, not kept: an idle connection holds no bound method for it.
        nowait = getattr(getattr(self._receive, "__self__", None), "receive_nowait", None)
        if nowait is not None:
            return nowait()  # type: ignore[no-any-return]
        receiving = Started(self._receive())
        if receiving.finished:
            return receiving.value
        self._waiting = receiving
        return None

    def give_back(self, message: Message) -> None:
        """Put back a message `ready()` returned: `next()` returns it first."""
        assert self._held is None, "only one message can be given back"
        self._held = message


class _Ready:
    """An awaitable that has its value: awaiting it returns at once."""

    __slots__ = ("_value",)

    def __init__(self, value: Message) -> None:
        self._value = value

    def __await__(self) -> Generator[Any, Any, Message]:
        return self._value
        yield  # a generator: awaited, it returns without suspending
