"""Running an await's first step right away, and finishing it later in a task.

Most awaits on the hot path do not wait: a message that has already arrived, a transport that
is writable. Handing such an await to a task costs a trip through the event loop for nothing.
`Started` runs the first step where it is created; only an await that does have to wait is
finished later, by whichever task awaits the `Started` (`server/sync/inbox.py` for receiving,
`server/sync/connection.py` for sending).
"""

from __future__ import annotations

from collections.abc import Awaitable, Generator
from typing import Any, Generic, TypeVar

__all__ = ["Started"]

T = TypeVar("T")


class Started(Generic[T]):
    """An awaitable run up to where it first suspends. `finished`: it did not suspend, and
    `value` is its result. Else awaiting this finishes it: what it yielded (the future it
    waits on) goes to the awaiting task, which resumes it once that future is done; sends and
    throws (a cancellation) pass through. Exceptions of the first step propagate at once."""

    def __init__(self, awaitable: Awaitable[T]) -> None:
        self._steps = awaitable.__await__()
        self.finished = False
        self.value: T | None = None
        try:
            self._suspended_on = self._steps.send(None)
        except StopIteration as done:
            self.finished = True
            self.value = done.value

    @classmethod
    def suspended(cls, steps: Generator[Any, Any, T], yielded: Any) -> Started[T]:
        """The `Started` of a coroutine (or `__await__` generator) whose first step the caller
        ran itself and which yielded `yielded`: running it through `Started` only to learn
        that it finished costs twice the step's own ~0.25 us on the reader's path."""
        started = cls.__new__(cls)
        started._steps = steps
        started.finished = False
        started.value = None
        started._suspended_on = yielded
        return started

    def __await__(self) -> Generator[Any, Any, T]:
        if self.finished:
            return self.value  # type: ignore[return-value]
        yielded = self._suspended_on
        while True:
            try:
                sent = yield yielded
            except BaseException as error:  # a cancellation: the awaitable must see it
                try:
                    yielded = self._steps.throw(error)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
            else:
                try:
                    yielded = self._steps.send(sent)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
