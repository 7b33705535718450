"""Bound a decoder's work by counting the Python lines it runs, not by timing it.

A timed assert fails on a loaded machine (two cores, shared); a count of executed lines does
not, and it grows with the work a decoder does rather than with the bytes it reads: a loop
over a length the input only claims (a deleted run of 2**32 clocks in 27 bytes) shows up at
once. Past the limit the tracer raises `TooMuchWork` inside the decoder, so a decoder that
would hang stops there and the example fails instead of the suite hanging.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["TooMuchWork", "lines_run"]


class TooMuchWork(BaseException):
    """Raised inside the traced code; a BaseException so that no `except Exception` eats it."""


def lines_run(
    fn: Callable[[bytes], Any], data: bytes, limit: int
) -> tuple[int, BaseException | None]:
    """Run `fn(data)`; return the Python lines (and calls) it ran and what it raised.

    Raises `TooMuchWork` once more than `limit` ran."""
    count = 0

    def bump() -> None:
        nonlocal count
        count += 1
        if count > limit:
            raise TooMuchWork(f"over {limit:,} lines for a {len(data):,}-byte input")

    def on_line(_frame: FrameType, event: str, _arg: Any) -> Any:
        if event == "line":
            bump()
        return on_line

    def on_call(_frame: FrameType, _event: str, _arg: Any) -> Any:
        bump()
        return on_line

    previous = sys.gettrace()
    sys.settrace(on_call)
    try:
        fn(data)
        error = None
    except TooMuchWork:
        raise
    except BaseException as raised:
        error = raised
    finally:
        sys.settrace(previous)
    return count, error
